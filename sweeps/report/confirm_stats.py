"""Statistics of a search's stages (``sweeps.spec.stages``): each confirmed configuration's mean over its fresh
seeds with a Student-t interval, the search's own value of it and how optimistic that was, and the final stage's
score (the test set, for the Keras network on bydate).

- A stage's configurations are the rows of ``search_stats.trials_frame(swept, stage)``: its runs grouped by
  configuration, each run's value its objective at the largest epoch count it reached, the row's value their
  mean with ``stats.t_interval`` (two-sided Student-t, ``n - 1`` degrees of freedom, clipped to the metric's
  range; none from one seed). A configuration is tied across stages by its ``glovesweep.config_id`` tag.
- The search's estimate of a configuration is its search trial's value (the mean over its seeds with ``seeds:
  k``), as the searcher was told. Optimism is that estimate minus the confirmed mean, signed so that a positive
  value means the search looked better than the configuration is (``max``: search - confirmed; ``min``:
  confirmed - search). The search's value is one number chosen for being best, so the optimism's interval is the
  confirmed mean's interval moved by it: it carries the fresh seeds' noise, not the search's own.
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
from sweeps.tracking import names

CONFIDENCE = stats.CONFIDENCE


@dataclasses.dataclass(frozen=True)
class Score:
    """A configuration's runs in one stage: ``seeds`` of them, their ``mean`` and its ``CONFIDENCE`` t interval
    (``low``, ``high``; NaN from one seed), in the objective's units; ``run_id``: its first run."""

    configuration: str
    cell: dict[str, Any]
    seeds: int
    mean: float
    low: float
    high: float
    run_id: str


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
    final_trainer: str = ""  # the final runs' trainer tag: whose held-out data the final score is on

    @property
    def final_on_test_set(self) -> bool:
        """The Keras network's final default: every training file, scored on bydate's official test set."""
        return self.final_trainer == names.TRAINER_KERAS and self.final_settings.get("validation") == "auto"

    @property
    def best(self) -> Confirmed | None:
        return self.confirmed[0] if self.confirmed else None


def scores(trials: pd.DataFrame, factors: list[str]) -> list[Score]:
    """One ``Score`` per finished configuration of a stage (``trials_frame`` rows), in first-run order."""
    return [Score(configuration=str(row["configuration"]), cell={name: row[name] for name in factors
                                                                  if not _missing(row[name])},
                  seeds=int(row["seeds"]), mean=float(row["value"]), low=float(row["low"]), high=float(row["high"]),
                  run_id=str(row["run_id"])) for _, row in search_stats.finished(trials).iterrows()]


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


def final_settings(swept: reader.SweepFrame, final: Score | None, search: pd.DataFrame) -> dict[str, str]:
    """The params the final runs hold that the search's runs of the same configuration do not (``validation``)."""
    before = search[search["configuration"] == final.configuration] if final is not None else search.iloc[:0]
    if before.empty:
        return {}
    runs = swept.runs.drop_duplicates("run_id").set_index("run_id")
    after, earlier = runs.loc[final.run_id], runs.loc[before.iloc[0]["run_id"]]
    return {name: str(after[name]) for name in swept.params
            if name not in reader.NOT_CELL_FACTORS and str(after[name]) != str(earlier[name])}


def stage_tables(swept: reader.SweepFrame, search: pd.DataFrame) -> StageTables | None:
    """The stages' statistics of a search (``search``: its ``trials_frame``); None where it ran no stage."""
    factors, metric = list(swept.space), swept.objective
    confirm = search_stats.trials_frame(swept, stages.CONFIRM)
    final = search_stats.trials_frame(swept, stages.FINAL)
    if confirm.empty and final.empty:
        return None
    found = [confirmed(score, search, metric) for score in scores(confirm, factors)]
    order = stages.best_first([item.score.mean for item in found], [item.score.configuration for item in found],
                              metric.mode)
    final_score = next(iter(scores(final, factors)), None)
    trainers = swept.runs.drop_duplicates("run_id").set_index("run_id")["trainer"]
    return StageTables(confirmed=[found[position] for position in order], final=final_score,
                       final_settings=final_settings(swept, final_score, search),
                       final_trainer=str(trainers.get(final_score.run_id, "")) if final_score is not None else "")
