"""The report's plots (matplotlib, no display needed): the objective by epoch, factor effects, the gap split.

Every axis speaks the sweep's objective (``sweeps.report.objective``): its label, its direction (the best cell is
the lowest for a ``min`` metric) and its range (axes and bands clipped only where the metric declares bounds).

``draw_all`` draws every plot that has something to show and says why it skipped the others; each ``plot_*``
function takes the frames of ``sweeps.report.reader`` or the records of ``sweeps.report.stats`` / ``sweeps.report.gap`` / ``sweeps.report.answer``
and writes one PNG. Text is at least 8 pt at the saved size, legends stand outside the data.
"""

from __future__ import annotations

import math
import pathlib
import textwrap
from typing import Any, Sequence

import numpy as np
import pandas as pd
from matplotlib import figure as matplotlib_figure
from matplotlib import lines as matplotlib_lines
from matplotlib import ticker as matplotlib_ticker

from sweeps.report import gap as gap_module
from sweeps.report import objective as objective_module
from sweeps.report import reader
from sweeps.report import wording
from sweeps.report import stats

BEST, WORST, OTHER = "tab:green", "tab:red", "tab:blue"
# Each baseline model: its own colour and line style, so two baselines at the same height stay apart.
BASELINE_STYLES = {"linear_svm": ("0.25", (0, (6, 2))), "multinomial_nb": ("tab:purple", (0, (1, 1.5)))}
LINE_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive")
DPI = 120


def draw_all(out_dir: pathlib.Path, swept, tables, blog_cell: dict, user_cell: dict) -> dict[str, tuple[Any, str]]:
    """Draw the report's plots into ``out_dir``: name -> (path, caption), or (None, why it was not drawn)."""
    drawn: dict[str, tuple[Any, str]] = {}
    metric = swept.objective
    files = {"epoch_plot": f"{metric.name}_by_epoch.png", "effects_plot": "factor_effects.png", "gap_plot": "gap.png"}
    path = out_dir / files["epoch_plot"]
    network = stats.network_runs(swept.runs)
    if len(network) or len(swept.history):
        plot_epoch_curves(path, swept.history, swept.runs, tables.factors, verdicts=tables.verdicts,
                          blog_cell=blog_cell, user_cell=user_cell, objective=metric)
        drawn["epoch_plot"] = (path, f"{objective_module.label(metric)} vs epoch")
    else:
        drawn["epoch_plot"] = (None, f"{objective_module.label(metric)} vs epoch: no run finished an epoch.")
    path = out_dir / files["effects_plot"]
    if any(record.kind != "residual" for record in tables.effects):
        plot_effects(path, tables.effects, objective=metric)
        drawn["effects_plot"] = (path, "factor effects")
    else:
        drawn["effects_plot"] = (None, "factor effects: no factor varies between the network runs of this sweep, so "
                                       "there is nothing to attribute.")
    path = out_dir / files["gap_plot"]
    if any(gap.missing is None and gap.contributions for gap in tables.gaps):
        plot_gap(path, tables.gaps, blog_cell, user_cell, answer=tables.answer, objective=metric)
        drawn["gap_plot"] = (path, "the gap between the blog's and the user's cell")
    else:
        drawn["gap_plot"] = (None, "the gap plot: this sweep does not run both the blog's and the user's cell "
                                   "(see the Answer).")
    for name, (path, _) in drawn.items():
        if path is None:
            # A plot from an earlier report that is no longer drawn would contradict the text.
            (out_dir / files[name]).unlink(missing_ok=True)
    return drawn


