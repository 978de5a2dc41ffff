"""The report's text: CSV tables, Markdown tables, the answer sentences and ``report.md``.

Works on the records of ``sweeps.report.stats`` and ``sweeps.report.gap``; knows nothing about MLflow.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import pathlib
from typing import Any, Sequence

import pandas as pd

from sweeps.report import claims as claims_module
from sweeps.report import gap as gap_module
from sweeps.report import newsgroups
from sweeps.report import objective as objective_module
from sweeps.report import reader
from sweeps.report import stats
from sweeps.report import wording
from sweeps.tracking import names
from trainer import baselines

CELL_COLUMNS = ("model", "{factors}", "epochs", "n", "mean", "std", "ci_low", "ci_high", "leakage", "seeds")
EFFECT_COLUMNS = ("epochs", "rank", "term", "kind", "levels", "share", "share_low", "share_high", "effect_points",
                  "effect_low", "effect_high", "cells", "runs", "single_seed")
GAP_COLUMNS = ("epochs", "blog", "user", "gap_points", "factor", "from", "to", "points", "low", "high", "stratum",
               "missing")


@dataclasses.dataclass
class Tables:
    """What the statistics gave, ready to render: cell records, effects, gap splits, answer sentences.

    ``notes``: sentences on why main effects and the gap split differ; ``answer``: the ``sweeps.report.answer.Answer``;
    ``verdicts``: the claims' ``sweeps.report.claims.Verdict`` list.
    """

    factors: list[str]
    cells: list[dict]
    effects: list[stats.Effect]
    gaps: list[gap_module.GapSplit]
    answers: list[str]
    bootstrap_samples: int
    notes: list[str] = dataclasses.field(default_factory=list)
    answer: Any = None
    verdicts: list = dataclasses.field(default_factory=list)


def gap_rows(gaps: Sequence[gap_module.GapSplit]) -> list[dict]:
    """One flat row of gap.csv per gap contribution (per epoch count one row without contributions if missing)."""
    rows = []
    for gap in gaps:
        common = {"epochs": gap.epochs, "gap_points": gap.gap_points, "blog": gap.blog, "user": gap.user,
                  "stratum": gap.stratum, "missing": gap.missing or ""}
        rows += [dict(contribution.to_dict(), **common) for contribution in gap.contributions] or [common]
    return rows


def write_tables(folder: pathlib.Path, tables: Tables) -> dict[str, pathlib.Path]:
    """Write ``cells.csv``, ``effects.csv`` and ``gap.csv`` into ``folder``; returns their paths by name."""
    paths = {"cells": folder / "cells.csv", "effects": folder / "effects.csv", "gap": folder / "gap.csv"}
    cell_columns = [column for name in CELL_COLUMNS
                    for column in (tables.factors if name == "{factors}" else [name])]
    if any(record.get("non_finite") for record in tables.cells):
        cell_columns.append("non_finite")
    write_csv(paths["cells"], tables.cells, cell_columns)
    write_csv(paths["effects"], [effect.to_dict() for effect in tables.effects], EFFECT_COLUMNS)
    write_csv(paths["gap"], gap_rows(tables.gaps), GAP_COLUMNS)
    return paths


def write_csv(path: pathlib.Path, records: list[dict], columns: Sequence[str]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for record in records:
            writer.writerow({key: ("" if value is None or (isinstance(value, float) and math.isnan(value))
                                   else value) for key, value in record.items()})


def _format_cell(record: dict | None, objective: objective_module.Metric = objective_module.DEFAULT) -> str:
    if record is None:
        return ""
    value = lambda number: objective_module.value_text(objective, number)  # noqa: E731 - a local spelling
    failed = record.get("non_finite", 0)
    note = f", {failed} non-finite left out" if failed else ""
    if record["n"] == 0:
        return f"no finite value ({failed} non-finite)"
    if record["n"] < 2:
        return f"{value(record['mean'])} (n=1, no interval{note})"
    return f"{value(record['mean'])} [{value(record['ci_low'])}, {value(record['ci_high'])}] n={record['n']}{note}"


def _markdown_table(header: Sequence[str], lines: Sequence[Sequence[str]]) -> list[str]:
    output = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    output += ["| " + " | ".join(str(value) for value in line) + " |" for line in lines]
    return output


def cell_markdown(cells: list[dict], factors: Sequence[str],
                  objective: objective_module.Metric = objective_module.DEFAULT) -> list[str]:
    """The cell table in Markdown: one line per trainer cell, a column per epoch count, references beside, and
    the ``leakage`` column where the runs measure it."""
    network = [record for record in cells if record["epochs"] is not None]
    counts = sorted({record["epochs"] for record in network})
    models = sorted({record["model"] for record in network})
    baseline_models = sorted({record["model"] for record in cells if record["epochs"] is None})
    baseline_factors = [name for name in factors if name in baselines.DATA_FIELDS]
    by_key = {(record["model"], tuple(record[name] for name in factors), record["epochs"]): record
              for record in cells}
    keys = list(dict.fromkeys(tuple(record[name] for name in factors) for record in network))
    leakage = any(not math.isnan(record["leakage"]) for record in cells)
    header = list(factors) + [f"{model} @{count}" for model in models for count in counts]
    header += [f"{model} (TF-IDF)" for model in baseline_models] + (["leakage"] if leakage else [])
    lines = []
    for key in keys:
        line = list(key)
        line += [_format_cell(by_key.get((model, key, count)), objective) for model in models for count in counts]
        baseline_key = tuple(value if name in baseline_factors else "" for name, value in zip(factors, key))
        line += [_format_cell(by_key.get((model, baseline_key, None)), objective) for model in baseline_models]
        leak = next((by_key[(model, key, count)]["leakage"] for model in models for count in counts
                     if (model, key, count) in by_key), math.nan)
        if leakage:
            line.append("" if math.isnan(leak) else f"{leak:.3f}")
        lines.append(line)
    if not network:
        # Only baselines in this sweep: list them alone.
        header = list(factors) + ["model", objective.name]
        lines = [[record[name] for name in factors] + [record["model"], _format_cell(record, objective)]
                 for record in cells]
    return _markdown_table(header, lines)


def _effect_text(value: float, low: float, high: float,
                 objective: objective_module.Metric = objective_module.DEFAULT) -> str:
    if math.isnan(value):
        return ""
    amount = lambda number: objective_module.amount_text(objective, number)  # noqa: E731 - a local spelling
    interval = "" if math.isnan(low) else f" [{amount(low)}, {amount(high)}]"
    return f"{amount(value)}{interval}"


def _share_text(value: float, low: float, high: float) -> str:
    if math.isnan(value):
        return ""
    interval = "" if math.isnan(low) else f" [{100 * low:.0f}%, {100 * high:.0f}%]"
    # A share is never negative; an exactly-zero effect's sum of squares can come out as -1e-15.
    return f"{100 * max(value, 0.0):.0f}%{interval}"


def effects_markdown(effects: Sequence[stats.Effect],
                     objective: objective_module.Metric = objective_module.DEFAULT) -> list[str]:
    lines = [[record.epochs, record.rank or "", record.term, record.levels,
              _share_text(record.share, record.share_low, record.share_high),
              _effect_text(record.effect_points, record.effect_low, record.effect_high, objective)]
             for record in effects]
    return _markdown_table(["epochs", "rank", "term", "best vs worst level", "share of variance [95% bootstrap]",
                            f"effect, {objective_module.unit(objective)} [95% t-interval]"], lines)


def gap_markdown(gaps: Sequence[gap_module.GapSplit],
                 objective: objective_module.Metric = objective_module.DEFAULT) -> list[str]:
    lines = []
    unit = objective_module.unit(objective)
    for gap in gaps:
        if gap.missing is not None:
            lines.append([gap.epochs, "", "", "", gap.missing, ""])
            continue
        lines.append([gap.epochs, objective_module.value_text(objective, gap.blog),
                      objective_module.value_text(objective, gap.user),
                      _effect_text(gap.gap_points, gap.gap_low, gap.gap_high, objective),
                      "; ".join(f"{item.factor} {_effect_text(item.points, item.low, item.high, objective)}"
                                for item in gap.contributions),
                      gap.stratum])
    return _markdown_table(["epochs", "blog cell", "user cell", f"gap, {unit} [95% t-interval]",
                            f"explained by, {unit} [95% t-interval]", "others held at"], lines)


def non_finite_markdown(runs, objective: objective_module.Metric = objective_module.DEFAULT) -> list[str]:
    """One line per run with a NaN or infinite metric: its cell, seed and ``metric@epoch`` list; [] if none."""
    flagged = stats.non_finite_runs(runs)
    if flagged.empty:
        return []
    lines = ["", f"Non-finite values (NaN or infinite) the runs reported; a {objective.name} value among them is left "
                 f"out of every mean, interval, share and gap above:", ""]
    for run_id, rows in flagged.groupby("run_id", sort=False):
        first = rows.iloc[0]
        # The run's tag lists every metric and epoch; a value the tag missed is named by the row itself.
        marks = first["non_finite"] if isinstance(first["non_finite"], str) else ", ".join(
            f"{objective.name}@{int(epochs)}" for epochs in rows["epochs"])
        seed = "" if pd.isna(first["seed"]) else f", seed {int(first['seed'])}"
        lines.append(f"- run `{run_id}` ({first['cell'] or first['model']}{seed}): {marks.replace(',', ', ')}")
    return lines




def effect_unit_words(metric: objective_module.Metric) -> str:
    """``accuracy points``, ``points of <label>`` or the metric's own units and direction, for the effects' text."""
    if metric == objective_module.DEFAULT:
        return "accuracy points"
    if objective_module.is_fraction(metric) and metric.mode == "max":
        return f"points of {objective_module.label(metric)}"
    return f"{objective_module.unit(metric)}, positive = better ({objective_module.higher(metric)})"


def origin_text(swept: reader.SweepFrame) -> str:
    """Where the runs were read from, as a report's first line says it."""
    # Paths relative to the working directory and store URIs without credentials: a report folder gets committed.
    if swept.tracking_uri:
        return f"Parent run `{swept.parent_run_id}` at `{reader.shown_store(swept.tracking_uri)}`"
    return (f"Read from `{reader.shown_path(swept.source)}` (runs.parquet, history.parquet); the runs were logged "
            f"to MLflow parent run `{swept.parent_run_id}`")


