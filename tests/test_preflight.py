"""Preflight: what a sweep cannot finish is refused before Ray starts or any data is prepared (issue 12, item 5)."""

from __future__ import annotations

import importlib.util
import pathlib
import shutil
import subprocess
import textwrap
import tomllib

import pytest
from conftest import build_tiny_data_home

from sweeps import cli
from sweeps.checks import cluster_checks
from sweeps.checks import preflight
from sweeps.tracking import mlflow_runs

ROOT = pathlib.Path(__file__).resolve().parents[1]


def write_sweep(folder: pathlib.Path, *, tracking_uri: str, resources: str = "{cpu: 1, gpu: 0}") -> pathlib.Path:
    path = folder / "sweep.yaml"
    path.write_text(textwrap.dedent(f"""\
        # Run: glovesweep run {path}
        name: preflight
        factors:
          dataset: ["19997"]
          epochs: [1]
        fixed:
          architecture: global_max
          max_sequence_length: 160
          embedding: random
        seeds: 1
        resources: {resources}
        mlflow: {{tracking_uri: "{tracking_uri}", experiment: preflight}}
        storage_path: {folder / 'results'}
        """))
    return path


@pytest.fixture
def immutable(tmp_path):
    """``immutable(folder)`` makes a folder refuse new files, even for root (chattr +i); undone afterwards."""
    if shutil.which("chattr") is None:
        pytest.skip("chattr not available")
    made = []

    def make(folder: pathlib.Path) -> None:
        if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
            pytest.skip("chattr +i is not permitted here")
        made.append(folder)

    yield make
    for folder in made:
        subprocess.run(["chattr", "-i", str(folder)], check=False)


def test_an_existing_sqlite_store_in_a_read_only_folder_is_refused_up_front(tmp_path, immutable, capsys):
    store_folder = tmp_path / "store"
    store_folder.mkdir()
    uri = f"sqlite:///{store_folder / 'mlflow.db'}"
    mlflow_runs.ensure_experiment(uri, "preflight")
    sweep = write_sweep(tmp_path, tracking_uri=uri)
    immutable(store_folder)
    capsys.readouterr()
    # No data home: had the store check come after the data sources, the error would name the data.
    code = cli.main(["run", str(sweep), "--no-download", "--data-dir", str(tmp_path / "no-data")])
    lines = capsys.readouterr().err.splitlines()
    assert code == 2 and len(lines) == 1, lines
    assert f"the folder {store_folder} of the MLflow store" in lines[0] or str(store_folder / "mlflow.db") in lines[0]
    assert "not writable" in lines[0] and "--tracking-uri" in lines[0]
    assert not (tmp_path / "results").exists()


def test_a_writable_store_and_other_stores_pass(tmp_path):
    preflight.check_store_writable(f"sqlite:///{tmp_path / 'new.db'}")
    preflight.check_store_writable("http://127.0.0.1:1")
    assert list(tmp_path.iterdir()) == []  # The probe leaves nothing behind.


def test_a_read_only_sqlite_file_is_named(tmp_path, immutable):
    path = tmp_path / "store" / "mlflow.db"
    path.parent.mkdir()
    path.write_bytes(b"")
    immutable(path)
    with pytest.raises(OSError, match=f"the MLflow store {path} is not writable"):
        preflight.check_store_writable(f"sqlite:///{path}")


def test_resources_no_local_node_has_are_refused(ray_local):
    cluster_checks.check_resources_feasible({"cpu": 1, "gpu": 0})
    cluster_checks.check_resources_feasible({"cpu": 2})
    for asked, named in (({"cpu": 1, "gpu": 2}, "GPU=2"), ({"cpu": 3, "gpu": 0}, "CPU=3")):
        with pytest.raises(ValueError, match=f"each trial asks for .*{named}.* but this machine's Ray can provide"):
            cluster_checks.check_resources_feasible(asked)


def test_on_a_cluster_only_what_no_node_type_offers_is_refused(ray_local, monkeypatch):
    monkeypatch.setenv(cluster_checks.CLUSTER_ENV, "1")
    gpu_worker = [{"CPU": 4.0, "GPU": 1.0}]
    cluster_checks.check_resources_feasible({"cpu": 2, "gpu": 0.5}, node_types=gpu_worker)
    cluster_checks.check_resources_feasible({"cpu": 4, "gpu": 1}, node_types=gpu_worker)
    with pytest.raises(ValueError, match="no node of this Ray cluster or its autoscaler can provide"):
        cluster_checks.check_resources_feasible({"cpu": 1, "gpu": 2}, node_types=gpu_worker)
    # Node types unknown (no autoscaler config here): an autoscaling cluster gets the benefit of the doubt.
    monkeypatch.setenv(cluster_checks.AUTOSCALER_CONFIG_ENV, str(ROOT / "no-such-config.yaml"))
    cluster_checks.check_resources_feasible({"cpu": 1, "gpu": 2})


def test_node_types_are_read_from_the_autoscaler_config():
    types = cluster_checks.autoscaler_node_types(ROOT / "cluster" / "aws-gpu.yaml")
    assert {"CPU": 4.0, "GPU": 1.0} in types and {"CPU": 2.0} in types
    assert cluster_checks.autoscaler_node_types(ROOT / "missing.yaml") is None


def test_a_sweep_asking_for_gpus_this_machine_lacks_stops_before_preparing(tmp_path, ray_local, capsys):
    home = build_tiny_data_home(tmp_path / "data", versions=("19997",))
    sweep = write_sweep(tmp_path, tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", resources="{cpu: 1, gpu: 2}")
    code = cli.main(["run", str(sweep), "--no-download", "--data-dir", str(home), "--cache-dir", str(tmp_path / "c")])
    lines = capsys.readouterr().err.splitlines()
    assert code == 2 and len(lines) == 1 and "GPU=2" in lines[0] and "gpu: 0" in lines[0], lines
    assert not (tmp_path / "c" / "prepared").exists()
    from mlflow import tracking as mlflow_tracking

    client = mlflow_tracking.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert client.get_experiment_by_name("preflight") is None  # A refused sweep leaves MLflow as it was.


def test_the_dashboard_dependencies_are_declared_and_installed():
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert any(item.replace(" ", "").startswith(("ray[default]", "ray[default,")) for item in dependencies), \
        dependencies
    assert importlib.util.find_spec("aiohttp_cors") is not None  # What `--dashboard` crashed on.