def error_bars(values: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray | None:
    """``xerr`` for ``barh``: distances to the interval ends, or None where no interval exists (one seed)."""
    low, high = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
    if not np.any(np.isfinite(low)):
        return None
    return np.vstack([np.nan_to_num(values - low), np.nan_to_num(high - values)])


def short_source(source: str) -> str:
    """A claim's source for a plot label: up to the first comma or parenthesis (``Keras PR #5585``)."""
    return source.split(",")[0].split(" (")[0].strip()


def _matches(row: dict, cell: dict | None) -> bool:
    return bool(cell) and all(str(row.get(key)) == str(value) for key, value in cell.items() if key in row)


def panel_factors(factors: Sequence[str], columns: Sequence[str]) -> tuple[str | None, str | None]:
    """The factors of the panels' rows and columns: dataset x strip for the 20 Newsgroups runs (whatever the sweep
    varies), else the first two cell factors (one factor: one row of panels)."""
    if "dataset" in columns and "strip" in columns:
        return "dataset", "strip"
    if len(factors) >= 2:
        return factors[0], factors[1]
    return None, (factors[0] if factors else None)


def plot_epoch_curves(path: pathlib.Path, history: pd.DataFrame, runs: pd.DataFrame, factors: Sequence[str], *,
                      verdicts: Sequence = (), blog_cell: dict | None = None, user_cell: dict | None = None,
                      objective: objective_module.Metric = objective_module.DEFAULT) -> matplotlib_figure.Figure:
    """The objective vs epoch, one panel per value pair of two factors (``panel_factors``), one line per setting
    of the others.

    Lines: mean over seeds with the 95% t-interval band, clipped to the objective's range where it declares one
    (from the per-epoch step metric; the summary metrics when there is no history); non-finite values are left
    out (the report lists them). With one line per panel, the best cell (best mean at the last epoch in the
    objective's direction) is green, the worst red, the others blue. References (baselines): one colour and dash
    per model. Published claims (``verdicts``) are labelled stars in their cell's panel.
    """
    value = reader.VALUE
    if len(history):
        points = history.to_dict("records")
    else:
        points = [dict(row, epoch=int(row["epochs"])) for row in stats.network_runs(runs).to_dict("records")]
    points = [point for point in points if not pd.isna(point[value])]
    rows = runs.to_dict("records")
    row_factor, column_factor = panel_factors(factors, list(runs.columns))

    def level(point: dict, name: str | None) -> str:
        return "" if name is None else point.get(name)

    def panel_cell(row_level, column_level) -> dict:
        return {name: level_value for name, level_value in ((row_factor, row_level), (column_factor, column_level))
                if name is not None}

    row_levels = stats.level_order(row_factor or "", [level(point, row_factor) for point in points]) or [""]
    column_levels = stats.level_order(column_factor or "", [level(point, column_factor) for point in points]) or [""]
    line_factors = [name for name in factors if name not in (row_factor, column_factor)]
    line_keys = sorted({tuple(point[name] for name in line_factors) for point in points})
    low_bound, high_bound = objective_module.bounds(objective)
    kinds = sorted({str(row["trainer"]) for row in rows if row["trainer"] not in reader.REFERENCE_KINDS})
    # The built-in trainer is "the network"; another trainer is named as its runs name it.
    trainer_word = "network" if kinds in ([], ["keras"]) else ", ".join(kinds)
    figure = matplotlib_figure.Figure(figsize=(max(7.0, 4.4 * len(column_levels)), 3.3 * len(row_levels) + 1.2),
                                      layout="constrained")
    axes = figure.subplots(len(row_levels), len(column_levels), squeeze=False, sharex=True, sharey=True)
    baseline_rows = [row for row in rows if row["trainer"] in reader.REFERENCE_KINDS and not math.isnan(row[value])]
    # Final mean per panel, to colour the best and the worst cell apart (in the objective's direction).
    finals = {}
    for row_level in row_levels:
        for column_level in column_levels:
            panel = [point for point in points
                     if level(point, row_factor) == row_level and level(point, column_factor) == column_level]
            if panel:
                last = max(point["epoch"] for point in panel)
                finals[(row_level, column_level)] = objective_module.sign(objective) * float(np.mean(
                    [point[value] for point in panel if point["epoch"] == last]))
    best = max(finals, key=finals.get) if len(finals) > 1 else None
    worst = min(finals, key=finals.get) if len(finals) > 1 else None
    handles: dict[str, Any] = {}
    max_epoch = max((point["epoch"] for point in points), default=1)
    for row_index, row_level in enumerate(row_levels):
        for column_index, column_level in enumerate(column_levels):
            axis = axes[row_index][column_index]
            cell = panel_cell(row_level, column_level)
            role = (" (blog's cell)" if _matches(cell, blog_cell) else
                    " (user's cell)" if _matches(cell, user_cell) else "")
            axis.set_title(f"{wording.describe(cell)}{role}", fontsize=9, fontweight="bold" if role else "normal")
            panel = [point for point in points
                     if level(point, row_factor) == row_level and level(point, column_factor) == column_level]
            lines: dict[tuple, dict[int, dict]] = {}
            for point in panel:
                by_epoch = lines.setdefault(tuple(point[name] for name in line_factors), {})
                by_epoch.setdefault(point["epoch"], {})[point["run_id"]] = point[value]
            for key, by_epoch in sorted(lines.items()):
                epochs = sorted(by_epoch)
                summary = [stats.t_interval(by_epoch[epoch].values(), bounds=(low_bound, high_bound))
                           for epoch in epochs]
                if len(line_keys) > 1:
                    color = LINE_COLORS[line_keys.index(key) % len(LINE_COLORS)]
                    label = ", ".join(f"{name}={level_value}" for name, level_value in zip(line_factors, key))
                else:
                    panel_key = (row_level, column_level)
                    color, label = ((BEST, f"{trainer_word}, best cell") if panel_key == best else
                                    (WORST, f"{trainer_word}, worst cell") if panel_key == worst else
                                    (OTHER, trainer_word))
                    if line_factors:
                        label += " (" + ", ".join(f"{name}={level_value}"
                                                  for name, level_value in zip(line_factors, key)) + ")"
                handle = axis.plot(epochs, [item[0] for item in summary], marker="o", markersize=3.5, color=color,
                                   linewidth=1.8)[0]
                handles.setdefault(label, handle)
                low = np.array([item[1] for item in summary], dtype=float)
                high = np.array([item[2] for item in summary], dtype=float)
                if np.any(np.isfinite(low)):
                    axis.fill_between(epochs, low, high, color=color, alpha=0.18, linewidth=0)
            for model_index, model in enumerate(sorted({row["model"] for row in baseline_rows})):
                values = [row[value] for row in baseline_rows if row["model"] == model and _matches(row, cell)]
                if values:
                    color, dashes = BASELINE_STYLES.get(model, ("0.5", (0, (3, 3))))
                    baseline_level = float(np.mean(values))
                    handle = axis.axhline(baseline_level, linestyle=dashes, linewidth=1.4, color=color)
                    handles.setdefault(f"{model} (TF-IDF baseline)", handle)
                    # Labelled at the right edge: one above its line, the next below it, so two baselines at the
                    # same height still read apart (published points at the right are labelled to their left).
                    above = model_index % 2 == 0
                    axis.text(0.99, baseline_level + (0.012 if above else -0.012), f"{model} {baseline_level:.2f}",
                              color=color, fontsize=8, ha="right", va="bottom" if above else "top",
                              transform=axis.get_yaxis_transform(),
                              bbox={"boxstyle": "square,pad=0.1", "facecolor": "white", "alpha": 0.7, "linewidth": 0})
            for item in verdicts:
                if _matches(cell, {key: claimed for key, claimed in item.cell.items() if key in cell}):
                    handle = axis.plot([item.epoch], [item.published], marker="*", markersize=13, color="gold",
                                       markeredgecolor="black", linestyle="none", zorder=5)[0]
                    handles.setdefault("published value", handle)
                    right = item.epoch > (min(point["epoch"] for point in points) + max_epoch) / 2
                    # A value near the top of an accuracy axis is labelled below its star, clear of the title.
                    below = objective_module.is_fraction(objective) and item.published > 0.9
                    label = axis.annotate(f"{short_source(item.source)}: {item.published:.2f}",
                                          (item.epoch, item.published), xytext=(-9 if right else 9, -9 if below else 9),
                                          textcoords="offset points", ha="right" if right else "left",
                                          va="top" if below else "baseline", fontsize=8,
                                          bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "alpha": 0.85,
                                                "linewidth": 0}, zorder=6)
                    label.set_in_layout(False)
            axis.xaxis.set_major_locator(matplotlib_ticker.MaxNLocator(integer=True))
            axis.tick_params(labelsize=8)
            if row_index == len(row_levels) - 1:
                axis.set_xlabel("epoch", fontsize=9)
            if column_index == 0:
                axis.set_ylabel(objective_module.label(objective), fontsize=9)
            axis.grid(alpha=0.3)
    # Once every panel holds its data: the panels share the value axis, and a limit set earlier fixes it for all.
    set_value_limits(axes[0][0], objective)
    if handles:
        order = sorted(handles, key=lambda label: (label.startswith("published"), "TF-IDF" in label,
                                                   "worst" in label, "best" not in label, label))
        figure.legend([handles[label] for label in order], order, loc="outside lower center", fontsize=9,
                      ncol=min(4, len(handles)), frameon=False)
    clipped = f" ({objective_module.clipped_text(objective)[2:]})" if objective_module.bounded(objective) else ""
    direction = "" if objective.mode == "max" else ", lower is better"
    figure.suptitle(f"{objective_module.title(objective)} vs epoch: mean over seeds, 95% t-interval band{clipped}"
                    f"{direction}", fontsize=10)
    figure.savefig(path, dpi=DPI)
    return figure


