"""The report's plots (matplotlib, no display needed): accuracy by epoch, factor effects, the gap split.

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
from sweeps.tracking import names
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
    path = out_dir / "val_acc_by_epoch.png"
    network = stats.network_runs(swept.runs)
    if len(network) or len(swept.history):
        plot_epoch_curves(path, swept.history, swept.runs, tables.factors, verdicts=tables.verdicts,
                          blog_cell=blog_cell, user_cell=user_cell)
        drawn["epoch_plot"] = (path, "validation accuracy vs epoch")
    else:
        drawn["epoch_plot"] = (None, "validation accuracy vs epoch: no network run finished an epoch.")
    path = out_dir / "factor_effects.png"
    if any(record.kind != "residual" for record in tables.effects):
        plot_effects(path, tables.effects)
        drawn["effects_plot"] = (path, "factor effects")
    else:
        drawn["effects_plot"] = (None, "factor effects: no factor varies between the network runs of this sweep, so "
                                       "there is nothing to attribute.")
    path = out_dir / "gap.png"
    if any(gap.missing is None and gap.contributions for gap in tables.gaps):
        plot_gap(path, tables.gaps, blog_cell, user_cell, answer=tables.answer)
        drawn["gap_plot"] = (path, "the gap between the blog's and the user's cell")
    else:
        drawn["gap_plot"] = (None, "the gap plot: this sweep does not run both the blog's and the user's cell "
                                   "(see the Answer).")
    for name, (path, _) in drawn.items():
        if path is None:
            # A plot from an earlier report that is no longer drawn would contradict the text.
            (out_dir / {"epoch_plot": "val_acc_by_epoch.png", "effects_plot": "factor_effects.png",
                        "gap_plot": "gap.png"}[name]).unlink(missing_ok=True)
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


def plot_epoch_curves(path: pathlib.Path, history: pd.DataFrame, runs: pd.DataFrame, factors: Sequence[str], *,
                      verdicts: Sequence = (), blog_cell: dict | None = None, user_cell: dict | None = None) -> None:
    """Validation accuracy vs epoch, one panel per dataset x strip, one line per other-factor setting.

    Lines: mean over seeds with the 95% t-interval band, clipped to [0, 1] (from the per-epoch ``val_acc`` step
    metric; the summary metrics when there is no history). With one line per panel, the best cell (highest mean
    at the last epoch) is green, the worst red, the others blue. Baselines: one colour and dash per model.
    Published claims (``verdicts``) are labelled stars in their cell's panel.
    """
    if len(history):
        points = history.to_dict("records")
    else:
        points = [dict(row, epoch=int(row["epochs"])) for row in stats.network_runs(runs).to_dict("records")]
    rows = runs.to_dict("records")
    datasets = stats.level_order("dataset", [row["dataset"] for row in points])
    strips = stats.level_order("strip", [row["strip"] for row in points])
    line_factors = [name for name in factors if name not in ("dataset", "strip")]
    line_keys = sorted({tuple(point[name] for name in line_factors) for point in points})
    columns = len(strips)
    figure = matplotlib_figure.Figure(figsize=(max(7.0, 4.4 * columns), 3.3 * len(datasets) + 1.2),
                                      layout="constrained")
    axes = figure.subplots(len(datasets), columns, squeeze=False, sharex=True, sharey=True)
    baseline_rows = [row for row in rows if row["trainer"] == names.TRAINER_BASELINE and not math.isnan(row["val_acc"])]
    # Final mean per panel, to colour the best and the worst cell apart.
    finals = {}
    for dataset in datasets:
        for strip in strips:
            panel = [point for point in points if point["dataset"] == dataset and point["strip"] == strip]
            if panel:
                last = max(point["epoch"] for point in panel)
                finals[(dataset, strip)] = float(np.mean([point["val_acc"] for point in panel
                                                          if point["epoch"] == last]))
    best = max(finals, key=finals.get) if len(finals) > 1 else None
    worst = min(finals, key=finals.get) if len(finals) > 1 else None
    handles: dict[str, Any] = {}
    max_epoch = max((point["epoch"] for point in points), default=1)
    for row_index, dataset in enumerate(datasets):
        for column_index, strip in enumerate(strips):
            axis = axes[row_index][column_index]
            role = (" (blog's cell)" if _matches({"dataset": dataset, "strip": strip}, blog_cell) else
                    " (user's cell)" if _matches({"dataset": dataset, "strip": strip}, user_cell) else "")
            axis.set_title(f"dataset={dataset}, strip={strip}{role}", fontsize=9,
                           fontweight="bold" if role else "normal")
            panel = [point for point in points if point["dataset"] == dataset and point["strip"] == strip]
            lines: dict[tuple, dict[int, dict]] = {}
            for point in panel:
                by_epoch = lines.setdefault(tuple(point[name] for name in line_factors), {})
                by_epoch.setdefault(point["epoch"], {})[point["run_id"]] = point["val_acc"]
            for key, by_epoch in sorted(lines.items()):
                epochs = sorted(by_epoch)
                summary = [stats.t_interval(by_epoch[epoch].values(), bounds=(0.0, 1.0)) for epoch in epochs]
                if len(line_keys) > 1:
                    color = LINE_COLORS[line_keys.index(key) % len(LINE_COLORS)]
                    label = ", ".join(f"{name}={value}" for name, value in zip(line_factors, key))
                else:
                    panel_key = (dataset, strip)
                    color, label = ((BEST, "network, best cell") if panel_key == best else
                                    (WORST, "network, worst cell") if panel_key == worst else (OTHER, "network"))
                    if line_factors:
                        label += " (" + ", ".join(f"{name}={value}" for name, value in zip(line_factors, key)) + ")"
                handle = axis.plot(epochs, [item[0] for item in summary], marker="o", markersize=3.5, color=color,
                                   linewidth=1.8)[0]
                handles.setdefault(label, handle)
                low = np.array([item[1] for item in summary], dtype=float)
                high = np.array([item[2] for item in summary], dtype=float)
                if np.any(np.isfinite(low)):
                    axis.fill_between(epochs, low, high, color=color, alpha=0.18, linewidth=0)
            for model_index, model in enumerate(sorted({row["model"] for row in baseline_rows})):
                values = [row["val_acc"] for row in baseline_rows
                          if row["model"] == model and row["dataset"] == dataset and row["strip"] == strip]
                if values:
                    color, dashes = BASELINE_STYLES.get(model, ("0.5", (0, (3, 3))))
                    level = float(np.mean(values))
                    handle = axis.axhline(level, linestyle=dashes, linewidth=1.4, color=color)
                    handles.setdefault(f"{model} (TF-IDF baseline)", handle)
                    # Labelled at the right edge: one above its line, the next below it, so two baselines at the
                    # same height still read apart (published points at the right are labelled to their left).
                    above = model_index % 2 == 0
                    axis.text(0.99, level + (0.012 if above else -0.012), f"{model} {level:.2f}", color=color,
                              fontsize=8, ha="right", va="bottom" if above else "top",
                              transform=axis.get_yaxis_transform(),
                              bbox={"boxstyle": "square,pad=0.1", "facecolor": "white", "alpha": 0.7, "linewidth": 0})
            for item in verdicts:
                if _matches({"dataset": dataset, "strip": strip}, {key: value for key, value in item.cell.items()
                                                                     if key in ("dataset", "strip")}):
                    handle = axis.plot([item.epoch], [item.published], marker="*", markersize=13, color="gold",
                                       markeredgecolor="black", linestyle="none", zorder=5)[0]
                    handles.setdefault("published value", handle)
                    right = item.epoch > (min(point["epoch"] for point in points) + max_epoch) / 2
                    label = axis.annotate(f"{short_source(item.source)}: {item.published:.2f}",
                                          (item.epoch, item.published), xytext=(-9 if right else 9, 9),
                                          textcoords="offset points", ha="right" if right else "left", fontsize=8,
                                          bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "alpha": 0.85,
                                                "linewidth": 0}, zorder=6)
                    label.set_in_layout(False)
            axis.xaxis.set_major_locator(matplotlib_ticker.MaxNLocator(integer=True))
            axis.set_ylim(0, 1.02)
            axis.tick_params(labelsize=8)
            if row_index == len(datasets) - 1:
                axis.set_xlabel("epoch", fontsize=9)
            if column_index == 0:
                axis.set_ylabel("validation accuracy", fontsize=9)
            axis.grid(alpha=0.3)
    if handles:
        order = sorted(handles, key=lambda label: (label.startswith("published"), "TF-IDF" in label,
                                                   "worst" in label, "best" not in label, label))
        figure.legend([handles[label] for label in order], order, loc="outside lower center", fontsize=9,
                      ncol=min(4, len(handles)), frameon=False)
    figure.suptitle("Validation accuracy vs epoch: mean over seeds, 95% t-interval band (clipped to [0, 1])",
                    fontsize=10)
    figure.savefig(path, dpi=DPI)


def plot_effects(path: pathlib.Path, effects: Sequence[stats.Effect]) -> None:
    """Ranked factor effects in accuracy points with 95% t-intervals, one panel per epoch count."""
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
            axis.text(value, position + 0.36, f"{value:.1f}", fontsize=8, ha="center", va="bottom")
        axis.set_yticks(positions, [f"{record.term}\n{record.levels} ({100 * record.share:.0f}% of var.)"
                                    for record in ranked], fontsize=8)
        axis.set_ylim(-0.6, len(ranked) - 0.2)
        axis.axvline(0, color="black", linewidth=0.8)
        axis.set_xlabel("effect on validation accuracy, points", fontsize=9)
        axis.tick_params(axis="x", labelsize=8)
        axis.set_title(wording.epochs_text(count), fontsize=10)
    figure.legend([matplotlib_lines.Line2D([], [], color=color, linewidth=8) for color in ("tab:blue", "tab:orange")],
                  ["main effect: best minus worst level", "interaction: largest departure from additivity"],
                  loc="outside lower center", ncol=2, fontsize=9, frameon=False)
    single = all(record.single_seed for record in effects)
    intervals = "no intervals: one seed per cell" if single else "with 95% t-intervals"
    figure.suptitle(f"Factor effects, points, {intervals}", fontsize=10)
    figure.savefig(path, dpi=DPI)


def plot_gap(path: pathlib.Path, gaps: Sequence[gap_module.GapSplit], blog_cell: dict, user_cell: dict, *,
             answer=None) -> None:
    """The blog-user gap in points, its Shapley split and (from ``answer``) the headers-cut split, per epoch count."""
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
            axis.text(value, position + 0.36, f"{value:.1f}", fontsize=8, ha="center", va="bottom")
        axis.set_yticks(positions, [bar[0] for bar in bars], fontsize=8)
        axis.set_ylim(-0.6, len(bars) - 0.2)
        axis.axvline(0, color="black", linewidth=0.8)
        axis.set_xlabel("accuracy points lost, blog's cell -> user's cell", fontsize=9)
        axis.tick_params(axis="x", labelsize=8)
        axis.set_title(wording.epochs_text(gap.epochs), fontsize=10)
    intervals = ("95% t-intervals" if any(math.isfinite(gap.gap_low) for gap in answered)
                 else "no intervals: one seed per cell")
    title = (f"Blog's cell ({wording.describe(blog_cell)}) vs user's cell ({wording.describe(user_cell)}), "
             f"points, {intervals}")
    figure.suptitle("\n".join(textwrap.wrap(title, int(14 * figure.get_figwidth()))), fontsize=10)
    figure.savefig(path, dpi=DPI)
