"""A user's trainer, defined outside the repository, runs as a sweep's trials (real local Ray, real MLflow server).

The trainer module is written into a temporary folder beside its sweep file, as a user's would be: not
importable from the repository. Covered: reports through ``ray.tune.report`` (intercepted) and glovesweep's
``report``, the user's own ``mlflow.log_*`` calls, the exact epoch axis, a raising trial (FAILED with its error,
retried, the sweep goes on), a NaN metric (recorded and flagged), an import error (one line, before any
compute), and a trainer without checkpoints whose driver is killed mid-sweep, then resumed (each cell once).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from conftest import kill_mid_sweep

from sweeps import spec as spec_module
from sweeps.run import session as session_module
from sweeps.tracking import mlflow_runs
from sweeps.trainers import registry

TRAINER = '''
"""A user's toy trainer: the value climbs towards a ceiling set by 'rate'; 'mode' makes it misbehave."""
import math
import time

import mlflow
import ray.tune
from sweeps.trainers import Factor, Metric, report, trainer


@trainer(name="toy", factors=[Factor("rate", float, 0.5, "How fast it learns.", gt=0, lt=1),
                              Factor("mode", str, "fine", "fine, boom (raises), nan (a NaN at epoch 2).",
                                     choices=("fine", "boom", "nan")),
                              Factor("pause", float, 0.0, "Seconds per epoch.", ge=0),
                              Factor("epochs", int, 3, "Epochs.", ge=1),
                              Factor("seed", int, 0, "Seed.", ge=0)],
         metrics=[Metric("score", "max", low=0.0, high=1.0), Metric("error", "min", low=0.0)])
def train(config):
    mlflow.log_param("user_note", f"rate {config['rate']}")
    for epoch in range(1, config["epochs"] + 1):
        time.sleep(config["pause"])
        if config["mode"] == "boom":
            raise RuntimeError("the user's code broke\\nat epoch " + str(epoch))
        score = 1 - (1 - config["rate"]) ** epoch - 0.01 * config["seed"]
        if config["mode"] == "nan" and epoch == 2:
            score = math.nan
        mlflow.log_metric("user_metric", epoch * 10, step=epoch)
        if epoch % 2:
            ray.tune.report({"score": score, "error": 1 - score})  # a Ray Tune trainable's own call
        else:
            report({"score": score, "error": 1 - score})
'''

SWEEP = '''
name: {name}
trainer: toy_trainer:train
factors:
  rate: [0.3, 0.6]
  epochs: [2, 3]