def set_value_limits(axis, objective: objective_module.Metric) -> None:
    """The value axis: [0, 1.02] for a fraction (as the study's plots always were); else the data's own range,
    held at a declared bound where the data reach past it (a loss never below 0)."""
    if objective_module.is_fraction(objective):
        axis.set_ylim(0, 1.02)
        return
    low, high = axis.get_ylim()
    if objective.low is not None:
        low = max(low, objective.low)
    if objective.high is not None:
        high = min(high, objective.high)
    axis.set_ylim(low, high)


def effect_label(objective: objective_module.Metric) -> str:
    """The effects' axis: ``effect on validation accuracy, points``; for a ``min`` metric, how much lower the
    best level is."""
    text = f"effect on {objective_module.label(objective)}, {objective_module.unit(objective)}"
    return text if objective.mode == "max" else f"{text} (best level lower by)"


def gap_label(objective: objective_module.Metric) -> str:
    """The gap's axis: what the user's cell gives up, ``points lost`` or (lower is better) ``rmse added``."""
    if objective == objective_module.DEFAULT:
        return "accuracy points lost, blog's cell -> user's cell"
    change = "lost" if objective.mode == "max" else "added"
    return f"{objective_module.unit(objective)} {change}, blog's cell -> user's cell"


def plot_effects(path: pathlib.Path, effects: Sequence[stats.Effect], *,
                 objective: objective_module.Metric = objective_module.DEFAULT) -> matplotlib_figure.Figure:
    """Ranked factor effects (points, or the objective's units; positive = better) with 95% t-intervals, one panel
    per epoch count."""
    counts = sorted({record.epochs for record in effects if record.kind != "residual"})
    figure = matplotlib_figure.Figure(figsize=(max(7.0, 5.0 * len(counts)), 3.6), layout="constrained")
    axes = figure.subplots(1, max(1, len(counts)), squeeze=False)[0]
    for axis, count in zip(axes, counts):
        ranked = [record for record in effects if record.epochs == count and record.kind != "residual"]
        positions = np.arange(len(ranked))[::-1]
        values = np.array([record.effect_points for record in ranked])
        low = np.array([record.effect_low for record in ranked])
        high = np.array([record.effect_high for record in ranked])
        axis.barh(positions, values, xerr=error_bars(values, low, high), capsize=3, height=0.6,
                  color=["tab:blue" if record.kind == "main" else "tab:orange" for record in ranked])
        for position, value in zip(positions, values):
            axis.text(value, position + 0.36, objective_module.amount_text(objective, value), fontsize=8, ha="center",
                      va="bottom")
        axis.set_yticks(positions, [f"{record.term}\n{record.levels} ({100 * max(record.share, 0.0):.0f}% of var.)"
                                    for record in ranked], fontsize=8)
        axis.set_ylim(-0.6, len(ranked) - 0.2)
        axis.axvline(0, color="black", linewidth=0.8)
        axis.set_xlabel(effect_label(objective), fontsize=9)
        axis.tick_params(axis="x", labelsize=8)
        axis.set_title(wording.epochs_text(count), fontsize=10)
    figure.legend([matplotlib_lines.Line2D([], [], color=color, linewidth=8) for color in ("tab:blue", "tab:orange")],
                  ["main effect: best minus worst level", "interaction: largest departure from additivity"],
                  loc="outside lower center", ncol=2, fontsize=9, frameon=False)
    single = all(record.single_seed for record in effects)
    intervals = "no intervals: one seed per cell" if single else "with 95% t-intervals"
    figure.suptitle(f"Factor effects, {objective_module.unit(objective)}, {intervals}", fontsize=10)
    figure.savefig(path, dpi=DPI)
    return figure


