"""A search's Tune side: Optuna's samplers through Ray Tune's ``OptunaSearch``, each suggestion made a glovesweep
trial, the scheduler, the budget.

- ``tpe``: ``optuna.samplers.TPESampler(seed=search.seed, constant_liar=True)``: trials running side by side are
  told a pessimistic value while they run, so parallel workers do not all get the same suggestion.
- ``random`` over distributions: ``optuna.samplers.RandomSampler(seed)`` (seed: ``search.seed``, else from the
  sweep file's hash).
- ``start_from`` configurations are enqueued first (``OptunaSearch``'s ``points_to_evaluate``).

``TrialSearcher`` wraps ``OptunaSearch``: each suggested configuration becomes a ``Trial`` (values typed and
rounded per factor, ``SweepSpec.search_trial``) handed to Tune as the same ``TrialTask`` a grid uses, so a trial
finds its MLflow child run by its stable key, and ``resume`` reads it back without a pickle. A suggestion equal to
a configuration already run is told its known result and replaced by the next one (no configuration trains
twice). It stops suggesting at ``num_samples`` / ``budget.trials`` or once ``budget.cpu_hours`` is spent (wall
time x CPUs of each trial, from the trials' own ``time_total_s``); running trials then finish.

On ``resume`` a fresh study is told every finished trial (``optuna.trial.create_trial`` with each trial's own
distributions, so conditional factors work; ``Study.add_trial``), and trials that were running are enqueued
first with their parameters, re-created rather than re-suggested.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from ray import tune
from ray.tune import search as tune_search

from sweeps import spec as spec_module
from sweeps.spec import space as space_module
from sweeps.run import rungs
from sweeps.run import search_history
from sweeps.run import trial as trial_module

logger = logging.getLogger(__name__)

STUDY_NAME = "glovesweep"
# How many suggestions in a row may repeat a configuration already run before the space counts as exhausted.
MAX_REPEATS = 100


def sampler_seed(spec: spec_module.SweepSpec) -> int:
    """``search.seed``, else a number from the sweep file's hash (the same file draws the same suggestions)."""
    seed = spec.search.get("seed")
    return int(seed) if seed is not None else int(spec.source_sha256[:8], 16)


def define_space(spec: spec_module.SweepSpec):
    """Optuna's define-by-run space: each factor suggested in file order where its ``when`` holds."""
    def define(trial) -> None:
        drawn: dict[str, Any] = {}
        for name, distribution in spec.space.items():
            if distribution.applies(drawn):
                drawn[name] = suggest(trial, name, distribution)
        return None

    return define


def suggest(trial, name: str, distribution) -> Any:
    """One ``suggest_*`` call of an Optuna trial for ``distribution``."""
    if distribution.kind == "choice":
        return trial.suggest_categorical(name, list(distribution.values))
    if distribution.kind == "int":
        return trial.suggest_int(name, int(distribution.low), int(distribution.high), step=int(distribution.step or 1),
                                 log=distribution.log)
    return trial.suggest_float(name, distribution.low, distribution.high, step=distribution.step, log=distribution.log)


