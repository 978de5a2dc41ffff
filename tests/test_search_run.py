"""Searches end to end on a real local Ray and a real MLflow server, with a toy trainer written beside the sweep
file: a TPE search over distributions (start_from first, ASHA, the trial budget, every param on each child run,
no searcher pickle), and a TPE search whose driver is killed, then resumed (no configuration twice, budget kept)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from conftest import kill_driver_when
from sweeps.tracking import mlflow_runs, names

TRAINER = '''
import time

from sweeps.trainers import Factor, Metric, report, trainer


@trainer(name="toy", factors=[Factor("rate", float, 0.5, "How fast it learns.", gt=0, lt=1),
                              Factor("width", int, 8, "Units.", ge=1),
                              Factor("optimizer", str, "sgd", "Optimizer.", choices=("sgd", "adam")),
                              Factor("pause", float, 0.0, "Seconds per epoch.", ge=0),
                              Factor("epochs", int, 3, "Epochs.", ge=1),
                              Factor("seed", int, 0, "Seed.", ge=0)],
         metrics=[Metric("score", "max", low=0.0, high=1.0)])
def train(config):
    for epoch in range(1, config["epochs"] + 1):
        time.sleep(config["pause"])
        bonus = 0.05 if config["optimizer"] == "adam" else 0.0
        report({"score": min(1.0, 1 - (1 - config["rate"]) ** epoch + bonus - 0.001 * config["width"])})
'''

SWEEP = '''
name: {name}
trainer: toy_trainer:train
factors:
  rate: {{loguniform: [0.01, 0.9]}}
  width: {{int: [2, 32], log: true}}
  optimizer: [sgd, adam]
fixed: {{pause: {pause}}}
search: {{mode: tpe, num_samples: {samples}, seed: 5}}
scheduler: {{mode: asha, grace_period: 1, max_t: 3}}
start_from: [{{rate: 0.5, width: 8, optimizer: sgd}}]
{extra}
max_concurrent_trials: {concurrent}
resources: {{cpu: 1}}
mlflow: {{tracking_uri: "{uri}"}}
storage_path: results
'''


def write(folder, *, name, uri, pause=0.0, samples=6, concurrent=2, extra=""):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "toy_trainer.py").write_text(TRAINER)
    path = folder / f"{name}.yaml"
    path.write_text(SWEEP.format(name=name, uri=uri, pause=pause, samples=samples, concurrent=concurrent,
                                 extra=extra))
    return path


def environment() -> dict:
    found = dict(os.environ)
    found.pop("RAY_ADDRESS", None)
    return found


def run_command(arguments, folder, timeout=420):
    return subprocess.run([sys.executable, "-m", "sweeps.cli", *arguments], cwd=folder, env=environment(),
                          capture_output=True, text=True, timeout=timeout)


def runs_of(uri: str, experiment: str):
    import mlflow

    client = mlflow.MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return client, [], []
    runs = client.search_runs([found.experiment_id], max_results=500)
    return (client, [run for run in runs if run.data.tags.get("glovesweep.role") == "sweep"],
            sorted((run for run in runs if run.data.tags.get("glovesweep.role") == "trial"),
                   key=lambda run: run.info.start_time))


def suggestion_order(sweep_dir) -> list[str]:
    """Tune trial ids in the order the searcher suggested them, from Tune's own experiment state (JSON): each
    trial's experiment tag starts with its 1-based number."""
    (state_path,) = sweep_dir.glob("experiment_state-*.json")
    numbered = {}
    for entry in json.loads(state_path.read_text())["trial_data"]:
        trial = json.loads(entry[0]) if isinstance(entry, list) else entry
        numbered[int(trial["experiment_tag"].split("_", 1)[0])] = trial["trial_id"]
    return [numbered[number] for number in sorted(numbered)]


def cell_of(run) -> tuple:
    return tuple(run.data.params[name] for name in ("rate", "width", "optimizer"))


