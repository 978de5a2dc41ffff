"""The report of a search: the best configuration and the top trials, the optimization history, the factors'
importances with intervals, parallel coordinates and the partial dependence of the top two factors.

``sweeps.report.make.make_report`` hands a sweep here when its parent run carries ``glovesweep.space`` (the
search's distributions; ``SweepFrame.space``): a search has no cells, seeds per cell or gap, so the grid's answer
would not fit. Statistics come from ``sweeps.report.search_stats``, plots from ``sweeps.report.search_plots``.
Written into the report folder: ``runs.parquet`` and ``history.parquet`` (as for a grid), ``trials.csv`` (one row
per trial), ``importances.csv``, ``report.md``, ``report.html`` and the PNGs; logged to the parent run under
``report/``. ``sweeps.run.parent_run`` puts the best configuration on the parent run as tags.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
from typing import Any

import mlflow
import pandas as pd

from sweeps.report import confirm_report
from sweeps.report import confirm_stats
from sweeps.report import html_report
from sweeps.report import objective as objective_module
from sweeps.report import reader
from sweeps.report import render
from sweeps.report import search_plots
from sweeps.report import search_stats


# What a grid's report writes (sweeps.report.make) that a search's does not.
GRID_FILES = ("cells.csv", "effects.csv", "gap.csv", "answer.json", "claims.json", "factor_effects.png", "gap.png")


@dataclasses.dataclass
class SearchReport:
    """What ``make_search_report`` wrote: the folder, file paths by name, the runs read and the statistics.

    ``verdicts`` is empty (a search judges no published claims); ``answers`` are the sentences the run prints.
    """

    out_dir: pathlib.Path
    files: dict[str, pathlib.Path]
    sweep: reader.SweepFrame
    search: search_stats.SearchTables
    verdicts: list = dataclasses.field(default_factory=list)
    stages: confirm_stats.StageTables | None = None

    @property
    def answers(self) -> list[str]:
        return answer_sentences(self.search, self.sweep.objective) + \
            (confirm_report.sentences(self.stages, self.sweep.objective) if self.stages else [])

    @property
    def confirmed(self) -> confirm_stats.Confirmed | None:
        """The confirm stage's best configuration, where the search ran one."""
        return self.stages.best if self.stages else None

    @property
    def best_configuration(self) -> dict[str, Any]:
        """The best configuration's value of each searched factor (a factor a ``when`` left out is absent): the
        confirmed one where the search ran a confirm stage, else its best trial's."""
        if self.confirmed is not None:
            return dict(self.confirmed.score.cell)
        best = self.search.best
        if best is None:
            return {}
        return {name: best[name] for name in self.search.factors if not _missing(best[name])}


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def configuration_text(trial: pd.Series, factors: list[str]) -> str:
    """``loss=log_loss, alpha=0.00122512``: the searched factors a trial ran (those a ``when`` left out omitted)."""
    return ", ".join(f"{name}={search_stats.factor_value_text(trial[name])}" for name in factors
                     if not _missing(trial[name])) or "(no factor)"


def interval_text(metric: objective_module.Metric, trial: pd.Series) -> str:
    """``[0.912, 0.948]``: a trial's interval over its seeds; ``-`` where it has none (one seed)."""
    if _missing(trial.get("low")) or _missing(trial.get("high")):
        return "-"
    return f"[{objective_module.value_text(metric, trial['low'])}, {objective_module.value_text(metric, trial['high'])}]"


def answer_sentences(tables: search_stats.SearchTables, metric: objective_module.Metric) -> list[str]:
    """The best configuration, and which factor matters most, in a sentence each."""
    best = tables.best
    done = search_stats.finished(tables.trials)
    if best is None:
        return [f"No trial of the {len(tables.trials)} finished with a value of {metric.name}: no best configuration."]
    epochs = f" at {int(best['epochs'])} epochs" if not _missing(best["epochs"]) else ""
    seeds = int(best.get("seeds", 1) or 1)
    if seeds > 1:
        caveat = (f"the mean of {seeds} seeds, 95% t interval {interval_text(metric, best)}; still the best of many "
                  f"means, so optimistic")
    else:
        caveat = "one run at one seed, so the best of many is optimistic"
    sentences = [f"The best of {len(done)} finished trials ({len(tables.trials)} in all): "
                 f"{configuration_text(best, tables.factors)}, {objective_module.label(metric)} "
                 f"{objective_module.value_text(metric, best['value'])}{epochs} (trial {int(best['number'])}, run "
                 f"{best['run_id']}); {caveat}."]
    if tables.importances:
        parts = [f"{item.factor} {item.value:.2f} [{item.low:.2f}, {item.high:.2f}]" for item in tables.importances]
        sentences.append(f"fANOVA importance (share of the variance of {metric.name}, 95% bootstrap interval"
                         f"{importance_basis(tables)}): " + "; ".join(parts) + ".")
    return sentences


