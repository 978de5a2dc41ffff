"""``glovesweep report``: read a sweep's runs, tabulate them, and attribute the gap to its factors.

Everything is in the sweep's objective (``sweeps.report.objective``: the parent run's ``glovesweep.objective``, or
validation accuracy for runs logged before it); below, "validation accuracy" is the built-in trainer's objective.

Three rooms, one direction: ``sweeps.report.reader`` reads the runs into frames (from MLflow, or from a report folder's
``runs.parquet`` + ``history.parquet``, so a committed study can be reported on a fresh clone without its MLflow
store); ``sweeps.report.stats`` and ``sweeps.report.gap`` compute on the frames; ``sweeps.report.render`` and ``sweeps.report.plots`` write.
This module wires them and is the command. It writes, into one folder (default ``reports/<sweep name>``; logged
to the sweep's parent run under ``report/`` when the runs came from MLflow):

- ``runs.parquet``, ``history.parquet``: the frames (``sweeps.report.reader.RUNS_SCHEMA`` / ``HISTORY_SCHEMA``);
- ``cells.csv``: mean and 95% t-interval over seeds of validation accuracy per cell and epoch count, with the
  TF-IDF baselines beside the network;
- ``effects.csv``: each factor's main effect and the two-way interactions that matter, as a share of the
  variance of validation accuracy (Type II sums of squares) and in accuracy points, with intervals;
- ``gap.csv``: the gap between the blog's cell and the user's cell split among the factors that differ (Shapley
  values), with intervals;
- ``answer.json``: the computed answer (``sweeps.report.answer``: the label leak against the dataset and stripping);
- ``claims.json``: each published claim of the sweep file's ``claims:`` block with its verdict (``sweeps.report.claims``);
- ``sweep.yaml``: the sweep file (the cells and claims came from it unless flags named the cells);
- ``report.md`` and ``report.html`` (the same report, images embedded), ``val_acc_by_epoch.png``,
  ``factor_effects.png``, ``gap.png`` (a plot with nothing to show is not drawn; the report says why).

Run ``glovesweep report --smoke-test`` to log a small synthetic sweep to a temporary store and report on it.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import logging
import os
import pathlib
import re
import shlex
import tempfile
import time
from typing import Sequence

import mlflow
import numpy as np
import pandas as pd
from mlflow import entities as mlflow_entities
from mlflow import exceptions as mlflow_exceptions

from sweeps.report import answer as answer_module
from sweeps.report import claims as claims_module
from sweeps.report import gap as gap_module
from sweeps.report import html_report
from sweeps.tracking import names
from sweeps.report import plots
from sweeps.report import render
from sweeps.report import wording
from sweeps.report import report_inputs
from sweeps.report import reader
from sweeps.report import search_report
from sweeps.report import search_stats
from sweeps.report import stats
from sweeps.tracking import mlflow_runs
from trainer import config as config_module

logger = logging.getLogger(__name__)

# Used when neither the flags nor the sweep file's answer block name the cells (see sweeps.report.report_inputs).
DEFAULT_BLOG_CELL = ",".join(f"{key}={value}" for key, value in report_inputs.DEFAULT_BLOG_CELL.items())
DEFAULT_USER_CELL = ",".join(f"{key}={value}" for key, value in report_inputs.DEFAULT_USER_CELL.items())
CHOICES = stats.CHOICES


def parse_cell(items: str | Sequence[str], *,
               settings: Sequence[str] | None = reader.PARAM_COLUMNS) -> dict[str, str]:
    """Parse ``key=value`` items (comma- or space-separated) into a cell spec, e.g. ``dataset=19997,strip=none``.

    Keys must be ``settings`` (default: the Keras trainer's ``TrainerConfig`` fields, whose choice fields must
    have allowed values); ``settings=None`` checks only the form and that no key is seed or epochs, for a report
    whose runs (any trainer's) are not read yet: ``make_report`` checks the keys against the runs' params.
    """
    items = [items] if isinstance(items, str) else list(items)
    cell: dict[str, str] = {}
    for item in items:
        for part in item.split(","):
            part = part.strip()
            if not part:
                continue
            key, separator, value = part.partition("=")
            key, value = key.strip(), value.strip()
            if not separator or not key or not value:
                raise ValueError(f"cell item {part!r} is not key=value; write e.g. dataset=19997,strip=none")
            if key in reader.NOT_CELL_FACTORS + reader.REPLICATE_FACTORS or (settings is not None
                                                                              and key not in settings):
                allowed = reader.without_replicates(settings if settings is not None else reader.PARAM_COLUMNS)
                raise ValueError(f"cell key {key!r} is not a trainer setting that can define a cell; "
                                 f"allowed: {', '.join(allowed)}")
            if settings is not None and key in CHOICES and value not in [str(choice) for choice in CHOICES[key]]:
                raise ValueError(f"cell value {key}={value!r} is not allowed; allowed values: "
                                 f"{', '.join(str(choice) for choice in CHOICES[key])}")
            cell[key] = value
    if not cell:
        raise ValueError("empty cell: give key=value items, e.g. dataset=19997,strip=none")
    return cell


@dataclasses.dataclass
class Report:
    """What ``make_report`` wrote: the output folder, file paths by name, the runs read and the tables.

    ``answer`` is the computed answer (also ``answer.json``), ``verdicts`` the claims' verdicts (``claims.json``).
    """

    out_dir: pathlib.Path
    files: dict[str, pathlib.Path]
    sweep: reader.SweepFrame
    tables: render.Tables
    answer: answer_module.Answer
    verdicts: list[claims_module.Verdict]

    @property
    def answers(self) -> list[str]:
        return self.tables.answers


def make_report(source: str | os.PathLike, *, tracking_uri: str | None = None, out_dir: str | os.PathLike | None = None,
                experiment: str | None = None, blog_cell: dict[str, str] | None = None,
                user_cell: dict[str, str] | None = None, bootstrap_samples: int | None = None,
                seed: int = 0, log_artifacts: bool = True) -> Report | search_report.SearchReport:
    """Read a sweep and write the Parquet tables, CSVs, Markdown report and plots.

    A search (its parent run carries ``glovesweep.space``) gets the search's report instead
    (``sweeps.report.search_report``: the best configuration, history, importances), returned as a ``SearchReport``.

    Parameters
    ----------
    source : str or path
        A report folder holding ``runs.parquet`` (no MLflow needed), else the sweep's name (tag
        ``glovesweep.sweep_name``; the latest parent run with it) or parent run id in ``tracking_uri``.
    out_dir : path, optional
        Output folder; default ``reports/<sweep name>`` in the working directory.
    blog_cell, user_cell : dict, optional
        The two cells whose gap the answer explains; default: the sweep file's ``answer:`` block (the folder's
        ``sweep.yaml`` or the parent run's artifact), else ``DEFAULT_BLOG_CELL`` / ``DEFAULT_USER_CELL``.
    bootstrap_samples, seed : int
        Resamples and random seed of the share-of-variance bootstrap (default 1000), or of a search's importance
        bootstrap (default ``search_stats.DEFAULT_IMPORTANCE_SAMPLES``).
    log_artifacts : bool
        Also log the folder to the parent run under ``report/`` (runs read from MLflow only).
    """
    if bootstrap_samples is not None and bootstrap_samples < 1:
        raise ValueError(f"bootstrap_samples={bootstrap_samples}: must be >= 1, e.g. 1000")
    started = time.perf_counter()
    from_folder = reader.is_folder(source)
    swept = reader.read_runs(source, tracking_uri=tracking_uri, experiment=experiment)
    if swept.runs.empty:
        raise ValueError(f"sweep {swept.sweep_name!r} (parent run {swept.parent_run_id}) has no child run with a "
                         f"finished epoch yet; wait for trials to report, or check that the sweep ran")
    for cell in (blog_cell, user_cell):
        if cell:
            # Flags name the runs' own settings, whichever trainer made them.
            parse_cell([f"{key}={value}" for key, value in cell.items()], settings=swept.params)
    out_dir = pathlib.Path(out_dir) if out_dir else pathlib.Path("reports") / _safe_name(swept.sweep_name)
    files = reader.write_frames(swept, out_dir)
    # As render words the source: no absolute path and no password in a file that may be committed.
    target = (shlex.quote(reader.shown_path(source)) if from_folder else
              f"{swept.parent_run_id} --tracking-uri {shlex.quote(reader.shown_store(swept.tracking_uri))}")
    if swept.space:
        if blog_cell or user_cell:
            raise ValueError(f"sweep {swept.sweep_name!r} is a search: it has no blog's or user's cell to compare; "
                             f"drop --blog-cell and --user-cell")
        return search_report.make_search_report(
            swept, out_dir, files, reproduce=f"glovesweep report {target}", seed=seed,
            bootstrap_samples=bootstrap_samples or search_stats.DEFAULT_IMPORTANCE_SAMPLES,
            log_artifacts=log_artifacts and not from_folder)
    bootstrap_samples = bootstrap_samples or stats.DEFAULT_BOOTSTRAP_SAMPLES
    inputs = report_inputs.resolve(str(source), swept, blog_cell=blog_cell, user_cell=user_cell)
    blog_cell, user_cell = inputs.blog_cell, inputs.user_cell
    factors, metric = swept.factors, swept.objective
    effects = stats.attribute(swept.runs, factors, bootstrap_samples=bootstrap_samples, seed=seed, objective=metric)
    gaps = gap_module.decompose_gap(swept.runs, factors, blog_cell, user_cell, objective=metric)
    answer = answer_module.compute_answer(swept.runs, factors, blog_cell, user_cell, cells_from=inputs.cells_from,
                                          gaps=gaps, objective=metric)
    held = {item.epochs: item.held for item in answer.by_epochs}
    verdicts = claims_module.judge_claims(swept.runs, inputs.claims, held=held, objective=metric)
    tables = render.Tables(factors=factors, cells=stats.cell_table(swept.runs, factors, objective=metric),
                           effects=effects, gaps=gaps, answers=answer.sentences, bootstrap_samples=bootstrap_samples,
                           notes=[note for gap in gaps if (note := answer_module.effects_note(effects, gap, metric))],
                           answer=answer, verdicts=verdicts)
    files.update(render.write_tables(out_dir, tables))
    files.update(write_json(out_dir, answer, verdicts))
    if inputs.sweep_text and not from_folder:
        files["sweep_file"] = out_dir / report_inputs.SWEEP_FILE
        files["sweep_file"].write_text(inputs.sweep_text)
    files.update({"markdown": out_dir / "report.md", "html": out_dir / "report.html"})
    drawn = plots.draw_all(out_dir, swept, tables, blog_cell, user_cell)
    files.update({name: path for name, (path, _) in drawn.items() if path is not None})
    reproduce = f"glovesweep report {target}"
    if inputs.cells_from == report_inputs.FROM_FLAGS:
        reproduce += f" --blog-cell {_cell_text(blog_cell)} --user-cell {_cell_text(user_cell)}"
    markdown = render.report_markdown(swept, tables, reproduce=reproduce, plots=drawn)
    files["markdown"].write_text(markdown)
    files["html"].write_text(html_report.to_html(markdown, out_dir, title=f"Sweep report: {swept.sweep_name}"))
    if log_artifacts and not from_folder:
        mlflow.MlflowClient(tracking_uri=swept.tracking_uri).log_artifacts(swept.parent_run_id, str(out_dir),
                                                                          artifact_path="report")
    logger.info("report on %s written to %s in %.1f s", swept.sweep_name, out_dir, time.perf_counter() - started)
    return Report(out_dir=out_dir, files=files, sweep=swept, tables=tables, answer=answer, verdicts=verdicts)


def write_json(out_dir: pathlib.Path, answer: answer_module.Answer,
               verdicts: list[claims_module.Verdict]) -> dict[str, pathlib.Path]:
    """Write ``answer.json`` (``Answer.to_dict()``) and ``claims.json`` (``{"claims": [Verdict.to_dict(), ...]}``)."""
    paths = {"answer": out_dir / "answer.json", "claims": out_dir / "claims.json"}
    paths["answer"].write_text(json.dumps(answer.to_dict(), indent=1, sort_keys=True) + "\n")
    paths["claims"].write_text(json.dumps({"claims": [item.to_dict() for item in verdicts]}, indent=1,
                                          sort_keys=True) + "\n")
    return paths


def _cell_text(cell: dict[str, str]) -> str:
    return shlex.quote(",".join(f"{key}={value}" for key, value in cell.items()))


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name) or "sweep"


# ---------------------------------------------------------------------------------------------------------
# Smoke mode: a synthetic sweep in the documented schema
# ---------------------------------------------------------------------------------------------------------

SMOKE_SWEEP_FILE = """\
name: {name}
factors: {{dataset: ["19997", bydate], strip: [none, blank_line], epochs: {epochs}}}
seeds: {seeds}
baselines: [multinomial_nb]
answer:
  blog_cell: {{dataset: "19997", strip: none}}
  user_cell: {{dataset: bydate, strip: blank_line}}
