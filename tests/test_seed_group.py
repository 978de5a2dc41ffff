"""A search with ``seeds: k`` (sweeps.run.seed_group): each configuration is one Tune trial training its k seeds side
by side, told and scheduled on their mean. End to end on a real local Ray and a real MLflow server with a toy trainer
written beside the sweep file (as a user's would be), plus the barrier and the report's statistics on their own."""

from __future__ import annotations

import dataclasses
import json
import re
import threading

import pytest
from scipy import stats as scipy_stats

from conftest import kill_driver_when
from test_search_run import environment, run_command, runs_of
from sweeps import report
from sweeps import spec as spec_module
from sweeps.report import reader
from sweeps.report import search_stats
from sweeps.run import search_history
from sweeps.run import seed_group
from sweeps.run import trial as trial_module
from sweeps.spec import space as space_module
from sweeps.tracking import names
from sweeps.trainers import api

TRAINER = '''
import time

import mlflow
import numpy as np

from sweeps.trainers import Factor, Metric, report, trainer


@trainer(name="noisy", factors=[Factor("rate", float, 0.5, "How fast it learns.", gt=0, lt=1),
                                Factor("pause", float, 0.0, "Seconds per epoch.", ge=0),
                                Factor("epochs", int, 3, "Epochs.", ge=1),
                                Factor("seed", int, 0, "Seed.", ge=0)],
         metrics=[Metric("score", "max", low=0.0, high=1.0)])
def train(config):
    mlflow.log_param("seen_seed", config["seed"])  # the user's own MLflow call lands in this seed's run
    noise = np.random.default_rng(config["seed"])  # random state in an object: seeds share the process
    for epoch in range(1, config["epochs"] + 1):
        time.sleep(config["pause"])
        report({"score": min(1.0, max(0.0, 1 - (1 - config["rate"]) ** epoch + noise.normal(0, 0.02)))})
'''

SWEEP = '''
name: {name}
trainer: noisy_trainer:train
factors:
  rate: {{uniform: [0.05, 0.9]}}
fixed: {{pause: {pause}}}
seeds: 3
search: {{mode: tpe, num_samples: {samples}, seed: 3}}
scheduler: {{mode: asha, grace_period: 1, reduction_factor: 2, max_t: 3}}
start_from: [{{rate: 0.8}}, {{rate: 0.1}}]
max_concurrent_trials: 1
resources: {{cpu: 1}}
mlflow: {{tracking_uri: "{uri}"}}
storage_path: results
'''
SEEDS = {"0", "1", "2"}


def write(folder, *, name, uri, pause=0.0, samples=3):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "noisy_trainer.py").write_text(TRAINER)
    path = folder / f"{name}.yaml"
    path.write_text(SWEEP.format(name=name, uri=uri, pause=pause, samples=samples))
    return path


def by_configuration(children) -> dict[str, list]:
    grouped: dict[str, list] = {}
    for run in children:
        grouped.setdefault(run.data.tags[names.CONFIG_ID_TAG], []).append(run)
    return grouped


def score_steps(client, run) -> dict[int, float]:
    return {metric.step: metric.value for metric in client.get_metric_history(run.info.run_id, "score")}


def tune_results(sweep_dir) -> list[dict]:
    """Every result Tune recorded (each trial folder's result.json, one JSON object a line)."""
    return [json.loads(line) for path in sorted(sweep_dir.rglob("result.json"))
            for line in path.read_text().splitlines() if line.strip()]


