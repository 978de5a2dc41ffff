"""``glovesweep plan`` of a search: its trials and epochs, what its scheduler is expected to save, and, for the Keras
network, its CPU hours as a range over the searched factors that shape an epoch's cost, capped by its budget.

- **Trainings.** ``num_samples`` configurations (capped by ``budget.trials``), each training ``seeds: k`` side by
  side, then the confirm and final stages' trials (one seed each, every one to the last epoch, no scheduler).
- **Epochs.** The scheduler's expected epochs per configuration (``sweeps.run.rungs``: Ray's rung positions; the
  long-run ``1/eta`` continuing past each rung, and the expectation for this many configurations, where the first
  to reach a rung always continues).
- **Cost.** The grid plan's calibration (``sweeps.run.calibration``: seconds per document of the network, times
  the documents an epoch reads, times the trial's CPUs) at a start point (``start_from``'s first configuration,
  else each choice's first value and each range's mean), and at each value of each searched factor that shapes
  an epoch's cost (a choice's values; a range's low, mean and high), one factor at a time. The low and high ends
  multiply each factor's cheapest and dearest ratio to the start point; the expected cost multiplies a choice's
  mean ratio (its values equally likely) and a range's ratio at its mean.
- **Budget.** ``budget.cpu_hours`` counts the search (wall x CPUs of its trials, as ``sweeps.run.searcher``
  does): the search stops suggesting once the expected cost of the configurations run so far reaches it; the
  stages come after it.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

from sweeps import spec as spec_module
from sweeps.run import calibration
from sweeps.run import rungs
from sweeps.spec import stages

LEVELS = ("low", "expected", "high")


@dataclasses.dataclass(frozen=True)
class CostDriver:
    """How one searched factor moves an epoch's cost: ``timed`` (value, ratio to the start point's cost) pairs, and
    the ``low``, ``high`` and ``expected`` ratios taken from them."""

    factor: str
    timed: tuple[tuple[Any, float], ...]
    expected: float

    @property
    def low(self) -> float:
        return min(ratio for _, ratio in self.timed)

    @property
    def high(self) -> float:
        return max(ratio for _, ratio in self.timed)

    def ratio(self, level: str) -> float:
        return {"low": self.low, "high": self.high, "expected": self.expected}[level]


@dataclasses.dataclass(frozen=True)
class Level:
    """The search at one cost level: how many configurations run before the budget stops it (all without one), the
    epochs they train (every seed), and the CPU hours of the search and of its stages."""

    configurations: int
    epochs: float
    search_cpu_hours: float
    stage_cpu_hours: float

    @property
    def cpu_hours(self) -> float:
        return self.search_cpu_hours + self.stage_cpu_hours


@dataclasses.dataclass(frozen=True)
class SearchPlan:
    """A search's plan: ``levels`` (low, expected, high cost) is empty where no time is estimated (a trainer of
    one's own); ``expected_epochs[m]`` is the first ``m`` configurations' expected epochs (one seed each);
    ``epoch_cpu_seconds`` is one epoch of one seed at the start point, on the search's data and the final stage's."""

    spec: spec_module.SweepSpec
    schedule: rungs.Schedule
    expected_epochs: tuple[float, ...]
    drivers: tuple[CostDriver, ...] = ()
    levels: dict[str, Level] = dataclasses.field(default_factory=dict)
    epoch_cpu_seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    calibration_cached: bool = False
    missing: tuple[str, ...] = ()

    @property
    def configurations(self) -> int:
        return configurations(self.spec)

    @property
    def stage_trials(self) -> int:
        return stage_trials(self.spec)

    @property
    def seeds(self) -> int:
        return self.spec.seeds_side_by_side

    @property
    def stage_epochs(self) -> int:
        return self.stage_trials * self.spec.max_epochs

    @property
    def epochs_at_most(self) -> int:
        """Every configuration and stage trial to the last epoch, every seed."""
        return (self.configurations * self.seeds + self.stage_trials) * self.spec.max_epochs

    @property
    def per_configuration(self) -> float:
        return self.expected_epochs[-1] / max(1, self.configurations)

    @property
    def epochs_expected(self) -> float:
        """Expected epochs of every training (seeds and stages), the budget applied at the expected cost."""
        run = self.levels["expected"].configurations if self.levels else self.configurations
        return self.expected_epochs[run] * self.seeds + self.stage_epochs

    @property
    def budget_cpu_hours(self) -> float | None:
        return self.spec.budget.get("cpu_hours")

    def to_json(self) -> dict[str, Any]:
        """The plan's JSON (``glovesweep plan --json``): the grid plan's keys (``epochs_to_train`` is the most,
        ``cpu_hours`` the expected cost) plus the scheduler's, the range's and the budget's."""
        spec, schedule = self.spec, self.schedule
        trainings = self.configurations * self.seeds + self.stage_trials
        expected = self.levels.get("expected")
        return {
            "sweep": spec.name, "trainer": spec.trainer, "trials": self.configurations + self.stage_trials,
            "networks": trainings, "baselines": 0, "to_train": trainings, "merged": [],
            "epochs_to_train": self.epochs_at_most, "seeds_per_trial": self.seeds,
            "search_trials": self.configurations, "stage_trials": self.stage_trials,
            "scheduler": {"mode": schedule.mode, "max_t": schedule.max_t, "reduction_factor": schedule.reduction_factor,
                          "rungs": [list(bracket) for bracket in schedule.rungs],
                          "judged_at": [list(bracket) for bracket in schedule.judged],
                          "bracket_probabilities": list(schedule.probabilities)},
            "epochs_per_configuration": round(self.per_configuration, 4),
            "epochs_per_configuration_long_run": round(schedule.long_run_epochs(), 4),
            "epochs_expected": round(self.epochs_expected, 2),
            "cpu_seconds": round(expected.cpu_hours * 3600, 1) if expected else None,
            "cpu_hours": round(expected.cpu_hours, 3) if expected else None,
            "cpu_hours_low": round(self.levels["low"].cpu_hours, 3) if expected else None,
            "cpu_hours_high": round(self.levels["high"].cpu_hours, 3) if expected else None,
            "epoch_cpu_seconds": self.epoch_cpu_seconds,
            "levels": {name: dict(dataclasses.asdict(level), cpu_hours=level.cpu_hours)
                       for name, level in self.levels.items()},
            "cost_drivers": [{"factor": driver.factor, "low": driver.low, "high": driver.high,
                              "expected": driver.expected, "timed": [list(pair) for pair in driver.timed]}
                             for driver in self.drivers],
            "budget_cpu_hours": self.budget_cpu_hours,
            "budget_stops_search": bool(expected) and any(level.configurations < self.configurations
                                                          for level in self.levels.values()),
            "calibration_cached": self.calibration_cached, "cpu": calibration.cpu_model(),
            "missing": list(self.missing), "unchecked": 0,
        }

    def lines(self, sweep_file: str) -> list[str]:
        """The plan as text, one statement a line."""
        spec, schedule, seeds = self.spec, self.schedule, self.seeds
        together = "taking turns in one trial" if spec.main_trainer.takes_turns else \
            f"side by side (one trial's CPUs train all {seeds})"
        side = f" x {seeds} seeds {together}" if seeds > 1 else ""
        stages_text = f" ({self.configurations} searched{side} + {self.stage_trials} in its confirm and final " \
                      f"stages)" if self.stage_trials else side
        found = [f"search {spec.name!r}: up to {self.configurations + self.stage_trials} trials{stages_text} of "
                 f"trainer {spec.trainer!r}, at most {self.epochs_at_most} epochs in all"]
        found.append(scheduler_text(schedule, self.configurations, self.per_configuration))
        stage = f" + {self.stage_trials} stage trials x {spec.max_epochs}" if self.stage_trials else ""
        run = self.levels["expected"].configurations if self.levels else self.configurations
        found.append(f"expected {self.epochs_expected:.1f} epochs to train: {run} configurations x {seeds} seed(s) x "
                     f"{self.expected_epochs[run] / max(1, run):.2f}{stage}")
        if not self.levels:
            found.append(f"no time estimate for a trainer of your own: time one trial with 'glovesweep run "
                         f"{sweep_file} --smoke-test'")
            return found
        low, expected, high = (self.levels[name] for name in LEVELS)
        drivers = ", ".join(f"{driver.factor} x{driver.low:.2f}-{driver.high:.2f}" for driver in self.drivers)
        spread = f" (range {low.cpu_hours:.2f}-{high.cpu_hours:.2f}: the start point's cost times {drivers})" \
            if drivers else " (no searched factor changes an epoch's cost)"
        slots = concurrent_trials(spec)
        measured = "cached" if self.calibration_cached else "measured now"
        wall = expected.cpu_hours / spec.resources["cpu"] / slots
        found.append(f"estimated {expected.cpu_hours:.2f} CPU hours{spread} on this machine "
                     f"({calibration.cpu_model()}; calibration {measured}): the search "
                     f"{expected.search_cpu_hours:.2f}, its stages {expected.stage_cpu_hours:.2f}; about {wall:.2f} h "
                     f"of wall with {slots} trial(s) at once")
        if self.budget_cpu_hours:
            found.append(budget_text(self.budget_cpu_hours, self.configurations, low, expected, high))
        if self.missing:
            found.append(f"timed on stand-ins for {', '.join(self.missing)}: not on this machine (a plan never "
                         f"downloads; 'glovesweep run' fetches them, or give --data-dir)")
        return found


