"""``glovesweep report``: read a sweep's MLflow runs, tabulate them, and attribute the accuracy gap to its factors.

Reads the child runs of one sweep (the MLflow schema of docs/DESIGN.md) from any tracking URI and writes, into
one folder (default ``reports/<sweep name>``), also logged to the sweep's parent run under ``report/``:

- ``runs.parquet``: one row per trial x requested epoch count (every factor, seed, val accuracy and loss,
  leakage, GloVe coverage, trainer); ``history.parquet``: one row per trial x finished epoch (step metrics).
- ``cells.csv`` and the cell table in ``report.md``: mean and 95% t-interval over seeds of validation accuracy
  per cell and epoch count, with the TF-IDF baselines beside the network.
- ``effects.csv``: each factor's main effect and the two-way interactions that matter, as a share of the
  variance of validation accuracy (Type II sums of squares) and in accuracy points, with bootstrap intervals.
- ``gap.csv`` and the answer sentences: the gap between the blog's cell and the user's cell split among the
  factors that differ (Shapley values over the switching order), with bootstrap intervals.
- ``val_acc_by_epoch.png``, ``factor_effects.png``, ``gap.png``.

Run ``glovesweep report --smoke-test`` to log a small synthetic sweep to a temporary store and report on it.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import itertools
import logging
import math
import os
import pathlib
import re
import tempfile
import time
from typing import Any, Iterable, Sequence

import matplotlib
import mlflow
import numpy as np
import pyarrow
from matplotlib import figure as matplotlib_figure
from matplotlib import ticker as matplotlib_ticker
from mlflow import entities as mlflow_entities
from mlflow import exceptions as mlflow_exceptions
from pyarrow import parquet
from scipy import stats

from sweeps import tracking
from trainer import baselines
from trainer import config as config_module

logger = logging.getLogger(__name__)

# MLflow schema (docs/DESIGN.md, "MLflow schema"); sweeps.tracking writes it with the same tag names.
PARENT_TAG = tracking.PARENT_TAG
ROLE_TAG = tracking.ROLE_TAG
SWEEP_NAME_TAG = tracking.SWEEP_NAME_TAG
TRIAL_ID_TAG = tracking.TRIAL_ID_TAG
CELL_TAG = tracking.CELL_TAG
TRAINER_TAG = "trainer"
SUMMARY_METRIC = re.compile(r"val_acc_at_(\d+)")
RUN_ID = re.compile(r"[0-9a-f]{32}")

# Keras blog "Using pre-trained word embeddings in a Keras model" (2016): the 19,997-post 20_newsgroup folder,
# headers kept. The user's cell: bydate without headers (scikit-learn's fetch_20newsgroups(remove=("headers",))
# drops everything before the first blank line), the setup of the Stack Exchange answer (~0.55 at 10 epochs).
DEFAULT_BLOG_CELL = "dataset=19997,strip=none"
DEFAULT_USER_CELL = "dataset=bydate,strip=blank_line"
DEFAULT_BOOTSTRAP_SAMPLES = 1000
CONFIDENCE = 0.95
# An interaction is listed when it explains at least this share of the variance of validation accuracy.
INTERACTION_MIN_SHARE = 0.02
# Seeds and epoch counts are the axes of every cell, never factors of the cell itself.
NOT_CELL_FACTORS = ("seed", "epochs")

CONFIG_FIELDS = tuple(field.name for field in dataclasses.fields(config_module.TrainerConfig))
CHOICES = {name: config_module.choices(name) for name in config_module.FACTORS if config_module.choices(name)}
FLOAT_COLUMNS = ("val_acc", "val_loss", "leakage", "glove_coverage", "out_of_range_ids")
INT_COLUMNS = ("epochs", "max_epochs", "seed")
META_COLUMNS = ("sweep_name", "parent_run_id", "run_id", "trial_id", "status", "trainer", "model", "cell",
                "factors")
# Config fields kept as their own columns: every field but the two whose names the table uses for its axes.
PARAM_COLUMNS = tuple(name for name in CONFIG_FIELDS if name not in NOT_CELL_FACTORS)


# ---------------------------------------------------------------------------------------------------------
# Reading MLflow
# ---------------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class SweepRuns:
    """A sweep read back from MLflow.

    ``rows``: one dict per trial x requested epoch count (baselines without ``val_acc_at_<E>``: one row with
    ``epochs=None``); ``history``: one dict per trial x finished epoch from the step metrics;
    ``factors``: the cell factors (union of the ``factors`` params, without seed and epochs);
    ``skipped``: run ids with no finished epoch.
    """

    parent_run_id: str
    sweep_name: str
    experiment_id: str
    rows: list[dict]
    history: list[dict]
    factors: list[str]
    skipped: list[str]


def parse_cell(items: str | Sequence[str]) -> dict[str, str]:
    """Parse ``key=value`` items (comma- or space-separated) into a cell spec, e.g. ``dataset=19997,strip=none``.

    Keys must be ``TrainerConfig`` fields; values of choice fields must be allowed values.
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
            if key not in CONFIG_FIELDS or key in NOT_CELL_FACTORS:
                allowed = [name for name in CONFIG_FIELDS if name not in NOT_CELL_FACTORS]
                raise ValueError(f"cell key {key!r} is not a trainer setting that can define a cell; "
                                 f"allowed: {', '.join(allowed)}")
            if key in CHOICES and value not in [str(choice) for choice in CHOICES[key]]:
                raise ValueError(f"cell value {key}={value!r} is not allowed; allowed values: "
                                 f"{', '.join(str(choice) for choice in CHOICES[key])}")
            cell[key] = value
    if not cell:
        raise ValueError("empty cell: give key=value items, e.g. dataset=19997,strip=none")
    return cell