# ------------------------------------------------------------------------------------------------ the sweep file
def test_a_search_takes_seeds_k_for_a_function_trainer_and_the_keras_network_takes_turns(tmp_path):
    path = write(tmp_path, name="seeded", uri="sqlite:///mlflow.db")
    spec = spec_module.load_sweep(path)
    assert spec.seeds == [0, 1, 2] and spec.seeds_side_by_side == 3
    trial = spec.search_trial({"rate": 0.8})
    assert trial.seed == 0 and trial.config_key == spec_module.Trial(trial.kind, trial.cell, 2).config_key
    assert trial.key != spec_module.Trial(trial.kind, trial.cell, 2).key
    task = trial_module.TrialTask(trial=trial, seeds=(0, 1, 2))
    again = trial_module.TrialTask.from_param(json.loads(json.dumps(task.as_param())))
    assert again == task and [item.seed for item in again.seed_trials()] == [0, 1, 2]
    assert "seeds" not in trial_module.TrialTask(trial=trial).as_param()  # a one-seed task's params.json as before
    planned = run_command(["plan", str(path), "--json"], tmp_path)
    plan = json.loads(planned.stdout)
    assert (plan["trials"], plan["seeds_per_trial"], plan["to_train"], plan["epochs_to_train"]) == (3, 3, 9, 27)
    assert not spec.main_trainer.takes_turns  # its seeds train side by side
    keras = tmp_path / "keras.yaml"
    keras.write_text("name: k\nfactors: {learning_rate: {loguniform: [0.0001, 0.01]}}\nseeds: 3\n"
                     "search: {mode: tpe, num_samples: 4}\n")
    spec = spec_module.load_sweep(keras)
    assert spec.seeds_side_by_side == 3 and spec.main_trainer.takes_turns  # one seed at a time (test_seed_turns.py)
    # Its data is prepared at each seed: a seed draws its own split of 19997.
    assert [trial.seed for trial in spec.data_trials()] == [0, 1, 2]
    # The TF-IDF reference trainer, whose runner neither trains its seeds in threads nor takes turns, is no sweep's
    # own trainer (it runs beside a grid's network, under 'baselines').
    tfidf = tmp_path / "tfidf.yaml"
    tfidf.write_text(keras.read_text().replace("name: k\n", "name: t\ntrainer: tfidf\n"))
    with pytest.raises(ValueError, match=r"trainer: 'tfidf' is a reference trainer that runs beside a network"):
        spec_module.load_sweep(tfidf)


# ------------------------------------------------------------------------------------------------- the barrier
def test_the_barrier_reports_each_epoch_once_as_the_mean_of_the_seeds_and_lets_a_lagging_seed_catch_up():
    trials = [spec_module.Trial("noisy", {"rate": 0.5}, seed) for seed in (0, 1, 2)]
    # Seed 2 finished before (its values read back from MLflow); seeds 0 and 1 continue a retried trial from epoch 2,
    # except that seed 1 had no part in the checkpoint and trains epochs 1 and 2 again.
    seeds = [seed_group.Seed(trials[0]), seed_group.Seed(trials[1]),
             seed_group.Seed(trials[2], values={1: {"score": 0.3}, 2: {"score": 0.5}, 3: {"score": 0.9}},
                             done=True, replayed=True)]
    group = seed_group.SeedGroup(seeds, "score", floor=2)
    told = []

    def train(seed, epochs, values):
        try:
            for epoch, value in zip(epochs, values):
                group.report(seed, {"score": value, "epoch": epoch, "mlflow_pending": 1})
        finally:
            group.finish(seed)

    threads = [threading.Thread(target=train, args=(seeds[0], [3], [0.6])),
               threading.Thread(target=train, args=(seeds[1], [1, 2, 3], [0.1, 0.2, 0.3]))]
    for thread in threads:
        thread.start()
    seed_group.coordinate(group, lambda metrics, checkpoint=None: told.append(metrics))
    for thread in threads:
        thread.join()
    assert len(told) == 1, "epochs 1 and 2 were reported before the retry; seed 1 passes them without waiting"
    (step,) = told
    assert step["epoch"] == 3 and step["seeds"] == 3 and step["mlflow_pending"] == 2
    assert step["score"] == pytest.approx((0.6 + 0.3 + 0.9) / 3)
    assert step["score_sd"] == pytest.approx(float(scipy_stats.tstd([0.6, 0.3, 0.9])))


