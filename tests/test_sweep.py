"""The sweep service end to end: real local Ray, real MLflow server on 127.0.0.1, the real trainer, tiny data.

One module-scoped sweep (2 datasets x 2 seeds, epochs {2, 4}, one baseline per dataset) is inspected by
several tests; the fault-tolerance tests run their own sweeps (a worker killed with SIGKILL, the driver
killed with SIGKILL and then ``glovesweep resume``).
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from conftest import build_tiny_data_home, free_port, kill_mid_sweep

from sweeps import cli
from sweeps.run import checkpoints
from sweeps.run import driver
from sweeps import spec as spec_module
from sweeps.run import state as state_module
from sweeps.run import trial as trial_module
from sweeps.tracking import mlflow_runs
from trainer import config as config_module

ROOT = pathlib.Path(__file__).resolve().parents[1]
STEP_METRICS = ("loss", "acc", "val_loss", "val_acc", "epoch_seconds")

BASE_SWEEP = """\
# Run: glovesweep run {path}
name: {name}
factors:
  dataset: ["19997", "bydate"]
  epochs: {epochs}
fixed:
  architecture: global_max
  max_sequence_length: 160
  sizing: num_words_plus_one
seeds: {seeds}
baselines: {baselines}
resources: {{cpu: 1, gpu: 0}}
max_concurrent_trials: {concurrent}
max_failures: 2
mlflow: {{tracking_uri: "{tracking_uri}", experiment: {name}}}
storage_path: {storage}
"""


@pytest.fixture(scope="module")
def tiny_home(tmp_path_factory):
    """A data home with tiny 19997 and bydate archives (8 posts per group and subset) and its own cache."""
    root = tmp_path_factory.mktemp("sweep-data")
    return {"data_home": str(build_tiny_data_home(root)), "cache_dir": str(root / "cache")}


def write_sweep(folder: pathlib.Path, *, name: str, tracking_uri: str, epochs=(2, 4), seeds=2, baselines=(),
                concurrent=2, extra: str = "") -> pathlib.Path:
    path = folder / f"{name}.yaml"
    path.write_text(BASE_SWEEP.format(path=path, name=name, epochs=list(epochs), seeds=seeds,
                                      baselines=list(baselines), concurrent=concurrent, tracking_uri=tracking_uri,
                                      storage=folder / "results") + extra)
    return path


def client(uri: str):
    from mlflow import tracking as mlflow_tracking

    return mlflow_tracking.MlflowClient(tracking_uri=uri)


def history(uri: str, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((metric.step, metric.value) for metric in client(uri).get_metric_history(run_id, key))


def runs_of(uri: str, experiment: str) -> tuple[object, list]:
    """(parent run, child runs) of the only sweep logged into ``experiment``."""
    from mlflow.entities import ViewType

    experiment_id = client(uri).get_experiment_by_name(experiment).experiment_id
    runs = client(uri).search_runs([experiment_id], run_view_type=ViewType.ALL)
    parents = [run for run in runs if run.data.tags.get(mlflow_runs.ROLE_TAG) == "sweep"]
    assert len(parents) == 1, [run.data.tags for run in parents]
    children = [run for run in runs if run.data.tags.get(mlflow_runs.PARENT_TAG) == parents[0].info.run_id]
    assert len(children) + 1 == len(runs), "every run but the parent is one of its children"
    return parents[0], children


@pytest.fixture(scope="module")
def main_sweep(tmp_path_factory, mlflow_server, ray_local, tiny_home):
    folder = tmp_path_factory.mktemp("main-sweep")
    path = write_sweep(folder, name="main", tracking_uri=mlflow_server, baselines=["multinomial_nb"])
    spec = spec_module.load_sweep(path)
    started = time.perf_counter()
    result = driver.run_sweep(spec, download_if_missing=False, **tiny_home)
    parent, children = runs_of(mlflow_server, "main")
    return {"spec": spec, "path": path, "result": result, "parent": parent, "children": children,
            "seconds": time.perf_counter() - started}


def keras_children(sweep) -> list:
    return [run for run in sweep["children"] if run.data.tags["trainer"] == "keras"]


def test_child_runs_are_cells_times_seeds_plus_baselines(main_sweep):
    result = main_sweep["result"]
    assert result.ok and result.total == 6 and result.done == 6 and result.failed == 0
    network = keras_children(main_sweep)
    baselines = [run for run in main_sweep["children"] if run.data.tags["trainer"] == "baseline"]
    assert len(network) == 2 * 2  # cells x seeds
    assert len(baselines) == 2  # one per dataset cell
    assert sorted((run.data.params["dataset"], run.data.params["seed"]) for run in network) == [
        ("19997", "0"), ("19997", "1"), ("bydate", "0"), ("bydate", "1")]
    assert sorted(run.data.params["baseline"] for run in baselines) == ["multinomial_nb"] * 2
    trial_ids = [run.data.tags[mlflow_runs.TRIAL_ID_TAG] for run in main_sweep["children"]]
    assert len(set(trial_ids)) == 6
    assert {run.info.status for run in main_sweep["children"]} == {"FINISHED"}
    assert main_sweep["parent"].info.status == "FINISHED"
    # Tune reuses its trial actors (reuse_actors): with 2 CPUs the 4 networks train in at most 2 worker processes,
    # so a worker keeps TensorFlow loaded from one trial to the next instead of importing it again.
    assert len({run.data.tags["glovesweep.worker_pid"] for run in network}) <= 2


def test_parent_run_carries_the_sweep_file_and_its_hash(main_sweep, mlflow_server):
    parent = main_sweep["parent"]
    text = main_sweep["path"].read_text()
    assert parent.data.tags[mlflow_runs.ROLE_TAG] == "sweep"
    assert parent.data.tags[mlflow_runs.SWEEP_NAME_TAG] == "main"
    assert parent.data.tags[mlflow_runs.SWEEP_HASH_TAG] == hashlib.sha256(text.encode()).hexdigest()
    local = client(mlflow_server).download_artifacts(parent.info.run_id, "sweep.yaml")
    assert pathlib.Path(local).read_text() == text
    for child in main_sweep["children"]:
        assert child.data.tags[mlflow_runs.PARENT_TAG] == parent.info.run_id
        assert child.data.tags[mlflow_runs.ROLE_TAG] == "trial"


def test_params_are_every_trainer_field_plus_factors(main_sweep):
    fields = set(config_module.TrainerConfig().to_dict())
    for run in keras_children(main_sweep):
        params = run.data.params
        assert fields | {"factors"} == set(params)
        assert params["factors"] == "dataset,epochs"
        assert params["epochs"] == "4"  # one trial trains to max(epochs)
        assert params["max_sequence_length"] == "160" and params["architecture"] == "global_max"
        assert run.data.tags[mlflow_runs.CELL_TAG] == f"dataset={params['dataset']}"


def test_step_metrics_per_epoch_and_summaries_per_requested_epoch_count(main_sweep, mlflow_server):
    for run in keras_children(main_sweep):
        for key in STEP_METRICS:
            steps = [step for step, _ in history(mlflow_server, run.info.run_id, key)]
            assert steps == [1, 2, 3, 4], (key, steps)
        val_acc = dict(history(mlflow_server, run.info.run_id, "val_acc"))
        val_loss = dict(history(mlflow_server, run.info.run_id, "val_loss"))
        metrics = run.data.metrics
        # Summaries are the epoch's values rounded to 4 digits for reading in the UI (steps keep full precision).
        assert metrics["val_acc_at_2"] == round(val_acc[2], 4) and metrics["val_acc_at_4"] == round(val_acc[4], 4)
        assert metrics["val_loss_at_2"] == round(val_loss[2], 4) and metrics["val_loss_at_4"] == round(val_loss[4], 4)
        assert "val_acc_at_3" not in metrics
        assert 0.0 <= metrics["leakage"] <= 1.0
        assert 0.0 < metrics["glove_coverage"] <= 1.0
        assert metrics["out_of_range_ids"] == 0.0  # num_words_plus_one never overflows
        tags = run.data.tags
        assert len(tags["archive_sha256"]) == 64 and tags["glove_source"]
        assert tags["device"].startswith("CPU") and "tensorflow=" in tags["versions"]
        assert tags["git_commit"]


def test_baseline_runs_log_accuracy_and_leakage(main_sweep):
    for run in main_sweep["children"]:
        if run.data.tags["trainer"] != "baseline":
            continue
        assert 0.0 <= run.data.metrics["val_acc"] <= 1.0
        assert 0.0 <= run.data.metrics["leakage"] <= 1.0
        assert run.data.tags[mlflow_runs.CELL_TAG] == f"dataset={run.data.params['dataset']}"


PROGRESS_LINE = re.compile(r"\[\d\d:\d\d:\d\d\] (\d+) done, (\d+) running, (\d+) failed, (\d+) pending \| ")


def test_the_progress_lines_count_trials_tune_has_not_started_as_pending(mlflow_server, ray_local, tiny_home,
                                                                         tmp_path, capsys):
    """4 trials, 2 at a time: Tune creates the last 2 only when a slot frees, and they are pending till then."""
    path = write_sweep(tmp_path, name="pending", tracking_uri=mlflow_server, epochs=(1,), seeds=2, concurrent=2)
    spec = spec_module.load_sweep(path)
    assert spec.total_trials == 4
    result = driver.run_sweep(spec, download_if_missing=False, **tiny_home)
    assert result.ok
    output = capsys.readouterr().out
    counts = [tuple(int(number) for number in match.groups()) for match in PROGRESS_LINE.finditer(output)]
    assert counts, output
    # (done, running, failed, pending) of every line adds up to the sweep's 4 trials.
    assert all(sum(line) == 4 for line in counts), counts
    done, running, failed, pending = counts[0]
    assert (done, failed) == (0, 0) and pending >= 2, counts
    assert (0, 2, 0, 2) in counts, counts


def test_a_trial_task_round_trips_through_the_param_space_and_params_json():
    trial = spec_module.Trial(kind="keras", cell={"dataset": "19997", "strip": "none"}, seed=1)
    task = trial_module.TrialTask(trial=trial, resume_from=("/results/x/trial_1/checkpoint_000002",))
    (value,) = trial_module.param_space([task])[trial_module.TASK_KEY]["grid_search"]
    # Tune resolves the grid into each trial's config and writes it, as JSON, into the trial's params.json.
    params_json = json.dumps({trial_module.TASK_KEY: value})
    assert trial_module.TrialTask.of_config(json.loads(params_json)) == task
    assert checkpoints.trial_of_params(params_json) == trial
    # Trial folders of the first glovesweep versions held the trial at the top level.
    assert checkpoints.trial_of_params(json.dumps({"trial": trial.as_dict()})) == trial
    assert checkpoints.trial_of_params("{}") is None


def test_two_epoch_run_equals_epoch_two_of_the_four_epoch_trial(main_sweep, mlflow_server, tiny_home, tmp_path):
    """The epoch axis is answered exactly: a separate 2-epoch trial (same seed, CPU) matches epoch 2."""
    path = write_sweep(tmp_path, name="two-epochs", tracking_uri=mlflow_server, epochs=(2,), seeds=1)
    text = path.read_text().replace('dataset: ["19997", "bydate"]', 'dataset: ["19997"]')
    path.write_text(text)
    result = driver.run_sweep(spec_module.load_sweep(path), download_if_missing=False, **tiny_home)
    assert result.ok
    _, (short,) = runs_of(mlflow_server, "two-epochs")
    assert short.data.params["epochs"] == "2"
    (long,) = [run for run in keras_children(main_sweep)
               if run.data.params["dataset"] == "19997" and run.data.params["seed"] == "0"]
    for key in ("loss", "acc", "val_loss", "val_acc"):
        short_values = history(mlflow_server, short.info.run_id, key)
        long_values = history(mlflow_server, long.info.run_id, key)[:2]
        assert short_values == long_values, key
    assert short.data.metrics["val_acc_at_2"] == long.data.metrics["val_acc_at_2"]


def test_a_trial_whose_worker_is_killed_resumes_from_its_last_epoch_in_one_child_run(
        main_sweep, mlflow_server, tiny_home, tmp_path):
    path = write_sweep(tmp_path, name="killed-worker", tracking_uri=mlflow_server, epochs=(6,), seeds=1)
    path.write_text(path.read_text().replace('dataset: ["19997", "bydate"]', 'dataset: ["19997"]'))
    killed = {}

    def kill_the_worker_after_its_second_epoch():
        # Epoch 2 starts only after Tune took epoch 1's report, so epoch 1's checkpoint is registered.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            try:
                _, children = runs_of(mlflow_server, "killed-worker")
            except (AssertionError, AttributeError):
                time.sleep(0.05)
                continue
            if children and len(history(mlflow_server, children[0].info.run_id, "val_acc")) >= 2:
                pid = int(children[0].data.tags["glovesweep.worker_pid"])
                os.kill(pid, signal.SIGKILL)
                killed.update(pid=pid, after_steps=len(history(mlflow_server, children[0].info.run_id, "val_acc")))
            time.sleep(0.05)

    watcher = threading.Thread(target=kill_the_worker_after_its_second_epoch, daemon=True)
    watcher.start()
    result = driver.run_sweep(spec_module.load_sweep(path), download_if_missing=False, **tiny_home)
    watcher.join(timeout=5)
    assert killed, "the watcher never saw the trial's second epoch"
    assert killed["after_steps"] < 6, "the trial finished before it could be killed"
    assert result.ok and result.done == 1
    _, children = runs_of(mlflow_server, "killed-worker")
    assert len(children) == 1, "a retried trial continues its child run"
    (run,) = children
    assert run.info.status == "FINISHED"
    assert int(run.data.tags["glovesweep.worker_pid"]) != killed["pid"]
    resumed_from = int(run.data.tags["glovesweep.resumed_from_epoch"])
    assert 1 <= resumed_from <= killed["after_steps"] < 6
    assert [step for step, _ in history(mlflow_server, run.info.run_id, "val_acc")] == [1, 2, 3, 4, 5, 6]
    # Resuming is exact: epochs 1-4 equal the uninterrupted 4-epoch trial of the main sweep (same seed),
    # including the epochs trained after the restart.
    (reference,) = [child for child in keras_children(main_sweep)
                    if child.data.params["dataset"] == "19997" and child.data.params["seed"] == "0"]
    for key in ("loss", "val_acc", "val_loss"):
        assert history(mlflow_server, run.info.run_id, key)[:4] == history(mlflow_server, reference.info.run_id, key)


def test_killed_driver_then_resume_runs_every_cell_exactly_once(mlflow_server, tiny_home, tmp_path):
    """SIGKILL the driver (and the local Ray it started) mid-sweep, then `glovesweep resume` finishes it."""
    path = write_sweep(tmp_path, name="killed-driver", tracking_uri=mlflow_server, epochs=(3,), seeds=3,
                       concurrent=1)
    path.write_text(path.read_text().replace('dataset: ["19997", "bydate"]', 'dataset: ["19997"]'))
    environment = dict(os.environ, GLOVESWEEP_CACHE=tiny_home["cache_dir"])
    environment.pop("RAY_ADDRESS", None)
    command = [sys.executable, "-m", "sweeps.cli", "run", str(path), "--data-dir", tiny_home["data_home"],
               "--cache-dir", tiny_home["cache_dir"], "--no-download", "--num-cpus", "2"]
    log = open(tmp_path / "run.log", "wb")
    process = subprocess.Popen(command, cwd=tmp_path, env=environment, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    # The driver and every Ray process it started share its session: all die at once, as on a lost host.
    finished_before = kill_mid_sweep(process, lambda: runs_of(mlflow_server, "killed-driver")[1])
    log.close()
    assert finished_before, f"never saw one finished and one running trial:\n{(tmp_path / 'run.log').read_text()}"
    _, children = runs_of(mlflow_server, "killed-driver")
    assert len(children) < 3, "the driver was killed before every trial had started"
    (sweep_dir,) = (tmp_path / "results").iterdir()

    resumed = subprocess.run([sys.executable, "-m", "sweeps.cli", "resume", str(sweep_dir), "--num-cpus", "2"],
                             cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "3/3 trials done, 0 failed" in resumed.stdout
    parent, children = runs_of(mlflow_server, "killed-driver")
    assert parent.info.status == "FINISHED"
    trial_ids = [run.data.tags[mlflow_runs.TRIAL_ID_TAG] for run in children]
    assert len(children) == 3 and len(set(trial_ids)) == 3, "every cell x seed exactly once"
    assert sorted(run.data.params["seed"] for run in children) == ["0", "1", "2"]
    for run in children:
        assert run.info.status == "FINISHED"
        assert [step for step, _ in history(mlflow_server, run.info.run_id, "val_acc")] == [1, 2, 3]
        if run.data.tags[mlflow_runs.TRIAL_ID_TAG] in finished_before:
            # Finished before the kill: not run again.
            assert run.info.end_time == finished_before[run.data.tags[mlflow_runs.TRIAL_ID_TAG]]


@pytest.mark.parametrize("name", sorted(path.name for path in (ROOT / "sweeps").glob("*.yaml")))
def test_smoke_mode_of_every_shipped_sweep_file(name, ray_local, tiny_home, tmp_path, capsys):
    """`glovesweep run <file> --smoke-test` on tiny data, with the default kind of store: a sqlite file."""
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code = cli.main(["run", str(ROOT / "sweeps" / name), "--smoke-test", "--tracking-uri", tracking_uri,
                     "--storage-path", str(tmp_path / "results"), "--data-dir", tiny_home["data_home"],
                     "--cache-dir", tiny_home["cache_dir"], "--no-download"])
    output = capsys.readouterr().out
    assert code == 0, output
    spec = spec_module.load_sweep(ROOT / "sweeps" / name, smoke_test=True)
    # A search's smoke variant holds each searched factor at one value: one configuration, then its stages' trials.
    searched = 1 if spec.searched else len(spec.trials())
    assert f"{searched}/{searched} trials done, 0 failed" in output
    assert f"glovesweep ui --tracking-uri {tracking_uri}" in output
    parent, children = runs_of(tracking_uri, spec.experiment)
    stages = (len(spec.confirm.seeds) if spec.confirm else 0) + (len(spec.final.seeds) if spec.final else 0)
    assert len(children) == searched * spec.seeds_side_by_side + stages
    assert {run.info.status for run in children} == {"FINISHED"}
    assert parent.data.tags["glovesweep.smoke_test"] == "true"


def test_ui_smoke_test_serves_the_sweep_store(tmp_path):
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow_runs.ensure_experiment(tracking_uri, "ui")
    assert cli.main(["ui", "--tracking-uri", tracking_uri, "--port", str(free_port()), "--smoke-test"]) == 0


def test_unreachable_mlflow_is_an_error_before_anything_starts(tiny_home, tmp_path):
    path = write_sweep(tmp_path, name="no-server", tracking_uri=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(OSError, match="is unreachable"):
        driver.run_sweep(spec_module.load_sweep(path), download_if_missing=False, **tiny_home)
    assert not (tmp_path / "results").exists()


def test_missing_data_is_an_error_before_anything_starts(mlflow_server, tmp_path, capsys):
    path = write_sweep(tmp_path, name="no-data", tracking_uri=mlflow_server)
    empty = tmp_path / "empty-home"
    empty.mkdir()
    code = cli.main(["run", str(path), "--data-dir", str(empty), "--no-download"])
    error = capsys.readouterr().err
    assert code == 2
    assert "20news-19997.tar.gz" in error
    assert not (tmp_path / "results").exists()
    assert client(mlflow_server).get_experiment_by_name("no-data") is None


def test_bad_sweep_file_is_rejected_by_the_command(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(textwrap.dedent("""\
        name: bad
        factors: {strip: [none, headers]}
        """))
    assert cli.main(["run", str(path)]) == 2
    error = capsys.readouterr().err
    assert "factors.strip value 'headers'" in error and "allowed values" in error


def test_asha_search_stops_trials_early_and_leaves_no_run_running(mlflow_server, ray_local, tiny_home, tmp_path):
    path = write_sweep(tmp_path, name="asha", tracking_uri=mlflow_server, epochs=(1, 3), seeds=2,
                       extra="search: {mode: asha, num_samples: 4, grace_period: 1}\n")
    spec = spec_module.load_sweep(path)
    result = driver.run_sweep(spec, download_if_missing=False, **tiny_home)
    assert result.ok and result.total == 4
    _, children = runs_of(mlflow_server, "asha")
    assert len(children) == 4
    assert {run.info.status for run in children} == {"FINISHED"}, "early-stopped trials end FINISHED"
    epochs_run = sorted(len(history(mlflow_server, run.info.run_id, "val_acc")) for run in children)
    assert epochs_run[0] >= 1 and epochs_run[-1] == 3
    for run in children:
        assert run.data.params["dataset"] in ("19997", "bydate") and run.data.params["seed"] in ("0", "1")
        assert "val_acc_at_1" in run.data.metrics


def test_resume_of_a_folder_that_is_no_sweep_names_the_fix(tmp_path, capsys):
    assert cli.main(["resume", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert f"{tmp_path} holds no {state_module.STATE_FILE}" in error and "glovesweep run" in error


def test_missing_glove_is_an_error_before_anything_starts(tiny_home, tmp_path, capsys):
    """The full blog study asks for GloVe 100d, which is not offline: refused up front, with the fix."""
    code = cli.main(["run", str(ROOT / "sweeps" / "blog-discrepancy.yaml"), "--data-dir", tiny_home["data_home"],
                     "--cache-dir", tiny_home["cache_dir"], "--no-download",
                     "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--storage-path", str(tmp_path / "r")])
    error = capsys.readouterr().err
    assert code == 2
    assert "GloVe 100d not found" in error and "glove.6B.zip" in error
    assert not (tmp_path / "r").exists()
