"""The search report's plots (matplotlib, no display): the optimization history, parallel coordinates, the
factors' importances with their intervals, and the partial dependence of the two most important factors.

They are the plots Optuna's ``optuna.visualization`` draws for a study (``plot_optimization_history``,
``plot_parallel_coordinate``, ``plot_param_importances``, ``plot_slice``), as PNGs for the report folder and the
parent run. Each takes ``sweeps.report.search_stats``' records; axes speak the sweep's objective (its label, its
direction: the best-so-far line follows ``max`` or ``min``), and a log distribution gets a log axis.
"""

from __future__ import annotations

import math
import pathlib
from typing import Any

import matplotlib
import numpy as np
from matplotlib import cm as matplotlib_cm
from matplotlib import colors as matplotlib_colors
from matplotlib import figure as matplotlib_figure
from matplotlib import lines as matplotlib_lines

from sweeps.report import objective as objective_module
from sweeps.report import search_stats
from sweeps.spec import space as space_module

DPI = 120
# Where a parallel-coordinates line crosses the axis of a conditional factor its trial did not sample.
NOT_SAMPLED = -0.12
FILES = {"history_plot": "optimization_history.png", "parallel_plot": "parallel_coordinates.png",
         "importance_plot": "importances.png", "partial_plot": "partial_dependence.png"}
BEST, TRIAL, OTHER = "tab:red", "tab:blue", "0.6"


def colour_map(metric: objective_module.Metric):
    """Brighter is better in either direction: viridis for ``max``, reversed for ``min``."""
    return matplotlib.colormaps["viridis" if metric.mode == "max" else "viridis_r"]


def draw_all(out_dir: pathlib.Path, tables: search_stats.SearchTables, space: dict[str, space_module.Distribution],
             metric: objective_module.Metric) -> dict[str, tuple[Any, str]]:
    """Draw the search's plots into ``out_dir``: name -> (path, caption), or (None, why it was not drawn)."""
    drawn: dict[str, tuple[Any, str]] = {}
    done = search_stats.finished(tables.trials)
    label = objective_module.label(metric)
    if len(tables.trials):
        plot_history(out_dir / FILES["history_plot"], tables.trials, metric)
        drawn["history_plot"] = (out_dir / FILES["history_plot"], f"{label} per trial and the best so far")
    else:
        drawn["history_plot"] = (None, "the optimization history: no trial reported a value.")
    if len(done) >= 2:
        plot_parallel(out_dir / FILES["parallel_plot"], done, space, metric)
        drawn["parallel_plot"] = (out_dir / FILES["parallel_plot"], f"the searched factors, coloured by {label}")
    else:
        drawn["parallel_plot"] = (None, "parallel coordinates: fewer than two finished trials.")
    if tables.importances:
        plot_importances(out_dir / FILES["importance_plot"], tables.importances, on=tables.compared)
        drawn["importance_plot"] = (out_dir / FILES["importance_plot"], "fANOVA importance with its bootstrap interval")
    else:
        drawn["importance_plot"] = (None, "importances: " + "; ".join(sorted(set(tables.left_out.values()))) + ".")
    top = [item.factor for item in tables.importances[:2]]
    if top:
        # The trials the importances compared make the bins; the ones a scheduler stopped earlier are shown apart.
        compared = done[done["epochs"] == tables.importance_epochs] if tables.stopped else done
        plot_partial_dependence(out_dir / FILES["partial_plot"], compared, {name: space[name] for name in top}, metric,
                                stopped=done[done["epochs"] < tables.importance_epochs] if tables.stopped else None)
        drawn["partial_plot"] = (out_dir / FILES["partial_plot"], f"partial dependence of {' and '.join(top)}")
    else:
        drawn["partial_plot"] = (None, "partial dependence: no importance to pick the top factors by.")
    for name, (path, _) in drawn.items():
        if path is None:
            (out_dir / FILES[name]).unlink(missing_ok=True)
    return drawn