def configurations(spec: spec_module.SweepSpec) -> int:
    """Configurations the search can run: ``num_samples`` (capped by ``budget.trials``), at most as many as its
    space holds where every searched factor is a choice (a smoke variant holding each at one value runs one)."""
    if all(distribution.kind == "choice" for distribution in spec.space.values()):
        return min(spec.total_trials, math.prod(len(distribution.values) for distribution in spec.space.values()))
    return spec.total_trials


def stage_trials(spec: spec_module.SweepSpec) -> int:
    """Trials of the stages: the confirm stage's best configurations (at most as many as ran) on its seeds, and
    the final stage's seeds."""
    confirm = min(spec.confirm.top, configurations(spec)) * len(spec.confirm.seeds) if spec.confirm else 0
    return confirm + (len(spec.final.seeds) if spec.final else 0)


def scheduler_text(schedule: rungs.Schedule, configurations: int, per_configuration: float) -> str:
    """One line: where the scheduler judges, and the epochs it is expected to leave per configuration."""
    if schedule.mode == "none":
        return f"no scheduler: every configuration trains {schedule.max_t} epochs"
    if not any(schedule.judged):
        return f"scheduler {schedule.mode}: no rung below max_t {schedule.max_t}; every configuration trains it all"
    brackets = "; ".join(f"epochs {', '.join(map(str, judged)) or 'none'}"
                         + (f" (probability {probability:.2f})" if len(schedule.judged) > 1 else "")
                         for judged, probability in zip(schedule.judged, schedule.probabilities))
    where = f"{len(schedule.judged)} brackets judged at {brackets}" if len(schedule.judged) > 1 else \
        f"judged at {brackets}"
    return (f"scheduler {schedule.mode}: {where} of {schedule.max_t}; expected {per_configuration:.2f} epochs per "
            f"configuration for these {configurations} (the first to reach a rung always continues), "
            f"{schedule.long_run_epochs():.2f} in a long search (1 in {schedule.reduction_factor:g} continues past "
            f"each rung); an expectation: a searcher whose later suggestions are better lets more through")