claims:
  - {{source: "Keras blog 2016", cell: {{dataset: "19997", strip: none}}, epoch: 2, value: 0.95}}
"""


def log_synthetic_sweep(client, *, experiment_name: str = "glovesweep-smoke", sweep_name: str = "smoke",
                        seeds: Sequence[int] = (0, 1), epochs: Sequence[int] = (1, 2), seed: int = 0,
                        artifact_location: str | None = None) -> str:
    """Log a small sweep with planted effects (strip: -30 points, dataset: -5) to ``client``; returns parent id.

    The 19997 cell with headers kept carries the label leak (leak fractions 0.99, else 0), and the parent run
    holds a ``sweep.yaml`` artifact whose answer block names the cells and whose claims block one claim.

    Cells: dataset {19997, bydate} x strip {none, blank_line}, network runs per seed with per-epoch step
    metrics and ``val_acc_at_<E>`` summaries, plus a multinomial_nb baseline per dataset x strip x seed.
    ``artifact_location`` (a URI) is used when the experiment is created; MLflow's default for a sqlite
    store is ``./mlruns`` in the working directory.
    """
    random = np.random.default_rng(seed)
    experiment = client.get_experiment_by_name(experiment_name)
    experiment_id = (experiment.experiment_id if experiment else
                     client.create_experiment(experiment_name, artifact_location=artifact_location))
    parent = client.create_run(experiment_id, run_name=sweep_name,
                               tags={names.ROLE_TAG: names.ROLE_SWEEP, names.SWEEP_NAME_TAG: sweep_name,
                                     names.SWEEP_HASH_TAG: "0" * 16})
    client.log_text(parent.info.run_id, SMOKE_SWEEP_FILE.format(name=sweep_name, seeds=list(seeds),
                                                                epochs=list(epochs)), report_inputs.SWEEP_FILE)
    factors = "dataset,strip,epochs"
    for dataset, strip, trial_seed in itertools.product(("19997", "bydate"), ("none", "blank_line"), seeds):
        base = 0.90 - 0.30 * (strip != "none") - 0.05 * (dataset == "bydate")
        for trainer, kind in ((names.TRAINER_KERAS, None), (names.TRAINER_BASELINE, "multinomial_nb")):
            config = config_module.TrainerConfig(dataset=dataset, strip=strip, seed=trial_seed, epochs=max(epochs),
                                                 max_sequence_length=1000)
            params = {name: str(value) for name, value in config.to_dict().items()}
            params[names.FACTORS_PARAM] = factors
            cell = f"dataset={dataset},strip={strip}"
            tags = {names.PARENT_TAG: parent.info.run_id, names.ROLE_TAG: names.ROLE_TRIAL, names.TRAINER_TAG: trainer,
                    names.CELL_TAG: cell, names.TRIAL_ID_TAG: f"{trainer}-{dataset}-{strip}-{trial_seed}"}
            metrics = []
            now = int(time.time() * 1000)
            if kind:
                params[names.BASELINE_PARAM] = kind
                metrics.append(mlflow_entities.Metric(names.VAL_ACC, base + 0.02 + random.normal(0, 0.005), now, 0))
            else:
                for epoch in range(1, max(epochs) + 1):
                    accuracy = base - 0.1 / epoch + random.normal(0, 0.01)
                    metrics += [mlflow_entities.Metric(names.VAL_ACC, accuracy, now, epoch),
                                mlflow_entities.Metric(names.VAL_LOSS, 1.0 - accuracy, now, epoch)]
                    if epoch in epochs:
                        metrics += [mlflow_entities.Metric(names.val_acc_at(epoch), accuracy, now, epoch),
                                    mlflow_entities.Metric(names.val_loss_at(epoch), 1.0 - accuracy, now, epoch)]
                metrics.append(mlflow_entities.Metric(names.GLOVE_COVERAGE, 0.9, now, 0))
            metrics.append(mlflow_entities.Metric(names.LEAKAGE, 0.02 if dataset == "19997" else 0.0, now, 0))
            # The label leak: the 19997 archive's headers name the group; any stripping cuts them.
            leak = 0.99 if (dataset, strip) == ("19997", "none") else 0.0
            metrics += [mlflow_entities.Metric(names.LEAK_FRACTION_TRAIN, leak, now, 0),
                        mlflow_entities.Metric(names.LEAK_FRACTION_VAL, leak, now, 0)]
            child = client.create_run(experiment_id, run_name=tags[names.TRIAL_ID_TAG], tags=tags)
            client.log_batch(child.info.run_id, metrics=metrics,
                             params=[mlflow_entities.Param(key, value) for key, value in params.items()])
            client.set_terminated(child.info.run_id)
    client.set_terminated(parent.info.run_id)
    return parent.info.run_id


# ---------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sweep", nargs="?", help="A report folder holding runs.parquet and history.parquet (no "
                        "MLflow needed), or a sweep name (tag glovesweep.sweep_name) or parent run id.")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here).")
    parser.add_argument("--experiment", default=None, help="Look for the sweep in this experiment only.")
    parser.add_argument("--out", default=None, help="Output folder (default: reports/<sweep name>).")
    parser.add_argument("--blog-cell", nargs="+", default=None, metavar="KEY=VALUE",
                        help=f"The blog's cell (default: the sweep file's answer block, else {DEFAULT_BLOG_CELL}).")
    parser.add_argument("--user-cell", nargs="+", default=None, metavar="KEY=VALUE",
                        help=f"The user's cell (default: the sweep file's answer block, else {DEFAULT_USER_CELL}).")
    parser.add_argument("--bootstrap", type=int, default=None,
                        help=f"Bootstrap resamples for the intervals of the variance shares (default "
                             f"{stats.DEFAULT_BOOTSTRAP_SAMPLES}), or of a search's importances (default "
                             f"{search_stats.DEFAULT_IMPORTANCE_SAMPLES}).")
    parser.add_argument("--no-log-artifacts", action="store_true",
                        help="Do not log the report to the sweep's parent run (a folder source never logs).")
    parser.add_argument("--smoke-test", action="store_true",
                        help="Log a small synthetic sweep to a temporary store (or --tracking-uri) and report on it.")


def _check_tracking_uri(uri: str) -> None:
    # A sqlite URI to a missing file would silently create an empty store: say where the runs are expected.
    if uri.startswith("sqlite:///"):
        path = pathlib.Path(uri[len("sqlite:///"):])
        if not path.exists():
            raise OSError(f"tracking store {path} does not exist; run the sweep first (glovesweep run ...) or "
                          f"pass --tracking-uri")


def main(args: argparse.Namespace) -> int:
    # Any trainer's settings: make_report checks the keys against the runs it reads.
    blog_cell = parse_cell(args.blog_cell, settings=None) if args.blog_cell else None
    user_cell = parse_cell(args.user_cell, settings=None) if args.user_cell else None
    if args.smoke_test:
        return _smoke_test(args, blog_cell, user_cell)
    if not args.sweep:
        raise ValueError("name the sweep: glovesweep report <report folder, sweep name or parent run id>")
    tracking_uri = None
    if not reader.is_folder(args.sweep):
        tracking_uri = args.tracking_uri or mlflow.get_tracking_uri()
        _check_tracking_uri(tracking_uri)
        mlflow_runs.check_reachable(tracking_uri)
    try:
        report = make_report(args.sweep, tracking_uri=tracking_uri, out_dir=args.out, experiment=args.experiment,
                             blog_cell=blog_cell, user_cell=user_cell, bootstrap_samples=args.bootstrap,
                             log_artifacts=not args.no_log_artifacts)
    except mlflow_exceptions.MlflowException as error:
        raise OSError(f"MLflow at {tracking_uri}: {error.message}") from error
    _print_summary(report)
    if tracking_uri and not args.no_log_artifacts:
        print(f"Logged to parent run {report.sweep.parent_run_id} under report/ at {tracking_uri}")
    return 0


def _print_summary(report: Report) -> None:
    for sentence in report.answers:
        print(sentence)
    for verdict in report.verdicts:
        print(f"Claim {verdict.source} ({wording.describe(verdict.cell)}, {verdict.epoch} epochs, "
              f"{verdict.published:.2f}): {verdict.verdict}")
    print(f"Report: {report.files['markdown']} (tables, plots and runs.parquet in {report.out_dir})")


def _smoke_test(args: argparse.Namespace, blog_cell: dict[str, str] | None, user_cell: dict[str, str] | None) -> int:
    """Log a synthetic sweep, report on it from MLflow, read the folder written back: the same cells."""
    with tempfile.TemporaryDirectory(prefix="glovesweep-report-smoke-") as scratch:
        tracking_uri = args.tracking_uri or f"sqlite:///{pathlib.Path(scratch) / 'mlflow.db'}"
        out_dir = pathlib.Path(args.out or pathlib.Path(scratch) / "report")
        # Without a server, keep the synthetic sweep's artifacts in the scratch folder too.
        location = None if args.tracking_uri else (pathlib.Path(scratch) / "artifacts").as_uri()
        sweep = log_synthetic_sweep(mlflow.MlflowClient(tracking_uri=tracking_uri), artifact_location=location)
        report = make_report(sweep, tracking_uri=tracking_uri, out_dir=out_dir, blog_cell=blog_cell,
                             user_cell=user_cell, bootstrap_samples=args.bootstrap,
                             log_artifacts=not args.no_log_artifacts)
        again = reader.read_runs(out_dir)
        cells, cells_again = (pd.DataFrame(stats.cell_table(item.runs, item.factors)) for item in (report.sweep, again))
        if not cells.equals(cells_again):
            raise AssertionError(f"the cells read back from {out_dir} differ from those read from MLflow:\n"
                                 f"{cells_again}\n!=\n{cells}")
        _print_summary(report)
        print(f"Smoke test passed: {len(report.sweep.runs)} rows, {len(report.tables.effects)} effect terms, the "
              f"same cells from MLflow and from {out_dir}.")
    return 0
