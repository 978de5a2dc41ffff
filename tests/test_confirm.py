"""A search's stages (sweeps.spec.stages, sweeps.run.confirm, sweeps.report.confirm_stats): the confirm stage on
fresh seeds and the final stage end to end on a real local Ray and a real MLflow server, a driver killed during the
confirm stage and resumed, their one-line errors, and the protocol that keeps the test set out of selection (the
Keras network on tiny bydate archives whose test labels are shuffled picks the same configuration)."""

from __future__ import annotations

import argparse
import math
import shutil
import statistics
import subprocess
import sys
import textwrap

import pytest
from scipy import stats as scipy_stats

from conftest import build_tiny_corpus, build_tiny_data_home, kill_driver_when, tiny_body, tiny_post
from conftest import TINY_GROUPS, TINY_IDS
from sweeps import spec as spec_module
from sweeps.run import plan
from sweeps.tracking import names

TRAINER = '''
import math
import time

from sweeps.trainers import Factor, Metric, report, trainer


@trainer(name="noisy", factors=[Factor("rate", float, 0.5, "How fast it learns.", gt=0, lt=1),
                                Factor("width", int, 8, "Units.", ge=1),
                                Factor("holdout", str, "val", "Scored on: val or test.", choices=("val", "test")),
                                Factor("pause", float, 0.0, "Seconds per epoch.", ge=0),
                                Factor("epochs", int, 2, "Epochs.", ge=1),
                                Factor("seed", int, 0, "Seed.", ge=0)],
         metrics=[Metric("score", "max", low=0.0, high=1.0)])
def train(config):
    # Seed noise of its own per configuration: the search's one seed flatters some configurations.
    noise = 0.05 * math.sin(1000 * config["rate"] + 7 * config["seed"] + config["width"])
    for epoch in range(1, config["epochs"] + 1):
        time.sleep(config["pause"])
        score = 0.4 + 0.3 * config["rate"] - 0.002 * config["width"] + 0.05 * epoch + noise
        report({"score": score - (0.1 if config["holdout"] == "test" else 0.0)})
'''

SWEEP = """\
name: {name}
trainer: noisy_trainer:train
factors:
  rate: {{uniform: [0.1, 0.9]}}
  width: {{int: [2, 32]}}
fixed: {{pause: {pause}}}
search: {{mode: random, num_samples: {samples}, seed: 3}}
seeds: {seeds}
confirm: {{top: 2, seeds: 2}}
final: {{holdout: test, seeds: {final_seeds}}}
max_concurrent_trials: {concurrent}
resources: {{cpu: 1}}
mlflow: {{tracking_uri: "{uri}"}}
storage_path: results
"""


def write(folder, *, name, uri, pause=0.0, samples=4, concurrent=2, final_seeds=2, seeds=1):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "noisy_trainer.py").write_text(TRAINER)
    path = folder / f"{name}.yaml"
    path.write_text(SWEEP.format(name=name, uri=uri, pause=pause, samples=samples, concurrent=concurrent,
                                 final_seeds=final_seeds, seeds=seeds))
    return path


def run_command(arguments, folder, timeout=420):
    from test_search_run import environment

    return subprocess.run([sys.executable, "-m", "sweeps.cli", *arguments], cwd=folder, env=environment(),
                          capture_output=True, text=True, timeout=timeout)


def runs_by_stage(uri: str, experiment: str):
    """(client, parent run, {stage: [child runs, oldest first]})."""
    from test_search_run import runs_of

    client, parents, children = runs_of(uri, experiment)
    found: dict[str, list] = {}
    for run in children:
        found.setdefault(run.data.tags.get(names.STAGE_TAG), []).append(run)
    return client, (parents[0] if parents else None), found


def score(run) -> float:
    """The run's score after its last epoch as the report reads it (the summary, rounded to 4 digits)."""
    return run.data.metrics["score_at_2"]


def configuration(run) -> tuple:
    return run.data.params["rate"], run.data.params["width"]


