"""Statistics of a search (a sweep whose factors are distributions): its trials, the best, the history, and each
factor's importance with an interval.

A search has no cells to compare, so its report asks what Optuna's and W&B's users ask of theirs: which
configuration is best, how the search got there, and which factors matter. The frames are those of
``sweeps.report.reader`` (a search's ``SweepFrame.space`` is not empty); one trial is one child run.

- A trial's value is its objective at the largest epoch count it reached: the last value of a trial that its
  scheduler stopped early, as the searcher was told (``reader.run_rows``). A configuration trained at k seeds
  (``seeds: k``, one child run per seed sharing the configuration's ``glovesweep.cell``) is one trial: its value is
  the mean of its seeds' values, with their Student-t interval (``stats.t_interval``, clipped to the metric's
  bounds), as the searcher was told the mean.
- Importance is fANOVA as Optuna computes it (``optuna.importance.FanovaImportanceEvaluator``, normalized to sum
  to 1), on an Optuna study built from the finished trials with ``optuna.trial.create_trial`` and each factor's
  distribution. Where a scheduler stopped some trials early, their values stand at fewer epochs than the others',
  so the importance is computed on trials compared at one epoch count: those that ran to the last one (a stopped
  trial is a pruned trial, which Optuna leaves out of its importances), and beside it every trial at the first epoch
  count all of them reached (``epochs_importance``; values from the history, where the scheduler judged them).
  Its interval is a percentile bootstrap over trials (trials resampled with replacement, the forest refitted with
  a seed of its own each time, so the interval holds the forest's own noise too), seeded; Optuna gives a point
  value only (optuna#1233). Factors sampled only under a ``when`` are left out, as Optuna leaves
  out every parameter that is not in every trial.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import numpy as np
import pandas as pd

from sweeps.report import objective as objective_module
from sweeps.report import reader
from sweeps.report import stats
from sweeps.spec import space as space_module
from sweeps.spec import stages

TOP = 5
DEFAULT_IMPORTANCE_SAMPLES = 100  # about 0.3 s a refit of Optuna's default forest (64 trees) on 30 trials here
CONFIDENCE = 0.95
MIN_TRIALS = 4  # fewer finished trials give no importance: a forest on three points says nothing
FINISHED = "FINISHED"
PARTIAL_BINS = 6


@dataclasses.dataclass(frozen=True)
class Importance:
    """One factor's fANOVA importance: Optuna's value on every finished trial, and its bootstrap interval.

    ``value``, ``low``, ``high`` are fractions of the objective's variance that the factor's marginal explains,
    normalized over the factors (they sum to 1 across factors); ``resamples``: bootstrap refits that succeeded.
    """

    factor: str
    value: float
    low: float
    high: float
    resamples: int


@dataclasses.dataclass(frozen=True)
class EpochImportance:
    """The importances of ``trials`` finished trials compared at ``epochs`` epochs, and the factors left out."""

    epochs: int
    trials: int
    importances: list[Importance]
    left_out: dict[str, str]


@dataclasses.dataclass
class SearchTables:
    """What the search report shows.

    ``trials``: one row per trial of the search stage (a configuration, at all its seeds), in the order the trials
    started: ``number`` (0-based), ``run_id`` and ``trial_id`` (its first seed's), ``status``, ``epochs``
    (reached), ``value`` (the mean over its seeds), ``seeds`` (how many), ``low`` and ``high`` (the 95% t interval
    of that mean; NaN with one seed), ``configuration`` (its key, tag ``glovesweep.config_id``; empty in runs logged
    before it), ``best_so_far`` (over finished trials, in the metric's direction; NaN before the first) and one
    column per searched factor, typed (None where a ``when`` left it out). ``top``: the best finished trials, best
    first (at most ``TOP``). ``importances``: best first;
    ``left_out``: searched factors without an importance, with why.
    """

    factors: list[str]
    trials: pd.DataFrame
    top: pd.DataFrame
    importances: list[Importance]
    left_out: dict[str, str]
    bootstrap_samples: int
    seed: int
    # Trials the importances were computed on, and at which epoch count (None: the trials' counts differ or none);
    # ``stopped``: finished trials a scheduler stopped before that count, left out; ``first_rung``: the importances
    # of every finished trial at the first epoch count all reached (None where no trial was stopped early).
    importance_trials: int = 0
    importance_epochs: int | None = None
    stopped: int = 0
    first_rung: "EpochImportance | None" = None

    @property
    def best(self) -> pd.Series | None:
        return self.top.iloc[0] if len(self.top) else None

    @property
    def compared(self) -> str:
        """``the 10 trials that ran to 15 epochs``: the trials the importances compare, where a scheduler stopped
        some early; empty otherwise."""
        if not self.stopped:
            return ""
        return f"the {self.importance_trials} trials that ran to {self.importance_epochs} epochs"


def typed_value(distribution: space_module.Distribution, text: Any) -> Any:
    """A param's text (MLflow keeps params as text) as the distribution's value; None where it is absent."""
    if text is None or (isinstance(text, float) and math.isnan(text)) or text in ("", "None"):
        return None
    if distribution.kind == "choice":
        return next((value for value in distribution.values if str(value) == str(text)), str(text))
    return int(text) if distribution.kind == "int" else float(text)


def factor_value_text(value: Any) -> str:
    """A factor's value as the reports print it: 6 significant digits for a float (a choice of integers read back
    beside trials that lack it is a float column: 500.0 prints as 500)."""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def choice_position(distribution: space_module.Distribution, value: Any) -> int | None:
    """The index of ``value`` among a choice's values, None where it is absent or not one of them. Compared by
    equality, not text: a choice of integers that a ``when`` leaves out of some trials is a float column of the
    trials frame (500.0 is the choice 500)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return next((position for position, choice in enumerate(distribution.values) if choice == value), None)


def stage_rows(runs: pd.DataFrame, stage: str = stages.SEARCH) -> pd.Series:
    """True for the rows of a search's ``stage`` (``search``: its own trials, runs logged without a stage too)."""
    return runs["stage"].fillna(stages.SEARCH) == stage


def trials_frame(swept: reader.SweepFrame, stage: str = stages.SEARCH, *, at_epoch: int | None = None) -> pd.DataFrame:
    """One row per trial of a search's ``stage`` (see ``SearchTables.trials``), from the runs frame's rows; in
    the confirm and final stages, one row per configuration over its fresh seeds. ``at_epoch``: each run's value
    at that epoch from the history instead (NaN where the history has none), and ``epochs`` that count."""
    runs = swept.runs[~reader.reference_rows(swept.runs) & stage_rows(swept.runs, stage)]
    lasts = []
    for run_id, group in runs.groupby("run_id", sort=False):
        # The largest epoch count the run reached: the scheduler's max_t, or where it was stopped.
        lasts.append(group.loc[group["epochs"].fillna(0).astype(int).idxmax()] if group["epochs"].notna().any()
                     else group.iloc[-1])
    if at_epoch is not None:
        history = swept.history
        at = history[history["epoch"] == at_epoch].drop_duplicates("run_id").set_index("run_id")[reader.VALUE]
        lasts = [last.copy() for last in lasts]
        for last in lasts:
            last["value"], last["epochs"] = float(at.get(last["run_id"], math.nan)), at_epoch
    # The seeds of one configuration share its cell (the searched values); runs without one stand alone.
    configuration = [str(last["cell"]) if isinstance(last["cell"], str) and last["cell"] else last["run_id"]
                     for last in lasts]
    bounds = objective_module.bounds(swept.objective)
    rows = []
    for number, key in enumerate(dict.fromkeys(configuration)):
        members = [last for last, owner in zip(lasts, configuration) if owner == key]
        first = members[0]
        mean, low, high = stats.t_interval([float(last["value"]) for last in members], bounds=bounds)
        statuses = [last["status"] for last in members]
        epochs = [last["epochs"] for last in members]
        row = {"number": number, "run_id": first["run_id"], "trial_id": first["trial_id"],
               "status": next((status for status in statuses if status != FINISHED), FINISHED),
               "epochs": max(epochs) if all(pd.notna(item) for item in epochs) else first["epochs"],
               "value": mean, "seeds": len(members), "low": low, "high": high, "configuration": first["configuration"]}
        row.update({name: typed_value(distribution, first.get(name)) for name, distribution in swept.space.items()})
        rows.append(row)
    frame = pd.DataFrame(rows, columns=["number", "run_id", "trial_id", "status", "epochs", "value", "seeds", "low",
                                        "high", "configuration", *swept.space])
    frame["best_so_far"] = best_so_far(frame["value"].where(frame["status"] == FINISHED), swept.objective.mode)
    return frame


def best_so_far(values: Sequence[float], mode: str) -> np.ndarray:
    """The best value among the first i + 1 (``max`` or ``min``), NaN ignored; NaN until the first finite one."""
    values = np.asarray(values, dtype=float)
    signed = np.where(np.isnan(values), -np.inf, values if mode == "max" else -values)
    best = np.maximum.accumulate(signed) if len(signed) else signed
    best = np.where(np.isinf(best), np.nan, best)
    return best if mode == "max" else -best


def finished(trials: pd.DataFrame) -> pd.DataFrame:
    """The trials that finished with a finite value: what the best and the importances are computed from."""
    return trials[(trials["status"] == FINISHED) & np.isfinite(trials["value"].astype(float))]


def top_trials(trials: pd.DataFrame, mode: str, count: int = TOP) -> pd.DataFrame:
    """The ``count`` best finished trials, best first (ties: the earlier trial first)."""
    done = finished(trials)
    order = done.assign(key=done["value"] * (-1 if mode == "max" else 1)).sort_values(["key", "number"], kind="stable")
    return order.drop(columns="key").head(count)


def optuna_study(trials: pd.DataFrame, space: dict[str, space_module.Distribution], factors: Sequence[str], mode: str):
    """An Optuna study holding ``trials`` (finished ones, in order) over ``factors``: each trial added with
    ``optuna.trial.create_trial`` and the factors' distributions, as Optuna's own study would hold them."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize" if mode == "max" else "minimize")
    distributions = {name: space_module.optuna_distribution(space[name]) for name in factors}
    for _, trial in trials.iterrows():
        study.add_trial(optuna.trial.create_trial(params={name: trial[name] for name in factors},
                                                  distributions=distributions, value=float(trial["value"])))
    return study


def fanova(study, factors: Sequence[str], seed: int) -> dict[str, float]:
    """Optuna's fANOVA importances of ``factors`` (normalized to sum to 1) with the evaluator seeded."""
    import optuna

    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
    found = optuna.importance.get_param_importances(study, evaluator=evaluator, params=list(factors), normalize=True)
    return {name: float(found[name]) for name in factors}


def importances(trials: pd.DataFrame, space: dict[str, space_module.Distribution], mode: str, *,
                bootstrap_samples: int = DEFAULT_IMPORTANCE_SAMPLES,
                seed: int = 0) -> tuple[list[Importance], dict[str, str]]:
    """Each factor's fANOVA importance on the finished trials, with a percentile bootstrap interval over trials.

    Returns the importances (best first) and the factors left out, each with why.
    """
    done = finished(trials)
    left_out = {name: f"sampled only when {_when_text(distribution)}" for name, distribution in space.items()
                if done[name].isna().any()}
    factors = [name for name in space if name not in left_out]
    if len(done) < MIN_TRIALS or not factors:
        why = f"{len(done)} finished trials (importance needs {MIN_TRIALS})" if factors else "no factor in every trial"
        return [], dict(left_out, **{name: why for name in factors})
    point = fanova(optuna_study(done, space, factors, mode), factors, seed)
    random = np.random.default_rng(seed)
    draws = []
    for resample in range(bootstrap_samples):
        picked = done.iloc[random.integers(0, len(done), len(done))]
        if picked["value"].nunique() < 2:
            continue  # nothing varies: no variance to share out
        values = fanova(optuna_study(picked, space, factors, mode), factors, seed + 1 + resample)
        if all(math.isfinite(value) for value in values.values()):
            draws.append([values[name] for name in factors])
    draws = np.array(draws).reshape(-1, len(factors))
    tail = 100 * (1 - CONFIDENCE) / 2
    made = []
    for index, name in enumerate(factors):
        low, high = (np.percentile(draws[:, index], [tail, 100 - tail]) if len(draws) else (math.nan, math.nan))
        made.append(Importance(name, point[name], float(low), float(high), len(draws)))
    return sorted(made, key=lambda item: -item.value), left_out


def _when_text(distribution: space_module.Distribution) -> str:
    return "; ".join(f"{name} in {'|'.join(map(str, allowed))}" for name, allowed in distribution.when.items()) \
        or "some trials"


def partial_dependence(trials: pd.DataFrame, name: str, distribution: space_module.Distribution) -> pd.DataFrame:
    """The objective's mean over the finished trials per bin of one factor: its marginal as the trials saw it.

    A choice has one bin per value; a number, up to ``PARTIAL_BINS`` bins of equal trial counts (quantiles, on a
    log scale for a log distribution). Columns ``label``, ``center`` (a value, or the choice's position), ``low``,
    ``high``, ``mean``, ``count``.
    """
    done = finished(trials)
    done = done[done[name].notna()]
    if distribution.kind == "choice":
        rows = [{"label": str(value), "center": float(position), "low": float(position), "high": float(position),
                 "mean": done.loc[done[name] == value, "value"].mean(), "count": int((done[name] == value).sum())}
                for position, value in enumerate(distribution.values)]
        return pd.DataFrame(rows)
    values = done[name].astype(float).to_numpy()
    scaled = np.log10(values) if distribution.log else values
    edges = np.unique(np.quantile(scaled, np.linspace(0, 1, min(PARTIAL_BINS, max(len(values) // 3, 1)) + 1))) \
        if len(values) else np.array([])
    rows = []
    for index, (low, high) in enumerate(zip(edges[:-1], edges[1:])):
        inside = (scaled >= low) & ((scaled <= high) if index == len(edges) - 2 else (scaled < high))
        unscale = (lambda item: 10 ** item) if distribution.log else (lambda item: item)
        rows.append({"label": f"{unscale(low):.3g}-{unscale(high):.3g}", "center": unscale((low + high) / 2),
                     "low": unscale(low), "high": unscale(high), "mean": float(done["value"].to_numpy()[inside].mean()),
                     "count": int(inside.sum())})
    return pd.DataFrame(rows, columns=["label", "center", "low", "high", "mean", "count"])


def epochs_importance(trials: pd.DataFrame, epochs: int, space: dict[str, space_module.Distribution], mode: str, *,
                      bootstrap_samples: int, seed: int) -> EpochImportance:
    """The importances of the finished trials whose ``epochs`` is ``epochs``."""
    chosen = trials[trials["epochs"] == epochs]
    found, left_out = importances(chosen, space, mode, bootstrap_samples=bootstrap_samples, seed=seed)
    return EpochImportance(epochs=epochs, trials=len(finished(chosen)), importances=found, left_out=left_out)


def search_tables(swept: reader.SweepFrame, *, bootstrap_samples: int = DEFAULT_IMPORTANCE_SAMPLES,
                  seed: int = 0) -> SearchTables:
    """Every statistic of the search report from its frames."""
    trials = trials_frame(swept)
    mode, done = swept.objective.mode, finished(trials)
    counts = sorted({int(count) for count in done["epochs"].dropna()})
    made = dict(factors=list(swept.space), trials=trials, top=top_trials(trials, mode),
                bootstrap_samples=bootstrap_samples, seed=seed)
    if len(counts) < 2 or done["epochs"].isna().any():
        found, left_out = importances(trials, swept.space, mode, bootstrap_samples=bootstrap_samples, seed=seed)
        return SearchTables(**made, importances=found, left_out=left_out, importance_trials=len(done),
                            importance_epochs=counts[0] if len(counts) == 1 else None)
    # A scheduler stopped some trials early: compare trials at one epoch count, never across counts.
    last = epochs_importance(trials, counts[-1], swept.space, mode, bootstrap_samples=bootstrap_samples, seed=seed)
    first = epochs_importance(trials_frame(swept, at_epoch=counts[0]), counts[0], swept.space, mode,
                              bootstrap_samples=bootstrap_samples, seed=seed)
    return SearchTables(**made, importances=last.importances, left_out=last.left_out, importance_trials=last.trials,
                        importance_epochs=counts[-1], stopped=len(done) - last.trials, first_rung=first)
