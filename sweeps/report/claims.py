"""Published numbers and their verdicts: does a published accuracy fit what this sweep measured?

``PUBLISHED`` lists every number the report states with its source, whatever the sweep ran. A sweep file's
``claims:`` block (``SweepSpec.claims``: source, cell, epoch, value) names the published values that this
sweep's cells can judge; ``judge_claims`` gives each a ``Verdict``: the measured mean over seeds with its 95%
t-interval of the mean, and whether the published value lies inside the 95% prediction interval of a single run,
``mean +- t(n-1) * s * sqrt(1 + 1/n)`` (clipped to the objective's range where it declares one: [0, 1] for an
accuracy, never for a loss): a published number is one run, not a mean. The claims are of the sweep's objective.
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

# GloVe 6B vector size every publication below used.
PUBLISHED_GLOVE_DIM = 100


@dataclasses.dataclass(frozen=True)
class Published:
    """A published accuracy: who, the setup in words, and validation accuracy (fraction) by epoch count."""

    source: str
    setup: str
    values: dict[int, float]
    approximate: bool = False


PUBLISHED = (
    Published("Keras blog (2016), \"Using pre-trained word embeddings in a Keras model\"",
              "the 19,997-post 20_newsgroup archive, headers kept", {2: 0.95}),
    Published("Keras PR #5585 (2017)", "19997, headers cut at the first blank line", {2: 0.47, 10: 0.71}),
    Published("keras-io example (2020)", "19997, first 10 lines cut, TextVectorization, 200 tokens, global max "
              "pooling + dropout", {2: 0.44, 10: 0.73}),
    Published("Stack Exchange answer", "bydate, headers, footers and quotes removed as scikit-learn does",
              {10: 0.55}, approximate=True),
)

# One line per strip mode (trainer/data.py implements them), and what "leakage" means in the cell table.
STRIP_MEANINGS = {
    "none": "the post as stored, every header line kept (on 19997 that includes Newsgroups:, which names the label)",
    "blank_line": "cut everything before the first blank line, keeping the blank line (Keras PR #5585)",
    "first_10_lines": "drop the first 10 lines of each post (keras-io example, 2020)",
    "sklearn_headers": "scikit-learn's remove=('headers',): everything before the first blank line",
    "sklearn_all": "scikit-learn's remove=('headers', 'footers', 'quotes'): headers, signature block, quoted lines",
}
LEAKAGE_MEANING = ("leakage: the fraction of validation documents whose stripped body also occurs in the training "
                   "set (duplicates across the split); the label leak is different: leak_fraction, the fraction of "
                   "documents that still carry a header line naming their newsgroup (Newsgroups:, Xref:, Path:)")


@dataclasses.dataclass(frozen=True)
class Verdict:
    """A claim judged against the runs: accuracies are fractions; NaN intervals where n < 2."""

    source: str
    cell: dict[str, str]
    epoch: int
    published: float
    n: int
    mean: float
    ci_low: float
    ci_high: float
    prediction_low: float
    prediction_high: float
    inside: bool | None
    verdict: str

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        return {key: (None if isinstance(value, float) and math.isnan(value) else value)
                for key, value in values.items()}


def prediction_interval(values: Sequence[float], confidence: float = stats.CONFIDENCE, *,
                        objective: objective_module.Metric = objective_module.DEFAULT) -> tuple[float, float]:
    """95% prediction interval of one more run, ``mean +- t(n-1) s sqrt(1 + 1/n)``, clipped to the objective's
    range (accuracy: [0, 1]; a metric without bounds: not clipped); NaN if n < 2."""
    values = np.asarray(values, dtype=float)
    if values.size < 2:
        return math.nan, math.nan
    half_width = (stats.t_quantile(confidence, values.size - 1) * values.std(ddof=1)
                  * math.sqrt(1 + 1 / values.size))
    low, high = objective_module.bounds(objective)
    return max(low, float(values.mean() - half_width)), min(high, float(values.mean() + half_width))


def judge_claims(runs: pd.DataFrame, claims: Sequence[dict[str, Any]], *, held: dict[int, dict[str, str]] | None = None,
                 confidence: float = stats.CONFIDENCE,
                 objective: objective_module.Metric = objective_module.DEFAULT) -> list[Verdict]:
    """One ``Verdict`` per claim (``source``, ``cell``, ``epoch``, ``value``) on the network rows of ``runs``.

    ``held`` maps an epoch count to the settings of factors the claim's cell does not name (the gap's stratum);
    a claim whose cell has no runs at its epoch count is ``not run``.
    """
    network = stats.network_runs(runs)
    verdicts = []
    for claim in claims:
        epoch = int(claim["epoch"])
        cell = {key: str(value) for key, value in claim["cell"].items()}
        full = dict((held or {}).get(epoch, {}), **cell)
        at_count = network[network["epochs"] == epoch]
        mask = np.ones(len(at_count), dtype=bool)
        for key, value in full.items():
            mask &= at_count[key].astype(str).to_numpy() == value
        values = at_count.loc[mask, reader.VALUE].astype(float).to_list()
        mean, low, high = stats.t_interval(values, confidence, bounds=objective_module.bounds(objective))
        prediction_low, prediction_high = prediction_interval(values, confidence, objective=objective)
        published = float(claim["value"])
        inside = None if math.isnan(prediction_low) else bool(prediction_low <= published <= prediction_high)
        if not values:
            text = f"not run: no runs of this cell at {epoch} epochs"
        elif inside is None:
            text = f"one run ({objective_module.value_text(objective, mean)}): no interval to judge by"
        elif inside:
            text = "consistent: inside the 95% prediction interval of one run"
        else:
            direction = "above" if published > prediction_high else "below"
            distance = objective_module.scale(objective) * abs(published - mean)
            text = (f"not reproduced: {objective_module.amount_text(objective, distance)} "
                    f"{objective_module.unit(objective)} {direction} the measured mean")
        verdicts.append(Verdict(source=str(claim["source"]), cell=cell, epoch=epoch, published=published,
                                n=len(values), mean=mean, ci_low=low, ci_high=high, prediction_low=prediction_low,
                                prediction_high=prediction_high, inside=inside, verdict=text))
    return verdicts


def claims_markdown(verdicts: Sequence[Verdict],
                    objective: objective_module.Metric = objective_module.DEFAULT) -> list[str]:
    """The claims table in Markdown, one line per verdict (values as the objective prints them)."""
    value = lambda number: objective_module.value_text(objective, number)  # noqa: E731 - a local spelling
    published = (lambda number: f"{number:.2f}") if objective_module.is_fraction(objective) else value
    lines = ["| source | cell | epochs | published | measured mean [95% CI] | one run, 95% prediction interval | "
             "verdict |", "|---|---|---|---|---|---|---|"]
    for item in verdicts:
        cell = ", ".join(f"{key}={value}" for key, value in item.cell.items())
        measured = ("" if item.n == 0 else f"{value(item.mean)} (n=1)" if item.n < 2
                    else f"{value(item.mean)} [{value(item.ci_low)}, {value(item.ci_high)}] n={item.n}")
        prediction = ("" if math.isnan(item.prediction_low)
                      else f"[{value(item.prediction_low)}, {value(item.prediction_high)}]")
        lines.append(f"| {item.source} | {cell} | {item.epoch} | {published(item.published)} | {measured} | "
                     f"{prediction} | {item.verdict} |")
    return lines