def report_markdown(swept: reader.SweepFrame, tables: Tables, *, reproduce: str,
                    plots: dict[str, tuple[Any, str]] | None = None) -> str:
    """The whole ``report.md``: the question, the answer, the claims, the three tables and the plots, in the
    sweep's objective (``swept.objective``).

    ``plots`` maps a plot's name to ``(path or None, caption or why it was not drawn)``.
    """
    metric = swept.objective
    label, clipped = objective_module.label(metric), objective_module.clipped_text(metric)
    references = reader.reference_rows(swept.runs)
    network = swept.runs[~references]
    baseline_count = swept.runs.loc[references, "run_id"].nunique()
    kinds = sorted(set(network["trainer"].dropna()))
    runs_text = (f"{network['run_id'].nunique()} network runs, {baseline_count} baseline runs"
                 if baseline_count or kinds == [names.TRAINER_KERAS] else
                 f"{network['run_id'].nunique()} runs of {', '.join(kinds) or 'no trainer'}")
    lines = [f"# Sweep report: {swept.sweep_name}", "",
             f"{origin_text(swept)}: {runs_text}, epoch counts "
             f"{stats.epoch_counts(swept.runs) or 'none'}, cell factors {', '.join(tables.factors) or 'none'}.", "",
             f"Reproduce: `{reproduce}`", ""]
    lines += newsgroups.preamble_markdown(swept)
    lines += ["", "## Answer", ""]
    if tables.answer is not None:
        lines += [f"Blog cell {wording.describe(tables.answer.blog_cell)}, user cell {wording.describe(tables.answer.user_cell)} "
                  f"(from {tables.answer.cells_from}); every number below is computed (answer.json).", ""]
    lines += [f"- {sentence}" for sentence in tables.answers] or ["- No network runs to answer from."]
    lines += ["", "## Published claims against this sweep", ""]
    if tables.verdicts:
        lines += ["A published number is one run: it is consistent when it lies inside the 95% prediction interval "
                  f"of a single run, mean +- t * s * sqrt(1 + 1/n){f' ({clipped[2:]})' if clipped else ''}. Also in "
                  f"claims.json.", ""]
        lines += claims_module.claims_markdown(tables.verdicts, metric)
    else:
        lines += ["The sweep file lists no claims this sweep's cells can judge (a `claims:` block names them)."]
    lines += ["", f"## {objective_module.title(metric)} by cell", "",
              f"Mean over seeds [95% Student-t interval of the mean{clipped}], n = seeds. With one seed there "
              "is no interval (shown as n=1).", ""]
    crossed = stats.crossed_seed_parts(swept.runs)
    if crossed:
        lines += [f"The runs cross the seed's parts ({', '.join(crossed)}), so a cell's runs share seed values and "
                  "are no independent draws; every interval here treats them as independent, and is narrower than "
                  "a random-effects interval would be. `python scripts/seed_noise.py` decomposes one cell's seed "
                  "noise with intervals.", ""]
    lines += cell_markdown(tables.cells, tables.factors, metric)
    lines += non_finite_markdown(swept.runs, metric)
    lines += ["", f"## What moves {label}", "",
              f"Share of the variance of {label} per term (Type II sums of squares, as statsmodels' "
              f"anova_lm(typ=2); interactions listed from {100 * stats.INTERACTION_MIN_SHARE:.0f}%), and the effect "
              f"in {effect_unit_words(metric)} (main: best minus worst level, others held fixed; interaction: largest "
              f"departure from additivity). Effect intervals: Student-t of the contrast with the seed noise pooled "
              f"within cells (about 95% coverage on synthetic 3-seed designs, where a percentile bootstrap of seeds "
              f"covers only about 81%). Share intervals: {tables.bootstrap_samples} seeded residual-bootstrap "
              f"resamples of seeds within cells, a rough guide (about 88% coverage on those designs).", ""]
    lines += effects_markdown(tables.effects, metric) if tables.effects else ["No factor varies between network runs."]
    if any(record.single_seed for record in tables.effects):
        lines += ["", "Some epoch counts have one seed per cell: seed noise cannot be estimated, so they have no "
                      "intervals."]
    lines += ["", "## The gap between the blog's cell and the user's cell", "",
              "Split by Shapley values over the switching order; intervals: Student-t of each contrast, seed noise "
              "pooled within cells."
              + ("" if metric.mode == "max" else f" Lower {metric.name} is better: a positive gap or part means the "
                 f"user's cell has that much more {metric.name}."), ""]
    lines += gap_markdown(tables.gaps, metric) if tables.gaps else ["No network runs."]
    if tables.notes:
        lines += ["", "Why this split and the main effects above differ:", ""] + [f"- {note}" for note in tables.notes]
    if swept.skipped:
        lines += ["", f"Left out (no finished epoch): {', '.join(swept.skipped)}."]
    lines += ["", "## Plots", ""]
    for path, caption in (plots or {}).values():
        lines += [f"![{caption}]({path.name})" if path is not None else f"Not drawn: {caption}", ""]
    return "\n".join(lines)