def test_a_stopped_configuration_stops_every_seed_at_the_same_epoch_and_a_failed_seed_fails_it():
    trials = [spec_module.Trial("noisy", {"rate": 0.5}, seed) for seed in (0, 1)]
    seeds = [seed_group.Seed(trial) for trial in trials]
    group = seed_group.SeedGroup(seeds, "score")
    reached = {0: [], 1: []}

    def train(seed):
        try:
            for epoch in (1, 2, 3):
                group.report(seed, {"score": 0.5, "epoch": epoch})
                reached[seed.trial.seed].append(epoch)
        except SystemExit:
            pass
        finally:
            group.finish(seed)

    def tune_report(metrics, checkpoint=None):
        if metrics["epoch"] == 2:
            raise SystemExit(0)  # what Tune's report raises in a trial its scheduler stopped

    threads = [threading.Thread(target=train, args=(seed,)) for seed in seeds]
    for thread in threads:
        thread.start()
    with pytest.raises(SystemExit):
        seed_group.coordinate(group, tune_report)
    group.stop()
    for thread in threads:
        thread.join(timeout=10)
    assert not any(thread.is_alive() for thread in threads)
    assert reached == {0: [1], 1: [1]}, "both seeds stopped while waiting at epoch 2"

    failing = [seed_group.Seed(trial) for trial in trials]
    group = seed_group.SeedGroup(failing, "score")
    group.finish(failing[1], ValueError("diverged\nat step 7"))
    with pytest.raises(seed_group.SeedFailed, match=r"seed 1 of configuration rate=0.5 failed: ValueError: at step 7"):
        group.next_step()
    with pytest.raises(SystemExit):
        group.report(failing[0], {"score": 0.5, "epoch": 1})


# --------------------------------------------------------------------------------------- what resume is told
def test_a_configurations_seed_runs_read_back_as_one_past_trial_with_their_mean(tmp_path):
    spec = spec_module.load_sweep(write(tmp_path, name="seeded", uri="sqlite:///mlflow.db"))
    trial = spec.search_trial({"rate": 0.8})
    other = spec.search_trial({"rate": 0.1})
    seed_runs = [search_history.PastTrial(dataclasses.replace(trial, seed=seed), "FINISHED", value, 10.0 + seed)
                 for seed, value in ((0, 0.7), (1, 0.8), (2, 0.9))]
    seed_runs += [search_history.PastTrial(dataclasses.replace(other, seed=0), "FINISHED", 0.2, 4.0),
                  search_history.PastTrial(dataclasses.replace(other, seed=2), "KILLED", 0.1, 3.0)]
    done, partial = search_history.configurations(spec, seed_runs)
    assert done.trial == trial and done.finished and done.value == pytest.approx(0.8) and done.cpu_seconds == 12.0
    assert partial.trial == other and partial.status == "KILLED" and partial.value is None  # seed 1 never started