def plot_gap(path: pathlib.Path, gaps: Sequence[gap_module.GapSplit], blog_cell: dict, user_cell: dict, *,
             answer=None, objective: objective_module.Metric = objective_module.DEFAULT) -> matplotlib_figure.Figure:
    """The blog-user gap (points, or the objective's units; positive = the user's cell is worse), its Shapley split
    and (from ``answer``, where it weighed the header leak) the headers-cut split, per epoch count."""
    answered = [gap for gap in gaps if gap.missing is None and gap.contributions]
    by_epochs = {item.epochs: item for item in (answer.by_epochs if answer is not None else [])}
    figure = matplotlib_figure.Figure(figsize=(max(7.0, 5.2 * len(answered)), 3.8), layout="constrained")
    axes = figure.subplots(1, max(1, len(answered)), squeeze=False)[0]
    for axis, gap in zip(axes, answered):
        bars = [("total gap", gap.gap_points, gap.gap_low, gap.gap_high, "0.35")]
        bars += [(f"Shapley: {item.factor}\n{item.from_value} -> {item.to_value}", item.points, item.low,
                  item.high, "tab:orange") for item in gap.contributions]
        found = by_epochs.get(gap.epochs)
        if found is not None and found.leak_effect is not None:
            cut = found.headers_cut.cell.get("strip", "")
            bars += [(f"headers cut on blog's data\n(strip={cut})", found.leak_effect.points, found.leak_effect.low,
                      found.leak_effect.high, "tab:purple"),
                     ("the rest\n(headers cut -> user)", found.remainder.points, found.remainder.low,
                      found.remainder.high, "tab:cyan")]
        values = np.array([bar[1] for bar in bars])
        errors = error_bars(values, np.array([bar[2] for bar in bars]), np.array([bar[3] for bar in bars]))
        positions = np.arange(len(bars))[::-1]
        axis.barh(positions, values, xerr=errors, capsize=3, height=0.6, color=[bar[4] for bar in bars])
        for position, value in zip(positions, values):
            axis.text(value, position + 0.36, objective_module.amount_text(objective, value), fontsize=8, ha="center",
                      va="bottom")
        axis.set_yticks(positions, [bar[0] for bar in bars], fontsize=8)
        axis.set_ylim(-0.6, len(bars) - 0.2)
        axis.axvline(0, color="black", linewidth=0.8)
        axis.set_xlabel(gap_label(objective), fontsize=9)
        axis.tick_params(axis="x", labelsize=8)
        axis.set_title(wording.epochs_text(gap.epochs), fontsize=10)
    intervals = ("95% t-intervals" if any(math.isfinite(gap.gap_low) for gap in answered)
                 else "no intervals: one seed per cell")
    title = (f"Blog's cell ({wording.describe(blog_cell)}) vs user's cell ({wording.describe(user_cell)}), "
             f"{objective_module.unit(objective)}, {intervals}")
    figure.suptitle("\n".join(textwrap.wrap(title, int(14 * figure.get_figwidth()))), fontsize=10)
    figure.savefig(path, dpi=DPI)
    return figure