def test_a_tpe_search_over_distributions_runs_end_to_end(tmp_path, mlflow_server):
    path = write(tmp_path / "user", name="tpe-e2e", uri=mlflow_server, samples=6, extra="budget: {trials: 5}")
    finished = run_command(["run", str(path), "--num-cpus", "2", "--no-report"], tmp_path)
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    assert "search 'tpe-e2e': tpe over rate, width, optimizer, up to 5 trials" in finished.stdout
    assert "5/5 trials done, 0 failed" in finished.stdout
    client, [parent], children = runs_of(mlflow_server, "tpe-e2e")
    assert parent.info.status == "FINISHED"
    assert parent.data.params["factor.rate"] == "loguniform(0.01, 0.9)"
    assert parent.data.params["factor.width"] == "int(2, 32, log)" and parent.data.params["search"] == "tpe"
    assert len(children) == 5 and len({run.data.tags[mlflow_runs.TRIAL_ID_TAG] for run in children}) == 5
    assert len({cell_of(run) for run in children}) == 5  # the budget of 5 trials, no configuration twice
    # start_from first: Tune's experiment tag numbers trials in the order the searcher suggested them. The runs'
    # start times are no order: two trials start side by side and either may reach MLflow first.
    (sweep_dir,) = (tmp_path / "results").iterdir()
    order = suggestion_order(sweep_dir)
    by_tune_id = {run.data.tags[names.TUNE_TRIAL_ID_TAG]: cell_of(run) for run in children}
    assert sorted(order) == sorted(by_tune_id)
    assert by_tune_id[order[0]] == ("0.5", "8", "sgd"), [by_tune_id[trial_id] for trial_id in order]
    for run in children:
        assert run.info.status == "FINISHED"
        assert run.data.params["factors"] == "rate,width,optimizer"
        assert {"rate", "width", "optimizer", "pause", "epochs", "seed"} <= set(run.data.params)
        assert run.data.params["epochs"] == "3" and 0.01 <= float(run.data.params["rate"]) <= 0.9
        assert 2 <= int(run.data.params["width"]) <= 32
        steps = [metric.step for metric in client.get_metric_history(run.info.run_id, "score")]
        assert steps and steps == list(range(1, len(steps) + 1))  # ASHA may stop a trial after its epoch 1
    assert not list(sweep_dir.rglob("searcher-state-*")), "the searcher is never pickled"


def test_a_killed_tpe_search_resumes_without_training_a_configuration_twice(tmp_path, mlflow_server):
    path = write(tmp_path / "user", name="tpe-killed", uri=mlflow_server, pause=1.0, samples=4, concurrent=1,
                 extra="budget: {trials: 4}")

    def one_finished_one_running():
        _, _, children = runs_of(mlflow_server, "tpe-killed")
        keys = {status: {run.data.tags[mlflow_runs.TRIAL_ID_TAG]: run.info.end_time for run in children
                         if run.info.status == status} for status in ("FINISHED", "RUNNING")}
        return keys if keys["FINISHED"] and keys["RUNNING"] else None

    seen = kill_driver_when(["run", str(path), "--num-cpus", "2", "--no-report"], cwd=tmp_path,
                            environment=environment(), log_path=tmp_path / "run.log", ready=one_finished_one_running)
    assert seen, (tmp_path / "run.log").read_text()[-3000:]
    finished_before, running_before = seen["FINISHED"], set(seen["RUNNING"])
    (sweep_dir,) = (tmp_path / "results").iterdir()
    resumed = run_command(["resume", str(sweep_dir), "--num-cpus", "2", "--no-report"], tmp_path)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    # A trial may finish between the look and the kill: at least those seen finished were finished.
    told = re.search(r"resuming search 'tpe-killed': (\d+) trials finished, (\d+) re-created", resumed.stdout)
    assert told and int(told.group(1)) >= len(finished_before) and int(told.group(1)) + int(told.group(2)) <= 4
    assert "4/4 trials done, 0 failed" in resumed.stdout
    client, [parent], children = runs_of(mlflow_server, "tpe-killed")
    assert parent.info.status == "FINISHED"
    keys = [run.data.tags[mlflow_runs.TRIAL_ID_TAG] for run in children]
    assert len(children) == 4 and len(set(keys)) == 4, "the budget counts the trials before the kill"
    assert len({cell_of(run) for run in children}) == 4, "no configuration trained twice"
    assert running_before <= set(keys), "a trial in flight is re-created with its parameters, in its own run"
    for run in children:
        key = run.data.tags[mlflow_runs.TRIAL_ID_TAG]
        assert run.info.status == "FINISHED"
        steps = [metric.step for metric in client.get_metric_history(run.info.run_id, "score")]
        assert steps == list(range(1, len(steps) + 1)), "each epoch logged once"
        if key in finished_before:
            assert run.info.end_time == finished_before[key]  # finished before the kill: never run again


