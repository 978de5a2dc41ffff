"""Preflight: what a sweep cannot finish is refused before Ray starts or any data is prepared (issue 12, item 5)."""

from __future__ import annotations

import importlib.util
import pathlib
import shutil
import subprocess
import textwrap
import tomllib

import pytest
import yaml
from conftest import build_tiny_data_home

from sweeps import cli
from sweeps.checks import cluster_checks
from sweeps.checks import preflight
from sweeps.checks import resources_check
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


def autoscaler_config(path: pathlib.Path, *, gpu_workers: int) -> pathlib.Path:
    """An autoscaler config with a CPU head and a GPU worker type that may launch ``gpu_workers`` nodes."""
    path.write_text(textwrap.dedent(f"""\
        head_node_type: head
        available_node_types:
          head: {{resources: {{CPU: 2}}, max_workers: 0}}
          gpu: {{resources: {{CPU: 4, GPU: 1}}, min_workers: 0, max_workers: {gpu_workers}}}
        """))
    return path


def sweep_asking(resources: str, tmp_path: pathlib.Path):
    from sweeps import spec as spec_module

    return spec_module.load_sweep(write_sweep(tmp_path, tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
                                              resources=resources))


def test_without_an_autoscaler_config_only_the_alive_nodes_count(ray_local, monkeypatch, tmp_path):
    monkeypatch.delenv(resources_check.AUTOSCALING_CONFIG_ENV, raising=False)
    # The variable nothing set, and the file it fell back to, are not read any more: one variable.
    monkeypatch.setenv("GLOVESWEEP_AUTOSCALER_CONFIG", str(autoscaler_config(tmp_path / "old.yaml", gpu_workers=2)))
    monkeypatch.setenv("HOME", str(tmp_path))
    autoscaler_config(tmp_path / "ray_bootstrap_config.yaml", gpu_workers=2)
    monkeypatch.setenv(cluster_checks.CLUSTER_ENV, "1")
    resources_check.check_trial_resources(sweep_asking("{cpu: 1, gpu: 0}", tmp_path))
    for asked, named in (("{cpu: 1, gpu: 2}", "GPU=2"), ("{cpu: 3, gpu: 0}", "CPU=3")):
        with pytest.raises(ValueError, match=f"each trial asks for .*{named}.* but none of the 1 node.* no autoscaler "
                                             r"config \(\$GLOVESWEEP_AUTOSCALING_CONFIG\).*gpu: 0"):
            resources_check.check_trial_resources(sweep_asking(asked, tmp_path))


def test_a_node_type_the_autoscaler_may_launch_counts_and_one_with_max_workers_0_does_not(ray_local, monkeypatch,
                                                                                          tmp_path):
    gpu_trial = sweep_asking("{cpu: 2, gpu: 0.5}", tmp_path)
    monkeypatch.setenv(resources_check.AUTOSCALING_CONFIG_ENV, str(autoscaler_config(tmp_path / "a.yaml",
                                                                                      gpu_workers=2)))
    resources_check.check_trial_resources(gpu_trial)
    with pytest.raises(ValueError, match=r"no node type the autoscaler may launch offers it either \(head "
                                         r"\{CPU: 2\}; gpu \{CPU: 4, GPU: 1\}\)"):
        resources_check.check_trial_resources(sweep_asking("{cpu: 1, gpu: 2}", tmp_path))
    # The same on a cluster (GLOVESWEEP_CLUSTER=1): one rule everywhere.
    monkeypatch.setenv(cluster_checks.CLUSTER_ENV, "1")
    monkeypatch.setenv(resources_check.AUTOSCALING_CONFIG_ENV, str(autoscaler_config(tmp_path / "b.yaml",
                                                                                      gpu_workers=0)))
    with pytest.raises(ValueError, match=r"GPU=0.5.*offers it either \(head \{CPU: 2\}\)"):
        resources_check.check_trial_resources(gpu_trial)


def test_an_unreadable_autoscaler_config_is_named(ray_local, monkeypatch, tmp_path):
    monkeypatch.setenv(resources_check.AUTOSCALING_CONFIG_ENV, str(tmp_path / "no-such-config.yaml"))
    with pytest.raises(OSError, match=r"\$GLOVESWEEP_AUTOSCALING_CONFIG=.*no-such-config.yaml: cannot read"):
        resources_check.check_trial_resources(sweep_asking("{cpu: 1, gpu: 0}", tmp_path))


def test_node_types_are_read_from_the_cluster_files():
    config = yaml.safe_load((ROOT / "cluster" / "aws-gpu.yaml").read_text())
    types = resources_check.node_types(config)
    assert types["ray.head.cpu"] == {"CPU": 2.0} and {"CPU": 4.0, "GPU": 1.0} in types.values()


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


def test_a_storage_path_that_cannot_be_created_stops_the_sweep_before_any_run(tmp_path, ray_local, capsys):
    home = build_tiny_data_home(tmp_path / "data", versions=("19997",))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sweep = write_sweep(tmp_path, tracking_uri=uri)
    sweep.write_text(sweep.read_text().replace(f"storage_path: {tmp_path / 'results'}", "storage_path: /proc/glovesweep"))
    code = cli.main(["run", str(sweep), "--no-download", "--data-dir", str(home), "--cache-dir", str(tmp_path / "c")])
    lines = capsys.readouterr().err.splitlines()
    assert code == 2 and len(lines) == 1, lines
    assert "storage_path /proc/glovesweep" in lines[0] and "--storage-path" in lines[0], lines
    if (tmp_path / "mlflow.db").exists():
        from mlflow import tracking as mlflow_tracking

        client = mlflow_tracking.MlflowClient(tracking_uri=uri)
        experiments = [experiment.experiment_id for experiment in client.search_experiments()]
        assert not client.search_runs(experiments), "a parent run was created before the storage check"


def test_a_writable_or_creatable_storage_path_and_uris_pass(tmp_path, immutable):
    preflight.check_storage_path(str(tmp_path / "new" / "deeper"))
    preflight.check_storage_path("s3://bucket/prefix")
    assert list(tmp_path.iterdir()) == []  # Nothing is created by the check.
    (tmp_path / "file").write_text("")
    with pytest.raises(OSError, match=f"storage_path {tmp_path / 'file' / 'sub'}: .*not a folder"):
        preflight.check_storage_path(str(tmp_path / "file" / "sub"))
    locked = tmp_path / "locked"
    locked.mkdir()
    immutable(locked)
    with pytest.raises(OSError, match=f"storage_path {locked / 'results'}: the sweep's results cannot be written"):
        preflight.check_storage_path(str(locked / "results"))
