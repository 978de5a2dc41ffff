"""Read a sweep's runs into pandas frames: from MLflow (``sweeps.tracking.search``) or from a report folder.

``read_runs(source)`` takes a sweep name or parent run id (read from an MLflow tracking store) or a folder
holding ``runs.parquet`` and ``history.parquet`` (what ``glovesweep report`` writes; no MLflow needed), and
returns a ``SweepFrame``. ``write_frames`` writes the two Parquet files so that ``read_runs(folder)`` gives the
identical frames back. The MLflow names come from ``sweeps.tracking.names``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import pathlib
import re
from typing import Any, Sequence

import pandas as pd
import pyarrow
from pyarrow import parquet

from sweeps.report import objective as objective_module
from sweeps.report import shown
from sweeps.spec import space as space_module
from sweeps.tracking import names
from sweeps.tracking import search
from trainer import config as config_module

logger = logging.getLogger(__name__)

RUNS_FILE = "runs.parquet"
HISTORY_FILE = "history.parquet"
METADATA_KEY = b"glovesweep"
# Seeds and epoch counts are the axes of every cell, never factors of the cell itself.
NOT_CELL_FACTORS = ("seed", "epochs")
# The seed's parts (split_seed, init_seed, order_seed) are params of their own but replicates too: a sweep that
# crosses them repeats each cell, and the report pools those runs into the cell (``cell_factors``).
REPLICATE_FACTORS = tuple(name for name in config_module.SEED_FACTORS if name not in NOT_CELL_FACTORS)
CONFIG_FIELDS = tuple(field.name for field in dataclasses.fields(config_module.TrainerConfig))
# The Keras trainer's settings kept as their own columns (every field but the table's two axes): the param columns
# of a sweep of the built-in trainers, so the committed results read and regenerate as they did. A sweep of
# another trainer has that trainer's params instead (``sweep_params``).
PARAM_COLUMNS = tuple(name for name in CONFIG_FIELDS if name not in NOT_CELL_FACTORS)
# Trainer kinds whose runs are references beside the trainer's own (the TF-IDF baselines: one run per data cell,
# no epochs), never cells of the sweep's statistics.
REFERENCE_KINDS = (names.TRAINER_BASELINE,)
# The objective's value (``SweepFrame.objective`` names the metric); files written before it was neutral call it
# ``val_acc``, and read as before.
VALUE = "value"
LEGACY_VALUE = names.VAL_ACC
# ``stage`` and ``configuration``: a search's child runs (tags ``glovesweep.stage``, ``glovesweep.config_id``).
META_COLUMNS = ("sweep_name", "parent_run_id", "run_id", "trial_id", "status", "trainer", "model", "cell",
                "factors", "non_finite", "stage", "configuration")
INT_COLUMNS = ("epochs", "max_epochs", "seed")
# ``val_loss``: the Keras trainer's ``val_loss_at_<E>`` beside its objective, as its files always had it.
FLOAT_COLUMNS = (VALUE, names.VAL_LOSS, names.LEAKAGE, names.GLOVE_COVERAGE, names.OUT_OF_RANGE_IDS,
                 names.LEAK_FRACTION_TRAIN, names.LEAK_FRACTION_VAL)
RESERVED = META_COLUMNS + INT_COLUMNS + FLOAT_COLUMNS + ("epoch", names.BASELINE_PARAM)


def runs_schema(params: Sequence[str] = PARAM_COLUMNS) -> pyarrow.Schema:
    """The runs frame's columns: the meta columns, epochs and seed, the objective's value and the Keras trainer's
    data measures, then one text column per param in ``params``."""
    return pyarrow.schema([pyarrow.field(name, pyarrow.string()) for name in META_COLUMNS]
                          + [pyarrow.field(name, pyarrow.int64()) for name in INT_COLUMNS]
                          + [pyarrow.field(name, pyarrow.float64()) for name in FLOAT_COLUMNS]
                          + [pyarrow.field(name, pyarrow.string()) for name in params])


def history_schema(params: Sequence[str] = PARAM_COLUMNS) -> pyarrow.Schema:
    """The history frame's columns: one row per run and epoch, the objective's value, the params."""
    return pyarrow.schema([pyarrow.field(name, pyarrow.string()) for name in ("run_id", "trainer", "model")]
                          + [pyarrow.field("epoch", pyarrow.int64()), pyarrow.field("seed", pyarrow.int64()),
                             pyarrow.field(VALUE, pyarrow.float64())]
                          + [pyarrow.field(name, pyarrow.string()) for name in params])


RUNS_SCHEMA = runs_schema()
HISTORY_SCHEMA = history_schema()


@dataclasses.dataclass
class SweepFrame:
    """A sweep's runs as frames.

    ``runs``: one row per trial x requested epoch count (columns ``runs_schema(params)``; ``value`` is the
    objective's ``<metric>_at_<E>``, NaN where it came out NaN or infinite, which ``non_finite`` then lists as
    ``metric@epoch``; a reference run (TF-IDF baseline) gives one row with ``epochs`` missing); ``history``: one
    row per trial x finished epoch (``history_schema(params)``); ``factors``: the cell factors, without seed and
    epochs; ``objective``: the metric ``value`` holds, with its direction and range; ``params``: the trainer's
    settings kept as columns; ``skipped``: child run ids with no finished epoch; ``source``: the tracking URI or
    folder read; ``tracking_uri``: the store the runs were read from, empty when they were read from a folder
    (the folder's files never name it); ``space``: a search's distributions (the parent's ``glovesweep.space``),
    empty for a grid. Rows are in the order the runs started.
    """

    runs: pd.DataFrame
    history: pd.DataFrame
    sweep_name: str
    parent_run_id: str
    factors: list[str]
    source: str
    tracking_uri: str = ""
    experiment_id: str = ""
    skipped: list[str] = dataclasses.field(default_factory=list)
    objective: objective_module.Metric = objective_module.DEFAULT
    params: list[str] = dataclasses.field(default_factory=lambda: list(PARAM_COLUMNS))
    space: dict[str, space_module.Distribution] = dataclasses.field(default_factory=dict)


def is_folder(source: str | os.PathLike) -> bool:
    """True when ``source`` is a folder holding ``runs.parquet`` (a report folder), not a sweep name."""
    return (pathlib.Path(source) / RUNS_FILE).is_file()


def read_runs(source: str | os.PathLike, *, tracking_uri: str | None = None, experiment: str | None = None,
              with_history: bool = True) -> SweepFrame:
    """Read a sweep from a report folder (``runs.parquet`` + ``history.parquet``) or from MLflow.

    Parameters
    ----------
    source : str or path
        A folder holding ``runs.parquet``, else a sweep name (tag ``glovesweep.sweep_name``; the latest parent
        run with it) or a parent run id in the tracking store ``tracking_uri`` (default: MLflow's).
    experiment : str, optional
        Look for the sweep in this experiment only.
    """
    if is_folder(source):
        return read_folder(source)
    return read_mlflow(str(source), tracking_uri=tracking_uri, experiment=experiment, with_history=with_history)


def to_frame(table: pyarrow.Table, schema: pyarrow.Schema) -> pd.DataFrame:
    """An Arrow table as a frame with ``schema``'s columns: absent ones null, int64 as pandas' nullable Int64.

    A table written before the value column was neutral has the objective's value as ``val_acc``: read as ``value``.
    """
    if VALUE not in table.column_names and LEGACY_VALUE in table.column_names:
        table = table.rename_columns([VALUE if name == LEGACY_VALUE else name for name in table.column_names])
    columns = [table.column(field.name).cast(field.type) if field.name in table.column_names
               else pyarrow.nulls(table.num_rows, field.type) for field in schema]
    conformed = pyarrow.Table.from_arrays(columns, schema=schema)
    return conformed.to_pandas(types_mapper={pyarrow.int64(): pd.Int64Dtype()}.get)


def runs_frame(rows: list[dict[str, Any]], params: Sequence[str] = PARAM_COLUMNS) -> pd.DataFrame:
    """The runs frame of row dicts (keys of ``runs_schema(params)``; absent keys are missing values)."""
    return _rows_frame(rows, runs_schema(params))


def history_frame(rows: list[dict[str, Any]], params: Sequence[str] = PARAM_COLUMNS) -> pd.DataFrame:
    """The history frame of row dicts (keys of ``history_schema(params)``)."""
    return _rows_frame(rows, history_schema(params))


def _rows_frame(rows: list[dict[str, Any]], schema: pyarrow.Schema) -> pd.DataFrame:
    # Rows made before the value column was neutral give the objective as ``val_acc``, as the old files do.
    wanted = set(schema.names)
    table = pyarrow.Table.from_pylist(
        [{VALUE if key == LEGACY_VALUE and VALUE not in row else key: value for key, value in row.items()
          if key in wanted or (key == LEGACY_VALUE and VALUE not in row)} for row in rows], schema=schema)
    return to_frame(table, schema)


def table_params(table: pyarrow.Table, metadata: dict[str, Any]) -> list[str]:
    """The param columns of a written runs table: as its metadata lists them, else every column past the
    fixed ones (files written before the metadata listed them: the Keras trainer's settings)."""
    if "params" in metadata:
        return list(metadata["params"])
    return [name for name in table.column_names if name not in RESERVED + (LEGACY_VALUE,)]


def read_folder(folder: str | os.PathLike) -> SweepFrame:
    """Read ``runs.parquet`` and ``history.parquet`` (absent: no history) of a report folder."""
    folder = pathlib.Path(folder)
    table = parquet.read_table(folder / RUNS_FILE)
    # Files written before the metadata existed: the ids are in the columns, the factors in the params.
    metadata = json.loads((table.schema.metadata or {}).get(METADATA_KEY, b"{}"))
    params = table_params(table, metadata)
    history_path = folder / HISTORY_FILE
    history = parquet.read_table(history_path) if history_path.exists() else history_schema(params).empty_table()
    runs = to_frame(table, runs_schema(params))
    first = runs.iloc[0] if len(runs) else {}
    return SweepFrame(runs=runs, history=to_frame(history, history_schema(params)),
                      sweep_name=metadata.get("sweep_name") or str(first.get("sweep_name", folder.name)),
                      parent_run_id=metadata.get("parent_run_id") or str(first.get("parent_run_id", "")),
                      factors=without_replicates(metadata.get("factors")) or cell_factors(runs, params),
                      source=str(folder),
                      experiment_id=metadata.get("experiment_id", ""), skipped=metadata.get("skipped", []),
                      objective=objective_module.from_record(metadata.get("objective")), params=params,
                      space=space_module.from_records(metadata.get("space")))


def write_frames(swept: SweepFrame, folder: str | os.PathLike) -> dict[str, pathlib.Path]:
    """Write ``runs.parquet`` (with the sweep's ids and factors as schema metadata) and ``history.parquet``.

    The tracking URI is not written: a report folder gets committed and shared, and a store's URI names a path
    on one machine (``sqlite:////home/...``) or carries a password (``postgresql://user:secret@...``).
    """
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    metadata = {"sweep_name": swept.sweep_name, "parent_run_id": swept.parent_run_id, "factors": swept.factors,
                "experiment_id": swept.experiment_id, "skipped": swept.skipped,
                "objective": objective_module.to_record(swept.objective), "params": list(swept.params)}
    if swept.space:
        metadata["space"] = space_module.to_records(swept.space)
    runs = pyarrow.Table.from_pandas(swept.runs, schema=runs_schema(swept.params), preserve_index=False)
    runs = runs.replace_schema_metadata({METADATA_KEY: json.dumps(metadata, sort_keys=True).encode()})
    paths = {"runs": folder / RUNS_FILE, "history": folder / HISTORY_FILE}
    parquet.write_table(runs, paths["runs"])
    parquet.write_table(pyarrow.Table.from_pandas(swept.history, schema=history_schema(swept.params),
                                                  preserve_index=False),
                        paths["history"])
    return paths


# How a report writes its source (no absolute path, no credentials), where the report's modules have found it.
shown_path = shown.shown_path
shown_store = shown.shown_store


def reference_rows(runs: pd.DataFrame) -> pd.Series:
    """True for the rows of reference trainers (``REFERENCE_KINDS``: the TF-IDF baselines)."""
    return runs["trainer"].isin(REFERENCE_KINDS)


def without_replicates(factors: Sequence[str] | None) -> list[str]:
    """``factors`` without the seed parts (``REPLICATE_FACTORS``): what a cell is, whatever seeds repeat it."""
    return [name for name in factors or () if name not in REPLICATE_FACTORS]


def cell_factors(runs: pd.DataFrame, params: Sequence[str] = PARAM_COLUMNS) -> list[str]:
    """The cell factors: the union of the trainer runs' ``factors`` params (in order, without the seed, its parts
    and epochs: a cell's runs at other seeds are its replicates).

    Runs without a ``factors`` param: the params that vary across the trainer's runs. Names that are not params
    of the runs are left out with a warning.
    """
    network = runs[~reference_rows(runs)]
    found: list[str] = []
    for text in network["factors"].dropna():
        for name in str(text).split(","):
            name = name.strip()
            if name and name not in found and name not in NOT_CELL_FACTORS + REPLICATE_FACTORS:
                found.append(name)
    if not found:
        found = [name for name in params if network[name].nunique(dropna=False) > 1 and name not in REPLICATE_FACTORS]
    unknown = [name for name in found if name not in params]
    if unknown:
        logger.warning("factors %s are not params of the runs; they are left out of the cells", unknown)
    return [name for name in found if name in params]


def sweep_params(runs: Sequence) -> list[str]:
    """The param columns of a sweep's child runs (``mlflow.entities.Run``): the Keras trainer's settings
    (``PARAM_COLUMNS``) when only the built-in trainers ran, else the factors in their order, then every other
    param by name (seed, epochs, the ``factors`` list and names the frame uses for itself left out)."""
    kinds = {run.data.tags.get(names.TRAINER_TAG, names.TRAINER_KERAS) for run in runs}
    if kinds <= {names.TRAINER_KERAS, names.TRAINER_BASELINE}:
        return list(PARAM_COLUMNS)
    factor_names = [name.strip() for run in runs for name in run.data.params.get(names.FACTORS_PARAM, "").split(",")]
    every = sorted({name for run in runs for name in run.data.params})
    clashing = [name for name in every if name in RESERVED and name not in INT_COLUMNS + (names.FACTORS_PARAM,)]
    if clashing:
        logger.warning("params %s share a name with a column of the report's frame; they are left out", clashing)
    ordered = list(dict.fromkeys([name for name in factor_names if name in every] + every))
    return [name for name in ordered if name and name not in RESERVED + NOT_CELL_FACTORS + (names.FACTORS_PARAM,)]


# ---------------------------------------------------------------------------------------------------- MLflow


def non_finite_marks(text: str | None) -> list[tuple[str, int]]:
    """The ``glovesweep.non_finite`` tag (``metric@epoch,...``) as (metric, epoch) pairs."""
    marks = []
    for item in (text or "").split(","):
        metric, separator, epoch = item.strip().rpartition("@")
        if separator and epoch.isdigit():
            marks.append((metric, int(epoch)))
    return marks


def finite_or_nan(value: float | None) -> float:
    """``value`` where it is a finite number, else NaN (MLflow stores an infinity as the largest float)."""
    if value is None or not math.isfinite(value) or abs(value) >= 1.7e308:
        return math.nan
    return float(value)


def run_rows(run, *, sweep_name: str, parent_run_id: str, objective: objective_module.Metric = objective_module.DEFAULT,
             params: Sequence[str] = PARAM_COLUMNS, searched: bool = False) -> list[dict[str, Any]]:
    """Rows of one child run: one per requested epoch count (its ``<objective>_at_<E>`` metrics).

    A reference run (baseline) without summary metrics gives one row from its plain objective metric, with
    ``epochs=None``; so does a run of a trainer without an epoch axis (no ``epochs`` param), at ``epochs=1``, and
    a search's trial that its scheduler stopped before the last epoch count (``read_mlflow`` sets its epochs).
    A value that came out NaN or infinite (or that the run's ``glovesweep.non_finite`` tag lists) is NaN, and the
    row's ``non_finite`` says which metric at which epoch. A run with no finished epoch gives no rows.
    """
    params_of, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    trainer = tags.get(names.TRAINER_TAG) or (names.TRAINER_BASELINE if names.BASELINE_PARAM in params_of
                                              else names.TRAINER_KERAS)
    is_reference = trainer in REFERENCE_KINDS
    marks = non_finite_marks(tags.get(names.NON_FINITE_TAG))
    base = {"sweep_name": sweep_name, "parent_run_id": parent_run_id, "run_id": run.info.run_id,
            "trial_id": tags.get(names.TRIAL_ID_TAG, ""), "status": run.info.status, "trainer": trainer,
            "model": params_of.get(names.BASELINE_PARAM, trainer) if is_reference else trainer,
            "cell": tags.get(names.CELL_TAG, ""), "factors": params_of.get(names.FACTORS_PARAM, ""),
            "non_finite": ",".join(f"{metric}@{epoch}" for metric, epoch in marks) or None,
            "stage": tags.get(names.STAGE_TAG), "configuration": tags.get(names.CONFIG_ID_TAG),
            "max_epochs": _as_int(params_of.get("epochs")), "seed": _as_int(params_of.get("seed"))}
    base.update({name: metrics.get(name, math.nan) for name in FLOAT_COLUMNS if name not in (VALUE, names.VAL_LOSS)})
    base.update({name: params_of.get(name) for name in params})
    pattern = re.compile(re.escape(objective.name) + r"_at_(\d+)")
    counts = sorted(int(match.group(1)) for key in metrics if (match := pattern.fullmatch(key)))
    rows = [dict(base, epochs=count, value=_value(metrics[names.metric_at(objective.name, count)], count,
                                                  objective, marks),
                 val_loss=metrics.get(names.val_loss_at(count), math.nan)) for count in counts]
    if not rows and objective.name in metrics and (is_reference or searched or "epochs" not in params_of):
        epochs = None if is_reference or "epochs" in params_of else 1
        rows = [dict(base, epochs=epochs, value=_value(metrics[objective.name], epochs, objective, marks),
                     val_loss=metrics.get(names.VAL_LOSS, math.nan))]
    return rows


def _value(value: float, epochs: int | None, objective: objective_module.Metric,
           marks: list[tuple[str, int]]) -> float:
    return math.nan if (objective.name, epochs) in marks else finite_or_nan(value)


def read_mlflow(sweep: str, *, tracking_uri: str | None = None, experiment: str | None = None,
                with_history: bool = True) -> SweepFrame:
    """Read a sweep's child runs from MLflow into a ``SweepFrame`` (see ``read_runs``)."""
    import mlflow

    parent = search.find_parent_run(sweep, tracking_uri=tracking_uri, experiment=experiment)
    parent_run_id = parent.info.run_id
    sweep_name = parent.data.tags.get(names.SWEEP_NAME_TAG, parent_run_id)
    objective = objective_module.from_text(parent.data.tags.get(names.OBJECTIVE_TAG))
    space = space_module.from_records(json.loads(parent.data.tags.get(names.SPACE_TAG) or "[]"))
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    children = [run for run in search.child_runs(tracking_uri, parent_run_id,
                                                 experiment_ids=[parent.info.experiment_id])
                if run.data.tags.get(names.ROLE_TAG, names.ROLE_TRIAL) == names.ROLE_TRIAL]
    params = sweep_params(children)
    rows, history, skipped = [], [], []
    for run in children:
        found = run_rows(run, sweep_name=sweep_name, parent_run_id=parent_run_id, objective=objective, params=params,
                         searched=bool(space))
        if not found:
            skipped.append(run.info.run_id)
            continue
        rows.extend(found)
        if with_history and found[0]["trainer"] not in REFERENCE_KINDS:
            steps = _run_history(client, found[0], objective.name, params)
            history.extend(steps)
            if found[0]["epochs"] is None and steps:  # a search's trial stopped early: its last epoch
                found[0]["epochs"] = steps[-1]["epoch"]
    if skipped:
        logger.warning("%d child runs have no finished epoch and are left out: %s", len(skipped), ", ".join(skipped))
    runs = runs_frame(rows, params)
    return SweepFrame(runs=runs, history=history_frame(history, params),
                      sweep_name=sweep_name, parent_run_id=parent_run_id, factors=cell_factors(runs, params),
                      source=client.tracking_uri, tracking_uri=client.tracking_uri,
                      experiment_id=parent.info.experiment_id, skipped=skipped, objective=objective, params=params,
                      space=space)


def _run_history(client, row: dict, metric: str, params: Sequence[str]) -> list[dict]:
    """One dict per finished epoch of a run from its ``metric`` step metric (last value logged per step)."""
    by_step: dict[int, Any] = {}
    for value in client.get_metric_history(row["run_id"], metric):
        # A retried or resumed epoch logs its step again: keep the newest value.
        if value.step not in by_step or value.timestamp >= by_step[value.step].timestamp:
            by_step[value.step] = value
    keep = ("run_id", "trainer", "model", "seed") + tuple(params)
    return [dict({name: row[name] for name in keep}, epoch=int(step), value=finite_or_nan(float(value.value)))
            for step, value in sorted(by_step.items())]


def _as_int(text: str | None) -> int | None:
    try:
        return int(text) if text not in (None, "", "None") else None
    except ValueError:
        return None