KERAS_SEARCH = """\
name: keras-tpe
factors:
  learning_rate: {{loguniform: [0.0005, 0.01]}}
  batch_size: {{int: [8, 32], log: true}}
fixed: {{dataset: "19997", architecture: global_max, max_sequence_length: 160, sizing: num_words_plus_one, epochs: 2}}
search: {{mode: tpe, num_samples: 3, seed: 1}}
resources: {{cpu: 1, gpu: 0}}
max_concurrent_trials: 2
mlflow: {{tracking_uri: "{uri}"}}
storage_path: {storage}
"""


def keras_search(tmp_path, mlflow_server, text: str, name: str):
    """A Keras search sweep file written from ``text`` (a format string of ``uri`` and ``storage``), loaded, and a
    function that runs it on the tiny data home."""
    from conftest import build_tiny_data_home

    from sweeps import spec as spec_module
    from sweeps.run import driver

    home = build_tiny_data_home(tmp_path / "data")
    path = tmp_path / f"{name}.yaml"
    path.write_text(text.format(uri=mlflow_server, storage=tmp_path / "results"))
    spec = spec_module.load_sweep(path)
    return spec, lambda: driver.run_sweep(spec, data_home=str(home), cache_dir=str(tmp_path / "cache"),
                                          download_if_missing=False)


def test_a_search_of_the_keras_networks_training_settings_reads_the_one_prepared_data_set(
        tmp_path, mlflow_server, ray_local):
    spec, run = keras_search(tmp_path, mlflow_server, KERAS_SEARCH, "keras-tpe")
    assert [trial.cell for trial in spec.data_trials()] == [{"learning_rate": 0.0005, "batch_size": 8}]
    result = run()
    assert result.ok and result.total == 3
    client, [parent], children = runs_of(mlflow_server, "keras-tpe")
    assert len(children) == 3 and {run.info.status for run in children} == {"FINISHED"}
    assert len({(run.data.params["learning_rate"], run.data.params["batch_size"]) for run in children}) == 3
    for run in children:
        assert run.data.params["dataset"] == "19997" and run.data.params["epochs"] == "2"
        assert [metric.step for metric in client.get_metric_history(run.info.run_id, "val_acc")] == [1, 2]


KERAS_DATA_SEARCH = """\
name: keras-data-tpe
factors:
  learning_rate: {{loguniform: [0.0005, 0.01]}}
  embedding: [frozen, trainable]
  max_sequence_length: {{choice: [160, 200]}}
fixed: {{dataset: "19997", architecture: global_max, sizing: num_words_plus_one, epochs: 1, batch_size: 16}}
search: {{mode: tpe, num_samples: 5, seed: 3}}
start_from:
  - {{learning_rate: 0.001, embedding: frozen, max_sequence_length: 160}}
  - {{learning_rate: 0.001, embedding: trainable, max_sequence_length: 200}}
resources: {{cpu: 1, gpu: 0}}
max_concurrent_trials: 2
mlflow: {{tracking_uri: "{uri}"}}
storage_path: {storage}
"""