@pytest.mark.parametrize("search_seeds", [1, 2])
def test_a_search_confirms_its_best_two_on_fresh_seeds_then_scores_the_confirmed_one_once(
        tmp_path, mlflow_server, search_seeds):
    """With seeds: 2 the search trains each configuration at seeds 0 and 1 side by side; its stages take 2 and 3."""
    name = f"confirm-e2e-{search_seeds}"
    path = write(tmp_path / "user", name=name, uri=mlflow_server, seeds=search_seeds)
    finished = run_command(["run", str(path), "--num-cpus", "2"], tmp_path)
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    assert "then confirm the top 2 on 2 fresh seeds, final: holdout=test on 2 seeds" in finished.stdout
    runs = 4 * search_seeds
    assert f"{runs}/{runs} trials done, 0 failed" in finished.stdout  # the search's own count
    assert "confirm stage: 4 of 4 trials to train" in finished.stdout and "final stage: 2 of 2" in finished.stdout
    client, parent, stages = runs_by_stage(mlflow_server, name)
    assert parent.info.status == "FINISHED"
    assert {stage: len(found) for stage, found in stages.items()} == {"search": runs, "confirm": 4, "final": 2}
    for run in (run for found in stages.values() for run in found):
        assert run.info.status == "FINISHED"
        assert run.data.tags[names.CONFIG_ID_TAG] == next(
            item.data.tags[names.CONFIG_ID_TAG] for item in stages["search"]
            if configuration(item) == configuration(run)), "every stage's run names its search configuration"
    searched = {key: statistics.mean(score(run) for run in stages["search"] if configuration(run) == key)
                for key in {configuration(run) for run in stages["search"]}}
    best = sorted(searched, key=searched.get, reverse=True)[:2]
    assert {run.data.params["seed"] for run in stages["search"]} == {str(seed) for seed in range(search_seeds)}
    # The two best of the search, each on the two seeds after the search's (never one it used), to the last epoch.
    fresh = [str(search_seeds), str(search_seeds + 1)]
    assert sorted((configuration(run), run.data.params["seed"]) for run in stages["confirm"]) == sorted(
        (key, seed) for key in best for seed in fresh)
    assert all(run.data.params["holdout"] == "val" for run in stages["search"] + stages["confirm"])
    means = {key: statistics.mean(score(run) for run in stages["confirm"] if configuration(run) == key)
             for key in best}
    chosen = max(means, key=means.get)
    assert {configuration(run) for run in stages["final"]} == {chosen}
    assert sorted(run.data.params["seed"] for run in stages["final"]) == fresh
    assert all(run.data.params["holdout"] == "test" for run in stages["final"])

    # The parent carries the confirmed configuration, its mean and interval, the search's value, the optimism.
    tags, metrics = parent.data.tags, parent.data.metrics
    assert (tags[names.BEST_TAG_PREFIX + "rate"], tags[names.BEST_TAG_PREFIX + "width"]) == chosen
    assert tags[names.CONFIRMED_TAG] == "true"
    values = [score(run) for run in stages["confirm"] if configuration(run) == chosen]
    mean = statistics.mean(values)
    half = scipy_stats.t.ppf(0.975, 1) * statistics.stdev(values) / math.sqrt(2)
    assert metrics["confirmed_score_mean"] == pytest.approx(mean, abs=1e-4)
    assert metrics["confirmed_score_low"] == pytest.approx(max(0.0, mean - half), abs=1e-4)
    assert metrics["confirmed_score_high"] == pytest.approx(min(1.0, mean + half), abs=1e-4)
    assert metrics["search_score"] == pytest.approx(searched[chosen], abs=1e-4)
    assert metrics["optimism_score"] == pytest.approx(searched[chosen] - mean, abs=1e-4)
    assert metrics["test_score_mean"] == pytest.approx(statistics.mean(score(run) for run in stages["final"]),
                                                       abs=1e-4)
    (report_dir,) = (tmp_path / "reports").iterdir()
    markdown = (report_dir / "report.md").read_text()
    assert "## Confirmed on fresh seeds" in markdown and "retrained with holdout=test on 2 seeds" in markdown
    assert f"optimistic by {searched[chosen] - mean:.3f}" in markdown
    assert ("(the search underrated it)" in markdown) == (searched[chosen] - mean < 0)
    assert (report_dir / "confirmed.csv").read_text().count("\nconfirm,") == 2
    assert "Confirmed on 2 fresh seeds" in finished.stdout