# ------------------------------------------------------------------------------------------------ the report
def test_the_search_report_shows_each_configurations_mean_over_its_seeds_with_a_t_interval(tmp_path):
    rows = []
    values = {"rate=0.8": [0.78, 0.81, 0.86], "rate=0.1": [0.12, 0.08, 0.1], "rate=0.5": [0.55, 0.5, 0.6]}
    for number, (cell, scores) in enumerate(values.items()):
        for seed, score in enumerate(scores):
            rows.append({"run_id": f"run{number}{seed}", "trial_id": f"t{number}{seed}", "trainer": "noisy",
                         "model": "noisy", "status": "FINISHED", "seed": seed, "max_epochs": 3,
                         "epochs": 1 if cell == "rate=0.1" else 3, "factors": "rate", "value": score, "cell": cell,
                         "rate": cell.split("=")[1]})
    space = {"rate": space_module.Distribution("uniform", low=0.05, high=0.9)}
    metric = api.Metric("score", "max", low=0.0, high=1.0)
    swept = reader.SweepFrame(runs=reader.runs_frame(rows, ["rate"]), history=reader.history_frame([], ["rate"]),
                              sweep_name="seeded", parent_run_id="3" * 32, factors=["rate"], source=str(tmp_path),
                              objective=metric, params=["rate"], space=space)
    trials = search_stats.trials_frame(swept)
    assert list(trials["seeds"]) == [3, 3, 3] and list(trials["run_id"]) == ["run00", "run10", "run20"]
    assert list(trials["epochs"]) == [3, 1, 3]
    for (_, trial), scores in zip(trials.iterrows(), values.values()):
        low, high = scipy_stats.t.interval(0.95, len(scores) - 1, loc=sum(scores) / 3, scale=scipy_stats.sem(scores))
        assert trial["value"] == pytest.approx(sum(scores) / 3)
        assert trial["low"] == pytest.approx(max(0.0, low)) and trial["high"] == pytest.approx(min(1.0, high))
    assert list(trials["best_so_far"]) == pytest.approx([0.8166667, 0.8166667, 0.8166667])
    reader.write_frames(swept, tmp_path / "in")
    made = report.make_report(tmp_path / "in", out_dir=tmp_path / "out", bootstrap_samples=2, seed=1)
    text = (tmp_path / "out" / "report.md").read_text()
    assert "| rank | trial | rate | score | 95% interval | seeds | epochs |" in text
    best = trials.iloc[0]
    assert f"| 1 | 0 | 0.8 | 0.817 | [{best['low']:.3f}, {best['high']:.3f}] | 3 | 3 |" in text
    assert "the mean of 3 seeds, 95% t interval" in made.answers[0]


# ---------------------------------------------------------------------------------------------- end to end
def test_a_search_with_seeds_k_trains_each_configuration_at_k_seeds_scheduled_on_their_mean(tmp_path, mlflow_server):
    path = write(tmp_path / "user", name="seeds-e2e", uri=mlflow_server, samples=3)
    finished = run_command(["run", str(path), "--num-cpus", "2", "--no-report"], tmp_path)
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    assert "seeds=0,1,2" in finished.stdout
    client, [parent], children = runs_of(mlflow_server, "seeds-e2e")
    grouped = by_configuration(children)
    assert len(grouped) == 3 and len(children) == 9
    for config_id, runs in grouped.items():
        assert {run.data.params["seed"] for run in runs} == SEEDS
        assert {run.data.params["seen_seed"] for run in runs} == SEEDS, "each seed's own mlflow calls, its own run"
        assert len({run.data.params["rate"] for run in runs}) == 1
        assert len({run.data.tags[names.TRIAL_ID_TAG] for run in runs}) == 3
        assert {run.info.status for run in runs} == {"FINISHED"}
        steps = [sorted(score_steps(client, run)) for run in runs]
        assert steps[0] == steps[1] == steps[2], "the seeds of a configuration stop at the same epoch"
    stopped = [runs for runs in grouped.values() if runs[0].data.params["rate"] == "0.1"]
    assert stopped and sorted(score_steps(client, stopped[0][0])) == [1], "ASHA stops the worse mean at its rung"
    full = [runs for runs in grouped.values() if runs[0].data.params["rate"] == "0.8"]
    assert sorted(score_steps(client, full[0][0])) == [1, 2, 3]

    (sweep_dir,) = (tmp_path / "results").iterdir()
    results = tune_results(sweep_dir)
    assert results and all("score_sd" in result and result["seeds"] == 3 for result in results)
    runs_by_key = {run.data.tags[names.TRIAL_ID_TAG]: run for run in children}
    last_told = {}
    for result in results:
        task = trial_module.TrialTask.of_config(result["config"])
        values = [score_steps(client, runs_by_key[trial.key])[result["epoch"]] for trial in task.seed_trials()]
        assert result["score"] == pytest.approx(sum(values) / 3, abs=1e-9), "Tune is told the mean of the seeds"
        last_told[task.trial.key] = result["score"]
    # What the searcher was told when each trial completed (its last result) is what a resumed search is told.
    spec = spec_module.load_sweep(path)
    past = search_history.past_trials(spec, mlflow_server, parent.info.experiment_id, parent.info.run_id)
    assert {item.trial.key: item.value for item in past} == pytest.approx(last_told)
    assert all(item.finished for item in past) and len(past) == 3
    # The report: one row per configuration, the mean of its seeds' last values (summaries keep 4 digits).
    made = report.make_report(parent.info.run_id, tracking_uri=mlflow_server, out_dir=tmp_path / "report",
                              bootstrap_samples=2, log_artifacts=False)
    trials = made.search.trials
    assert list(trials["seeds"]) == [3, 3, 3] and trials["low"].notna().all()
    for _, row in trials.iterrows():
        runs = grouped[runs_by_key[row["trial_id"]].data.tags[names.CONFIG_ID_TAG]]
        lasts = [score_steps(client, run)[max(score_steps(client, run))] for run in runs]
        assert row["value"] == pytest.approx(sum(lasts) / 3, abs=1e-4)
        assert row["low"] <= row["value"] <= row["high"]
    assert "| 95% interval | seeds |" in (tmp_path / "report" / "report.md").read_text()


