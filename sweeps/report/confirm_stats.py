"""Statistics of a search's stages (``sweeps.spec.stages``): each confirmed configuration's mean over its fresh
seeds with a Student-t interval, the search's own value of it and how optimistic that was, and the final stage's
score (the test set, for the Keras network on bydate).

- A stage run's value is its objective at the largest epoch count it reached (``search_stats.trials_frame``);
  a configuration is the runs sharing a ``glovesweep.configuration`` tag.
- The mean's interval is ``stats.t_interval`` (two-sided Student-t, ``n - 1`` degrees of freedom, clipped to
  the metric's range); one seed gives none.
- The search's estimate of a configuration is its search trial's value (the mean of its finished search runs
  where it has several). Optimism is that estimate minus the confirmed mean, signed so that a positive value
  means the search looked better than the configuration is (``max``: search - confirmed; ``min``: confirmed -
  search). The search's value is one number chosen for being best, so the optimism's interval is the
  confirmed mean's interval moved by it: it carries the fresh seeds' noise, not the search run's own.
- The best configuration is the best confirmed mean (ties: the smaller configuration key,
  ``stages.best_first``, as the driver chose the final stage's).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pandas as pd

from sweeps.report import objective as objective_module
from sweeps.report import reader
from sweeps.report import search_stats
from sweeps.report import stats
from sweeps.spec import stages

CONFIDENCE = stats.CONFIDENCE


@dataclasses.dataclass(frozen=True)
class Score:
    """A configuration's values over seeds: ``mean`` and its ``CONFIDENCE`` t interval (``low``, ``high``; NaN
    from one seed), in the objective's units."""

    configuration: str
    cell: dict[str, Any]
    seeds: tuple[int, ...]
    values: tuple[float, ...]
    mean: float
    low: float
    high: float


@dataclasses.dataclass(frozen=True)
class Confirmed:
    """One configuration of the confirm stage: its ``score`` on fresh seeds, the search's value of it
    (``search_value``, its run ``search_run``) and the ``optimism`` with its interval (see the module)."""

    score: Score
    search_value: float
    search_run: str
    optimism: float
    optimism_low: float
    optimism_high: float


@dataclasses.dataclass
class StageTables:
    """What the report shows of a search's stages: ``confirmed`` best first; ``final``: the final stage's score
    and ``final_settings`` (the settings its runs changed against the search's, as text)."""

    confirmed: list[Confirmed]
    final: Score | None
    final_settings: dict[str, str]
    confidence: float = CONFIDENCE

    @property
    def best(self) -> Confirmed | None:
        return self.confirmed[0] if self.confirmed else None


def scores(trials: pd.DataFrame, factors: list[str], metric: objective_module.Metric) -> list[Score]:
    """One ``Score`` per configuration of a stage's finished runs (``trials_frame`` rows), in first-run order."""
    done = search_stats.finished(trials)
    made = []
    for configuration, group in done.groupby("configuration", sort=False):
        values = [float(value) for value in group["value"]]
        mean, low, high = stats.t_interval(values, CONFIDENCE, bounds=objective_module.bounds(metric))
        first = group.iloc[0]
        cell = {name: first[name] for name in factors if not _missing(first[name])}
        made.append(Score(configuration=str(configuration), cell=cell, values=tuple(values), mean=mean, low=low,
                          high=high, seeds=tuple(int(seed) for seed in group["seed"] if not _missing(seed))))
    return made


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def confirmed(score: Score, search: pd.DataFrame, metric: objective_module.Metric) -> Confirmed:
    """A confirm stage's score beside the search's own value of that configuration."""
    runs = search_stats.finished(search[search["configuration"] == score.configuration])
    value = float(runs["value"].mean()) if len(runs) else math.nan
    sign = objective_module.sign(metric)
    # Positive: the search saw the configuration better than its fresh seeds do.
    optimism = sign * (value - score.mean)
    ends = sorted(sign * (value - end) for end in (score.low, score.high))
    return Confirmed(score=score, search_value=value, search_run=str(runs["run_id"].iloc[0]) if len(runs) else "",
                     optimism=optimism, optimism_low=ends[0], optimism_high=ends[1])


def final_settings(swept: reader.SweepFrame, final: pd.DataFrame, search: pd.DataFrame) -> dict[str, str]:
    """The params the final runs hold that the search's runs of the same configuration do not (``validation``)."""
    if final.empty:
        return {}
    runs = swept.runs.set_index("run_id")
    chosen = final.iloc[0]
    before = search[search["configuration"] == chosen["configuration"]]
    if before.empty:
        return {}
    after, earlier = runs.loc[[chosen["run_id"]]].iloc[0], runs.loc[[before.iloc[0]["run_id"]]].iloc[0]
    return {name: str(after[name]) for name in swept.params
            if name not in reader.NOT_CELL_FACTORS and str(after[name]) != str(earlier[name])}


def stage_tables(swept: reader.SweepFrame, search: pd.DataFrame) -> StageTables | None:
    """The stages' statistics of a search (``search``: its ``trials_frame``); None where it ran no stage."""
    factors, metric = list(swept.space), swept.objective
    confirm = search_stats.trials_frame(swept, stages.CONFIRM)
    final = search_stats.trials_frame(swept, stages.FINAL)
    if confirm.empty and final.empty:
        return None
    found = [confirmed(score, search, metric) for score in scores(confirm, factors, metric)]
    order = stages.best_first([item.score.mean for item in found], [item.score.configuration for item in found],
                              metric.mode)
    final_scores = scores(final, factors, metric)
    return StageTables(confirmed=[found[position] for position in order],
                       final=final_scores[0] if final_scores else None,
                       final_settings=final_settings(swept, final, search))