def test_a_driver_killed_during_the_confirm_stage_resumes_without_training_a_trial_twice(tmp_path, mlflow_server):
    path = write(tmp_path / "user", name="confirm-killed", uri=mlflow_server, pause=1.0, samples=2, concurrent=1,
                 final_seeds=1)

    def one_confirmed_one_running():
        _, _, stages = runs_by_stage(mlflow_server, "confirm-killed")
        confirm = stages.get("confirm", [])
        keys = {status: {run.data.tags[names.TRIAL_ID_TAG]: run.info.end_time for run in confirm
                         if run.info.status == status} for status in ("FINISHED", "RUNNING")}
        return keys if keys["FINISHED"] and keys["RUNNING"] else None

    from test_search_run import environment

    seen = kill_driver_when(["run", str(path), "--num-cpus", "2", "--no-report"], cwd=tmp_path,
                            environment=environment(), log_path=tmp_path / "run.log", ready=one_confirmed_one_running)
    assert seen, (tmp_path / "run.log").read_text()[-3000:]
    (sweep_dir,) = (tmp_path / "results").iterdir()
    resumed = run_command(["resume", str(sweep_dir), "--num-cpus", "2", "--no-report"], tmp_path)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "nothing to resume" in resumed.stdout  # the search had finished: only its stages go on
    told = [line for line in resumed.stdout.splitlines() if "confirm stage:" in line]
    assert told and "of 4 trials to train" in told[0] and int(told[0].split("confirm stage: ")[1].split()[0]) <= \
        4 - len(seen["FINISHED"])
    client, parent, stages = runs_by_stage(mlflow_server, "confirm-killed")
    assert parent.info.status == "FINISHED"
    assert {stage: len(runs) for stage, runs in stages.items()} == {"search": 2, "confirm": 4, "final": 1}
    keys = [run.data.tags[names.TRIAL_ID_TAG] for runs in stages.values() for run in runs]
    assert len(keys) == len(set(keys)) == 7, "one run per trial"
    for run in stages["confirm"] + stages["final"]:
        assert run.info.status == "FINISHED"
        steps = [metric.step for metric in client.get_metric_history(run.info.run_id, "score")]
        assert steps == [1, 2], "each epoch logged once"
        key = run.data.tags[names.TRIAL_ID_TAG]
        if key in seen["FINISHED"]:
            assert run.info.end_time == seen["FINISHED"][key]  # finished before the kill: never trained again


# --------------------------------------------------------------------------------------------- the sweep file
def parse(folder, text: str) -> spec_module.SweepSpec:
    (folder / "noisy_trainer.py").write_text(TRAINER)
    return spec_module.parse_sweep(textwrap.dedent(text), source_path=str(folder / "test.yaml"), base_dir=folder)


def rejected(folder, text: str) -> str:
    with pytest.raises(ValueError) as caught:
        parse(folder, text)
    return str(caught.value)


SEARCH = """\
name: stages
trainer: noisy_trainer:train
factors:
  rate: {uniform: [0.1, 0.9]}
search: {mode: tpe, num_samples: 6}
"""


def test_the_stages_resolve_to_fresh_seeds_and_a_final_config(tmp_path):
    spec = parse(tmp_path, SEARCH + "seeds: [4]\nconfirm: {top: 2, seeds: 3}\nfinal: {holdout: test}\n")
    assert (spec.confirm.top, spec.confirm.seeds) == (2, (5, 6, 7))
    assert (spec.final.settings, spec.final.seeds, spec.final.asked) == ({"holdout": "test"}, (5, 6, 7), True)
    assert spec.stage_trials == 2 * 3 + 3
    final = spec_module.Trial(kind="noisy", cell={"rate": 0.5}, seed=5, stage="final")
    confirm = spec_module.Trial(kind="noisy", cell={"rate": 0.5}, seed=5, stage="confirm")
    assert spec.trial_config(final).holdout == "test" and spec.trial_config(confirm).holdout == "val"
    assert len({final.key, confirm.key, spec.search_trial({"rate": 0.5}).key}) == 3
    assert final.config_key == confirm.config_key == spec.search_trial({"rate": 0.5}).config_key
    # A trial without a stage keeps the key it always had (its dict has no 'stage').
    assert "stage" not in spec.search_trial({"rate": 0.5}).as_dict()
    assert spec_module.Trial.from_dict(final.as_dict()) == final
    defaults = parse(tmp_path, SEARCH + "confirm: {}\nfinal: {holdout: test, seeds: 1}\n")
    assert (defaults.confirm.top, defaults.confirm.seeds, defaults.final.seeds) == (3, (1, 2, 3), (1,))
    assert parse(tmp_path, SEARCH).confirm is None and parse(tmp_path, SEARCH).final is None