def test_a_killed_search_with_seeds_k_resumes_without_training_a_seed_twice(tmp_path, mlflow_server):
    path = write(tmp_path / "user", name="seeds-killed", uri=mlflow_server, pause=0.6, samples=3)

    def one_configuration_done_another_running():
        _, _, children = runs_of(mlflow_server, "seeds-killed")
        grouped = by_configuration([run for run in children if names.CONFIG_ID_TAG in run.data.tags])
        done = [runs for runs in grouped.values()
                if len(runs) == 3 and {run.info.status for run in runs} == {"FINISHED"}]
        running = [run for run in children if run.info.status == "RUNNING"]
        if done and running:
            return {run.data.tags[names.TRIAL_ID_TAG]: run.info.end_time for run in children
                    if run.info.status == "FINISHED"}
        return None

    finished_before = kill_driver_when(["run", str(path), "--num-cpus", "2", "--no-report"], cwd=tmp_path,
                                       environment=environment(), log_path=tmp_path / "run.log",
                                       ready=one_configuration_done_another_running)
    assert finished_before, (tmp_path / "run.log").read_text()[-3000:]
    (sweep_dir,) = (tmp_path / "results").iterdir()
    resumed = run_command(["resume", str(sweep_dir), "--num-cpus", "2", "--no-report"], tmp_path)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    told = re.search(r"resuming search 'seeds-killed': (\d+) trials finished, (\d+) re-created", resumed.stdout)
    assert told and int(told.group(1)) >= 1 and int(told.group(1)) + int(told.group(2)) <= 3
    client, [parent], children = runs_of(mlflow_server, "seeds-killed")
    assert parent.info.status == "FINISHED"
    keys = [run.data.tags[names.TRIAL_ID_TAG] for run in children]
    assert len(keys) == len(set(keys)) == 9, "one run per configuration and seed, none twice"
    grouped = by_configuration(children)
    assert len(grouped) == 3 and all({run.data.params["seed"] for run in runs} == SEEDS for runs in grouped.values())
    for run in children:
        assert run.info.status == "FINISHED"
        steps = [metric.step for metric in client.get_metric_history(run.info.run_id, "score")]
        assert steps == list(range(1, len(steps) + 1)), "each epoch logged once"
        key = run.data.tags[names.TRIAL_ID_TAG]
        if key in finished_before:
            assert run.info.end_time == finished_before[key], "a seed that finished before the kill never trains again"