def budget_text(hours: float, configurations: int, low: Level, expected: Level, high: Level) -> str:
    if high.configurations >= configurations:
        return f"budget {hours:g} CPU hours: not reached (the search costs at most {high.search_cpu_hours:.2f})"
    return (f"budget {hours:g} CPU hours: the search stops suggesting after about {expected.configurations} of "
            f"{configurations} configurations at the expected cost ({high.configurations} at the high, "
            f"{low.configurations} at the low); trials running then finish, and the stages come after it")


def concurrent_trials(spec: spec_module.SweepSpec) -> int:
    """Trials at once on this machine: what its CPUs hold, at most ``max_concurrent_trials``."""
    slots = max(1, math.floor((os.cpu_count() or 1) / spec.resources["cpu"]))
    return min(slots, spec.max_concurrent_trials or slots)


def make_search_plan(spec: spec_module.SweepSpec, *, data_home=None, cache_dir=None,
                     recalibrate: bool = False) -> SearchPlan:
    """The plan of a search; the Keras network's is timed (nothing is downloaded), a trainer of one's own's is not."""
    schedule = rungs.schedule(spec.scheduler, spec.max_epochs)
    expected_epochs = tuple(schedule.expected_epochs(configurations(spec)))
    plan = SearchPlan(spec=spec, schedule=schedule, expected_epochs=expected_epochs)
    if not spec.main_trainer.prepares_data:
        return plan
    data_sets = calibration.DataSets(data_home=data_home, cache_dir=cache_dir)
    cached = [True]

    def epoch_seconds(values: dict[str, Any], stage: str = "") -> float:
        """CPU seconds of one epoch of one seed of the configuration ``values`` (in ``stage``'s settings)."""
        trial = spec.search_trial(values)
        config = spec.trial_config(dataclasses.replace(trial, stage=stage))
        data = data_sets.of(config)
        per_document, hit = calibration.seconds_per_document(config, data.calibration, cpus=spec.resources["cpu"],
                                                             cache_dir=cache_dir, recalibrate=recalibrate)
        cached[0] = cached[0] and hit
        return per_document * data.documents * spec.resources["cpu"]

    start = start_point(spec)
    search_epoch = epoch_seconds(start)
    final_epoch = epoch_seconds(start, stages.FINAL) if spec.final else search_epoch
    drivers = tuple(cost_driver(spec, name, start, search_epoch, epoch_seconds) for name in spec.space
                    if name in calibration.SHAPE_FACTORS)
    levels = {}
    for level in LEVELS:
        scale = math.prod(driver.ratio(level) for driver in drivers)
        per_epoch = search_epoch * scale * spec.seeds_side_by_side
        run = budget_stop(expected_epochs, per_epoch, spec.budget.get("cpu_hours"))
        finals = len(spec.final.seeds) if spec.final else 0
        confirm = stage_trials(spec) - finals
        stage_seconds = spec.max_epochs * scale * (confirm * search_epoch + finals * final_epoch)
        levels[level] = Level(configurations=run, epochs=expected_epochs[run] * spec.seeds_side_by_side,
                              search_cpu_hours=expected_epochs[run] * per_epoch / 3600,
                              stage_cpu_hours=stage_seconds / 3600)
    return dataclasses.replace(plan, drivers=drivers, levels=levels, calibration_cached=cached[0],
                               missing=tuple(sorted(data_sets.missing)),
                               epoch_cpu_seconds={"search": search_epoch, "final": final_epoch})