def make_study(spec: spec_module.SweepSpec, finished: list[search_history.PastTrial]):
    """A fresh in-memory study with its sampler, told every finished trial; returns (storage, sampler)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    seed = sampler_seed(spec)
    if spec.search["mode"] == "tpe":
        sampler = optuna.samplers.TPESampler(seed=seed, constant_liar=True)
    else:
        sampler = optuna.samplers.RandomSampler(seed=seed)
    storage = optuna.storages.InMemoryStorage()
    direction = "maximize" if spec.objective["mode"] == "max" else "minimize"
    study = optuna.create_study(storage=storage, sampler=sampler, study_name=STUDY_NAME, direction=direction)
    for past in finished:
        good = past.value is not None and math.isfinite(past.value)
        study.add_trial(optuna.trial.create_trial(
            params=dict(past.trial.cell), value=past.value if good else None,
            state=optuna.trial.TrialState.COMPLETE if good else optuna.trial.TrialState.FAIL,
            distributions={name: space_module.optuna_distribution(spec.space[name]) for name in past.trial.cell}))
    return storage, sampler


class TrialSearcher(tune_search.Searcher):
    """Tune's searcher for a glovesweep search (see the module docstring); never saved (resume reads MLflow).

    Parameters
    ----------
    spec : SweepSpec
        A search (``spec.searched``).
    past : list of PastTrial
        What earlier drivers of this search started (``search_history.past_trials``); empty in a first run.
    resume_from : dict of str to list of str
        Trial key -> earlier checkpoints (``resume``).
    """

    def __init__(self, spec: spec_module.SweepSpec, past: list[search_history.PastTrial] = (), *,
                 resume_from: dict[str, list[str]] | None = None) -> None:
        from ray.tune.search import optuna as tune_optuna

        metric, mode = spec.objective["metric"], spec.objective["mode"]
        super().__init__(metric=metric, mode=mode)
        self.spec = spec
        self.resume_from = resume_from or {}
        self.finished = {past_trial.trial.key: past_trial for past_trial in past if past_trial.finished}
        self.recreate = [past_trial.trial for past_trial in past if not past_trial.finished]
        self.pending = {trial.key for trial in self.recreate}
        self.started = {past_trial.trial.key for past_trial in past}
        self.limit = spec.total_trials
        self.count = len(self.started)
        self.prior_cpu_seconds = sum(past_trial.cpu_seconds for past_trial in past)
        self.trial_seconds: dict[str, float] = {}
        self.inner_ids: dict[str, str] = {}
        self.exhausted_said = False
        storage, sampler = make_study(spec, list(self.finished.values()))
        points = [dict(trial.cell) for trial in self.recreate]
        points += [point for point in spec.start_from if not self.covered(point)]
        self.inner = tune_optuna.OptunaSearch(space=define_space(spec), metric=metric, mode=mode, sampler=sampler,
                                              storage=storage, study_name=STUDY_NAME, points_to_evaluate=points)

    def covered(self, point: dict[str, Any]) -> bool:
        """Whether a trial already started agrees with a ``start_from`` point on every factor it names."""
        cells = [past.trial.cell for past in self.finished.values()] + [trial.cell for trial in self.recreate]
        return any(all(cell.get(name) == value for name, value in point.items()) for cell in cells)

    @property
    def remaining(self) -> int:
        """Tune trials this run may still create: the re-created ones and the new ones up to the limit."""
        return max(0, self.limit - self.count) + len(self.pending)

    def cpu_hours(self) -> float:
        """CPU hours held by this search so far: earlier drivers' trials and this run's."""
        return (self.prior_cpu_seconds + sum(self.trial_seconds.values()) * self.spec.resources["cpu"]) / 3600.0

    def budget_spent(self) -> bool:
        budget = self.spec.budget.get("cpu_hours")
        if budget is None or self.cpu_hours() < budget:
            return False
        if not self.exhausted_said:
            print(f"glovesweep: the budget of {budget:g} CPU hours is spent ({self.cpu_hours():.3g}); no new trials, "
                  f"running ones finish", flush=True)
            self.exhausted_said = True
        return True

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # Metric, mode and space come from the sweep file; Tune's param space is empty.

    def suggest(self, trial_id: str):
        if not self.pending and (self.count >= self.limit or self.budget_spent()):
            return tune_search.Searcher.FINISHED
        for attempt in range(MAX_REPEATS):
            inner_id = f"{trial_id}-{attempt}"
            values = self.inner.suggest(inner_id)
            trial = self.spec.search_trial(values)
            if trial.key in self.pending:
                self.pending.discard(trial.key)
            elif trial.key in self.finished:
                # Already trained: the searcher learns its result again and suggests the next one.
                self.inner.on_trial_complete(inner_id, {self.metric: self.finished[trial.key].value})
                continue
            elif trial.key in self.started:
                self.inner.on_trial_complete(inner_id, None)  # Running now: told as pruned, never run twice.
                continue
            else:
                self.count += 1
            self.started.add(trial.key)
            self.inner_ids[trial_id] = inner_id
            # With seeds: k, the configuration is one trial training its k seeds side by side (seed_group).
            seeds = tuple(self.spec.seeds) if self.spec.seeds_side_by_side > 1 else ()
            task = trial_module.TrialTask(trial=trial, resume_from=tuple(self.resume_from.get(trial.key, ())),
                                          seeds=seeds)
            return {trial_module.TASK_KEY: task.as_param()}
        print(f"glovesweep: {MAX_REPEATS} suggestions in a row repeated configurations already run; the search "
              f"space is exhausted", flush=True)
        return tune_search.Searcher.FINISHED

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self.trial_seconds[trial_id] = float(result.get("time_total_s", 0.0))
        if trial_id in self.inner_ids and self.metric in result:
            self.inner.on_trial_result(self.inner_ids[trial_id], result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if result:
            self.trial_seconds[trial_id] = float(result.get("time_total_s", self.trial_seconds.get(trial_id, 0.0)))
        if trial_id in self.inner_ids:
            usable = result if result and self.metric in result else None
            self.inner.on_trial_complete(self.inner_ids.pop(trial_id), usable, error=error)

    def save_to_dir(self, checkpoint_dir: str, session_str: str = "default") -> None:
        """Nothing: ``resume`` rebuilds the searcher from MLflow, so no pickle of it is written or read."""

    def restore_from_dir(self, checkpoint_dir: str) -> None:
        raise RuntimeError("a glovesweep search is resumed from MLflow (glovesweep resume), never from a pickle")


def make_scheduler(spec: spec_module.SweepSpec):
    """Ray Tune's ASHA, or its asynchronous HyperBand (several brackets, no pausing), on the objective; or None.

    Time is the trial's ``epoch`` (what each report carries; a resumed trial continues its count).
    """
    settings = spec.scheduler
    if settings is None:
        return None
    from ray.tune import schedulers

    return schedulers.AsyncHyperBandScheduler(time_attr="epoch", metric=spec.objective["metric"],
                                              mode=spec.objective["mode"], max_t=settings["max_t"],
                                              grace_period=settings["grace_period"],
                                              reduction_factor=settings["reduction_factor"],
                                              brackets=rungs.bracket_count(settings))


def tune_config_and_space(spec: spec_module.SweepSpec, resume_from: dict[str, list[str]] | None = None,
                          trials: list[spec_module.Trial] | None = None,
                          searcher: TrialSearcher | None = None) -> tuple[tune.TuneConfig, dict[str, Any]]:
    """Tune's settings, and one grid entry per trial where the trial list is drawn up front (grid, random cells,
    asha); a search's trials come from its ``TrialSearcher`` instead (``searcher``, default a fresh one).

    ``resume_from`` maps a trial key to its earlier checkpoints (``resume``); ``trials`` defaults to all.
    """
    # Reused workers keep TensorFlow imported and initialised: a trial starts in about a second, not ten.
    common = {"max_concurrent_trials": spec.max_concurrent_trials or None,
              "trial_dirname_creator": trial_dirname, "reuse_actors": True,
              "scheduler": make_scheduler(spec)}
    if spec.searched:
        searcher = searcher or TrialSearcher(spec, resume_from=resume_from)
        return tune.TuneConfig(search_alg=searcher, num_samples=searcher.remaining, **common), {}
    tasks = [trial_module.TrialTask(trial=trial, resume_from=tuple((resume_from or {}).get(trial.key, ())))
             for trial in (spec.trials() if trials is None else trials)]
    space = trial_module.param_space(tasks)
    if spec.search["mode"] != "asha":
        return tune.TuneConfig(num_samples=1, **common), space
    from ray.tune import schedulers

    common["scheduler"] = schedulers.ASHAScheduler(time_attr="training_iteration", max_t=spec.max_epochs,
                                                   grace_period=spec.search["grace_period"])
    return tune.TuneConfig(num_samples=1, metric=spec.objective["metric"], mode=spec.objective["mode"],
                           **common), space


def budget_text(spec: spec_module.SweepSpec) -> str:
    """``, budget 6 CPU hours`` (empty without a CPU-hour budget; the trial budget is in the count)."""
    hours = spec.budget.get("cpu_hours")
    return f", budget {hours:g} CPU hours" if hours else ""


def trial_dirname(trial) -> str:
    """Short, filesystem-safe trial folder names (Tune's default embeds the whole config)."""
    return f"trial_{trial.trial_id}"