def test_a_keras_search_over_data_settings_prepares_each_choice_and_trains_each_trial_on_its_own(
        tmp_path, mlflow_server, ray_local):
    """Data settings (embedding mode, sequence length) are searched as choices: every combination is prepared
    before the search, and each suggested configuration reads the data set of its own values."""
    spec, run = keras_search(tmp_path, mlflow_server, KERAS_DATA_SEARCH, "keras-data-tpe")
    cells = [trial.cell for trial in spec.data_trials()]
    assert sorted((cell["embedding"], cell["max_sequence_length"]) for cell in cells) == [
        ("frozen", 160), ("frozen", 200), ("trainable", 160), ("trainable", 200)]
    assert {cell["learning_rate"] for cell in cells} == {0.001}  # start_from's first configuration
    suggested = spec.search_trial({"learning_rate": 0.003, "embedding": "trainable", "max_sequence_length": 200})
    assert spec.data_trial_of(suggested).cell == {"learning_rate": 0.001, "embedding": "trainable",
                                                  "max_sequence_length": 200}
    result = run()
    assert result.ok and result.total == 5
    client, [parent], children = runs_of(mlflow_server, "keras-data-tpe")
    assert len(children) == 5 and {run.info.status for run in children} == {"FINISHED"}
    # Each run reads the data set of its own length (frozen and trainable GloVe share one: the same arrays), so
    # a length always reads the same data set and the two lengths read two.
    by_length: dict[str, set[str]] = {}
    for run in children:
        by_length.setdefault(run.data.params["max_sequence_length"], set()).add(run.data.tags["glovesweep.data_key"])
    assert set(by_length) == {"160", "200"} and all(len(keys) == 1 for keys in by_length.values()), by_length
    assert len(set().union(*by_length.values())) == 2, by_length
    assert {run.data.params["embedding"] for run in children} == {"frozen", "trainable"}


def test_a_keras_search_refuses_a_data_setting_given_as_a_range(tmp_path):
    from sweeps import spec as spec_module

    path = tmp_path / "keras-range.yaml"
    path.write_text(KERAS_DATA_SEARCH.replace("{{choice: [160, 200]}}", "{{int: [160, 200]}}").format(
        uri="sqlite:///mlflow.db", storage=tmp_path / "results"))
    with pytest.raises(ValueError, match=r"factors\.max_sequence_length: .*one data set per value: search "
                                         r"max_sequence_length as a list or \{choice: \[\.\.\.\]\}"):
        spec_module.load_sweep(path)


def test_a_conditional_data_setting_is_prepared_where_its_condition_holds(tmp_path):
    """A sequence length searched only for global_max: blog_flatten's configurations read the fixed length's data,
    each global_max length its own; a suggestion maps to the data set of its architecture and length."""
    from sweeps import spec as spec_module

    path = tmp_path / "keras-when.yaml"
    path.write_text(KERAS_DATA_SEARCH.replace(
        "  max_sequence_length: {{choice: [160, 200]}}\n",
        "  architecture: [blog_flatten, global_max]\n"
        "  max_sequence_length: {{choice: [160, 200], when: {{architecture: global_max}}}}\n").replace(
        "architecture: global_max, ", "").replace(
        "start_from:\n  - {{learning_rate: 0.001, embedding: frozen, max_sequence_length: 160}}\n"
        "  - {{learning_rate: 0.001, embedding: trainable, max_sequence_length: 200}}\n", "").format(
        uri="sqlite:///mlflow.db", storage=tmp_path / "results"))
    spec = spec_module.load_sweep(path)
    lengths = sorted((spec.trial_config(trial).architecture, spec.trial_config(trial).sequence_length)
                     for trial in spec.data_trials())
    assert sorted(set(lengths)) == [("blog_flatten", 1000), ("global_max", 160), ("global_max", 200)]
    for architecture, length in (("blog_flatten", 1000), ("global_max", 200)):
        values = {"learning_rate": 0.004, "embedding": "trainable", "architecture": architecture}
        suggested = spec.search_trial(dict(values, **({"max_sequence_length": length} if length != 1000 else {})))
        config = spec.trial_config(spec.data_trial_of(suggested))
        assert (config.architecture, config.sequence_length) == (architecture, length)
    # Without the condition, a length blog_flatten cannot take is refused when the file is read.
    path.write_text(path.read_text().replace(", when: {architecture: global_max}", ""))
    with pytest.raises(ValueError, match=r"max_sequence_length"):
        spec_module.load_sweep(path)
