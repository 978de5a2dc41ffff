"""Searches in sweep files (sweeps.spec.space, sweeps.spec.search_checks) and their searcher (sweeps.run.searcher),
without Ray's runtime: distributions and their one-line errors, seeded suggestions, parallel suggestions that
differ, start_from first, a resumed searcher that never suggests a configuration twice and keeps the budget."""

from __future__ import annotations

import random
import textwrap

import pytest

from sweeps import spec as spec_module
from sweeps.run import search_history
from sweeps.run import searcher as searcher_module
from sweeps.run import trial as trial_module

TRAINER = '''
from sweeps.trainers import Factor, Metric, report, trainer


@trainer(name="toy", factors=[Factor("rate", float, 0.5, "How fast it learns.", gt=0, lt=1),
                              Factor("width", int, 8, "Units.", ge=1),
                              Factor("optimizer", str, "sgd", "Optimizer.", choices=("sgd", "adam")),
                              Factor("momentum", float, 0.0, "SGD momentum.", ge=0, lt=1),
                              Factor("pause", float, 0.0, "Seconds per epoch.", ge=0),
                              Factor("epochs", int, 3, "Epochs.", ge=1),
                              Factor("seed", int, 0, "Seed.", ge=0)],
         metrics=[Metric("score", "max", low=0.0, high=1.0), Metric("error", "min", low=0.0)])
def train(config):
    for epoch in range(1, config["epochs"] + 1):
        score = 1 - (1 - config["rate"]) ** epoch
        report({"score": score, "error": 1 - score})
'''

SEARCH = """\
name: toy-search
trainer: toy_trainer:train
factors:
  rate: {loguniform: [0.01, 0.9]}
  width: {int: [4, 64], log: true}
  optimizer: [sgd, adam]
  momentum: {uniform: [0.0, 0.9], step: 0.1, when: {optimizer: sgd}}
search: {mode: tpe, num_samples: 12, seed: 3}
"""


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "toy_trainer.py").write_text(TRAINER)
    return tmp_path


def parse(folder, text: str) -> spec_module.SweepSpec:
    return spec_module.parse_sweep(textwrap.dedent(text), source_path=str(folder / "test.yaml"), base_dir=folder)


def rejected(folder, text: str) -> str:
    with pytest.raises(ValueError) as caught:
        parse(folder, text)
    return str(caught.value)


def suggestions(searcher: searcher_module.TrialSearcher, count: int, *, complete: bool = True) -> list:
    """The first ``count`` trials a searcher hands out, each told a score as it finishes (when ``complete``)."""
    trials = []
    for index in range(count):
        suggested = searcher.suggest(f"t{index}")
        if suggested == searcher_module.tune_search.Searcher.FINISHED:
            break
        trial = trial_module.TrialTask.of_config(suggested).trial
        trials.append(trial)
        if complete:
            searcher.on_trial_complete(f"t{index}", {"score": trial.cell["rate"], "time_total_s": 1.0})
    return trials


def test_a_search_file_becomes_a_typed_space(folder):
    spec = parse(folder, SEARCH)
    assert spec.searched and spec.factors == {} and spec.trials() == []
    assert spec.factor_names == ["rate", "width", "optimizer", "momentum"]
    assert spec.space["rate"].kind == "loguniform" and spec.space["rate"].log
    assert spec.space["width"].kind == "int" and spec.space["width"].log and spec.space["width"].low == 4
    assert spec.space["optimizer"].values == ("sgd", "adam")
    assert spec.space["momentum"].when == {"optimizer": ("sgd",)} and spec.space["momentum"].step == 0.1
    assert spec.objective == {"metric": "score", "mode": "max"}  # the trainer's first metric, its direction
    assert spec.total_trials == 12
    trial = spec.search_trial({"rate": 0.123456789, "width": 9, "optimizer": "adam", "momentum": 0.3})
    assert trial.cell == {"rate": 0.123457, "width": 9, "optimizer": "adam"}  # rounded; momentum not sampled
    assert trial.key == spec.search_trial(dict(trial.cell)).key