def plot_history(path: pathlib.Path, trials, metric: objective_module.Metric) -> None:
    """The objective per trial in the order the trials started, and the best so far (a step line) in the
    metric's direction. Hollow: a trial its scheduler stopped before the last epoch count; grey: not finished. A
    configuration trained at several seeds is its mean with a bar for its 95% interval over the seeds."""
    figure = matplotlib_figure.Figure(figsize=(7.5, 4.0), layout="constrained")
    axes = figure.add_subplot()
    finished = trials["status"] == search_stats.FINISHED
    spread = trials[trials["low"].notna() & trials["high"].notna()] if "low" in trials else trials.iloc[:0]
    if len(spread):
        axes.vlines(spread["number"], spread["low"].astype(float), spread["high"].astype(float), color=TRIAL,
                    alpha=0.5, linewidth=1.2, zorder=2, label="95% interval over the seeds")
    deepest = trials["epochs"].max() if trials["epochs"].notna().any() else None
    full = finished & ((trials["epochs"] == deepest) if deepest is not None else True)
    axes.scatter(trials.loc[full, "number"], trials.loc[full, "value"], color=TRIAL, s=22, zorder=3,
                 label="trial" + (f" ({deepest} epochs)" if deepest is not None else ""))
    stopped = finished & ~full
    if stopped.any():
        axes.scatter(trials.loc[stopped, "number"], trials.loc[stopped, "value"], facecolors="none", edgecolors=TRIAL,
                     s=22, zorder=3, label="stopped early (its last value)")
    if (~finished).any():
        axes.scatter(trials.loc[~finished, "number"], trials.loc[~finished, "value"], marker="x", color=OTHER, s=22,
                     zorder=3, label="not finished")
    axes.step(trials["number"], trials["best_so_far"], where="post", color=BEST, linewidth=1.8,
              label=f"best so far ({objective_module.higher(metric)} is better)")
    axes.set_xlabel("trial (in the order it started)")
    axes.set_ylabel(objective_module.title(metric))
    axes.set_title(f"Optimization history: {len(trials)} trials")
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    figure.savefig(path, dpi=DPI)


def axis_position(distribution: space_module.Distribution, values) -> tuple[np.ndarray, list[tuple[float, str]]]:
    """Values on a parallel-coordinates axis scaled to [0, 1] (log10 first for a log distribution; a choice at
    its index), and the ticks (position, label) to write beside the axis."""
    if distribution.kind == "choice":
        count = max(len(distribution.values) - 1, 1)
        found = [search_stats.choice_position(distribution, value) for value in values]
        positions = np.array([math.nan if position is None else position / count for position in found], dtype=float)
        return positions, [(position / count, str(value)) for position, value in enumerate(distribution.values)]
    low, high = float(distribution.low), float(distribution.high)
    scale = np.log10 if distribution.log else (lambda item: np.asarray(item, dtype=float))
    numbers = np.array([math.nan if value is None else float(value) for value in values], dtype=float)
    positions = (scale(numbers) - scale(low)) / (scale(high) - scale(low))
    ticks = np.logspace(math.log10(low), math.log10(high), 5) if distribution.log else np.linspace(low, high, 5)
    return positions, [((scale(tick) - scale(low)) / (scale(high) - scale(low)), f"{tick:.3g}") for tick in ticks]


def plot_parallel(path: pathlib.Path, trials, space: dict[str, space_module.Distribution],
                  metric: objective_module.Metric) -> None:
    """One vertical axis per searched factor (log axes for log distributions) and a last one for the objective;
    one line per finished trial, coloured by its objective (brighter is better); the best trial drawn on top."""
    names = list(space)
    values = trials["value"].astype(float).to_numpy()
    low, high = float(np.nanmin(values)), float(np.nanmax(values))
    spread = high - low or 1.0
    columns, ticks = [], []
    for name in names:
        positions, marks = axis_position(space[name], trials[name].tolist())
        if np.isnan(positions).any():
            # A conditional factor a trial did not sample (its ``when`` left it out): a mark below the axis, so the
            # trial's line stays whole and is not read as a value.
            positions = np.where(np.isnan(positions), NOT_SAMPLED, positions)
            marks = [*marks, (NOT_SAMPLED, "not sampled")]
        columns.append(positions)
        ticks.append(marks)
    columns.append((values - low) / spread)
    ticks.append([(position, f"{low + position * spread:.4g}") for position in np.linspace(0, 1, 5)])
    grid = np.vstack(columns).T
    figure = matplotlib_figure.Figure(figsize=(max(6.5, 2.0 * (len(names) + 1) + 1.5), 4.5), layout="constrained")
    axes = figure.add_subplot()
    colours = colour_map(metric)
    norm = matplotlib_colors.Normalize(vmin=low, vmax=high)
    order = np.argsort(values if metric.mode == "max" else -values)  # the best drawn last, on top
    x = np.arange(len(names) + 1)
    for row in order:
        axes.plot(x, grid[row], color=colours(norm(values[row])), alpha=0.85, linewidth=1.4)
    axes.plot(x, grid[order[-1]], color=colours(norm(values[order[-1]])), linewidth=3.0, label="best trial")
    for position, marks in enumerate(ticks):
        axes.axvline(position, color="0.3", linewidth=0.8)
        for height, text in marks:
            axes.text(position + 0.03, height, text, fontsize=8, va="center", ha="left",
                      bbox={"facecolor": "white", "alpha": 0.75, "edgecolor": "none", "pad": 0.5})
    labels = [f"{name}\n(log)" if space[name].log else name for name in names] + [metric.name]
    axes.set_xticks(x, labels)
    axes.set_yticks([])
    axes.set_xlim(-0.2, len(names) + 0.6)
    axes.set_ylim(min(-0.05, float(np.nanmin(grid)) - 0.05), 1.05)
    for side in ("left", "right", "top"):
        axes.spines[side].set_visible(False)
    figure.colorbar(matplotlib_cm.ScalarMappable(norm=norm, cmap=colours), ax=axes,
                    label=objective_module.title(metric))
    axes.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), fontsize=8, frameon=False)
    axes.set_title(f"Parallel coordinates: {len(trials)} finished trials", loc="right")
    figure.savefig(path, dpi=DPI)


