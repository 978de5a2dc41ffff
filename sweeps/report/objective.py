"""The metric a report is about: its name, direction and range, and how its numbers are written.

The objective is the sweep's trainer's first metric (``sweeps.trainers.api.Metric``), recorded on the parent run
as ``glovesweep.objective`` (``name:mode[:low:high]``) and in a report folder's ``runs.parquet`` metadata; runs
logged before trainers declared one are validation accuracy, ``val_acc:max:0:1`` (``DEFAULT``).

Differences (a gap, an effect, a Shapley part) are oriented so that positive means the first cell is better in the
metric's own direction (``sign``): for a ``min`` metric the blog's cell is ahead when its value is lower. A metric
bounded to [0, 1] is written in points (100 x fraction, ``scale``); any other in its own units.
"""

from __future__ import annotations

import math

from sweeps.trainers import api

Metric = api.Metric
DEFAULT = api.VAL_ACC


def from_text(text: str | None) -> Metric:
    """The metric of a ``glovesweep.objective`` tag (``DEFAULT`` when absent; ``DEFAULT`` itself, help included,
    when the tag names it)."""
    if not text:
        return DEFAULT
    metric = Metric.from_text(text)
    same = (metric.name, metric.mode, metric.low, metric.high) == (DEFAULT.name, DEFAULT.mode, DEFAULT.low,
                                                                   DEFAULT.high)
    return DEFAULT if same else metric


def is_fraction(metric: Metric) -> bool:
    """Bounded to [0, 1] (an accuracy): differences are written in points."""
    return metric.low == 0 and metric.high == 1


def sign(metric: Metric) -> int:
    """+1 where higher is better, -1 where lower is: multiplies a difference into "how much better"."""
    return 1 if metric.mode == "max" else -1


def scale(metric: Metric) -> float:
    """100 for a fraction (points), else 1 (the metric's own units)."""
    return 100.0 if is_fraction(metric) else 1.0


def unit(metric: Metric) -> str:
    """``points`` for a fraction, else the metric's name (``a gap of 0.12 rmse``)."""
    return "points" if is_fraction(metric) else metric.name


def bounds(metric: Metric) -> tuple[float, float]:
    """(low, high) to clip intervals to, -inf / inf where the metric declares no bound."""
    return (-math.inf if metric.low is None else metric.low, math.inf if metric.high is None else metric.high)


def bounded(metric: Metric) -> bool:
    return metric.low is not None or metric.high is not None


def range_text(metric: Metric) -> str:
    """``[0, 1]``, ``[0, inf)``, ``(-inf, 5]``; "" without bounds."""
    low, high = bounds(metric)
    if not bounded(metric):
        return ""
    return (f"[{low:g}" if math.isfinite(low) else "(-inf") + ", " + (f"{high:g}]" if math.isfinite(high) else "inf)")


def clipped_text(metric: Metric) -> str:
    """``, clipped to [0, 1]`` for the interval sentences, "" where the metric has no range."""
    return f", clipped to {range_text(metric)}" if bounded(metric) else ""


def value_text(metric: Metric, value: float) -> str:
    """A value of the metric as printed: 3 decimals for a fraction, 4 significant digits otherwise."""
    return f"{value:.3f}" if is_fraction(metric) else f"{value:.4g}"


def amount_text(metric: Metric, value: float) -> str:
    """A difference (already scaled): 1 decimal in points, 3 significant digits in other units; a value that rounds
    to zero prints without a sign (an exactly-zero effect's float noise is -1e-14 on one CPU, +1e-14 on another)."""
    text = f"{value:.1f}" if is_fraction(metric) else f"{value:.3g}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def higher(metric: Metric) -> str:
    """``higher`` or ``lower``: the word for better."""
    return "higher" if metric.mode == "max" else "lower"


def label(metric: Metric) -> str:
    """``validation accuracy``, else the metric's help or name."""
    return metric.label


def title(metric: Metric) -> str:
    """The label with a capital first letter, for headings (``Validation accuracy``); a bare metric name as it is
    spelled (``rmse``)."""
    text = label(metric)
    return text if text == metric.name else text[:1].upper() + text[1:]


def to_record(metric: Metric) -> dict:
    """The metric as a JSON-able dict (a report folder's metadata keeps its help, which the tag does not)."""
    return {"name": metric.name, "mode": metric.mode, "low": metric.low, "high": metric.high, "help": metric.help}


def from_record(record: dict | str | None) -> Metric:
    """The metric ``to_record`` wrote (or a tag's text; None: ``DEFAULT``)."""
    if not isinstance(record, dict):
        return from_text(record)
    metric = Metric(**record)
    return DEFAULT if metric == DEFAULT else metric