def budget_stop(expected_epochs: tuple[float, ...], epoch_cpu_seconds: float, hours: float | None) -> int:
    """Configurations a search runs: all of them, or the first whose expected cumulative cost reaches ``hours`` (the
    searcher suggests while the hours spent are below the budget)."""
    if not hours:
        return len(expected_epochs) - 1
    for count in range(1, len(expected_epochs)):
        if expected_epochs[count] * epoch_cpu_seconds >= hours * 3600:
            return count
    return len(expected_epochs) - 1


def range_points(distribution, factor) -> tuple[list[Any], Any]:
    """The values a cost factor is timed at and its expected value: a choice's values (its first), or a range's
    low, mean and high (its mean; a log range's mean is ``(high - low) / ln(high / low)``)."""
    if distribution.kind == "choice":
        return list(distribution.values), distribution.values[0]
    low, high = distribution.low, distribution.high
    mean = (high - low) / math.log(high / low) if distribution.log else (low + high) / 2
    if distribution.step:
        mean = low + round((mean - low) / distribution.step) * distribution.step
    mean = distribution.typed(factor, round(mean) if factor.type is int else mean)
    points = [distribution.typed(factor, low), mean, distribution.typed(factor, high)]
    return list(dict.fromkeys(points)), mean


def start_point(spec: spec_module.SweepSpec) -> dict[str, Any]:
    """The configuration a search's cost is timed at first: ``start_from``'s first, else each cost factor's
    expected value (a choice's first value, a range's mean)."""
    declared = spec.main_trainer.factors
    point = {name: range_points(distribution, declared[name])[1] for name, distribution in spec.space.items()
             if name in calibration.SHAPE_FACTORS}
    point.update(spec.start_from[0] if spec.start_from else {})
    return point


def cost_driver(spec: spec_module.SweepSpec, name: str, start: dict[str, Any], start_seconds: float,
                epoch_seconds) -> CostDriver:
    """Factor ``name``'s ratios to the start point's epoch cost at each of its timed values (a value that makes no
    valid network with the start point's other settings is left out)."""
    distribution = spec.space[name]
    values, mean = range_points(distribution, spec.main_trainer.factors[name])
    timed = []
    for value in values:
        try:
            timed.append((value, epoch_seconds(dict(start, **{name: value})) / start_seconds))
        except ValueError:
            continue  # e.g. blog_flatten with too short a sequence: the search's sampler meets it as a failed trial
    if not timed:
        return CostDriver(name, ((start.get(name), 1.0),), 1.0)
    ratios = dict(timed)
    expected = sum(ratios.values()) / len(ratios) if distribution.kind == "choice" else ratios.get(mean, 1.0)
    return CostDriver(name, tuple(timed), expected)