def test_objective_scheduler_budget_and_start_from(folder):
    spec = parse(folder, SEARCH + "objective: {metric: error}\nscheduler: {mode: hyperband, max_t: 9, "
                                  "reduction_factor: 3}\nbudget: {trials: 5, cpu_hours: 2}\n"
                                  "start_from: [{rate: 0.5, optimizer: adam}]\n")
    assert spec.objective == {"metric": "error", "mode": "min"}
    assert spec.epochs == [9] and spec.scheduler["max_t"] == 9 and spec.scheduler["grace_period"] == 1
    assert spec.total_trials == 5  # the trial budget caps num_samples
    assert spec.start_from == [{"rate": 0.5, "optimizer": "adam"}]
    scheduler = searcher_module.make_scheduler(spec)
    assert (scheduler._max_t, scheduler._metric, scheduler._mode, scheduler._time_attr) == (9, "error", "min", "epoch")
    assert len(scheduler._brackets) == 3  # async HyperBand: log_3(9 / 1) + 1 brackets
    assert parse(folder, SEARCH.replace("tpe", "random")).searched


@pytest.mark.parametrize("factors, expected", [
    ("rate: {loguniform: [0, 0.5]}", "factors.rate: loguniform low=0 must be > 0 on a log scale"),
    ("rate: {uniform: [0.1, 1.5]}", "factors.rate: uniform high=1.5 is outside the factor's bounds: rate=1.5"),
    ("rate: {uniform: [0.5, 0.1]}", "factors.rate: uniform low=0.5 must be below high=0.1"),
    ("rate: {int: [1, 3]}", "factors.rate: int does not fit a float factor"),
    ("width: {uniform: [1, 3]}", "factors.width: uniform does not fit a int factor; use {int: [low, high]}"),
    ("width: {int: [1.5, 3]}", "factors.width: int takes integer bounds"),
    ("rate: {uniform: [0.1, 0.5], step: 0.3}", "factors.rate: step=0.3 does not divide high - low"),
    ("rate: {loguniform: [0.1, 0.5], step: 0.1}", "step and a log scale do not combine"),
    ("rate: {uniform: [0.1, 0.5], log: true}", "uniform takes no log; use {loguniform: [0.1, 0.5]}"),
    ("rate: {normal: [0, 1]}", "factors.rate={'normal': [0, 1]}: unknown key 'normal'"),
    ("rate: {uniform: [0.1]}", "factors.rate: uniform takes [low, high], two numbers"),
    ("optimizer: {choice: [sgd, rmsprop]}", "factors.optimizer value 'rmsprop': optimizer='rmsprop' is not allowed"),
    ("optimizer: {choice: []}", "factors.optimizer: choice takes a non-empty list"),
    ("momentum: {uniform: [0, 0.5], when: {optimizer: sgd}}", "when.optimizer: must name a choice factor"),
    ("epochs: {int: [1, 5]}", "factors.epochs: not a searched dimension: it is the epoch axis"),
    ("depth: {int: [1, 5]}", "factors.depth: unknown setting of trainer 'toy_trainer:train'"),
])
def test_bad_distributions_are_one_line_errors_naming_the_key(folder, factors, expected):
    message = rejected(folder, f"name: bad\ntrainer: toy_trainer:train\nfactors:\n  {factors}\n"
                               f"search: {{mode: tpe, num_samples: 4}}\n")
    assert "\n" not in message and message.startswith(f"{folder / 'test.yaml'}: "), message
    assert expected in message, message