@pytest.mark.parametrize("extra, message", [
    ("confirm: {top: 0}", "confirm.top=0: must be a number >= 1"),
    ("confirm: {seeds: 0}", "confirm.seeds=0: must be a number >= 1"),
    ("confirm: {top: 2, best: 1}", "unknown key confirm.'best'"),
    ("final: {seeds: 0, holdout: test}", "final.seeds=0: must be a number >= 1"),
    ("final: {depth: 3}", "final.depth: unknown setting of trainer"),
    ("final: {holdout: train}", "final.holdout value 'train'"),
    ("final: {rate: 0.3}", "final.rate: is searched"),
    ("final: {seed: 3}", "final.seed: is the stage's own axis"),
    ("final: {seeds: 2}", "final: name the settings the final stage changes"),
])
def test_bad_stage_values_are_one_line_errors(tmp_path, extra, message):
    error = rejected(tmp_path, SEARCH + extra + "\n")
    assert message in error and "\n" not in error, error


def test_stages_apply_to_a_search_only(tmp_path):
    grid = SEARCH.replace("rate: {uniform: [0.1, 0.9]}", "rate: [0.2, 0.4]").replace(
        "search: {mode: tpe, num_samples: 6}", "search: {mode: grid}")
    assert "confirm: applies to a search" in rejected(tmp_path, grid + "confirm: {top: 2, seeds: 2}\n")
    assert "final: applies to a search" in rejected(tmp_path, grid + "final: {holdout: test}\n")


KERAS_SEARCH = """\
name: {name}
factors:
  learning_rate: {{loguniform: [0.002, 0.01]}}
fixed: {{dataset: bydate, {validation}architecture: global_max, max_sequence_length: 160, embedding: random,
        sizing: num_words_plus_one, batch_size: 8, epochs: 8}}
search: {{mode: random, num_samples: 2, seed: 1}}
{extra}
resources: {{cpu: 1, gpu: 0}}
max_concurrent_trials: 2
mlflow: {{tracking_uri: "{uri}"}}
storage_path: {storage}
"""


def keras_search(tmp_path, *, validation="validation: split, ", extra="", name="keras-stages", uri="sqlite:///x.db",
                 storage="results") -> str:
    return KERAS_SEARCH.format(name=name, validation=validation, extra=extra, uri=uri, storage=storage)


def test_a_keras_search_that_would_select_on_bydates_test_set_is_refused(tmp_path):
    error = rejected(tmp_path, keras_search(tmp_path, validation=""))
    assert "validates on an official test set" in error and "fixed.validation: split" in error
    assert "select_on_test_set: true" in error and "\n" not in error
    allowed = parse(tmp_path, keras_search(tmp_path, validation="", extra="select_on_test_set: true"))
    assert allowed.final is None  # it selected on the test set already: no final stage to score it on


def test_a_keras_search_on_a_split_of_bydate_scores_the_chosen_configuration_on_the_test_set(tmp_path):
    spec = parse(tmp_path, keras_search(tmp_path, extra="confirm: {top: 2, seeds: 2}"))
    assert spec.final.settings == {"validation": "auto"} and spec.final.seeds == (1, 2) and not spec.final.asked
    cell = {"learning_rate": 0.01}
    final = spec.trial_config(spec_module.Trial(kind="keras", cell=cell, seed=1, stage="final"))
    confirm = spec.trial_config(spec_module.Trial(kind="keras", cell=cell, seed=1, stage="confirm"))
    assert (final.validation, confirm.validation, final.learning_rate) == ("auto", "split", 0.01)
    assert parse(tmp_path, keras_search(tmp_path, extra="final: false")).final is None
    # 19997 has no official test set: validation auto is a split there too, so there is no final stage.
    other = keras_search(tmp_path, validation="").replace("dataset: bydate", "dataset: '19997'")
    assert parse(tmp_path, other).final is None


