"""The report's plots (matplotlib, no display needed): accuracy by epoch, factor effects, the gap split.

Each function takes the frames of ``sweeps.runs`` or the records of ``sweeps.stats`` / ``sweeps.gap`` and writes
one PNG.
"""

from __future__ import annotations

import math
import pathlib
from typing import Sequence

import matplotlib
import numpy as np
import pandas as pd
from matplotlib import figure as matplotlib_figure
from matplotlib import ticker as matplotlib_ticker

from sweeps import names
from sweeps import render
from sweeps import stats


def plot_epoch_curves(path: pathlib.Path, history: pd.DataFrame, runs: pd.DataFrame, factors: Sequence[str]) -> None:
    """Validation accuracy vs epoch, one panel per dataset x strip, one line per other-factor setting.

    Lines: mean over seeds with the 95% t-interval band, clipped to [0, 1] (from the per-epoch ``val_acc`` step
    metric; the summary metrics when there is no history). Dashed: TF-IDF baselines of the same dataset and
    stripping.
    """
    if len(history):
        points = history.to_dict("records")
    else:
        points = [dict(row, epoch=int(row["epochs"])) for row in stats.network_runs(runs).to_dict("records")]
    rows = runs.to_dict("records")
    panel_source = points or rows
    datasets = stats.level_order("dataset", [row["dataset"] for row in panel_source])
    strips = stats.level_order("strip", [row["strip"] for row in panel_source])
    line_factors = [name for name in factors if name not in ("dataset", "strip")]
    figure = matplotlib_figure.Figure(figsize=(4.2 * len(strips), 3.4 * len(datasets)), layout="constrained")
    axes = figure.subplots(len(datasets), len(strips), squeeze=False, sharex=True, sharey=True)
    baseline_rows = [row for row in rows
                     if row["trainer"] == names.TRAINER_BASELINE and not math.isnan(row["val_acc"])]
    colors = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    for row_index, dataset in enumerate(datasets):
        for column_index, strip in enumerate(strips):
            axis = axes[row_index][column_index]
            axis.set_title(f"dataset={dataset}, strip={strip}", fontsize=9)
            panel = [point for point in points if point["dataset"] == dataset and point["strip"] == strip]
            lines: dict[tuple, dict[int, dict]] = {}
            for point in panel:
                by_epoch = lines.setdefault(tuple(point[name] for name in line_factors), {})
                by_epoch.setdefault(point["epoch"], {})[point["run_id"]] = point["val_acc"]
            for line_index, (key, by_epoch) in enumerate(sorted(lines.items())):
                epochs = sorted(by_epoch)
                summary = [stats.t_interval(by_epoch[epoch].values(), bounds=(0.0, 1.0)) for epoch in epochs]
                color = colors[line_index % len(colors)]
                label = ", ".join(f"{name}={value}" for name, value in zip(line_factors, key)) or "network"
                axis.plot(epochs, [item[0] for item in summary], marker="o", markersize=3, color=color, label=label)
                low = np.array([item[1] for item in summary], dtype=float)
                high = np.array([item[2] for item in summary], dtype=float)
                if np.any(np.isfinite(low)):
                    axis.fill_between(epochs, low, high, color=color, alpha=0.2, linewidth=0)
            for model_index, model in enumerate(sorted({row["model"] for row in baseline_rows})):
                values = {row["run_id"]: row["val_acc"] for row in baseline_rows
                          if row["model"] == model and row["dataset"] == dataset and row["strip"] == strip}
                if values:
                    axis.axhline(float(np.mean(list(values.values()))), linestyle="--", linewidth=1,
                                 color=["0.3", "0.6"][model_index % 2], label=f"{model} (TF-IDF)")
            axis.xaxis.set_major_locator(matplotlib_ticker.MaxNLocator(integer=True))
            axis.set_ylim(0, 1.02)
            if row_index == len(datasets) - 1:
                axis.set_xlabel("epoch")
            if column_index == 0:
                axis.set_ylabel("validation accuracy")
            axis.grid(alpha=0.3)
            if axis.get_legend_handles_labels()[0]:
                axis.legend(fontsize=6, loc="lower right")
    figure.suptitle("Validation accuracy vs epoch (mean over seeds, 95% t-interval band clipped to [0, 1])",
                    fontsize=10)
    figure.savefig(path, dpi=110)


