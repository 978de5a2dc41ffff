"""The stages' part of a search's report (``confirm_stats.StageTables``): sentences for the answer, a Markdown
section with one row per confirmed configuration, and ``confirmed.csv``."""

from __future__ import annotations

import math
import pathlib

import pandas as pd

from sweeps.report import confirm_stats
from sweeps.report import objective as objective_module
from sweeps.report import search_stats


def interval_text(metric: objective_module.Metric, low: float, high: float) -> str:
    if math.isnan(low) or math.isnan(high):
        return "(no interval from one seed)"
    return f"[{objective_module.value_text(metric, low)}, {objective_module.value_text(metric, high)}]"


def cell_text(cell: dict) -> str:
    return ", ".join(f"{name}={search_stats.factor_value_text(value)}" for name, value in cell.items()) \
        or "(no factor)"


def sentences(tables: confirm_stats.StageTables, metric: objective_module.Metric) -> list[str]:
    """The confirmed best (mean, interval, the search's value of it and its optimism) and the final score."""
    percent = f"{tables.confidence:.0%}"
    found = []
    best = tables.best
    if best is not None:
        score = best.score
        found.append(
            f"Confirmed on {score.seeds} fresh seeds, the best of the {len(tables.confirmed)} retrained "
            f"configurations: {cell_text(score.cell)}, mean {objective_module.label(metric)} "
            f"{objective_module.value_text(metric, score.mean)} {interval_text(metric, score.low, score.high)} "
            f"({percent} t interval over seeds); the search's own value of it was "
            f"{objective_module.value_text(metric, best.search_value)}, optimistic by "
            f"{objective_module.value_text(metric, best.optimism)} "
            f"{interval_text(metric, best.optimism_low, best.optimism_high)}"
            # A negative optimism reads oddly on its own: say what it means.
            f"{' (the search underrated it)' if best.optimism < 0 else ''}.")
    if tables.final is not None:
        final = tables.final
        settings = ", ".join(f"{name}={value}" for name, value in tables.final_settings.items()) or "its settings"
        held_out = " (bydate's official test set, for the Keras network)" if tables.final_on_test_set else ""
        found.append(
            f"Final: {cell_text(final.cell)} retrained with {settings} on {final.seeds} seeds and scored once on the "
            f"data those settings hold out{held_out}: mean {objective_module.label(metric)} "
            f"{objective_module.value_text(metric, final.mean)} "
            f"{interval_text(metric, final.low, final.high)}; nothing in the selection read these scores.")
    return found


def markdown(tables: confirm_stats.StageTables, metric: objective_module.Metric) -> list[str]:
    """The report's section on the stages: one row per confirmed configuration, best first, then the final."""
    percent = f"{tables.confidence:.0%}"
    lines = ["## Confirmed on fresh seeds", "",
             f"The search's best configurations retrained on seeds the search never used (no scheduler); mean "
             f"{metric.name} with its {percent} Student-t interval over seeds{objective_module.clipped_text(metric)}, "
             f"the search's own value of the configuration, and the optimism (the search's value minus the mean, "
             f"{objective_module.higher(metric)} is better: positive means the search looked better than the "
             f"configuration is; its interval is the mean's, moved).", ""]
    if tables.confirmed:
        lines += ["| rank | configuration | seeds | mean | interval | search | optimism [interval] |",
                  "|---|---|---|---|---|---|---|"]
        for rank, item in enumerate(tables.confirmed, start=1):
            score = item.score
            lines.append(f"| {rank} | {cell_text(score.cell)} | {score.seeds} | "
                         f"{objective_module.value_text(metric, score.mean)} | "
                         f"{interval_text(metric, score.low, score.high)} | "
                         f"{objective_module.value_text(metric, item.search_value)} | "
                         f"{objective_module.value_text(metric, item.optimism)} "
                         f"{interval_text(metric, item.optimism_low, item.optimism_high)} |")
    else:
        lines.append("No confirm stage ran.")
    if tables.final is not None:
        lines += ["", "## Final", ""] + [f"- {sentence}" for sentence in sentences(tables, metric)[-1:]]
    return lines


def write_table(out_dir: pathlib.Path, tables: confirm_stats.StageTables) -> dict[str, pathlib.Path]:
    """``confirmed.csv``: one row per confirmed configuration (best first), then the final stage's row."""
    rows = [{"stage": "confirm", "configuration": item.score.configuration, "cell": cell_text(item.score.cell),
             "seeds": item.score.seeds, "mean": item.score.mean, "low": item.score.low, "high": item.score.high,
             "search_value": item.search_value, "optimism": item.optimism, "optimism_low": item.optimism_low,
             "optimism_high": item.optimism_high} for item in tables.confirmed]
    if tables.final is not None:
        final = tables.final
        rows.append({"stage": "final", "configuration": final.configuration, "cell": cell_text(final.cell),
                     "seeds": final.seeds, "mean": final.mean, "low": final.low, "high": final.high})
    path = out_dir / "confirmed.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return {"confirmed": path}
