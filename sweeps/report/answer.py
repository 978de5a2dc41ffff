"""The study's answer, computed: which mechanism explains the gap between the blog's cell and the user's cell.

Works on a sweep's runs frame (``sweeps.report.reader``) and the gap records of ``sweeps.report.gap``. Per epoch count it takes
three cells, each the mean over seeds of validation accuracy (other factors held where ``decompose_gap`` held
them):

- the blog's cell (e.g. 19997, headers kept) and the fraction of its documents that still carry a label-bearing
  header line (``leak_fraction_train`` / ``leak_fraction_val``: ``Newsgroups:``, and ``Xref:`` / ``Path:`` lines
  that name the group);
- the same data with the headers cut: the blog's dataset at a stripping level whose leak fraction is about 0 (the
  user's strip mode when it qualifies, since then the rest of the gap is the dataset alone; else the first
  stripped level in the config's order);
- the user's cell.

``leak_effect = blog - headers_cut`` and ``remainder = headers_cut - user`` add up to ``gap = blog - user``; each
is a linear contrast of the runs' accuracies with the Student-t interval of ``Design.contrast_interval`` (seed
noise pooled within cells). The mechanism is ``label_leak`` when the blog's documents carry the header (leak
fraction > 0.5), the headers-cut cell's do not (< 0.05) and the leak effect is the larger part of the gap with its
interval above 0 (with one seed per cell, which has no interval: its point value above 0, said in the sentence);
otherwise it is the factor with the largest positive Shapley part of the gap (``dataset``, ``strip``). A mechanism
is named only for a positive gap (the blog's cell scores higher): otherwise it is ``no_gap``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import numpy as np
import pandas as pd

from sweeps.report import gap as gap_module
from sweeps.report import objective as objective_module
from sweeps.report import reader
from sweeps.tracking import names
from sweeps.report import wording
from sweeps.report import stats

LEAK_HIGH = 0.5  # a cell "carries the leak" when more than half of its documents keep a label-bearing header
LEAK_LOW = 0.05  # a cell "has the headers cut" when fewer than 5% do
LABEL_LEAK = "label_leak"
NOT_MEASURED = "not_measured"
NO_GAP = "no_gap"  # the blog's cell does not score higher than the user's: nothing to explain


@dataclasses.dataclass(frozen=True)
class CellSummary:
    """One cell at one epoch count: accuracy mean over seeds (fraction) with its t-interval, leak fractions."""

    cell: dict[str, str]
    n: int
    mean: float
    ci_low: float
    ci_high: float
    leak_fraction_train: float
    leak_fraction_val: float

    @property
    def leak_measured(self) -> bool:
        return not (math.isnan(self.leak_fraction_train) or math.isnan(self.leak_fraction_val))


@dataclasses.dataclass(frozen=True)
class Contrast:
    """A difference of cell means in accuracy points (100 x fraction) with its 95% t-interval (NaN: one seed)."""

    points: float
    low: float
    high: float


@dataclasses.dataclass(frozen=True)
class Alternative:
    """A cell of the blog's data with the headers cut: its mean over seeds (fraction), its runs, its leak fractions,
    and what cutting the headers there costs against the blog's cell (points, 95% t-interval; NaN: one seed)."""

    cell: dict[str, str]
    mean: float
    n: int
    leak_fraction_train: float
    leak_fraction_val: float
    points: float
    low: float
    high: float


@dataclasses.dataclass(frozen=True)
class EpochAnswer:
    """The answer at one epoch count (see the module docstring); ``missing`` says why there is none."""

    epochs: int
    mechanism: str
    sentence: str
    blog: CellSummary | None = None
    user: CellSummary | None = None
    headers_cut: CellSummary | None = None
    headers_cut_choice: str = ""
    gap: Contrast | None = None
    leak_effect: Contrast | None = None
    remainder: Contrast | None = None
    leak_share: float = math.nan
    leak_measured: bool = False
    alternatives: tuple[Alternative, ...] = ()
    held: dict[str, str] = dataclasses.field(default_factory=dict)
    shapley: tuple[gap_module.Contribution, ...] = ()
    missing: str = ""