def on_trials(tables: search_stats.SearchTables, finished_count: int) -> str:
    """The trials the importance table compares: all finished ones, or those that ran to the last epoch count."""
    if not tables.stopped:
        return f"the {finished_count} finished trials"
    return (f"{tables.compared} (the scheduler stopped {tables.stopped} earlier: their values stand at fewer "
            f"epochs, so they are left out, as Optuna leaves pruned trials out of its importances)")


def stopped_text(tables: search_stats.SearchTables) -> str:
    """How the partial dependence shows the trials a scheduler stopped early, where it stopped some."""
    if not tables.stopped:
        return ""
    return f". The bins hold {tables.compared}; the {tables.stopped} stopped earlier are hollow points, their values " \
           f"at fewer epochs"


def importance_basis(tables: search_stats.SearchTables) -> str:
    """``, on the 10 trials that ran to 15 epochs``: which trials an importance compares, where a scheduler
    stopped some early (empty otherwise)."""
    if not tables.stopped:
        return ""
    return f", on {tables.compared}; {tables.stopped} stopped earlier are left out"


def first_rung_markdown(tables: search_stats.SearchTables) -> list[str]:
    """The importances of every trial at the first epoch count all reached, where a scheduler stopped some."""
    rung = tables.first_rung
    if rung is None:
        return []
    return (["", f"At {rung.epochs} epochs, which all {rung.trials} finished trials reached (where the scheduler "
                 f"compared them first), the importances are those of early progress:", ""]
            + importance_markdown(rung.importances, rung.left_out, heading=f"importance at epoch {rung.epochs}"))


def importance_markdown(importances: list[search_stats.Importance], left_out: dict[str, str], *,
                        heading: str = "importance") -> list[str]:
    """Importances as a Markdown table (none: no table), then the factors left out, each with why."""
    lines = []
    if importances:
        lines += [f"| factor | {heading} [95% interval] | resamples |", "|---|---|---|"]
        lines += [f"| {item.factor} | {item.value:.3f} [{item.low:.3f}, {item.high:.3f}] | {item.resamples} |"
                  for item in importances]
    return lines + [f"- {name}: left out ({why})." for name, why in left_out.items()]


def report_markdown(swept: reader.SweepFrame, tables: search_stats.SearchTables, *, reproduce: str,
                    plots: dict[str, tuple[Any, str]], stages: confirm_stats.StageTables | None = None) -> str:
    """The whole ``report.md`` of a search."""
    metric = swept.objective
    done = search_stats.finished(tables.trials)
    space_text = ", ".join(f"{name} {distribution.text()}" for name, distribution in swept.space.items())
    lines = [f"# Search report: {swept.sweep_name}", "",
             f"{render.origin_text(swept)}: {len(tables.trials)} trials ({len(done)} finished), searched factors "
             f"{space_text}; objective {metric.name} ({metric.mode}).", "", f"Reproduce: `{reproduce}`", "",
             "## The best configuration", ""]
    lines += [f"- {sentence}" for sentence in answer_sentences(tables, metric)]
    lines += [f"- {sentence}" for sentence in confirm_report.sentences(stages, metric)] if stages else []
    lines += ["", f"A trial's value is its {metric.name} at the largest epoch count it reached (a trial its scheduler "
                  f"stopped early: its last value, as the searcher was told){seeds_text(tables)}. The best "
                  f"{search_stats.TOP}, best first (every trial in trials.csv):", ""]
    lines += top_markdown(tables, metric)
    lines += [""] + confirm_report.markdown(stages, metric) if stages else []
    lines += ["", "## Optimization history", "", _image(plots, "history_plot"), "",
              "## Which factors matter", "",
              f"fANOVA importance as Optuna computes it (`FanovaImportanceEvaluator(seed={tables.seed})`, normalized "
              f"to sum to 1) on {on_trials(tables, len(done))}; interval: 95% percentile bootstrap over trials "
              f"({tables.bootstrap_samples} resamples with replacement, the forest refitted with its own seed each "
              f"time), a rough guide (importances.csv): on 100 synthetic studies of 40 trials with known "
              f"importances these intervals held the truth 77% of the time, not 95%, because fANOVA's estimate is "
              f"biased (small effects pulled up, log-scale factors weighed on a linear scale; a factor with no "
              f"effect never gets 0), and more trials do not fix that (glovesweep's "
              f"docs/results/importance-coverage).", ""]
    lines += importance_markdown(tables.importances, tables.left_out) + first_rung_markdown(tables)
    lines += ["", _image(plots, "importance_plot"), "", "## Parallel coordinates", "", _image(plots, "parallel_plot"),
              "", "## Partial dependence of the top two factors", "",
              f"Each finished trial's {metric.name} against the factor, and the mean per bin (a choice's value, else "
              f"bins of equal trial counts): the marginal as the trials saw it, not a controlled effect"
              f"{stopped_text(tables)}.", "",
              _image(plots, "partial_plot")]
    if swept.skipped:
        lines += ["", f"Left out (no finished epoch): {', '.join(swept.skipped)}."]
    return "\n".join(lines) + "\n"


