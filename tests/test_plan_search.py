"""``glovesweep plan`` of a search (sweeps.run.plan_search, sweeps.run.rungs): the scheduler's rungs as Ray Tune
places them, its expected epochs by hand and against Ray's own scheduler driven with random values, the trainings
that seeds and stages add, and the Keras network's cost range over its searched factors, capped by the budget,
offline."""

from __future__ import annotations

import json
import math
import pathlib

import numpy as np
import pytest
from ray.tune import schedulers
from ray.tune.experiment import trial as trial_module

from conftest import build_tiny_data_home
from test_confirm import TRAINER

from sweeps import cli
from sweeps import spec as spec_module
from sweeps.run import rungs
from trainer import paths

ROOT = pathlib.Path(__file__).resolve().parents[1]

USER_SEARCH = """\
name: planned
trainer: noisy_trainer:train
factors:
  rate: {{uniform: [0.1, 0.9]}}
search: {{mode: tpe, num_samples: 10, seed: 0}}
scheduler: {{mode: asha, grace_period: 1, reduction_factor: 2, max_t: 8}}
budget: {{trials: 8}}
seeds: {seeds}
{stages}
"""

KERAS_SEARCH = """\
name: keras-planned
factors:
  learning_rate: {{loguniform: [0.001, 0.01]}}
  batch_size: [4, 16]
  filters: {{int: [4, 32], log: true}}
fixed: {{dataset: bydate, validation: split, architecture: global_max, max_sequence_length: 160, max_num_words: 60,
        embedding: random, sizing: num_words_plus_one}}
search: {{mode: tpe, num_samples: 6, seed: 0}}
scheduler: {{mode: asha, grace_period: 1, reduction_factor: 2, max_t: 4}}
start_from: [{{learning_rate: 0.002, batch_size: 16, filters: 8}}]
confirm: {{top: 1, seeds: 2}}
{budget}
resources: {{cpu: 1, gpu: 0}}
max_concurrent_trials: 1
"""


# --------------------------------------------------------------------------------------------- the rungs
@pytest.mark.parametrize("settings", [
    {"mode": "asha", "grace_period": 1, "reduction_factor": 2, "max_t": 8},
    {"mode": "asha", "grace_period": 2, "reduction_factor": 3, "max_t": 12},
    {"mode": "asha", "grace_period": 1, "reduction_factor": 2.5, "max_t": 15},
    {"mode": "hyperband", "grace_period": 1, "reduction_factor": 3, "max_t": 27},
])
def test_the_rungs_are_where_rays_scheduler_puts_them(settings):
    ray_scheduler = schedulers.AsyncHyperBandScheduler(
        time_attr="epoch", metric="score", mode="max", max_t=settings["max_t"], grace_period=settings["grace_period"],
        reduction_factor=settings["reduction_factor"], brackets=rungs.bracket_count(settings))
    schedule = rungs.schedule(settings, settings["max_t"])
    expected = [sorted(milestone for milestone, _ in bracket._rungs) for bracket in ray_scheduler._brackets]
    assert [len(bracket) for bracket in schedule.rungs] == [len(bracket) for bracket in expected]
    for ours, rays in zip(schedule.rungs, expected):
        assert list(ours) == pytest.approx(rays)
    sizes = np.array([len(bracket) for bracket in expected])
    weights = np.e ** (sizes - sizes.max())  # Ray's on_trial_add
    assert list(schedule.probabilities) == pytest.approx(list(weights / weights.sum()))


def test_a_rung_is_judged_at_the_first_epoch_past_it_and_a_rung_at_max_t_saves_nothing():
    halving = {"mode": "asha", "grace_period": 1, "reduction_factor": 2, "max_t": 8}
    assert rungs.schedule(halving, 8).judged == ((1, 2, 4),)
    # Rungs 1, 2.5, 6.25 of 15: judged when epochs 1, 3 and 7 report.
    assert rungs.schedule({"mode": "asha", "grace_period": 1, "reduction_factor": 2.5, "max_t": 15}, 15).judged == \
        ((1, 3, 7),)
    # Rungs 1, 1.5, 2.25, 3.375 of 4: one judgment per report, the highest rung waiting; 1.5 then waits until 3.
    assert rungs.judged_epochs((1.0, 1.5, 2.25, 3.375), 4) == (1, 2, 3)
    assert rungs.schedule(None, 5).long_run_epochs() == 5 and rungs.schedule(None, 5).expected_epochs(3)[-1] == 15