@pytest.mark.parametrize("extra, expected", [
    ("objective: {metric: accuracy}\n", "objective.metric='accuracy': not a metric of trainer"),
    ("start_from: [{rate: 0.95}]\n", "start_from[0].rate=0.95: outside loguniform(0.01, 0.9)"),
    ("start_from: [{pause: 1.0}]\n", "start_from[0].pause: not a searched factor"),
    ("scheduler: {mode: asha, grace_period: 5, max_t: 3}\n", "scheduler.grace_period=5 exceeds max_t=3"),
    ("fixed: {epochs: 4}\nscheduler: {mode: asha, max_t: 3}\n", "scheduler.max_t=3 differs from the largest epoch"),
    ("budget: {}\n", "budget: give trials and/or cpu_hours"),
    ("budget: {cpu_hours: 0}\n", "budget.cpu_hours=0: must be a number > 0"),
])
def test_bad_search_settings_are_one_line_errors(folder, extra, expected):
    message = rejected(folder, SEARCH + extra)
    assert "\n" not in message and expected in message, message


def test_a_distribution_outside_a_search_and_a_budget_outside_a_search_are_refused(folder):
    grid = "name: g\ntrainer: toy_trainer:train\nfactors:\n  rate: {uniform: [0.1, 0.5]}\n"
    assert "a distribution needs a search (search.mode random or tpe)" in rejected(folder, grid)
    lists = "name: g\ntrainer: toy_trainer:train\nfactors:\n  rate: [0.1, 0.5]\n"
    assert "budget: applies to a search" in rejected(folder, lists + "budget: {trials: 2}\n")


def test_an_old_random_file_still_draws_cells_of_the_grid_from_its_hash(folder):
    text = "name: old\ntrainer: toy_trainer:train\nfactors:\n  rate: [0.1, 0.3, 0.5]\n  width: [4, 8]\n" \
           "seeds: 2\nsearch: {mode: random, num_samples: 5}\n"
    spec = parse(folder, text)
    assert not spec.searched and spec.search == {"mode": "random", "num_samples": 5}
    pairs = [(cell, seed) for seed in (0, 1) for cell in spec.cells()]
    chosen = random.Random(spec.source_sha256).sample(range(len(pairs)), 5)
    assert [(trial.cell, trial.seed) for trial in spec.trials()] == [pairs[index] for index in chosen]
    asha = parse(folder, text.replace("random", "asha"))
    assert not asha.searched and asha.search == {"mode": "asha", "num_samples": 5, "grace_period": 1}
    config, _ = searcher_module.tune_config_and_space(asha)
    assert (config.metric, config.mode) == ("score", "max")  # the trainer's objective, no longer always val_acc


@pytest.mark.parametrize("mode", ["tpe", "random"])
def test_the_same_file_gives_the_same_first_suggestions_and_another_seed_others(folder, mode):
    text = SEARCH.replace("tpe", mode)
    first = [trial.key for trial in suggestions(searcher_module.TrialSearcher(parse(folder, text)), 12)]
    again = [trial.key for trial in suggestions(searcher_module.TrialSearcher(parse(folder, text)), 12)]
    other = [trial.key for trial in suggestions(searcher_module.TrialSearcher(parse(folder, text.replace(
        "seed: 3", "seed: 4"))), 12)]
    assert first == again and len(first) == 12 and len(set(first)) == 12
    assert first[:3] != other[:3]


def test_parallel_suggestions_differ_and_start_from_comes_first(folder):
    spec = parse(folder, SEARCH + "start_from: [{rate: 0.5, width: 8, optimizer: adam}]\n")
    searcher = searcher_module.TrialSearcher(spec)
    # Eleven trials in flight at once (none finished): constant_liar keeps them apart.
    running = suggestions(searcher, 11, complete=False)
    assert running[0].cell == {"rate": 0.5, "width": 8, "optimizer": "adam"}
    assert len({trial.key for trial in running}) == 11
    for trial in running:
        if trial.cell["optimizer"] == "sgd":
            assert 0 <= trial.cell["momentum"] <= 0.9 and round(trial.cell["momentum"] * 10, 6) % 1 == 0
        else:
            assert "momentum" not in trial.cell


