"""The words the report and its answer share: an epoch count, a cell, and one sentence per gap.

``answer`` (computation) and ``render`` (the report's text) both speak of cells and epoch counts; the phrasing
lives here, below both, so that neither imports the other.
"""

from __future__ import annotations

import math
from typing import Sequence

from sweeps.report import gap as gap_module
from sweeps.report import objective as objective_module


def epochs_text(count: int) -> str:
    """``1 epoch`` / ``10 epochs``."""
    return f"{count} epoch" + ("" if count == 1 else "s")


def missing_sentence(counts: Sequence[int], missing: str) -> str:
    """``At 2 and 10 epochs the gap cannot be measured: <missing>.``: one sentence for the epoch counts that miss
    a cell for the same reason."""
    counts = list(counts)
    listed = str(counts[-1]) if len(counts) == 1 else f"{', '.join(map(str, counts[:-1]))} and {counts[-1]}"
    return f"At {listed} epoch{'' if counts == [1] else 's'} the gap cannot be measured: {missing}."


def epoch_sentences(items: Sequence[tuple[int, str, str]]) -> list[str]:
    """The sentences of ``(epoch count, sentence, why it is missing or "")`` items, in order; the counts that miss
    a cell for the same reason share one ``missing_sentence``, where the first of them stood."""
    sentences = []
    for count, sentence, missing in items:
        alike = [other for other, _, reason in items if missing and reason == missing]
        if not missing:
            sentences.append(sentence)
        elif count == alike[0]:
            sentences.append(missing_sentence(alike, missing))
    return sentences


def describe(cell: dict[str, str]) -> str:
    """``dataset=19997, strip=none``."""
    return ", ".join(f"{key}={value}" for key, value in cell.items())


def gap_text(objective: objective_module.Metric, points: float) -> str:
    """``a gap of 59.9 points``; for a metric where lower is better, ``a gap of 0.12 rmse (lower is better)``."""
    text = f"a gap of {objective_module.amount_text(objective, points)} {objective_module.unit(objective)}"
    return text if objective.mode == "max" else f"{text} (lower is better)"


def answer_sentences(gaps: Sequence[gap_module.GapSplit], blog_cell: dict[str, str], user_cell: dict[str, str],
                     objective: objective_module.Metric = objective_module.DEFAULT) -> list[str]:
    """One plain sentence per epoch count: the gap (points, or the objective's units) and, when the blog's cell
    scores better, the factor whose Shapley part explains most of it (a factor is named only for a positive gap
    and a positive part; positive = better in the objective's direction)."""
    value, amount = (lambda number: objective_module.value_text(objective, number),
                     lambda number: objective_module.amount_text(objective, number))
    sentences = []
    for gap in gaps:
        count = gap.epochs
        if gap.missing is not None:
            sentences.append(missing_sentence([count], gap.missing))
            continue
        if not gap.contributions:
            sentences.append(f"At {epochs_text(count)} the blog's and the user's cells are the same cell.")
            continue
        held = f" (with {gap.stratum})" if gap.stratum else ""
        sentence = (f"At {epochs_text(count)} the blog's cell ({describe(blog_cell)}) reaches "
                    f"{value(gap.blog)} and the user's cell ({describe(user_cell)}) {value(gap.user)}{held}, "
                    f"{gap_text(objective, gap.gap_points)}")
        top = top_contribution(gap)
        if top is None:
            sentence += (f": the blog's cell does not score {objective_module.higher(objective)}, so there is no gap "
                         f"for a factor to explain.")
        else:
            interval = ("no interval: one seed per cell" if math.isnan(top.low)
                        else f"95% t-interval {amount(top.low)} to {amount(top.high)}")
            sentence += (f"; {top.factor} ({top.from_value} -> {top.to_value}) explains {amount(top.points)} of them "
                         f"({interval})")
            rest = [f"{item.factor} {amount(item.points)}" for item in gap.contributions if item is not top]
            sentence += (f", {'; '.join(rest)}." if rest else ".")
        if gap.modelled:
            sentence += f" Not run, predicted by the main-effects model: {'; '.join(gap.modelled)}."
        sentences.append(sentence)
    return sentences


def top_contribution(gap: gap_module.GapSplit) -> gap_module.Contribution | None:
    """The factor that explains most of a positive gap: the largest positive Shapley part; None when the blog's
    cell does not score higher than the user's (no gap to explain) or no part is positive."""
    if gap.missing is not None or not gap.gap_points > 0:
        return None
    positive = [item for item in gap.contributions if item.points > 0]
    return max(positive, key=lambda item: item.points) if positive else None