@dataclasses.dataclass(frozen=True)
class Answer:
    """The computed answer of a sweep: the two cells, where they came from, and one ``EpochAnswer`` per count.

    ``glove_dims``: the GloVe vector sizes the network runs used (the publications used 100).
    """

    blog_cell: dict[str, str]
    user_cell: dict[str, str]
    cells_from: str
    by_epochs: list[EpochAnswer]
    glove_dims: list[int] = dataclasses.field(default_factory=list)

    @property
    def sentences(self) -> list[str]:
        """One sentence per epoch count; epoch counts that miss a cell for the same reason share one."""
        return wording.epoch_sentences([(item.epochs, item.sentence, item.missing) for item in self.by_epochs])

    def to_dict(self) -> dict[str, Any]:
        """JSON-able (NaN as None): what ``answer.json`` holds."""
        return json_safe({field.name: getattr(self, field.name) for field in dataclasses.fields(self)})


def json_safe(value: Any) -> Any:
    """``value`` with NaN floats as None, numpy scalars as Python numbers and records as dicts, recursively.

    A record (dataclass) is written by its ``to_dict()`` where it has one (``gap.Contribution`` spells its fields
    ``from`` and ``to``), else field by field: the one place where answer.json's records become JSON.
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        if hasattr(value, "to_dict"):
            return json_safe(value.to_dict())
        return json_safe({field.name: getattr(value, field.name) for field in dataclasses.fields(value)})
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def compute_answer(runs: pd.DataFrame, factors: Sequence[str], blog_cell: dict[str, str],
                   user_cell: dict[str, str], epochs: Sequence[int] | None = None, *, cells_from: str = "",
                   gaps: list[gap_module.GapSplit] | None = None, confidence: float = stats.CONFIDENCE,
                   objective: objective_module.Metric = objective_module.DEFAULT) -> Answer:
    """Attribute the blog-user gap to the label leak or to the factors, per epoch count.

    The label leak is weighed only where the runs measure it (a ``leakage`` metric, the 20 Newsgroups trainer's)
    and the cells name a ``strip`` setting; otherwise the answer is the gap split's, in the objective's direction.

    Parameters
    ----------
    runs : DataFrame
        The runs frame (``sweeps.report.reader.RUNS_SCHEMA``); ``leak_fraction_train`` / ``leak_fraction_val`` may be
        missing (NaN), then the leak is reported as not measured and the mechanism is the Shapley split's.
    factors : sequence of str
        The cell factors.
    blog_cell, user_cell : dict
        Factor values of the two cells (values compared as text).
    epochs : sequence of int, optional
        Epoch counts to answer (default: every count in the runs).
    cells_from : str
        Where the two cells came from (``flags``, ``sweep file``, ``defaults``), stated in the answer.
    gaps : list of GapSplit, optional
        ``sweeps.report.gap.decompose_gap``'s splits, if already computed.
    """
    blog_cell = {key: str(value) for key, value in blog_cell.items()}
    user_cell = {key: str(value) for key, value in user_cell.items()}
    gaps = gaps if gaps is not None else gap_module.decompose_gap(runs, factors, blog_cell, user_cell,
                                                                   confidence=confidence, objective=objective)
    wanted = list(epochs) if epochs is not None else stats.epoch_counts(runs)
    network = stats.network_runs(runs)
    answers = []
    for record in gaps:
        if record.epochs not in wanted:
            continue
        if record.missing is not None:
            sentence = wording.answer_sentences([record], blog_cell, user_cell, objective)[0]
            answers.append(EpochAnswer(epochs=record.epochs, mechanism=NOT_MEASURED, sentence=sentence,
                                       missing=record.missing))
            continue
        at_count = network[network["epochs"] == record.epochs].reset_index(drop=True)
        answers.append(_answer_at(at_count, factors, blog_cell, user_cell, record, confidence, objective))
    glove_dims = (sorted({int(value) for value in network["glove_dim"].dropna()}) if "glove_dim" in network
                  else [])
    return Answer(blog_cell=blog_cell, user_cell=user_cell, cells_from=cells_from, by_epochs=answers,
                  glove_dims=glove_dims)


def rows_of(frame: pd.DataFrame, cell: dict[str, str]) -> np.ndarray:
    """Positions (0-based) of the rows of ``frame`` whose values equal ``cell``'s, compared as text."""
    mask = np.ones(len(frame), dtype=bool)
    for key, value in cell.items():
        mask &= frame[key].astype(str).to_numpy() == str(value)
    return np.flatnonzero(mask)


def summarize(frame: pd.DataFrame, cell: dict[str, str], confidence: float = stats.CONFIDENCE,
              objective: objective_module.Metric = objective_module.DEFAULT) -> CellSummary:
    """The ``CellSummary`` of ``cell``'s rows in ``frame`` (one epoch count)."""
    members = frame.iloc[rows_of(frame, cell)]
    mean, low, high = stats.t_interval(members[reader.VALUE].astype(float), confidence,
                                       bounds=objective_module.bounds(objective))

    def leak(column: str) -> float:
        values = members[column].astype(float).dropna()
        return float(values.mean()) if len(values) == len(members) and len(values) else math.nan

    return CellSummary(cell=dict(cell), n=len(members), mean=mean, ci_low=low, ci_high=high,
                       leak_fraction_train=leak(names.LEAK_FRACTION_TRAIN),
                       leak_fraction_val=leak(names.LEAK_FRACTION_VAL))


def _answer_at(at_count: pd.DataFrame, factors: Sequence[str], blog_cell: dict[str, str], user_cell: dict[str, str],
               record: gap_module.GapSplit, confidence: float, objective: objective_module.Metric) -> EpochAnswer:
    """The ``EpochAnswer`` of one epoch count whose gap split has both cells."""
    held = dict(record.held)
    blog_full, user_full = dict(held, **blog_cell), dict(held, **user_cell)
    design = stats.Design(at_count, list(dict.fromkeys(list(factors) + list(blog_full))), bootstrap_samples=0,
                          seed=0, confidence=confidence)

    def contrast(left: dict[str, str], right: dict[str, str]) -> Contrast:
        left_rows, right_rows = rows_of(at_count, left), rows_of(at_count, right)
        factor = objective_module.sign(objective) * objective_module.scale(objective)
        statistic = factor * (design.columns[left_rows].mean(axis=0) - design.columns[right_rows].mean(axis=0))
        return Contrast(*design.contrast_interval(statistic))

    blog, user = (summarize(at_count, cell, confidence, objective) for cell in (blog_full, user_full))
    common = dict(epochs=record.epochs, blog=blog, user=user, held=held, shapley=record.contributions)
    split_sentence = wording.answer_sentences([record], blog_cell, user_cell, objective)[0]
    if blog.n == 0 or user.n == 0:
        # A corner the gap split had to model: no observed cell to contrast.
        return EpochAnswer(mechanism=_top_factor(record), sentence=split_sentence, **common)
    gap = contrast(blog_full, user_full)
    if not leak_measurable(at_count, blog_full):
        # Not the 20 Newsgroups trainer (no leakage measure, no strip setting): the gap split is the answer.
        return EpochAnswer(mechanism=_top_factor(record), sentence=split_sentence, gap=gap, **common)
    candidates = _headers_cut_candidates(at_count, blog_full, user_full, confidence)
    alternatives = tuple(Alternative(cell=candidate.cell, mean=candidate.mean, n=candidate.n,
                                     leak_fraction_train=candidate.leak_fraction_train,
                                     leak_fraction_val=candidate.leak_fraction_val,
                                     **dataclasses.asdict(contrast(blog_full, candidate.cell)))
                         for candidate, _ in candidates)
    if not candidates:
        sentence = split_sentence + (" The sweep has no run of the blog's dataset with its headers cut, so the label "
                                     "leak cannot be separated from the dataset.")
        return EpochAnswer(mechanism=_top_factor(record), sentence=sentence, gap=gap, **common)
    cut, choice = candidates[0]
    leak_effect, remainder = contrast(blog_full, cut.cell), contrast(cut.cell, user_full)
    # A share of a gap exists only for a positive gap: of zero it is undefined, of a negative one meaningless.
    share = leak_effect.points / gap.points if gap.points > 0 else math.nan
    measured = blog.leak_measured and cut.leak_measured
    is_leak = (gap.points > 0 and measured and min(blog.leak_fraction_train, blog.leak_fraction_val) > LEAK_HIGH
               and max(cut.leak_fraction_train, cut.leak_fraction_val) < LEAK_LOW
               and leak_effect.points > remainder.points
               # One seed per cell has no interval: the leak is named on the point values, and the sentence says so.
               and (leak_effect.low > 0 or (math.isnan(leak_effect.low) and leak_effect.points > 0)))
    result = EpochAnswer(mechanism=LABEL_LEAK if is_leak else _top_factor(record), sentence="",
                         headers_cut=cut, headers_cut_choice=choice, gap=gap, leak_effect=leak_effect,
                         remainder=remainder, leak_share=share, leak_measured=measured, alternatives=alternatives,
                         **common)
    return dataclasses.replace(result, sentence=answer_sentence(result, record, blog_cell, user_cell))


def leak_measurable(at_count: pd.DataFrame, blog: dict[str, str]) -> bool:
    """Whether the runs can speak of a header leak: they carry the ``leakage`` measure and the cells a strip mode."""
    return "strip" in blog and "strip" in at_count and bool(at_count[names.LEAKAGE].notna().any())


def _top_factor(record: gap_module.GapSplit) -> str:
    """The factor with the largest positive Shapley part of a positive gap; ``no_gap`` when there is no gap."""
    if not record.contributions:
        return "none"
    top = wording.top_contribution(record)
    return NO_GAP if top is None else top.factor


def _headers_cut_candidates(at_count: pd.DataFrame, blog: dict[str, str], user: dict[str, str],
                            confidence: float) -> list[tuple[CellSummary, str]]:
    """Cells of the blog's data with other strip levels whose headers are cut, best choice first, with why."""
    if "strip" not in blog:
        return []
    levels = stats.level_order("strip", at_count["strip"].astype(str))
    found = []
    for level in levels:
        if level == blog["strip"]:
            continue
        summary = summarize(at_count, dict(blog, strip=level), confidence)
        if summary.n == 0:
            continue
        # Measured: the header is gone when the leak fraction says so. Unmeasured: any stripping counts.
        cut = (max(summary.leak_fraction_train, summary.leak_fraction_val) < LEAK_LOW if summary.leak_measured
               else level != "none")
        if cut:
            found.append(summary)
    user_strip = user.get("strip")
    found.sort(key=lambda summary: summary.cell["strip"] != user_strip)
    if not found:
        return []
    why = ("the user's strip mode on the blog's data, so the rest of the gap is the dataset alone"
           if found[0].cell["strip"] == user_strip else
           f"the first stripped level run on the blog's data (the user's strip={user_strip} is not, or keeps "
           f"the header)")
    return [(summary, why if index == 0 else "alternative") for index, summary in enumerate(found)]


def _interval(contrast: Contrast) -> str:
    return "" if math.isnan(contrast.low) else f" [{contrast.low:.1f}, {contrast.high:.1f}]"


def _percent(value: float) -> str:
    return f"{100 * value:.0f}%"


def answer_sentence(result: EpochAnswer, record: gap_module.GapSplit, blog_cell: dict[str, str],
                    user_cell: dict[str, str]) -> str:
    """The plain-language answer of one epoch count, every number in it computed (see ``compute_answer``)."""
    blog, user, cut = result.blog, result.user, result.headers_cut
    gap, leak, rest = result.gap, result.leak_effect, result.remainder
    assert blog is not None and user is not None and cut is not None and gap and leak and rest
    moved = [key for key in cut.cell if str(cut.cell[key]) != str(user.cell.get(key))]
    rest_what = " and ".join(moved) or "nothing"
    share_text = "" if math.isnan(result.leak_share) else f" ({_percent(result.leak_share)} of the gap)"
    cut_text = (f"cutting the headers on the blog's own data ({wording.describe(cut.cell)}, "
                f"{cut.mean:.3f}) costs {leak.points:.1f} points{_interval(leak)}{share_text}; the other "
                f"{rest.points:.1f}{_interval(rest)} are the {rest_what} "
                f"({wording.describe(cut.cell)} -> {wording.describe(user.cell)})")
    others = [item for item in result.alternatives if item.cell != cut.cell]
    if others:
        cut_text += "; cut another way, the headers cost " + ", ".join(
            f"{item.points:.1f} (strip={item.cell.get('strip')})" for item in others)
    if result.mechanism == LABEL_LEAK:
        return (f"At {wording.epochs_text(result.epochs)} the blog's cell ({wording.describe(blog.cell)}) reaches "
                f"{blog.mean:.3f} and the user's cell ({wording.describe(user.cell)}) {user.mean:.3f}, a gap of "
                f"{gap.points:.1f} points{_interval(gap)}. The cause is the label leak through the Newsgroups: "
                f"header: {_percent(blog.leak_fraction_train)} of the blog cell's training and "
                f"{_percent(blog.leak_fraction_val)} of its validation documents carry a header line that names "
                f"the label, {_percent(max(cut.leak_fraction_train, cut.leak_fraction_val))} once the headers are "
                f"cut; {cut_text}."
                + (" One seed per cell: no interval bounds these points (give the sweep seeds: 3 for one)."
                   if math.isnan(result.leak_effect.low) else ""))
    sentence = wording.answer_sentences([record], blog_cell, user_cell)[0]
    if result.mechanism == NO_GAP:
        # The split's sentence says there is no gap; the headers' cost is still measured, for the reader.
        return f"{sentence} Measured all the same: {cut_text}."
    if not result.leak_measured:
        return (f"{sentence} The runs do not record how many documents keep a label-bearing header "
                f"(leak_fraction_train/val), so the label leak is not measured; {cut_text}.")
    reasons = []
    if min(blog.leak_fraction_train, blog.leak_fraction_val) <= LEAK_HIGH:
        reasons.append(f"only {_percent(blog.leak_fraction_val)} of the blog cell's validation documents carry a "
                       f"label-bearing header")
    if leak.points <= rest.points:
        reasons.append(f"cutting the headers costs {leak.points:.1f} points, no more than the other "
                       f"{rest.points:.1f}")
    if reasons:
        return f"{sentence} The label leak does not explain it: {'; '.join(reasons)} ({cut_text})."
    why = ("one seed per cell gives the headers' cost no interval" if math.isnan(leak.low)
           else "the interval of the headers' cost reaches 0")
    return f"{sentence} The label leak cannot be confirmed: {why}; {cut_text}."


def effects_note(effects: Sequence[stats.Effect], record: gap_module.GapSplit,
                 objective: objective_module.Metric = objective_module.DEFAULT) -> str:
    """One sentence on why a factor's main effect and its Shapley share of the gap differ (empty if they agree:
    within 1 point, or 5% of the gap for a metric in its own units)."""
    if record.missing is not None or not record.contributions:
        return ""
    count = record.epochs
    amount = lambda value: objective_module.amount_text(objective, value)  # noqa: E731 - a local spelling
    close = 1.0 if objective_module.is_fraction(objective) else 0.05 * abs(record.gap_points)
    mains = {item.term: item for item in effects if item.epochs == count and item.kind == "main"}
    differing = [(item, mains[item.factor]) for item in record.contributions if item.factor in mains
                 and abs(item.points - mains[item.factor].effect_points) >= close]
    if not differing:
        return ""
    interactions = [item for item in effects if item.epochs == count and item.kind == "interaction"]
    pairs = "; ".join(f"{item.factor} {amount(main.effect_points)} as a main effect, {amount(item.points)} in the "
                      f"gap" for item, main in differing)
    interaction = (f", and the factors interact ({interactions[0].term}: up to "
                   f"{amount(interactions[0].effect_points)} {objective_module.unit(objective)} off additivity), "
                   f"which the main effects average "
                   f"away and the split shares between the factors" if interactions else "")
    return (f"At {wording.epochs_text(count)} the factor-effects table and the gap split differ ({pairs}): a main "
            f"effect is the best-minus-worst level of a model fitted to every cell, averaged over the other factors' "
            f"levels, while the split compares only the blog's and the user's cells{interaction}.")