def plot_effects(path: pathlib.Path, effects: list[dict]) -> None:
    """Ranked factor effects in accuracy points with 95% t-intervals, one panel per epoch count."""
    counts = sorted({record["epochs"] for record in effects})
    figure = matplotlib_figure.Figure(figsize=(5.5 * max(1, len(counts)), 3.5), layout="constrained")
    axes = figure.subplots(1, max(1, len(counts)), squeeze=False)[0]
    for axis, count in zip(axes, counts):
        ranked = [record for record in effects if record["epochs"] == count and record["kind"] != "residual"]
        positions = np.arange(len(ranked))[::-1]
        values = np.array([record["effect_points"] for record in ranked])
        low = np.array([record["effect_low"] for record in ranked])
        high = np.array([record["effect_high"] for record in ranked])
        errors = np.vstack([np.nan_to_num(values - low), np.nan_to_num(high - values)])
        axis.barh(positions, values, xerr=errors, color=["tab:blue" if record["kind"] == "main" else "tab:orange"
                                                          for record in ranked], capsize=3)
        axis.set_yticks(positions, [f"{record['term']}\n{record['levels']} ({100 * record['share']:.0f}% var)"
                                    for record in ranked], fontsize=7)
        axis.axvline(0, color="black", linewidth=0.8)
        axis.set_xlabel("effect on validation accuracy, points")
        axis.set_title(render.epochs_text(count), fontsize=9)
    if not counts:
        axes[0].text(0.5, 0.5, "no factor varies: nothing to attribute", ha="center", va="center")
    figure.suptitle("Factor effects (blue: main, best vs worst level; orange: interaction), 95% t-interval",
                    fontsize=9)
    figure.savefig(path, dpi=110)


def plot_gap(path: pathlib.Path, gaps: list[dict], blog_cell: dict, user_cell: dict) -> None:
    """The blog-user gap in points and each differing factor's share of it, one panel per epoch count."""
    answered = [gap for gap in gaps if "missing" not in gap]
    figure = matplotlib_figure.Figure(figsize=(4.5 * max(1, len(answered)), 3.2), layout="constrained")
    axes = figure.subplots(1, max(1, len(answered)), squeeze=False)[0]
    for axis, gap in zip(axes, answered):
        labels = ["total gap"] + [f"{item['factor']}\n{item['from']} -> {item['to']}" for item in gap["contributions"]]
        values = [gap["gap_points"]] + [item["points"] for item in gap["contributions"]]
        lows = [gap["gap_low"]] + [item["low"] for item in gap["contributions"]]
        highs = [gap["gap_high"]] + [item["high"] for item in gap["contributions"]]
        errors = np.vstack([np.nan_to_num(np.subtract(values, lows)), np.nan_to_num(np.subtract(highs, values))])
        positions = np.arange(len(values))[::-1]
        axis.barh(positions, values, xerr=errors, capsize=3,
                  color=["0.4"] + ["tab:red"] * len(gap["contributions"]))
        axis.set_yticks(positions, labels, fontsize=7)
        axis.axvline(0, color="black", linewidth=0.8)
        axis.set_xlabel("accuracy points lost, blog -> user")
        axis.set_title(render.epochs_text(gap["epochs"]), fontsize=9)
    if not answered:
        axes[0].text(0.5, 0.5, "the gap cannot be measured in this sweep", ha="center", va="center")
    figure.suptitle(f"Blog ({render.describe(blog_cell)}) vs user ({render.describe(user_cell)}), 95% t-interval",
                    fontsize=9)
    figure.savefig(path, dpi=110)