fixed: {fixed}
seeds: {seeds}
max_failures: 1
max_concurrent_trials: {concurrent}
resources: {{cpu: 1}}
mlflow: {{tracking_uri: "{uri}"}}
storage_path: results
'''


def write(folder, *, name, uri, fixed="{}", seeds=2, concurrent=0, trainer_text=TRAINER):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "toy_trainer.py").write_text(trainer_text)
    path = folder / f"{name}.yaml"
    path.write_text(SWEEP.format(name=name, uri=uri, fixed=fixed, seeds=seeds, concurrent=concurrent))
    return path


def children_of(uri: str, experiment: str):
    import mlflow

    client = mlflow.MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id], max_results=500)
    parents = [run for run in runs if run.data.tags.get("glovesweep.role") == "sweep"]
    return client, parents, [run for run in runs if run.data.tags.get("glovesweep.role") == "trial"]


def run_command(arguments, folder, timeout=420):
    environment = dict(os.environ)
    environment.pop("RAY_ADDRESS", None)
    return subprocess.run([sys.executable, "-m", "sweeps.cli", *arguments], cwd=folder, env=environment,
                          capture_output=True, text=True, timeout=timeout)


def test_the_sweep_file_is_checked_against_the_trainers_own_factors(tmp_path):
    path = write(tmp_path / "user", name="checked", uri="sqlite:///mlflow.db")
    spec = spec_module.load_sweep(path)
    assert spec.main_trainer.name == "toy" and spec.main_trainer.objective.name == "score"
    assert spec.epochs == [2, 3] and spec.seeds == [0, 1] and spec.total_trials == 4
    config = spec.trial_config(spec.trials()[0])
    assert config.to_dict() == {"rate": 0.3, "mode": "fine", "pause": 0.0, "epochs": 3, "seed": 0}
    path.write_text(path.read_text().replace("rate: [0.3, 0.6]", "rate: [0.3, 1.5]"))
    with pytest.raises(ValueError, match=r"factors.rate value 1.5: rate=1.5: must be a number in \(0, 1\)"):
        spec_module.load_sweep(path)
    path.write_text(path.read_text().replace("rate: [0.3, 1.5]", "learning_rate: [0.1]"))
    with pytest.raises(ValueError, match="factors.learning_rate: unknown setting of trainer 'toy_trainer:train'; "
                                         "allowed: epochs, mode, pause, rate, seed"):
        spec_module.load_sweep(path)


@pytest.mark.parametrize("module_text, expected", [
    ("raise ImportError('no module named torchvision')\n",
     "trainer 'toy_trainer:train': cannot import module 'toy_trainer': ImportError: no module named torchvision"),
    ("def train(config):\n    return {}\n",
     "trainer 'toy_trainer:train': 'train' is a function, not a trainer; wrap the function with "
     "@sweeps.trainers.trainer"),
    ("x = 1\n", "trainer 'toy_trainer:train': module 'toy_trainer' has no 'train'"),
])
def test_a_trainer_that_cannot_be_loaded_is_one_line_before_any_compute(tmp_path, module_text, expected):
    path = write(tmp_path / "user", name="broken", uri="sqlite:///mlflow.db", trainer_text=module_text)
    result = run_command(["run", str(path)], tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "mlflow.db").exists()  # nothing started


def test_an_unknown_trainer_name_lists_the_installed_ones():
    with pytest.raises(ValueError, match="trainer 'pytorch' not found; installed trainers: keras, tfidf"):
        registry.load("pytorch")


def test_a_user_trainer_runs_as_trials_with_its_reports_its_mlflow_calls_a_failure_and_a_nan(
        tmp_path, mlflow_server):
    folder = tmp_path / "user"
    path = write(folder, name="user-trainer", uri=mlflow_server, fixed="{}")
    # Two more cells: one raises on every attempt, one reports NaN at epoch 2.
    path.write_text(path.read_text().replace("rate: [0.3, 0.6]", "rate: [0.3, 0.6]\n  mode: [fine, boom, nan]"))
    result = run_command(["run", str(path), "--num-cpus", "2", "--no-report"], tmp_path)
    assert "12 trials" in result.stdout, result.stdout[-3000:] + result.stderr[-3000:]
    assert "8/12 trials done, 4 failed" in result.stdout, result.stdout[-3000:] + result.stderr[-3000:]
    client, [parent], children = children_of(mlflow_server, "user-trainer")
    assert parent.data.tags["glovesweep.trainer"] == "toy_trainer:train"
    assert parent.data.tags["glovesweep.objective"] == "score:max:0.0:1.0"
    assert len(children) == 12 and {run.data.tags["trainer"] for run in children} == {"toy"}
    for run in children:
        mode, seed, rate = run.data.params["mode"], int(run.data.params["seed"]), float(run.data.params["rate"])
        assert run.data.params["user_note"] == f"rate {rate}"  # the user's own mlflow.log_param, same run
        if mode == "boom":
            assert run.info.status == "FAILED"
            assert run.data.tags["glovesweep.error"] == "RuntimeError: at epoch 1"
            continue
        assert run.info.status == "FINISHED"
        steps = [(metric.step, metric.value) for metric in client.get_metric_history(run.info.run_id, "score")]
        assert [step for step, _ in steps] == [1, 2, 3]  # one value per epoch, both report paths counted
        assert [metric.value for metric in client.get_metric_history(run.info.run_id, "user_metric")] == [10, 20, 30]
        expected_at_2 = 1 - (1 - rate) ** 2 - 0.01 * seed
        if mode == "nan":
            assert run.data.tags[session_module.NON_FINITE_TAG] == "score@2,error@2"
            assert str(run.data.metrics["score_at_2"]) == "nan"
        else:
            assert session_module.NON_FINITE_TAG not in run.data.tags
            assert run.data.metrics["score_at_2"] == pytest.approx(expected_at_2, abs=1e-4)
            assert run.data.metrics["error_at_3"] == pytest.approx((1 - rate) ** 3 + 0.01 * seed, abs=1e-4)


def test_a_killed_driver_of_a_trainer_without_checkpoints_resumes_and_runs_each_cell_once(tmp_path, mlflow_server):
    folder = tmp_path / "user"
    path = write(folder, name="user-killed", uri=mlflow_server, fixed="{pause: 1.0}", seeds=2, concurrent=1)
    environment = dict(os.environ)
    environment.pop("RAY_ADDRESS", None)
    log = open(tmp_path / "run.log", "wb")
    process = subprocess.Popen([sys.executable, "-m", "sweeps.cli", "run", str(path), "--num-cpus", "2",
                                "--no-report"], cwd=tmp_path, env=environment, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    finished_before = kill_mid_sweep(process, lambda: children_of(mlflow_server, "user-killed")[2])
    log.close()
    assert finished_before, (tmp_path / "run.log").read_text()[-3000:]
    (sweep_dir,) = (tmp_path / "results").iterdir()  # storage_path resolves against the working folder
    resumed = run_command(["resume", str(sweep_dir), "--num-cpus", "2", "--no-report"], tmp_path)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "4/4 trials done, 0 failed" in resumed.stdout
    client, [parent], children = children_of(mlflow_server, "user-killed")
    assert parent.info.status == "FINISHED"
    trial_ids = [run.data.tags[mlflow_runs.TRIAL_ID_TAG] for run in children]
    assert len(children) == 4 and len(set(trial_ids)) == 4, "every cell x seed exactly once"
    for run in children:
        assert run.info.status == "FINISHED"
        # The epoch axis holds each epoch once, also for the trial the kill cut short and that started over.
        assert [metric.step for metric in client.get_metric_history(run.info.run_id, "score")] == [1, 2, 3]
        if run.data.tags[mlflow_runs.TRIAL_ID_TAG] in finished_before:
            assert run.info.end_time == finished_before[run.data.tags[mlflow_runs.TRIAL_ID_TAG]]


def test_glovesweep_train_takes_the_trainers_own_flags_and_prints_each_report(tmp_path):
    folder = tmp_path / "user"
    write(folder, name="flags", uri="sqlite:///mlflow.db")
    result = run_command(["train", "--trainer", "toy_trainer:train", "--rate", "0.5", "--epochs", "2",
                          "--seed", "0"], folder, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["epoch 1/2: score 0.5000 error 0.5000",
                                          "epoch 2/2: score 0.7500 error 0.2500"]
    helped = run_command(["train", "--trainer", "toy_trainer:train", "--help"], folder, timeout=120)
    assert "--rate RATE" in helped.stdout and "How fast it learns. (default: 0.5) [in (0, 1)]" in " ".join(
        helped.stdout.split()) and "--dataset" not in helped.stdout
    refused = run_command(["train", "--trainer", "toy_trainer:train", "--rate", "2"], folder, timeout=120)
    assert refused.returncode == 2 and "rate=2.0: must be a number in (0, 1)" in refused.stderr


def test_two_sweep_files_with_trainer_modules_of_the_same_name_each_get_their_own(tmp_path):
    for name, metric in (("first", "score"), ("second", "loss")):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "my_trainer.py").write_text(
            "from sweeps.trainers import Factor, Metric, trainer\n"
            f"@trainer(name={name!r}, factors=[Factor('seed', int, 0, 'Seed.', ge=0)], metrics=[Metric({metric!r})])\n"
            "def train(config):\n    return {}\n")
    assert registry.load("my_trainer:train", folder=str(tmp_path / "first")).objective.name == "score"
    assert registry.load("my_trainer:train", folder=str(tmp_path / "second")).objective.name == "loss"


ONCE = '''
from sweeps.trainers import Factor, Metric, trainer


@trainer(name="once", factors=[Factor("width", int, 2, "Width.", ge=1)], metrics=[Metric("score", "max", 0.0, 1.0)])
def train(config):
    return {"score": 1 - 1 / (1 + config["width"])}  # one result, returned: no epochs, no seed
'''


def test_a_trainer_without_epochs_or_seed_reports_once_and_its_result_is_epoch_1(tmp_path, mlflow_server):
    folder = tmp_path / "user"
    folder.mkdir()
    (folder / "once_trainer.py").write_text(ONCE)
    path = folder / "once.yaml"
    path.write_text(f'name: once\ntrainer: once_trainer:train\nfactors: {{width: [1, 3]}}\n'
                    f'mlflow: {{tracking_uri: "{mlflow_server}"}}\nstorage_path: results\n')
    result = run_command(["run", str(path), "--num-cpus", "2"], tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "2/2 trials done, 0 failed" in result.stdout
    _, _, children = children_of(mlflow_server, "once")
    assert sorted(run.data.metrics["score_at_1"] for run in children) == [0.5, 0.75]
    assert "| 3 | 0.750" in (tmp_path / "reports" / "once" / "report.md").read_text()