def test_plan_counts_the_stages_trials(tmp_path, capsys):
    (tmp_path / "noisy_trainer.py").write_text(TRAINER)
    path = tmp_path / "plan.yaml"
    path.write_text(SEARCH + "confirm: {top: 2, seeds: 3}\nfinal: {holdout: test, seeds: 2}\n")
    assert plan.main(argparse.Namespace(sweep_file=str(path), smoke_test=False, json=False)) == 0
    assert "up to 14 trials (6 searched + 8 in its confirm and final stages)" in capsys.readouterr().out


# ------------------------------------------------------------------------ no tuning on the test set, Keras
def shuffled_test_labels_home(root):
    """A tiny data home whose bydate test posts sit in the next group's folder (their labels rotated); the train
    files are those of ``build_tiny_data_home``."""
    files = {}
    for position, group in enumerate(TINY_GROUPS):
        for index in range(8):
            name = TINY_IDS[index]
            files[f"20news-bydate-train/{group}/{name}"] = tiny_post("bydate", group, name, tiny_body(group, name))
            test_name = "7" + name
            moved = TINY_GROUPS[(position + 1) % len(TINY_GROUPS)]
            files[f"20news-bydate-test/{moved}/{test_name}"] = tiny_post("bydate", group, test_name,
                                                                          tiny_body(group, test_name))
    corpus = build_tiny_corpus(root / "corpus", "bydate", files)
    home = root / "home"
    home.mkdir(parents=True)
    shutil.copy(corpus.archive, home / corpus.archive.name)
    return home


def test_shuffling_the_test_labels_changes_the_final_score_but_not_the_chosen_configuration(
        tmp_path, mlflow_server, ray_local):
    from sweeps.run import driver

    results = {}
    for case, home in (("plain", build_tiny_data_home(tmp_path / "plain", versions=("bydate",))),
                       ("shuffled", shuffled_test_labels_home(tmp_path / "shuffled"))):
        name = f"keras-labels-{case}"
        path = tmp_path / f"{name}.yaml"
        path.write_text(keras_search(tmp_path, name=name, uri=mlflow_server, storage=tmp_path / "results",
                                     extra="confirm: {top: 2, seeds: 1}\nfinal: {seeds: 1}"))
        result = driver.run_sweep(spec_module.load_sweep(path), data_home=str(home), cache_dir=str(tmp_path / "cache"),
                                  download_if_missing=False)
        assert result.ok and result.total == 2 + 2 + 1
        results[case] = runs_by_stage(mlflow_server, name)[2]
    plain, shuffled = results["plain"], results["shuffled"]

    def values(runs):
        return sorted((run.data.params["learning_rate"], run.data.params["seed"], run.data.metrics["val_acc"])
                      for run in runs)

    for stage in ("search", "confirm"):
        # Selection trains and validates on the training files alone: the same values, test labels or not.
        for before, after in zip(values(plain[stage]), values(shuffled[stage])):
            assert before[:2] == after[:2] and before[2] == pytest.approx(after[2], abs=1e-6)
    (final_plain,), (final_shuffled,) = plain["final"], shuffled["final"]
    assert final_plain.data.params["learning_rate"] == final_shuffled.data.params["learning_rate"]
    assert final_plain.data.params["validation"] == final_shuffled.data.params["validation"] == "auto"
    assert final_plain.data.metrics["num_val"] == 32  # the whole test set, after training on every train file
    # A network that learned the groups scores the true labels well and the rotated ones badly.
    assert final_plain.data.metrics["val_acc"] > final_shuffled.data.metrics["val_acc"] + 0.2


@pytest.mark.parametrize("trainer, named", [(names.TRAINER_KERAS, True), ("noisy", False)])
def test_the_final_score_names_bydates_test_set_only_for_the_keras_network(trainer, named):
    """A user's trainer may have a validation factor of its own: its final stage holds out what it holds out."""
    from sweeps.report import confirm_report, confirm_stats
    from sweeps.trainers import api

    final = confirm_stats.Score(configuration="c", cell={"rate": 0.5}, seeds=2, mean=0.6, low=0.55, high=0.65,
                                run_id="r")
    tables = confirm_stats.StageTables(confirmed=[], final=final, final_settings={"validation": "auto"},
                                       final_trainer=trainer)
    (sentence,) = confirm_report.sentences(tables, api.VAL_ACC)
    assert "retrained with validation=auto on 2 seeds and scored once on the data those settings hold out" in sentence
    assert ("(bydate's official test set, for the Keras network)" in sentence) == named