FLAKY = '''
import json
import pathlib
import tempfile

from ray.tune import Checkpoint

from sweeps.trainers import Factor, Metric, get_checkpoint, report, trainer


@trainer(name="flaky", factors=[Factor("rate", float, 0.5, "How fast it learns.", gt=0, lt=1),
                                Factor("fail_at", str, "2", "When seed 1 fails once: at epoch 2, or at the end."),
                                Factor("folder", str, "", "Where the calls and the one failure are noted."),
                                Factor("epochs", int, 3, "Epochs.", ge=1),
                                Factor("seed", int, 0, "Seed.", ge=0)],
         metrics=[Metric("score", "max", low=0.0, high=1.0)], checkpoints=True)
def train(config):
    folder, start = pathlib.Path(config["folder"]), 0
    checkpoint = get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as saved:
            start = json.loads((pathlib.Path(saved) / "epoch.json").read_text())["epoch"]
    with open(folder / "calls.txt", "a") as calls:
        calls.write(f"{config['seed']} {start}\\n")
    once = config["seed"] == 1 and not (folder / "failed").exists()
    for epoch in range(start + 1, config["epochs"] + 1):
        if once and config["fail_at"] == str(epoch):
            (folder / "failed").write_text("once")
            raise RuntimeError("a one-off failure")
        with tempfile.TemporaryDirectory() as saved:
            (pathlib.Path(saved) / "epoch.json").write_text(json.dumps({"epoch": epoch}))
            report({"score": config["rate"] * epoch / 3 + 0.01 * config["seed"]},
                   checkpoint=Checkpoint.from_directory(saved))
    if once and config["fail_at"] == "end":
        (folder / "failed").write_text("once")
        raise RuntimeError("a one-off failure")
'''

FLAKY_SWEEP = '''
name: {name}
trainer: flaky_trainer:train
factors:
  rate: {{uniform: [0.1, 0.9]}}
fixed: {{fail_at: "{fail_at}", folder: "{folder}"}}
seeds: 3
search: {{mode: tpe, num_samples: 1, seed: 3}}
start_from: [{{rate: 0.5}}]
max_failures: 1
resources: {{cpu: 1}}
mlflow: {{tracking_uri: "{uri}"}}
storage_path: results
'''


@pytest.mark.parametrize("fail_at, calls", [
    ("2", ["0 0", "0 1", "1 0", "1 1", "2 0", "2 1"]),  # every seed continues from its part of epoch 1's checkpoint
    ("end", ["0 0", "1 0", "1 3", "2 0"]),  # seeds 0 and 2 finished: read back from MLflow, never trained again
], ids=["mid", "end"])
def test_a_failed_seed_fails_its_configuration_and_the_retry_trains_no_seed_twice(tmp_path, mlflow_server, fail_at,
                                                                                 calls):
    name = f"seeds-retry-{fail_at}"
    folder = tmp_path / "user"
    folder.mkdir()
    (folder / "flaky_trainer.py").write_text(FLAKY)
    path = folder / f"{name}.yaml"
    path.write_text(FLAKY_SWEEP.format(name=name, fail_at=fail_at, folder=folder, uri=mlflow_server))
    finished = run_command(["run", str(path), "--num-cpus", "2", "--no-report"], tmp_path)
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    assert "seed 1 of configuration rate=0.5 failed: RuntimeError: a one-off failure; retrying" in finished.stdout
    assert sorted((folder / "calls.txt").read_text().splitlines()) == calls
    client, _, children = runs_of(mlflow_server, name)
    assert len(children) == 3 and {run.info.status for run in children} == {"FINISHED"}
    for run in children:
        assert sorted(score_steps(client, run)) == [1, 2, 3]
        assert len(client.get_metric_history(run.info.run_id, "score")) == 3, "each epoch logged once"
    (sweep_dir,) = (tmp_path / "results").iterdir()
    results = tune_results(sweep_dir)
    # Each epoch reaches Tune (an attempt's last report may be lost with its error: Tune buffers results), and the
    # last result, what the searcher is told, is epoch 3's mean over all three seeds.
    assert {result["epoch"] for result in results} == {1, 2, 3} and results[-1]["seeds"] == 3
    assert results[-1]["epoch"] == 3
    assert results[-1]["score"] == pytest.approx(sum(score_steps(client, run)[3] for run in children) / 3)