def _search_all(client, experiment_ids: list[str], filter_string: str, order_by=None) -> list:
    """Every run matching the filter, following MLflow's page tokens."""
    runs, token = [], None
    while True:
        page = client.search_runs(experiment_ids, filter_string=filter_string,
                                  run_view_type=mlflow_entities.ViewType.ACTIVE_ONLY, max_results=1000,
                                  order_by=order_by, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _experiment_ids(client, experiment: str | None) -> list[str]:
    if experiment:
        found = client.get_experiment_by_name(experiment)
        if found is None:
            names = sorted(item.name for item in client.search_experiments())
            raise ValueError(f"experiment {experiment!r} not found at {client.tracking_uri}; "
                             f"experiments there: {', '.join(names) or 'none'}")
        return [found.experiment_id]
    experiments, token = [], None
    while True:
        page = client.search_experiments(max_results=1000, page_token=token)
        experiments.extend(page)
        token = page.token
        if not token:
            return [item.experiment_id for item in experiments]


def _quoted(value: str) -> str:
    # MLflow's filter grammar has no escapes; choose the quote the value does not contain.
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise ValueError(f"sweep name {value!r} contains both quote characters; pass the parent run id instead")


def find_parent_run(client, sweep: str, *, experiment: str | None = None):
    """The parent run of a sweep, given its run id or its ``glovesweep.sweep_name`` (the latest such run).

    Raises ``ValueError`` naming the sweeps that do exist when none matches.
    """
    if RUN_ID.fullmatch(sweep):
        try:
            run = client.get_run(sweep)
        except mlflow_exceptions.MlflowException:
            run = None
        if run is not None:
            role = run.data.tags.get(ROLE_TAG)
            if role != "sweep":
                raise ValueError(f"run {sweep} is not a sweep's parent run ({ROLE_TAG}={role!r}); pass the "
                                 f"parent run id (tag {ROLE_TAG}=sweep) or the sweep name")
            return run
    experiment_ids = _experiment_ids(client, experiment)
    where = f"{client.tracking_uri}" + (f", experiment {experiment!r}" if experiment else "")
    runs = _search_all(client, experiment_ids,
                       f"tags.`{ROLE_TAG}` = 'sweep' AND tags.`{SWEEP_NAME_TAG}` = {_quoted(sweep)}",
                       order_by=["attributes.start_time DESC"])
    if not runs:
        known = sorted({run.data.tags.get(SWEEP_NAME_TAG, "?") for run in
                        _search_all(client, experiment_ids, f"tags.`{ROLE_TAG}` = 'sweep'")})
        raise ValueError(f"no sweep named {sweep!r} at {where}; sweeps there: {', '.join(known) or 'none'}. "
                         f"Pass a sweep name or parent run id, and --tracking-uri / --experiment if needed")
    if len(runs) > 1:
        logger.warning("%d parent runs are named %r; reporting on the latest, %s (pass a run id for another: %s)",
                       len(runs), sweep, runs[0].info.run_id, ", ".join(run.info.run_id for run in runs[1:]))
    return runs[0]


def _as_int(text: str | None) -> int | None:
    try:
        return int(text) if text not in (None, "", "None") else None
    except ValueError:
        return None


def run_rows(run, *, sweep_name: str, parent_run_id: str) -> list[dict]:
    """Table rows of one child run: one per requested epoch count (``val_acc_at_<E>`` metrics).

    A baseline run without summary metrics gives one row from its ``val_acc`` metric, with ``epochs=None``.
    A run with no finished epoch gives no rows.
    """
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    trainer = tags.get(TRAINER_TAG) or ("baseline" if "baseline" in params else "keras")
    base = {
        "sweep_name": sweep_name,
        "parent_run_id": parent_run_id,
        "run_id": run.info.run_id,
        "trial_id": tags.get(TRIAL_ID_TAG, ""),
        "status": run.info.status,
        "trainer": trainer,
        "model": params.get("baseline", "baseline") if trainer == "baseline" else trainer,
        "cell": tags.get(CELL_TAG, ""),
        "factors": params.get("factors", ""),
        "max_epochs": _as_int(params.get("epochs")),
        "seed": _as_int(params.get("seed")),
        "leakage": metrics.get("leakage", math.nan),
        "glove_coverage": metrics.get("glove_coverage", math.nan),
        "out_of_range_ids": metrics.get("out_of_range_ids", math.nan),
    }
    base.update({name: params.get(name) for name in PARAM_COLUMNS})
    epoch_counts = sorted(int(match.group(1)) for key in metrics if (match := SUMMARY_METRIC.fullmatch(key)))
    rows = [dict(base, epochs=count, val_acc=metrics[f"val_acc_at_{count}"],
                 val_loss=metrics.get(f"val_loss_at_{count}", math.nan)) for count in epoch_counts]
    if not rows and trainer == "baseline" and "val_acc" in metrics:
        rows = [dict(base, epochs=None, val_acc=metrics["val_acc"], val_loss=metrics.get("val_loss", math.nan))]
    return rows


def read_sweep(client, sweep: str, *, experiment: str | None = None, with_history: bool = True) -> SweepRuns:
    """Read a sweep's child runs (tag ``mlflow.parentRunId``) into table rows and per-epoch history rows."""
    parent = find_parent_run(client, sweep, experiment=experiment)
    parent_run_id = parent.info.run_id
    sweep_name = parent.data.tags.get(SWEEP_NAME_TAG, parent_run_id)
    children = _search_all(client, [parent.info.experiment_id], f"tags.`{PARENT_TAG}` = '{parent_run_id}'",
                           order_by=["attributes.start_time ASC"])
    rows, history, skipped, factor_names = [], [], [], []
    for run in children:
        if run.data.tags.get(ROLE_TAG, "trial") != "trial":
            continue
        run_rows_ = run_rows(run, sweep_name=sweep_name, parent_run_id=parent_run_id)
        if not run_rows_:
            skipped.append(run.info.run_id)
            continue
        rows.extend(run_rows_)
        if run_rows_[0]["trainer"] != "baseline":
            for name in run.data.params.get("factors", "").split(","):
                name = name.strip()
                if name and name not in factor_names and name not in NOT_CELL_FACTORS:
                    factor_names.append(name)
        if with_history and run_rows_[0]["trainer"] != "baseline":
            history.extend(_run_history(client, run_rows_[0]))
    if not factor_names:
        # Runs without a ``factors`` param: the cell factors are the settings that vary across network runs.
        network = [row for row in rows if row["trainer"] != "baseline"]
        factor_names = [name for name in PARAM_COLUMNS if len({row[name] for row in network}) > 1]
    unknown = [name for name in factor_names if name not in PARAM_COLUMNS]
    if unknown:
        logger.warning("factors %s are not trainer settings; they are left out of the cells", unknown)
        factor_names = [name for name in factor_names if name in PARAM_COLUMNS]
    if skipped:
        logger.warning("%d child runs have no finished epoch and are left out: %s", len(skipped), ", ".join(skipped))
    return SweepRuns(parent_run_id=parent_run_id, sweep_name=sweep_name,
                     experiment_id=parent.info.experiment_id, rows=rows, history=history,
                     factors=factor_names, skipped=skipped)


def _run_history(client, row: dict) -> list[dict]:
    """One dict per finished epoch of a run from its ``val_acc`` step metric (last value logged per step)."""
    by_step: dict[int, Any] = {}
    for metric in client.get_metric_history(row["run_id"], "val_acc"):
        # A retried or resumed epoch logs its step again: keep the newest value.
        if metric.step not in by_step or metric.timestamp >= by_step[metric.step].timestamp:
            by_step[metric.step] = metric
    keep = ("run_id", "trainer", "model", "seed") + PARAM_COLUMNS
    return [dict({name: row[name] for name in keep}, epoch=int(step), val_acc=float(metric.value))
            for step, metric in sorted(by_step.items())]


def rows_to_table(rows: list[dict]) -> pyarrow.Table:
    """The runs table as Arrow: strings for metadata and settings, int64 axes, float64 metrics."""
    fields = ([pyarrow.field(name, pyarrow.string()) for name in META_COLUMNS]
              + [pyarrow.field(name, pyarrow.int64()) for name in INT_COLUMNS]
              + [pyarrow.field(name, pyarrow.float64()) for name in FLOAT_COLUMNS]
              + [pyarrow.field(name, pyarrow.string()) for name in PARAM_COLUMNS])
    schema = pyarrow.schema(fields)
    return pyarrow.Table.from_pylist([{name: row.get(name) for name in schema.names} for row in rows], schema=schema)


def history_to_table(history: list[dict]) -> pyarrow.Table:
    """The per-epoch history as Arrow (run id, epoch, val_acc, seed, settings)."""
    fields = ([pyarrow.field(name, pyarrow.string()) for name in ("run_id", "trainer", "model")]
              + [pyarrow.field("epoch", pyarrow.int64()), pyarrow.field("seed", pyarrow.int64()),
                 pyarrow.field("val_acc", pyarrow.float64())]
              + [pyarrow.field(name, pyarrow.string()) for name in PARAM_COLUMNS])
    schema = pyarrow.schema(fields)
    return pyarrow.Table.from_pylist([{name: row.get(name) for name in schema.names} for row in history],
                                     schema=schema)


# ---------------------------------------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------------------------------------

def t_interval(values: Iterable[float], confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """Mean and two-sided Student-t confidence interval of the mean.

    Returns ``(mean, low, high)``; with one value the interval is ``(nan, nan)`` (no spread to estimate).
    """
    values = np.asarray(list(values), dtype=float)
    if values.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(values.mean())
    if values.size < 2:
        return mean, math.nan, math.nan
    half_width = stats.t.ppf(0.5 + confidence / 2, values.size - 1) * values.std(ddof=1) / math.sqrt(values.size)
    return mean, float(mean - half_width), float(mean + half_width)


def level_order(name: str, values: Iterable[Any]) -> list:
    """Levels of a factor in a readable order: the config's choice order, else numeric, else text."""
    values = sorted({value for value in values}, key=lambda value: str(value))
    if name in CHOICES:
        order = [str(choice) for choice in CHOICES[name]]
        return sorted(values, key=lambda value: (order.index(str(value)) if str(value) in order else len(order),
                                                 str(value)))
    try:
        return sorted(values, key=lambda value: float(value))
    except (TypeError, ValueError):
        return values


def _network_rows(rows: list[dict]) -> list[dict]:
    return [row for row in rows if row["trainer"] != "baseline" and row["epochs"] is not None
            and not math.isnan(row["val_acc"])]


def epoch_counts(rows: list[dict]) -> list[int]:
    """The requested epoch counts found in the network rows, ascending."""
    return sorted({row["epochs"] for row in _network_rows(rows)})


def cell_table(rows: list[dict], factors: Sequence[str], *, confidence: float = CONFIDENCE) -> list[dict]:
    """Mean and t-interval over seeds of validation accuracy per cell.

    Network cells: one record per (factor values, epoch count). Baselines: one record per (model, values of
    the factors that shape a baseline's split, ``trainer.baselines.DATA_FIELDS``), other factors ``""`` and
    ``epochs`` None. Each record: ``model``, the factors, ``epochs``, ``n`` (seeds), ``mean``, ``std``,
    ``ci_low``, ``ci_high`` (fractions; NaN with one seed), ``leakage`` (mean), ``seeds``.
    """
    groups: dict[tuple, list[dict]] = {}
    for row in _network_rows(rows):
        groups.setdefault((row["model"], tuple(row[name] for name in factors), row["epochs"]), []).append(row)
    baseline_factors = [name for name in factors if name in baselines.DATA_FIELDS]
    seen_runs = set()
    for row in rows:
        if row["trainer"] != "baseline" or row["run_id"] in seen_runs or math.isnan(row["val_acc"]):
            continue
        # A baseline has one accuracy per run, whatever epoch counts it was logged under.
        seen_runs.add(row["run_id"])
        values = tuple(row[name] if name in baseline_factors else "" for name in factors)
        groups.setdefault((row["model"], values, None), []).append(row)
    orders = {name: level_order(name, [row[name] for row in rows]) for name in factors}

    def sort_key(key):
        model, values, epochs = key
        positions = tuple(orders[name].index(value) if value in orders[name] else -1
                          for name, value in zip(factors, values))
        return (model != "keras", model, positions, epochs or 0)

    records = []
    for key in sorted(groups, key=sort_key):
        model, values, epochs = key
        members = groups[key]
        accuracies = [member["val_acc"] for member in members]
        mean, low, high = t_interval(accuracies, confidence)
        leakages = [member["leakage"] for member in members if not math.isnan(member["leakage"])]
        record = {"model": model, **dict(zip(factors, values)), "epochs": epochs, "n": len(members),
                  "mean": mean, "std": float(np.std(accuracies, ddof=1)) if len(members) > 1 else math.nan,
                  "ci_low": low, "ci_high": high,
                  "leakage": float(np.mean(leakages)) if leakages else math.nan,
                  "seeds": " ".join(str(seed) for seed in sorted(member["seed"] for member in members
                                                                  if member["seed"] is not None))}
        records.append(record)
    return records


class _Design:
    """Dummy-coded factorial design of the network rows at one epoch count, with bootstrap resamples.

    ``accuracies`` has shape (n, 1 + B): column 0 is the observed validation accuracy, the others resample
    rows with replacement within each cell (the seeds of a cell), so every column keeps the same design.
    """

    def __init__(self, rows: list[dict], factors: Sequence[str], *, bootstrap_samples: int, seed: int):
        self.rows = rows
        self.levels = {name: level_order(name, [row[name] for row in rows]) for name in factors}
        self.factors = [name for name in factors if len(self.levels[name]) > 1]
        self.codes = {name: np.array([self.levels[name].index(row[name]) for row in rows]) for name in self.factors}
        keys = [tuple(int(self.codes[name][index]) for name in self.factors) for index in range(len(rows))]
        self.cells: dict[tuple, np.ndarray] = {}
        for index, key in enumerate(keys):
            self.cells.setdefault(key, []).append(index)
        self.cells = {key: np.array(indices) for key, indices in self.cells.items()}
        observed = np.array([row["val_acc"] for row in rows], dtype=float)
        random = np.random.default_rng(seed)
        resampled = np.empty((len(rows), bootstrap_samples))
        for indices in self.cells.values():
            draws = random.integers(0, indices.size, size=(indices.size, bootstrap_samples))
            resampled[indices, :] = observed[indices][draws]
        self.accuracies = np.column_stack([observed, resampled])
        self.single_seed = all(indices.size < 2 for indices in self.cells.values())

    def dummies(self, name: str, codes: np.ndarray | None = None) -> np.ndarray:
        codes = self.codes[name] if codes is None else codes
        return (codes[:, None] == np.arange(1, len(self.levels[name]))[None, :]).astype(float)

    def matrix(self, terms: Sequence, codes: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """Design matrix: intercept, then dummies of each factor name and products for each (a, b) pair."""
        codes = codes or self.codes
        size = len(next(iter(codes.values()))) if codes else len(self.rows)
        columns = [np.ones((size, 1))]
        for term in terms:
            if isinstance(term, tuple):
                left, right = (self.dummies(name, codes[name]) for name in term)
                columns.append((left[:, :, None] * right[:, None, :]).reshape(size, -1))
            else:
                columns.append(self.dummies(term, codes[term]))
        return np.hstack(columns)

    def explained(self, terms: Sequence) -> tuple[np.ndarray, int]:
        """Uncentred explained sum of squares of every accuracy column (shape (1 + B,)) and the model's rank."""
        left, singular, _ = np.linalg.svd(self.matrix(terms), full_matrices=False)
        rank = int(np.sum(singular > singular[0] * 1e-10))
        return np.sum((left[:, :rank].T @ self.accuracies) ** 2, axis=0), rank

    def fitted(self, terms: Sequence) -> np.ndarray:
        matrix = self.matrix(terms)
        return matrix @ (np.linalg.pinv(matrix) @ self.accuracies)


def _interval(samples: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return math.nan, math.nan
    tail = 100 * (1 - confidence) / 2
    return float(np.percentile(samples, tail)), float(np.percentile(samples, 100 - tail))


def attribute(rows: list[dict], factors: Sequence[str], *, bootstrap_samples: int = DEFAULT_BOOTSTRAP_SAMPLES,
              seed: int = 0, interaction_min_share: float = INTERACTION_MIN_SHARE) -> list[dict]:
    """Rank the factors (and the two-way interactions that matter) by their effect on validation accuracy.

    For each requested epoch count, on the network rows: the share of the variance of validation accuracy that
    each main effect explains (Type II sums of squares: what the factor adds to a main-effects model of the
    others) and each two-way interaction (what it adds to the main-effects model); the main effect in accuracy
    points (the fitted difference between the factor's best and worst level, others held fixed); for an
    interaction, its largest departure from additivity in points. Intervals: percentile bootstrap, resampling
    seeds within cells. The seed-to-seed share (within-cell variance) is a ``residual`` record.

    Returns
    -------
    list of dict
        ``epochs``, ``rank`` (1 = largest share, per epoch count), ``term``, ``kind`` (main / interaction /
        residual), ``levels`` (e.g. ``"none vs sklearn_all"``: best vs worst), ``share``, ``share_low``,
        ``share_high`` (fractions of variance), ``effect_points``, ``effect_low``, ``effect_high`` (points of
        accuracy, 100 x fraction), ``cells``, ``runs``, ``single_seed``.
    """
    records = []
    for count in epoch_counts(rows):
        at_count = [row for row in _network_rows(rows) if row["epochs"] == count]
        design = _Design(at_count, factors, bootstrap_samples=bootstrap_samples, seed=seed)
        if not design.factors or len(at_count) < 2:
            continue
        total = np.sum((design.accuracies - design.accuracies.mean(axis=0)) ** 2, axis=0)
        # A column with no variance has nothing to attribute; its shares are undefined, not zero.
        safe_total = np.where(total > 0, total, np.nan)
        main_explained, main_rank = design.explained(design.factors)
        main_fit = design.fitted(design.factors)
        coefficients = np.linalg.pinv(design.matrix(design.factors)) @ design.accuracies
        common = {"epochs": count, "cells": len(design.cells), "runs": len(at_count),
                  "single_seed": design.single_seed}
        terms = []
        offset = 1
        for name in design.factors:
            others = [other for other in design.factors if other != name]
            share = (main_explained - design.explained(others)[0]) / safe_total
            width = len(design.levels[name]) - 1
            effects = np.vstack([np.zeros((1, design.accuracies.shape[1])), coefficients[offset:offset + width]])
            offset += width
            best, worst = int(np.argmax(effects[:, 0])), int(np.argmin(effects[:, 0]))
            points = 100 * (effects[best] - effects[worst])
            terms.append(dict(common, term=name, kind="main",
                              levels=f"{design.levels[name][best]} vs {design.levels[name][worst]}",
                              samples_share=share, samples_points=points))
        for left, right in itertools.combinations(design.factors, 2):
            explained, rank = design.explained(list(design.factors) + [(left, right)])
            if rank == main_rank:
                continue  # Not estimable: the design never crosses these two factors beyond the main effects.
            share = (explained - main_explained) / safe_total
            departure = 100 * np.max(np.abs(design.fitted(list(design.factors) + [(left, right)]) - main_fit),
                                     axis=0)
            if not share[0] >= interaction_min_share:
                continue  # Too small to matter (or undefined: no variance at all).
            terms.append(dict(common, term=f"{left} x {right}", kind="interaction", levels="",
                              samples_share=share, samples_points=departure))
        cell_explained = _cell_means_explained(design)
        residual = (np.sum(design.accuracies ** 2, axis=0) - cell_explained) / safe_total
        terms.sort(key=lambda term: -np.nan_to_num(term["samples_share"][0], nan=-1.0))
        terms.append(dict(common, term="seed (within cell)", kind="residual", levels="",
                          samples_share=residual, samples_points=np.full_like(residual, np.nan)))
        for rank_, term in enumerate(terms, start=1):
            share, points = term.pop("samples_share"), term.pop("samples_points")
            share_low, share_high = _interval(share[1:])
            points_low, points_high = _interval(points[1:])
            records.append(dict(term, rank=rank_ if term["kind"] != "residual" else None,
                                share=float(share[0]), share_low=share_low, share_high=share_high,
                                effect_points=float(points[0]), effect_low=points_low, effect_high=points_high))
    return records


def _cell_means_explained(design: _Design) -> np.ndarray:
    """Explained sum of squares of the saturated model (one mean per cell): everything but seed noise."""
    explained = np.zeros(design.accuracies.shape[1])
    for indices in design.cells.values():
        explained += indices.size * design.accuracies[indices].mean(axis=0) ** 2
    return explained


def decompose_gap(rows: list[dict], factors: Sequence[str], blog_cell: dict[str, str], user_cell: dict[str, str],
                  *, bootstrap_samples: int = DEFAULT_BOOTSTRAP_SAMPLES, seed: int = 0) -> list[dict]:
    """Split the accuracy gap between the blog's cell and the user's cell among the factors that differ.

    At each requested epoch count, the two cells are compared with every other factor held at one setting
    (the stratum with the most observed corner cells, then the most runs, then the most trainer defaults). The gap ``blog - user`` is split by
    Shapley values: each differing factor's contribution is the accuracy change when it alone switches from
    the blog's value to the user's, averaged over every switching order, so the contributions add up to the
    gap exactly. A corner cell that was not run is filled with the main-effects model's prediction (listed in
    ``modelled``). Intervals: percentile bootstrap, resampling seeds within cells.

    Returns
    -------
    list of dict
        Per epoch count: ``epochs``, ``blog``, ``user`` (mean accuracy, fractions), ``gap_points``,
        ``gap_low``, ``gap_high``, ``contributions`` (list of dicts ``factor``, ``points``, ``low``, ``high``,
        largest first), ``stratum`` (the other factors' settings), ``modelled`` (corner cells predicted, not
        run), ``blog_runs``, ``user_runs``; or ``epochs`` and ``missing`` (why there is no answer).
    """
    keys = list(dict.fromkeys(list(blog_cell) + list(user_cell)))
    blog = {key: blog_cell.get(key, user_cell.get(key)) for key in keys}
    user = {key: user_cell.get(key, blog_cell.get(key)) for key in keys}
    differing = [key for key in keys if blog[key] != user[key]]
    results = []
    for count in epoch_counts(rows):
        at_count = [row for row in _network_rows(rows) if row["epochs"] == count]
        design = _Design(at_count, list(dict.fromkeys(list(factors) + keys)),
                         bootstrap_samples=bootstrap_samples, seed=seed)
        missing = []
        for key in keys:
            present = {str(row[key]) for row in at_count}
            absent = [value for value in dict.fromkeys([blog[key], user[key]]) if value not in present]
            if absent:
                # Name what the sweep has, so a wrong --blog-cell / --user-cell is plain to see.
                missing.append(f"{key}={' or '.join(absent)} (the runs have {', '.join(sorted(present)) or 'none'})")
        if missing:
            results.append({"epochs": count, "missing": f"no runs with {'; '.join(missing)}"})
            continue
        others = [name for name in design.factors if name not in keys]
        coefficients = np.linalg.pinv(design.matrix(design.factors)) @ design.accuracies

        def corner_key(assignment: dict[str, str], stratum: tuple) -> tuple:
            values = dict(zip(others, stratum), **assignment)
            return tuple(design.levels[name].index(values[name]) for name in design.factors)

        corners = [dict(zip(differing, choice)) for choice in
                   itertools.product(*[(blog[key], user[key]) for key in differing])]
        fixed = {key: blog[key] for key in keys if key not in differing}
        strata = sorted({tuple(row[name] for name in others) for row in at_count})

        defaults = {name: str(value) for name, value in config_module.TrainerConfig().to_dict().items()}

        def stratum_score(stratum):
            observed = [design.cells.get(corner_key(dict(fixed, **corner), stratum)) for corner in corners]
            # Ties go to the trainer's defaults, the blog's own settings (frozen GloVe, its sizing).
            return (sum(found is not None for found in observed),
                    sum(found.size for found in observed if found is not None),
                    sum(defaults.get(name) == str(value) for name, value in zip(others, stratum)))

        stratum = max(strata, key=stratum_score)
        values, modelled = {}, []
        for corner in corners:
            key = corner_key(dict(fixed, **corner), stratum)
            indices = design.cells.get(key)
            if indices is not None:
                values[tuple(corner.values())] = design.accuracies[indices].mean(axis=0)
            else:
                codes = {name: np.array([code]) for name, code in zip(design.factors, key)}
                values[tuple(corner.values())] = (design.matrix(design.factors, codes) @ coefficients)[0]
                modelled.append(", ".join(f"{name}={value}" for name, value in corner.items()))
        blog_values = values[tuple(blog[key] for key in differing)]
        user_values = values[tuple(user[key] for key in differing)]
        shapley = {key: np.zeros(design.accuracies.shape[1]) for key in differing}
        orders = list(itertools.permutations(differing))
        for order in orders:
            current = dict(blog)
            for key in order:
                following = dict(current, **{key: user[key]})
                shapley[key] += (values[tuple(current[name] for name in differing)]
                                 - values[tuple(following[name] for name in differing)])
                current = following
        contributions = []
        for key in differing:
            points = 100 * shapley[key] / len(orders)
            low, high = _interval(points[1:])
            contributions.append({"factor": key, "points": float(points[0]), "low": low, "high": high,
                                  "from": blog[key], "to": user[key]})
        contributions.sort(key=lambda item: -abs(item["points"]))
        gap = 100 * (blog_values - user_values)
        gap_low, gap_high = _interval(gap[1:])
        blog_key = corner_key(dict(fixed, **{key: blog[key] for key in differing}), stratum)
        user_key = corner_key(dict(fixed, **{key: user[key] for key in differing}), stratum)
        results.append({
            "epochs": count, "blog": float(blog_values[0]), "user": float(user_values[0]),
            "gap_points": float(gap[0]), "gap_low": gap_low, "gap_high": gap_high,
            "contributions": contributions,
            "stratum": ", ".join(f"{name}={value}" for name, value in zip(others, stratum)),
            "modelled": modelled,
            "blog_runs": int(design.cells[blog_key].size) if blog_key in design.cells else 0,
            "user_runs": int(design.cells[user_key].size) if user_key in design.cells else 0,
        })
    return results


def _describe(cell: dict[str, str]) -> str:
    return ", ".join(f"{key}={value}" for key, value in cell.items())


def answer_sentences(gaps: list[dict], blog_cell: dict[str, str], user_cell: dict[str, str]) -> list[str]:
    """One plain sentence per epoch count naming the factor that explains most of the gap, in points."""
    sentences = []
    for gap in gaps:
        count = gap["epochs"]
        if "missing" in gap:
            sentences.append(f"At {_epochs_text(count)} the gap cannot be measured: {gap['missing']}.")
            continue
        if not gap["contributions"]:
            sentences.append(f"At {_epochs_text(count)} the blog's and the user's cells are the same cell.")
            continue
        top = gap["contributions"][0]
        held = f" (with {gap['stratum']})" if gap["stratum"] else ""
        sentence = (f"At {_epochs_text(count)} the blog's cell ({_describe(blog_cell)}) reaches {gap['blog']:.3f} "
                    f"and the user's cell ({_describe(user_cell)}) {gap['user']:.3f}{held}, a gap of "
                    f"{gap['gap_points']:.1f} points; {top['factor']} ({top['from']} -> {top['to']}) explains "
                    f"{top['points']:.1f} of them (95% bootstrap interval {_points(top['low'])} to "
                    f"{_points(top['high'])})")
        rest = [f"{item['factor']} {item['points']:.1f}" for item in gap["contributions"][1:]]
        sentence += (f", {'; '.join(rest)}." if rest else ".")
        if gap["modelled"]:
            sentence += f" Not run, predicted by the main-effects model: {'; '.join(gap['modelled'])}."
        sentences.append(sentence)
    return sentences


def _epochs_text(count: int) -> str:
    return f"{count} epoch" + ("" if count == 1 else "s")


def _points(value: float) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.1f}"


# ---------------------------------------------------------------------------------------------------------
# Writing: CSV, Markdown, plots
# ---------------------------------------------------------------------------------------------------------

def _write_csv(path: pathlib.Path, records: list[dict], columns: Sequence[str]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for record in records:
            writer.writerow({key: ("" if value is None or (isinstance(value, float) and math.isnan(value))
                                   else value) for key, value in record.items()})


def _format_cell(record: dict | None) -> str:
    if record is None:
        return ""
    if record["n"] < 2:
        return f"{record['mean']:.3f} (n=1, no interval)"
    return f"{record['mean']:.3f} [{record['ci_low']:.3f}, {record['ci_high']:.3f}] n={record['n']}"


def _markdown_table(header: Sequence[str], lines: Sequence[Sequence[str]]) -> list[str]:
    output = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    output += ["| " + " | ".join(str(value) for value in line) + " |" for line in lines]
    return output


def cell_markdown(cells: list[dict], factors: Sequence[str]) -> list[str]:
    """The cell table in Markdown: one line per network cell, a column per epoch count, baselines beside."""
    network = [record for record in cells if record["epochs"] is not None]
    counts = sorted({record["epochs"] for record in network})
    models = sorted({record["model"] for record in network})
    baseline_models = sorted({record["model"] for record in cells if record["epochs"] is None})
    baseline_factors = [name for name in factors if name in baselines.DATA_FIELDS]
    by_key = {(record["model"], tuple(record[name] for name in factors), record["epochs"]): record
              for record in cells}
    keys = list(dict.fromkeys(tuple(record[name] for name in factors) for record in network))
    header = list(factors) + [f"{model} @{count}" for model in models for count in counts]
    header += [f"{model} (TF-IDF)" for model in baseline_models] + ["leakage"]
    lines = []
    for key in keys:
        line = list(key)
        line += [_format_cell(by_key.get((model, key, count))) for model in models for count in counts]
        baseline_key = tuple(value if name in baseline_factors else "" for name, value in zip(factors, key))
        line += [_format_cell(by_key.get((model, baseline_key, None))) for model in baseline_models]
        leak = next((by_key[(model, key, count)]["leakage"] for model in models for count in counts
                     if (model, key, count) in by_key), math.nan)
        line.append("" if math.isnan(leak) else f"{leak:.3f}")
        lines.append(line)
    if not network:
        # Only baselines in this sweep: list them alone.
        header = list(factors) + ["model", "val_acc"]
        lines = [[record[name] for name in factors] + [record["model"], _format_cell(record)] for record in cells]
    return _markdown_table(header, lines)


def _effect_text(value: float, low: float, high: float) -> str:
    if math.isnan(value):
        return ""
    interval = "" if math.isnan(low) else f" [{low:.1f}, {high:.1f}]"
    return f"{value:.1f}{interval}"


def _share_text(value: float, low: float, high: float) -> str:
    if math.isnan(value):
        return ""
    interval = "" if math.isnan(low) else f" [{100 * low:.0f}%, {100 * high:.0f}%]"
    return f"{100 * value:.0f}%{interval}"


def effects_markdown(effects: list[dict]) -> list[str]:
    lines = [[record["epochs"], record["rank"] or "", record["term"], record["levels"],
              _share_text(record["share"], record["share_low"], record["share_high"]),
              _effect_text(record["effect_points"], record["effect_low"], record["effect_high"])]
             for record in effects]
    return _markdown_table(["epochs", "rank", "term", "best vs worst level", "share of variance [95% bootstrap]",
                            "effect, points [95% bootstrap]"], lines)


def gap_markdown(gaps: list[dict]) -> list[str]:
    lines = []
    for gap in gaps:
        if "missing" in gap:
            lines.append([gap["epochs"], "", "", "", gap["missing"], ""])
            continue
        lines.append([gap["epochs"], f"{gap['blog']:.3f}", f"{gap['user']:.3f}",
                      _effect_text(gap["gap_points"], gap["gap_low"], gap["gap_high"]),
                      "; ".join(f"{item['factor']} {_effect_text(item['points'], item['low'], item['high'])}"
                                for item in gap["contributions"]),
                      gap["stratum"]])
    return _markdown_table(["epochs", "blog cell", "user cell", "gap, points [95% bootstrap]",
                            "explained by, points [95% bootstrap]", "others held at"], lines)


def _panel_keys(rows: list[dict]) -> tuple[list, list]:
    datasets = level_order("dataset", [row["dataset"] for row in rows])
    strips = level_order("strip", [row["strip"] for row in rows])
    return datasets, strips


def plot_epoch_curves(path: pathlib.Path, history: list[dict], rows: list[dict], factors: Sequence[str]) -> None:
    """Validation accuracy vs epoch, one panel per dataset x strip, one line per other-factor setting.

    Lines: mean over seeds with the 95% t-interval band (from the per-epoch ``val_acc`` step metric; the
    summary metrics when a run has no history). Dashed: TF-IDF baselines of the same dataset and stripping.
    """
    points = history or [dict(row, epoch=row["epochs"]) for row in _network_rows(rows)]
    datasets, strips = _panel_keys(points or rows)
    line_factors = [name for name in factors if name not in ("dataset", "strip")]
    figure = matplotlib_figure.Figure(figsize=(4.2 * len(strips), 3.4 * len(datasets)), layout="constrained")
    axes = figure.subplots(len(datasets), len(strips), squeeze=False, sharex=True, sharey=True)
    baseline_rows = [row for row in rows if row["trainer"] == "baseline" and not math.isnan(row["val_acc"])]
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
                summary = [t_interval(by_epoch[epoch].values()) for epoch in epochs]
                color = colors[line_index % len(colors)]
                label = ", ".join(f"{name}={value}" for name, value in zip(line_factors, key)) or "network"
                axis.plot(epochs, [item[0] for item in summary], marker="o", markersize=3, color=color, label=label)
                low = np.array([item[1] for item in summary], dtype=float)
                high = np.array([item[2] for item in summary], dtype=float)
                if np.any(np.isfinite(low)):
                    # Few seeds give t-intervals wider than the scale; accuracy cannot leave [0, 1].
                    axis.fill_between(epochs, np.clip(low, 0, 1), np.clip(high, 0, 1), color=color, alpha=0.2,
                                      linewidth=0)
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
    """Ranked factor effects in accuracy points with bootstrap intervals, one panel per epoch count."""
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
        axis.set_title(_epochs_text(count), fontsize=9)
    if not counts:
        axes[0].text(0.5, 0.5, "no factor varies: nothing to attribute", ha="center", va="center")
    figure.suptitle("Factor effects (blue: main, best vs worst level; orange: interaction), 95% bootstrap",
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
        axis.set_title(_epochs_text(gap["epochs"]), fontsize=9)
    if not answered:
        axes[0].text(0.5, 0.5, "the gap cannot be measured in this sweep", ha="center", va="center")
    figure.suptitle(f"Blog ({_describe(blog_cell)}) vs user ({_describe(user_cell)}), 95% bootstrap", fontsize=9)
    figure.savefig(path, dpi=110)


# ---------------------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Report:
    """What ``make_report`` wrote: the output folder, file paths by name, the answer sentences and tables."""

    out_dir: pathlib.Path
    files: dict[str, pathlib.Path]
    answers: list[str]
    sweep: SweepRuns
    cells: list[dict]
    effects: list[dict]
    gaps: list[dict]


def make_report(client, sweep: str, *, out_dir: str | os.PathLike | None = None, experiment: str | None = None,
                blog_cell: dict[str, str] | None = None, user_cell: dict[str, str] | None = None,
                bootstrap_samples: int = DEFAULT_BOOTSTRAP_SAMPLES, seed: int = 0,
                log_artifacts: bool = True) -> Report:
    """Read a sweep from MLflow and write the Parquet tables, CSVs, Markdown report and plots.

    Parameters
    ----------
    client : mlflow.MlflowClient
        Client of the tracking store holding the sweep.
    sweep : str
        The sweep's name (tag ``glovesweep.sweep_name``; the latest parent run with it) or parent run id.
    out_dir : path, optional
        Output folder; default ``reports/<sweep name>`` in the working directory.
    blog_cell, user_cell : dict, optional
        The two cells whose gap the answer explains (defaults ``DEFAULT_BLOG_CELL`` / ``DEFAULT_USER_CELL``).
    bootstrap_samples : int
        Bootstrap resamples for the effect and gap intervals.
    log_artifacts : bool
        Also log the folder to the parent run under ``report/``.
    """
    if bootstrap_samples < 1:
        raise ValueError(f"bootstrap_samples={bootstrap_samples}: must be >= 1, e.g. 1000")
    blog_cell = blog_cell or parse_cell(DEFAULT_BLOG_CELL)
    user_cell = user_cell or parse_cell(DEFAULT_USER_CELL)
    started = time.perf_counter()
    swept = read_sweep(client, sweep, experiment=experiment)
    if not swept.rows:
        raise ValueError(f"sweep {swept.sweep_name!r} (parent run {swept.parent_run_id}) has no child run with a "
                         f"finished epoch yet; wait for trials to report, or check that the sweep ran")
    out_dir = pathlib.Path(out_dir) if out_dir else pathlib.Path("reports") / _safe_name(swept.sweep_name)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {name: out_dir / filename for name, filename in (
        ("runs", "runs.parquet"), ("history", "history.parquet"), ("cells", "cells.csv"),
        ("effects", "effects.csv"), ("gap", "gap.csv"), ("markdown", "report.md"),
        ("epoch_plot", "val_acc_by_epoch.png"), ("effects_plot", "factor_effects.png"), ("gap_plot", "gap.png"))}
    factors = swept.factors
    parquet.write_table(rows_to_table(swept.rows), files["runs"])
    parquet.write_table(history_to_table(swept.history), files["history"])

    cells = cell_table(swept.rows, factors)
    _write_csv(files["cells"], cells, ["model", *factors, "epochs", "n", "mean", "std", "ci_low", "ci_high",
                                       "leakage", "seeds"])
    effects = attribute(swept.rows, factors, bootstrap_samples=bootstrap_samples, seed=seed)
    _write_csv(files["effects"], effects, ["epochs", "rank", "term", "kind", "levels", "share", "share_low",
                                           "share_high", "effect_points", "effect_low", "effect_high", "cells",
                                           "runs", "single_seed"])
    gaps = decompose_gap(swept.rows, factors, blog_cell, user_cell, bootstrap_samples=bootstrap_samples, seed=seed)
    _write_csv(files["gap"], [dict(gap_row, epochs=gap["epochs"], gap_points=gap.get("gap_points"),
                                   blog=gap.get("blog"), user=gap.get("user"), stratum=gap.get("stratum"),
                                   missing=gap.get("missing", ""))
                              for gap in gaps for gap_row in (gap.get("contributions") or [{}])],
               ["epochs", "blog", "user", "gap_points", "factor", "from", "to", "points", "low", "high", "stratum",
                "missing"])
    answers = answer_sentences(gaps, blog_cell, user_cell)
    plot_epoch_curves(files["epoch_plot"], swept.history, swept.rows, factors)
    plot_effects(files["effects_plot"], effects)
    plot_gap(files["gap_plot"], gaps, blog_cell, user_cell)
    files["markdown"].write_text(_report_markdown(swept, client.tracking_uri, cells, effects, gaps, answers,
                                                  factors, bootstrap_samples))
    if log_artifacts:
        client.log_artifacts(swept.parent_run_id, str(out_dir), artifact_path="report")
    logger.info("report on %s written to %s in %.1f s", swept.sweep_name, out_dir, time.perf_counter() - started)
    return Report(out_dir=out_dir, files=files, answers=answers, sweep=swept, cells=cells, effects=effects, gaps=gaps)


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name) or "sweep"


def _report_markdown(swept: SweepRuns, tracking_uri: str, cells, effects, gaps, answers, factors,
                     bootstrap_samples: int) -> str:
    network_runs = {row["run_id"] for row in swept.rows if row["trainer"] != "baseline"}
    baseline_runs = {row["run_id"] for row in swept.rows if row["trainer"] == "baseline"}
    lines = [f"# Sweep report: {swept.sweep_name}", "",
             f"Parent run `{swept.parent_run_id}` at `{tracking_uri}`: {len(network_runs)} network runs, "
             f"{len(baseline_runs)} baseline runs, epoch counts {epoch_counts(swept.rows) or 'none'}, "
             f"cell factors {', '.join(factors) or 'none'}.", "",
             f"Reproduce: `glovesweep report {swept.parent_run_id} --tracking-uri {tracking_uri}`", "",
             "## Answer", ""]
    lines += [f"- {sentence}" for sentence in answers] or ["- No network runs to answer from."]
    lines += ["", "## Validation accuracy by cell", "",
              "Mean over seeds [95% Student-t interval of the mean], n = seeds. With one seed there is no "
              "interval (shown as n=1).", ""]
    lines += cell_markdown(cells, factors)
    lines += ["", "## What moves validation accuracy", "",
              f"Share of the variance of validation accuracy per term (Type II sums of squares; interactions "
              f"listed from {100 * INTERACTION_MIN_SHARE:.0f}%), and the effect in accuracy points (main: best "
              f"minus worst level, others held fixed; interaction: largest departure from additivity). "
              f"Intervals: {bootstrap_samples} bootstrap resamples of seeds within cells.", ""]
    lines += effects_markdown(effects) if effects else ["No factor varies between network runs."]
    if any(record["single_seed"] for record in effects):
        lines += ["", "Some epoch counts have one seed per cell: their bootstrap intervals cannot show seed noise."]
    lines += ["", "## The gap between the blog's cell and the user's cell", ""]
    lines += gap_markdown(gaps) if gaps else ["No network runs."]
    if swept.skipped:
        lines += ["", f"Left out (no finished epoch): {', '.join(swept.skipped)}."]
    lines += ["", "## Plots", "", "![validation accuracy vs epoch](val_acc_by_epoch.png)", "",
              "![factor effects](factor_effects.png)", "", "![gap](gap.png)", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------
# Smoke mode: a synthetic sweep in the documented schema
# ---------------------------------------------------------------------------------------------------------

def log_synthetic_sweep(client, *, experiment_name: str = "glovesweep-smoke", sweep_name: str = "smoke",
                        seeds: Sequence[int] = (0, 1), epochs: Sequence[int] = (1, 2), seed: int = 0,
                        artifact_location: str | None = None) -> str:
    """Log a small sweep with planted effects (strip: -30 points, dataset: -5) to ``client``; returns parent id.

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
                               tags={ROLE_TAG: "sweep", SWEEP_NAME_TAG: sweep_name, "glovesweep.sweep_hash": "0" * 16})
    factors = "dataset,strip,epochs"
    for dataset, strip, trial_seed in itertools.product(("19997", "bydate"), ("none", "blank_line"), seeds):
        base = 0.90 - 0.30 * (strip != "none") - 0.05 * (dataset == "bydate")
        for trainer, kind in (("keras", None), ("baseline", "multinomial_nb")):
            config = config_module.TrainerConfig(dataset=dataset, strip=strip, seed=trial_seed, epochs=max(epochs),
                                                 max_sequence_length=1000)
            params = {name: str(value) for name, value in config.to_dict().items()}
            params["factors"] = factors
            cell = f"dataset={dataset},strip={strip}"
            tags = {PARENT_TAG: parent.info.run_id, ROLE_TAG: "trial", TRAINER_TAG: trainer, CELL_TAG: cell,
                    TRIAL_ID_TAG: f"{trainer}-{dataset}-{strip}-{trial_seed}"}
            metrics = []
            now = int(time.time() * 1000)
            if kind:
                params["baseline"] = kind
                metrics.append(mlflow_entities.Metric("val_acc", base + 0.02 + random.normal(0, 0.005), now, 0))
            else:
                for epoch in range(1, max(epochs) + 1):
                    accuracy = base - 0.1 / epoch + random.normal(0, 0.01)
                    metrics += [mlflow_entities.Metric("val_acc", accuracy, now, epoch),
                                mlflow_entities.Metric("val_loss", 1.0 - accuracy, now, epoch)]
                    if epoch in epochs:
                        metrics += [mlflow_entities.Metric(f"val_acc_at_{epoch}", accuracy, now, epoch),
                                    mlflow_entities.Metric(f"val_loss_at_{epoch}", 1.0 - accuracy, now, epoch)]
                metrics.append(mlflow_entities.Metric("glove_coverage", 0.9, now, 0))
            metrics.append(mlflow_entities.Metric("leakage", 0.02 if dataset == "19997" else 0.0, now, 0))
            child = client.create_run(experiment_id, run_name=tags[TRIAL_ID_TAG], tags=tags)
            client.log_batch(child.info.run_id, metrics=metrics,
                             params=[mlflow_entities.Param(key, value) for key, value in params.items()])
            client.set_terminated(child.info.run_id)
    client.set_terminated(parent.info.run_id)
    return parent.info.run_id


# ---------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sweep", nargs="?", help="Sweep name (tag glovesweep.sweep_name) or parent run id.")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here).")
    parser.add_argument("--experiment", default=None, help="Look for the sweep in this experiment only.")
    parser.add_argument("--out", default=None, help="Output folder (default: reports/<sweep name>).")
    parser.add_argument("--blog-cell", nargs="+", default=[DEFAULT_BLOG_CELL], metavar="KEY=VALUE",
                        help=f"The blog's cell (default: {DEFAULT_BLOG_CELL}).")
    parser.add_argument("--user-cell", nargs="+", default=[DEFAULT_USER_CELL], metavar="KEY=VALUE",
                        help=f"The user's cell (default: {DEFAULT_USER_CELL}).")
    parser.add_argument("--bootstrap", type=int, default=DEFAULT_BOOTSTRAP_SAMPLES,
                        help="Bootstrap resamples for the intervals of effects and gap.")
    parser.add_argument("--no-log-artifacts", action="store_true",
                        help="Do not log the report to the sweep's parent run.")
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
    blog_cell, user_cell = parse_cell(args.blog_cell), parse_cell(args.user_cell)
    with tempfile.TemporaryDirectory(prefix="glovesweep-report-smoke-") as scratch:
        tracking_uri = args.tracking_uri
        sweep = args.sweep
        out_dir = args.out
        if args.smoke_test:
            tracking_uri = tracking_uri or f"sqlite:///{pathlib.Path(scratch) / 'mlflow.db'}"
            out_dir = out_dir or str(pathlib.Path(scratch) / "report")
        else:
            if not sweep:
                raise ValueError("name the sweep: glovesweep report <sweep name or parent run id>")
            tracking_uri = tracking_uri or mlflow.get_tracking_uri()
            _check_tracking_uri(tracking_uri)
            tracking.check_reachable(tracking_uri)
        client = mlflow.MlflowClient(tracking_uri=tracking_uri)
        try:
            if args.smoke_test:
                # Without a server, keep the synthetic sweep's artifacts in the scratch folder too.
                location = None if args.tracking_uri else (pathlib.Path(scratch) / "artifacts").as_uri()
                sweep = log_synthetic_sweep(client, artifact_location=location)
            report = make_report(client, sweep, out_dir=out_dir, experiment=args.experiment, blog_cell=blog_cell,
                                 user_cell=user_cell, bootstrap_samples=args.bootstrap,
                                 log_artifacts=not args.no_log_artifacts)
        except mlflow_exceptions.MlflowException as error:
            raise OSError(f"MLflow at {tracking_uri}: {error.message}") from error
        for sentence in report.answers:
            print(sentence)
        print(f"Report: {report.files['markdown']} (tables, plots and runs.parquet in {report.out_dir})")
        if not args.no_log_artifacts and not (args.smoke_test and not args.tracking_uri):
            print(f"Logged to parent run {report.sweep.parent_run_id} under report/ at {tracking_uri}")
        if args.smoke_test:
            print(f"Smoke test passed: {len(report.sweep.rows)} rows, {len(report.effects)} effect terms.")
    return 0