def past(spec, trials, *, finished: int, cpu_seconds: float = 10.0) -> list[search_history.PastTrial]:
    return [search_history.PastTrial(trial=trial, status="FINISHED" if index < finished else "KILLED",
                                     value=trial.cell["rate"] if index < finished else None, cpu_seconds=cpu_seconds)
            for index, trial in enumerate(trials)]


@pytest.mark.parametrize("mode", ["tpe", "random"])
def test_a_resumed_searcher_recreates_what_ran_never_repeats_it_and_keeps_the_trial_budget(folder, mode):
    spec = parse(folder, SEARCH.replace("tpe", mode).replace("num_samples: 12", "num_samples: 8"))
    uninterrupted = suggestions(searcher_module.TrialSearcher(spec), 8)
    earlier = past(spec, uninterrupted[:5], finished=3)  # three finished, two in flight when the driver died
    resumed = searcher_module.TrialSearcher(spec, earlier)
    assert resumed.remaining == 2 + 3  # the two re-created, three new up to num_samples
    after = suggestions(resumed, 10)
    assert [trial.key for trial in after[:2]] == [trial.key for trial in uninterrupted[3:5]]  # re-created first
    assert len(after) == 5 and suggestions(resumed, 1) == []
    keys = [trial.key for trial in uninterrupted[:3] + after]
    assert len(keys) == len(set(keys)) == 8  # no configuration twice
    if mode == "random":
        # A random search's resumed sequence is the uninterrupted one (its sampler replays, repeats are skipped).
        assert keys == [trial.key for trial in uninterrupted]


def test_the_cpu_hour_budget_counts_what_ran_before(folder):
    spec = parse(folder, SEARCH + "budget: {cpu_hours: 0.01}\n")  # 36 CPU seconds
    ran = suggestions(searcher_module.TrialSearcher(spec), 3)
    spent = searcher_module.TrialSearcher(spec, past(spec, ran, finished=3, cpu_seconds=12.0))
    assert spent.cpu_hours() == pytest.approx(0.01) and suggestions(spent, 1) == []
    fresh = searcher_module.TrialSearcher(spec, past(spec, ran, finished=3, cpu_seconds=11.0))
    first = suggestions(fresh, 1, complete=False)
    assert len(first) == 1
    fresh.on_trial_result("t0", {"score": 0.5, "time_total_s": 3.0, "training_iteration": 1})
    assert suggestions(fresh, 1) == []  # 33 s before + 3 s now: spent


def test_conditional_trials_are_told_to_a_fresh_study_with_their_own_distributions(folder):
    spec = parse(folder, SEARCH)
    trials = suggestions(searcher_module.TrialSearcher(spec), 6)
    storage, _ = searcher_module.make_study(spec, past(spec, trials, finished=6))
    import optuna

    told = optuna.load_study(study_name=searcher_module.STUDY_NAME, storage=storage).trials
    assert [trial.params for trial in told] == [trial.cell for trial in trials]
    assert [trial.value for trial in told] == [trial.cell["rate"] for trial in trials]


def test_the_example_search_file_validates_and_its_smoke_test_shortens_the_scheduler():
    import pathlib

    path = pathlib.Path(__file__).resolve().parents[1] / "examples" / "digits" / "digits-search.yaml"
    spec = spec_module.load_sweep(path)
    assert spec.searched and spec.epochs == [10] and spec.start_from == [{"loss": "hinge", "alpha": 0.0001}]
    smoke = spec_module.load_sweep(path, smoke_test=True)
    assert smoke.epochs == [2] and smoke.scheduler["max_t"] == 2 and smoke.scheduler["grace_period"] == 2


def test_loguniform_is_always_on_a_log_scale(folder):
    message = rejected(folder, SEARCH.replace("{loguniform: [0.01, 0.9]}", "{loguniform: [0.01, 0.9], log: false}"))
    assert "factors.rate: loguniform is on a log scale; use {uniform: [0.01, 0.9]}" in message