def test_the_barrier_floor_reads_the_epoch_of_a_keras_checkpoint_and_of_a_user_trainers(tmp_path):
    """A retried or resumed seed group starts its barrier at the epoch its seeds' checkpoints hold, so it never
    reports an epoch to Tune twice: the built-in trainer's state.json, a user trainer's epoch note, else 0."""
    from ray import train as ray_train

    from sweeps.run import session as session_module
    from trainer import checkpoint_files

    keras_folder, user_folder, empty_folder = (tmp_path / name for name in ("keras", "user", "empty"))
    for folder in (keras_folder, user_folder, empty_folder):
        folder.mkdir()
    (keras_folder / checkpoint_files.CHECKPOINT_STATE).write_text(json.dumps({"epoch": 3, "history": {}, "config": {}}))
    (user_folder / session_module.EPOCH_FILE).write_text(json.dumps({"epoch": 5}))
    (empty_folder / checkpoint_files.CHECKPOINT_STATE).write_text("{not json")
    epochs = [session_module.checkpoint_epoch(ray_train.Checkpoint.from_directory(str(folder)))
              for folder in (keras_folder, user_folder, empty_folder)]
    assert epochs == [3, 5, 0] and session_module.checkpoint_epoch(None) == 0


def test_a_killed_configuration_resumes_every_seed_from_its_part_of_the_configurations_checkpoint(tmp_path,
                                                                                                mlflow_server):
    """``glovesweep resume`` re-creates a configuration that was training when its driver died: each seed continues
    from its own part of the newest checkpoint (not from epoch 1), each epoch logged once; no finished trial's
    checkpoint is read."""
    folder = tmp_path / "user"
    folder.mkdir()
    # The flaky trainer, never failing, with a pause per epoch so that the driver dies mid-configuration.
    (folder / "slow_trainer.py").write_text(FLAKY.replace("    for epoch in range(start + 1, config[\"epochs\"] + 1):\n",
                                                          "    for epoch in range(start + 1, config[\"epochs\"] + 1):\n"
                                                          "        __import__('time').sleep(2.0)\n"))
    path = folder / "seeds-resumed.yaml"
    path.write_text(FLAKY_SWEEP.format(name="seeds-resumed", fail_at="never", folder=folder, uri=mlflow_server)
                    .replace("flaky_trainer", "slow_trainer").replace("fixed: {", "fixed: {epochs: 6, "))

    def a_checkpoint_of_every_seed():
        # Tune's driver writes the trial folder's params.json, which names the trial, some seconds after the
        # trial starts (a driver killed before that leaves checkpoints no resume can attribute: they train anew).
        for checkpoint in (tmp_path / "results").glob("*/trial_*/checkpoint_*"):
            if len(list(checkpoint.glob("seed_*/.glovesweep_epoch.json"))) == 3 and \
                    (checkpoint.parent / "params.json").exists():
                return True
        return None

    assert kill_driver_when(["run", str(path), "--num-cpus", "2", "--no-report"], cwd=tmp_path,
                            environment=environment(), log_path=tmp_path / "run.log", ready=a_checkpoint_of_every_seed)
    starts_before = (folder / "calls.txt").read_text().splitlines()
    assert sorted(starts_before) == ["0 0", "1 0", "2 0"]
    (sweep_dir,) = (tmp_path / "results").iterdir()
    resumed = run_command(["resume", str(sweep_dir), "--num-cpus", "2", "--no-report"], tmp_path)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "0 trials finished, 1 re-created (1 from a checkpoint)" in resumed.stdout
    assert "skipping checkpoint" not in resumed.stdout
    starts_after = (folder / "calls.txt").read_text().splitlines()[len(starts_before):]
    assert sorted(line.split()[0] for line in starts_after) == ["0", "1", "2"]
    assert all(int(line.split()[1]) >= 1 for line in starts_after), starts_after
    client, [parent], children = runs_of(mlflow_server, "seeds-resumed")
    assert parent.info.status == "FINISHED" and len(children) == 3
    for run in children:
        assert run.info.status == "FINISHED"
        assert [metric.step for metric in client.get_metric_history(run.info.run_id, "score")] == [1, 2, 3, 4, 5, 6]