def test_the_expected_epochs_of_asha_by_hand():
    schedule = rungs.schedule({"mode": "asha", "grace_period": 1, "reduction_factor": 2, "max_t": 8}, 8)
    # Long run: all train 1 epoch, 1/2 a 2nd, 1/4 the 3rd and 4th, 1/8 the 5th to 8th.
    assert schedule.long_run_epochs() == pytest.approx(1 + 1 / 2 + 2 / 4 + 4 / 8)
    # One at a time with eta = 2 a configuration continues with probability 1/2 wherever something is recorded,
    # always where nothing is: the first trains 8 epochs, each later one 1 + 1/2 + 2/4 + 4/8 = 2.5.
    epochs = schedule.expected_epochs(8)
    assert epochs[:3] == pytest.approx([0, 8, 10.5])
    # 8 arrive at epoch 1; 1 + 7/2 = 4.5 reach epoch 2; 1 + 3.5/2 = 2.75 reach epoch 4; 1 + 1.75/2 = 1.875 reach 8.
    assert epochs[8] == pytest.approx(8 * 1 + 4.5 * 1 + 2.75 * 2 + 1.875 * 4) == pytest.approx(25.5)
    # eta = 3: the second arrival at a rung continues with 1/2, the third with (1/3 + 1)/3 = 4/9.
    three = rungs.schedule({"mode": "asha", "grace_period": 1, "reduction_factor": 3, "max_t": 2}, 2)
    assert three.expected_epochs(3)[-1] == pytest.approx(3 + 1 + 1 / 2 + 4 / 9)


def simulated_epochs(settings: dict, configurations: int, repeats: int, seed: int) -> np.ndarray:
    """Epochs of ``configurations`` trials run one at a time through Ray's own scheduler, each reporting a fresh
    uniform value every epoch; one total per repeat."""
    np.random.seed(seed)  # Ray draws each trial's bracket from numpy's global generator
    values = np.random.default_rng(seed)
    trials = [trial_module.Trial("planned", stub=True, trial_id=f"t{index}") for index in range(configurations)]
    totals = np.zeros(repeats)
    for repeat in range(repeats):
        scheduler = schedulers.AsyncHyperBandScheduler(
            time_attr="epoch", metric="score", mode="max", max_t=settings["max_t"],
            grace_period=settings["grace_period"], reduction_factor=settings["reduction_factor"],
            brackets=rungs.bracket_count(settings))
        for trial in trials:
            scheduler.on_trial_add(None, trial)
            for epoch in range(1, settings["max_t"] + 1):
                result = {"epoch": epoch, "score": values.random()}
                if scheduler.on_trial_result(None, trial, result) == schedulers.TrialScheduler.STOP:
                    break
            totals[repeat] += epoch
            scheduler.on_trial_remove(None, trial)
    return totals


@pytest.mark.parametrize("settings, configurations", [
    ({"mode": "asha", "grace_period": 1, "reduction_factor": 2, "max_t": 8}, 8),
    ({"mode": "hyperband", "grace_period": 1, "reduction_factor": 3, "max_t": 9}, 7),
])
def test_the_expectation_matches_rays_scheduler_on_values_in_random_order(settings, configurations):
    totals = simulated_epochs(settings, configurations, repeats=1500, seed=4)
    schedule = rungs.schedule(settings, settings["max_t"])
    standard_error = totals.std(ddof=1) / math.sqrt(len(totals))
    assert abs(totals.mean() - schedule.expected_epochs(configurations)[-1]) < 4 * standard_error
    # The long-run rate alone would be wrong here: the first to reach each rung always continues.
    assert totals.mean() - configurations * schedule.long_run_epochs() > 6 * standard_error