def plot_importances(path: pathlib.Path, importances: list[search_stats.Importance], *, on: str = "") -> None:
    """Horizontal bars of each factor's fANOVA importance (Optuna's value), the bootstrap interval as a whisker;
    ``on``: which trials they compare, for the title."""
    shown = list(reversed(importances))
    figure = matplotlib_figure.Figure(figsize=(7.0, 1.2 + 0.55 * len(shown)), layout="constrained")
    axes = figure.add_subplot()
    y = np.arange(len(shown))
    axes.barh(y, [item.value for item in shown], color=TRIAL, alpha=0.8, height=0.6)
    errors = np.array([[max(item.value - item.low, 0.0), max(item.high - item.value, 0.0)]
                       if math.isfinite(item.low) else [0.0, 0.0] for item in shown]).T
    axes.errorbar([item.value for item in shown], y, xerr=errors, fmt="none", ecolor="black", capsize=4)
    for row, item in zip(y, shown):
        axes.text(min(max(item.high, item.value) + 0.02, 1.0), row, f"{item.value:.2f}", va="center", fontsize=8)
    axes.set_yticks(y, [item.factor for item in shown])
    axes.set_xlim(0, 1.08)
    resamples = importances[0].resamples if importances else 0
    axes.set_xlabel(f"fANOVA importance (share of variance; {resamples} bootstrap resamples, 95% interval)")
    axes.set_title("Which factors matter" + (f" ({on})" if on else ""))
    axes.grid(axis="x", alpha=0.3)
    figure.savefig(path, dpi=DPI)


def plot_partial_dependence(path: pathlib.Path, trials, space: dict[str, space_module.Distribution],
                            metric: objective_module.Metric, *, stopped=None) -> None:
    """For each of (up to) two factors: every finished trial's value against the factor, and the mean per bin
    (``search_stats.partial_dependence``); a log axis for a log distribution. ``stopped``: trials a scheduler
    stopped before ``trials``' epoch count, drawn as hollow points outside the bins."""
    figure = matplotlib_figure.Figure(figsize=(4.6 * len(space) + 0.6, 3.8), layout="constrained")
    groups = [(trials, {"color": OTHER})]
    if stopped is not None and len(stopped):
        groups.append((stopped, {"facecolors": "none", "edgecolors": OTHER, "alpha": 0.7}))
    for index, (name, distribution) in enumerate(space.items()):
        axes = figure.add_subplot(1, len(space), index + 1)
        bins = search_stats.partial_dependence(trials, name, distribution)
        for group, style in groups:
            present = group[group[name].notna()]
            if distribution.kind == "choice":
                jitter = np.random.default_rng(0).uniform(-0.12, 0.12, len(present))
                axes.scatter([search_stats.choice_position(distribution, value) + shift
                              for value, shift in zip(present[name], jitter)], present["value"], s=14, zorder=2,
                             **style)
            else:
                axes.scatter(present[name].astype(float), present["value"], s=14, zorder=2, **style)
        if distribution.kind == "choice":
            axes.hlines(bins["mean"], bins["center"] - 0.3, bins["center"] + 0.3, color=BEST, linewidth=2.2, zorder=3)
            axes.set_xticks(range(len(distribution.values)), [str(value) for value in distribution.values])
        else:
            for _, item in bins.iterrows():
                axes.hlines(item["mean"], item["low"], item["high"], color=BEST, linewidth=2.2, zorder=3)
            axes.plot(bins["center"], bins["mean"], "o", color=BEST, zorder=3, markersize=4)
            if distribution.log:
                axes.set_xscale("log")
        axes.set_xlabel(name + (" (log)" if distribution.log else ""))
        axes.set_ylabel(objective_module.title(metric) if index == 0 else "")
        axes.grid(alpha=0.3)
    epochs = f" at {int(trials['epochs'].iloc[0])} epochs" if len(groups) > 1 else ""
    handles = [matplotlib_lines.Line2D([], [], color=OTHER, marker="o", linestyle="none", label=f"a trial{epochs}"),
               matplotlib_lines.Line2D([], [], color=BEST, linewidth=2.2, label=f"mean per bin{epochs}")]
    if len(groups) > 1:
        handles.append(matplotlib_lines.Line2D([], [], color=OTHER, marker="o", markerfacecolor="none",
                                               linestyle="none", label="stopped earlier (value at fewer epochs)"))
    figure.legend(handles=handles, loc="outside upper center", ncol=len(handles), fontsize=8, frameon=False)
    figure.savefig(path, dpi=DPI)