def _image(plots: dict[str, tuple[Any, str]], name: str) -> str:
    path, caption = plots[name]
    return f"![{caption}]({path.name})" if path is not None else f"Not drawn: {caption}"


def several_seeds(tables: search_stats.SearchTables) -> bool:
    """Whether some trial is a configuration trained at several seeds (``seeds: k``)."""
    return "seeds" in tables.trials and bool((tables.trials["seeds"] > 1).any())


def seeds_text(tables: search_stats.SearchTables) -> str:
    """How a configuration's value comes from its seeds, where it has several."""
    if not several_seeds(tables):
        return ""
    return ("; a trial is a configuration trained at several seeds side by side, its value their mean (the "
            "searcher and the scheduler were told the mean at each epoch) with a 95% Student-t interval over the "
            "seeds, each seed's run in the MLflow UI under the tag glovesweep.config_id")


def top_markdown(tables: search_stats.SearchTables, metric: objective_module.Metric) -> list[str]:
    """The best trials as a Markdown table: rank, trial number, factors, value (with its interval over the seeds
    and their count where a trial has several), epochs reached."""
    seeded = several_seeds(tables)
    header = ["rank", "trial", *tables.factors, metric.name] + (["95% interval", "seeds"] if seeded else []) + \
        ["epochs"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for rank, (_, trial) in enumerate(tables.top.iterrows(), start=1):
        cells = [str(rank), str(int(trial["number"]))]
        cells += ["-" if _missing(trial[name]) else search_stats.factor_value_text(trial[name])
                  for name in tables.factors]
        cells += [objective_module.value_text(metric, trial["value"])]
        cells += [interval_text(metric, trial), str(int(trial["seeds"]))] if seeded else []
        cells += ["" if _missing(trial["epochs"]) else str(int(trial["epochs"]))]
        lines.append("| " + " | ".join(cells) + " |")
    return lines if len(tables.top) else ["No finished trial."]


def write_tables(out_dir: pathlib.Path, tables: search_stats.SearchTables) -> dict[str, pathlib.Path]:
    """``trials.csv`` (one row per trial, with the best so far) and ``importances.csv`` (the importances, then
    those at the first epoch count where a scheduler stopped trials early; ``epochs`` and ``trials`` say which
    trials each row compares)."""
    paths = {"trials": out_dir / "trials.csv", "importances": out_dir / "importances.csv"}
    tables.trials.to_csv(paths["trials"], index=False)
    rows = [dict(dataclasses.asdict(item), epochs=tables.importance_epochs, trials=tables.importance_trials)
            for item in tables.importances]
    if tables.first_rung is not None:
        rows += [dict(dataclasses.asdict(item), epochs=tables.first_rung.epochs, trials=tables.first_rung.trials)
                 for item in tables.first_rung.importances]
    pd.DataFrame(rows, columns=["factor", "value", "low", "high", "resamples", "epochs", "trials"]).astype(
        {"epochs": "Int64"}).to_csv(paths["importances"], index=False)
    return paths


def make_search_report(swept: reader.SweepFrame, out_dir: pathlib.Path, files: dict[str, pathlib.Path], *,
                       reproduce: str, bootstrap_samples: int = search_stats.DEFAULT_IMPORTANCE_SAMPLES,
                       seed: int = 0, log_artifacts: bool = False) -> SearchReport:
    """Compute the search's statistics, draw its plots and write its report into ``out_dir`` (which already holds
    the frames, ``files``); log the folder to the parent run under ``report/`` when ``log_artifacts``."""
    tables = search_stats.search_tables(swept, bootstrap_samples=bootstrap_samples, seed=seed)
    stages = confirm_stats.stage_tables(swept, tables.trials)
    for name in GRID_FILES + (f"{swept.objective.name}_by_epoch.png",):
        # A grid's report of this sweep written into the same folder before would contradict this one.
        (out_dir / name).unlink(missing_ok=True)
    files = dict(files, **write_tables(out_dir, tables))
    files.update(confirm_report.write_table(out_dir, stages) if stages else {})
    drawn = search_plots.draw_all(out_dir, tables, swept.space, swept.objective)
    files.update({name: path for name, (path, _) in drawn.items() if path is not None})
    markdown = report_markdown(swept, tables, reproduce=reproduce, plots=drawn, stages=stages)
    files.update({"markdown": out_dir / "report.md", "html": out_dir / "report.html"})
    files["markdown"].write_text(markdown)
    files["html"].write_text(html_report.to_html(markdown, out_dir, title=f"Search report: {swept.sweep_name}"))
    if log_artifacts:
        mlflow.MlflowClient(tracking_uri=swept.tracking_uri).log_artifacts(swept.parent_run_id, str(out_dir),
                                                                          artifact_path="report")
    return SearchReport(out_dir=out_dir, files=files, sweep=swept, search=tables, stages=stages)