# ---------------------------------------------------------------------------------- the plan of a search
def plan_text_and_json(path: pathlib.Path, capsys, *extra: str) -> tuple[list[str], dict]:
    assert cli.main(["plan", str(path), *extra]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert cli.main(["plan", str(path), *extra, "--json"]) == 0
    return lines, json.loads(capsys.readouterr().out)


def test_a_search_plan_counts_seeds_and_stages_and_the_schedulers_expected_epochs(tmp_path, capsys):
    (tmp_path / "noisy_trainer.py").write_text(TRAINER)
    path = tmp_path / "planned.yaml"
    stages = "confirm: {top: 2, seeds: 3}\nfinal: {holdout: test, seeds: 2}"
    path.write_text(USER_SEARCH.format(seeds=3, stages=stages))
    lines, plan = plan_text_and_json(path, capsys)
    # budget.trials caps num_samples 10 at 8 configurations, each at 3 seeds; the stages add 2 x 3 + 2 trials.
    assert (plan["search_trials"], plan["seeds_per_trial"], plan["stage_trials"], plan["trials"]) == (8, 3, 8, 16)
    assert plan["epochs_to_train"] == (8 * 3 + 8) * 8  # at most: nothing stopped
    assert plan["scheduler"]["judged_at"] == [[1, 2, 4]]
    assert plan["epochs_per_configuration"] == pytest.approx(25.5 / 8)
    assert plan["epochs_per_configuration_long_run"] == pytest.approx(2.5)
    assert plan["epochs_expected"] == pytest.approx(25.5 * 3 + 8 * 8)  # the stages train every epoch
    assert plan["cpu_hours"] is None  # a trainer of one's own is not timed
    assert lines[0].startswith("search 'planned': up to 16 trials (8 searched x 3 seeds side by side")
    assert "judged at epochs 1, 2, 4 of 8; expected 3.19 epochs per configuration for these 8" in lines[1]
    assert "2.50 in a long search (1 in 2 continues past each rung)" in lines[1]
    assert lines[2] == "expected 140.5 epochs to train: 8 configurations x 3 seed(s) x 3.19 + 8 stage trials x 8"
    assert lines[3].startswith("no time estimate for a trainer of your own")
    scheduler = "scheduler: {mode: asha, grace_period: 1, reduction_factor: 2, max_t: 8}"
    path.write_text(USER_SEARCH.format(seeds=1, stages="").replace(scheduler, "fixed: {epochs: 8}"))
    lines, plan = plan_text_and_json(path, capsys)
    assert plan["epochs_expected"] == plan["epochs_to_train"] == 8 * 8 and "no scheduler" in lines[1]


def test_a_keras_search_plan_times_its_searched_sizes_and_stops_at_its_budget(tmp_path, monkeypatch, capsys):
    home = build_tiny_data_home(tmp_path / "data", versions=("bydate",))
    calls = []

    def no_network(url, timeout):
        calls.append(url)
        raise OSError(f"no network in this test ({url})")

    monkeypatch.setattr(paths, "_open_url", no_network)
    path = tmp_path / "keras.yaml"
    path.write_text(KERAS_SEARCH.format(budget=""))
    options = ("--data-dir", str(home), "--cache-dir", str(tmp_path / "cache"))
    lines, plan = plan_text_and_json(path, capsys, *options)
    assert plan["calibration_cached"] is True  # the text plan timed it; the JSON plan read the cache
    # learning_rate does not change an epoch's cost; filters is timed at its low, its log mean and its high.
    drivers = {driver["factor"]: driver for driver in plan["cost_drivers"]}
    assert list(drivers) == ["batch_size", "filters"]
    assert [value for value, _ in drivers["filters"]["timed"]] == [4, round(28 / math.log(8)), 32]
    assert [value for value, _ in drivers["batch_size"]["timed"]] == [4, 16]
    assert drivers["batch_size"]["timed"][1][1] == pytest.approx(1.0)  # 16 is the start point's
    assert drivers["batch_size"]["expected"] == pytest.approx((drivers["batch_size"]["timed"][0][1] + 1) / 2)
    assert drivers["filters"]["expected"] == pytest.approx(drivers["filters"]["timed"][1][1])
    # Judged at epochs 1 and 2 of 4 with eta 2: the first trains 4 epochs, each later one 1 + 1/2 + 2/4 = 2.
    epochs = [0, 4, 6, 8, 10, 12, 14]
    search_seconds, final_seconds = plan["epoch_cpu_seconds"]["search"], plan["epoch_cpu_seconds"]["final"]
    for level in ("low", "expected", "high"):
        scale = math.prod(driver[level] for driver in drivers.values())
        found = plan["levels"][level]
        assert found["configurations"] == 6 and found["epochs"] == pytest.approx(14)
        assert found["search_cpu_hours"] == pytest.approx(14 * search_seconds * scale / 3600)
        # confirm: 1 x 2 seeds; final (bydate's test set, every training file): its 2 seeds, all 4 epochs.
        assert found["stage_cpu_hours"] == pytest.approx(4 * scale * (2 * search_seconds + 2 * final_seconds) / 3600)
    assert final_seconds > search_seconds  # the final stage reads every training file and the test set
    levels = plan["levels"]
    assert levels["low"]["cpu_hours"] <= levels["expected"]["cpu_hours"] <= levels["high"]["cpu_hours"]
    assert plan["missing"] == [] and calls == []
    assert lines[3].startswith(f"estimated {plan['levels']['expected']['cpu_hours']:.2f} CPU hours (")
    assert "the start point's cost times batch_size x" in lines[3] and ", filters x" in lines[3]
    # A budget a little above what the first 3 configurations are expected to cost: the 4th is the last suggested.
    cost = search_seconds * math.prod(driver["expected"] for driver in drivers.values()) / 3600
    path.write_text(KERAS_SEARCH.format(budget=f"budget: {{cpu_hours: {1.01 * epochs[3] * cost!r}}}"))
    lines, plan = plan_text_and_json(path, capsys, *options)
    expected = plan["levels"]["expected"]
    assert expected["configurations"] == 4 and expected["epochs"] == pytest.approx(epochs[4])
    assert expected["search_cpu_hours"] == pytest.approx(epochs[4] * cost)
    assert plan["levels"]["low"]["configurations"] >= 4 >= plan["levels"]["high"]["configurations"]
    assert plan["budget_stops_search"] is True
    assert plan["epochs_expected"] == pytest.approx(epochs[4] + 4 * 4)
    assert [line for line in lines if line.startswith("budget ")] == [
        line for line in lines if "the search stops suggesting after about 4 of 6 configurations" in line]
    assert len([line for line in lines if line.startswith("budget ")]) == 1 and calls == []


def honest_best(folder: pathlib.Path) -> pathlib.Path:
    """sweeps/honest-best.yaml; a copy at one seed where this checkout refuses the Keras network's seeds: 2 (a trial
    of it cannot hold two seeds until its seeds take turns)."""
    path = ROOT / "sweeps" / "honest-best.yaml"
    try:
        spec_module.load_sweep(path)
        return path
    except ValueError as error:
        if "keeps process-wide state" not in str(error):
            raise
    copy = folder / path.name
    copy.write_text(path.read_text().replace("\nseeds: 2\n", "\nseeds: 1\n"))
    return copy


def test_the_honest_best_search_plans_offline_in_its_smoke_variant(tmp_path, shared_data, monkeypatch, capsys):
    calls = []

    def no_network(url, timeout):
        calls.append(url)
        raise OSError(f"no network in this test ({url})")

    monkeypatch.setattr(paths, "_open_url", no_network)
    lines, plan = plan_text_and_json(honest_best(tmp_path), capsys, "--smoke-test", "--data-dir", str(shared_data),
                                     "--cache-dir", str(tmp_path / "cache"))
    assert calls == [] and plan["missing"] == []  # GloVe 50d comes from the offline package
    # Each searched factor held at one value: one configuration; the confirm stage's one on 5 seeds, the final's 5.
    assert (plan["search_trials"], plan["stage_trials"], plan["seeds_per_trial"]) == (1, 10, 1)
    assert lines[0].startswith("search 'honest-best': up to 11 trials (1 searched + 10 in its confirm and final")
    assert [driver["factor"] for driver in plan["cost_drivers"]] == ["batch_size", "embedding", "architecture", "max_sequence_length", "filters"]
    levels = plan["levels"]
    assert levels["low"]["cpu_hours"] == pytest.approx(levels["high"]["cpu_hours"]) and levels["low"]["cpu_hours"] > 0
    assert plan["epochs_expected"] == plan["epochs_to_train"] == 11 * 2  # its only rung is at max_t
    assert len([line for line in lines if line.startswith("estimated ")]) == 1
