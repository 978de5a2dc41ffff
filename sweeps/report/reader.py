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
import urllib.parse
from typing import Any

import pandas as pd
import pyarrow
from pyarrow import parquet

from sweeps.tracking import names
from sweeps.tracking import search
from trainer import config as config_module

logger = logging.getLogger(__name__)

RUNS_FILE = "runs.parquet"
HISTORY_FILE = "history.parquet"
METADATA_KEY = b"glovesweep"
# Seeds and epoch counts are the axes of every cell, never factors of the cell itself.
NOT_CELL_FACTORS = ("seed", "epochs")
CONFIG_FIELDS = tuple(field.name for field in dataclasses.fields(config_module.TrainerConfig))
# Config fields kept as their own columns: every field but the two whose names the table uses for its axes.
PARAM_COLUMNS = tuple(name for name in CONFIG_FIELDS if name not in NOT_CELL_FACTORS)
META_COLUMNS = ("sweep_name", "parent_run_id", "run_id", "trial_id", "status", "trainer", "model", "cell",
                "factors")
INT_COLUMNS = ("epochs", "max_epochs", "seed")
FLOAT_COLUMNS = ("val_acc", "val_loss", names.LEAKAGE, names.GLOVE_COVERAGE, names.OUT_OF_RANGE_IDS,
                 names.LEAK_FRACTION_TRAIN, names.LEAK_FRACTION_VAL)
RUNS_SCHEMA = pyarrow.schema([pyarrow.field(name, pyarrow.string()) for name in META_COLUMNS]
                             + [pyarrow.field(name, pyarrow.int64()) for name in INT_COLUMNS]
                             + [pyarrow.field(name, pyarrow.float64()) for name in FLOAT_COLUMNS]
                             + [pyarrow.field(name, pyarrow.string()) for name in PARAM_COLUMNS])
HISTORY_SCHEMA = pyarrow.schema([pyarrow.field(name, pyarrow.string()) for name in ("run_id", "trainer", "model")]
                                + [pyarrow.field("epoch", pyarrow.int64()), pyarrow.field("seed", pyarrow.int64()),
                                   pyarrow.field("val_acc", pyarrow.float64())]
                                + [pyarrow.field(name, pyarrow.string()) for name in PARAM_COLUMNS])


@dataclasses.dataclass
class SweepFrame:
    """A sweep's runs as frames.

    ``runs``: one row per trial x requested epoch count (columns ``RUNS_SCHEMA``; a baseline without
    ``val_acc_at_<E>`` gives one row with ``epochs`` missing); ``history``: one row per network trial x
    finished epoch (``HISTORY_SCHEMA``); ``factors``: the cell factors, without seed and epochs; ``skipped``:
    child run ids with no finished epoch; ``source``: the tracking URI or folder read; ``tracking_uri``: the
    store the runs were read from, empty when they were read from a folder (the folder's files never name it).
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
    """An Arrow table as a frame with ``schema``'s columns: absent ones null, int64 as pandas' nullable Int64."""
    columns = [table.column(field.name).cast(field.type) if field.name in table.column_names
               else pyarrow.nulls(table.num_rows, field.type) for field in schema]
    conformed = pyarrow.Table.from_arrays(columns, schema=schema)
    return conformed.to_pandas(types_mapper={pyarrow.int64(): pd.Int64Dtype()}.get)


def runs_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The runs frame of row dicts (keys of ``RUNS_SCHEMA``; absent keys are missing values)."""
    return to_frame(pyarrow.Table.from_pylist(rows, schema=RUNS_SCHEMA), RUNS_SCHEMA)


def history_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The history frame of row dicts (keys of ``HISTORY_SCHEMA``)."""
    return to_frame(pyarrow.Table.from_pylist(rows, schema=HISTORY_SCHEMA), HISTORY_SCHEMA)


def read_folder(folder: str | os.PathLike) -> SweepFrame:
    """Read ``runs.parquet`` and ``history.parquet`` (absent: no history) of a report folder."""
    folder = pathlib.Path(folder)
    table = parquet.read_table(folder / RUNS_FILE)
    history_path = folder / HISTORY_FILE
    history = parquet.read_table(history_path) if history_path.exists() else HISTORY_SCHEMA.empty_table()
    runs = to_frame(table, RUNS_SCHEMA)
    # Files written before the metadata existed: the ids are in the columns, the factors in the params.
    metadata = json.loads((table.schema.metadata or {}).get(METADATA_KEY, b"{}"))
    first = runs.iloc[0] if len(runs) else {}
    return SweepFrame(runs=runs, history=to_frame(history, HISTORY_SCHEMA),
                      sweep_name=metadata.get("sweep_name") or str(first.get("sweep_name", folder.name)),
                      parent_run_id=metadata.get("parent_run_id") or str(first.get("parent_run_id", "")),
                      factors=metadata.get("factors") or cell_factors(runs), source=str(folder),
                      experiment_id=metadata.get("experiment_id", ""), skipped=metadata.get("skipped", []))


def write_frames(swept: SweepFrame, folder: str | os.PathLike) -> dict[str, pathlib.Path]:
    """Write ``runs.parquet`` (with the sweep's ids and factors as schema metadata) and ``history.parquet``.

    The tracking URI is not written: a report folder gets committed and shared, and a store's URI names a path
    on one machine (``sqlite:////home/...``) or carries a password (``postgresql://user:secret@...``).
    """
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    metadata = {"sweep_name": swept.sweep_name, "parent_run_id": swept.parent_run_id, "factors": swept.factors,
                "experiment_id": swept.experiment_id, "skipped": swept.skipped}
    runs = pyarrow.Table.from_pandas(swept.runs, schema=RUNS_SCHEMA, preserve_index=False)
    runs = runs.replace_schema_metadata({METADATA_KEY: json.dumps(metadata, sort_keys=True).encode()})
    paths = {"runs": folder / RUNS_FILE, "history": folder / HISTORY_FILE}
    parquet.write_table(runs, paths["runs"])
    parquet.write_table(pyarrow.Table.from_pandas(swept.history, schema=HISTORY_SCHEMA, preserve_index=False),
                        paths["history"])
    return paths


def shown_path(path: str | os.PathLike) -> str:
    """A file or folder as written into a report: relative to the working directory, never absolute.

    A relative path stays as given; an absolute one inside the working directory becomes relative to it; one
    outside it is shown by its name alone, so no file a report writes names a folder of one machine.
    """
    path = pathlib.Path(path)
    if not path.is_absolute():
        return path.as_posix()
    try:
        return path.resolve().relative_to(pathlib.Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.name


def shown_store(uri: str) -> str:
    """A tracking URI as written into a report: a file store's path as ``shown_path`` shows it, no credentials.

    A ``file:`` store is shown as its path (MLflow takes a path as a tracking URI).

    ``sqlite:////home/me/study/mlflow.db`` run from ``/home/me/study`` -> ``sqlite:///mlflow.db``;
    ``postgresql://user:secret@db:5432/mlflow?sslmode=require`` -> ``postgresql://db:5432/mlflow``.
    """
    if not uri:
        return ""
    if match := re.fullmatch(r"(sqlite[+\w]*:///)(.+)", uri):
        return match.group(1) + shown_path(match.group(2))
    parsed = urllib.parse.urlsplit(uri)
    if not parsed.scheme or parsed.scheme == "file":
        return shown_path(urllib.parse.unquote(parsed.path))
    if not parsed.netloc:
        return uri
    return urllib.parse.urlunsplit((parsed.scheme, parsed.netloc.rpartition("@")[2], parsed.path, "", ""))


def cell_factors(runs: pd.DataFrame) -> list[str]:
    """The cell factors: the union of the network runs' ``factors`` params (in order, without seed and epochs).

    Runs without a ``factors`` param: the settings that vary across network runs. Names that are not trainer
    settings are left out with a warning.
    """
    network = runs[runs["trainer"] != names.TRAINER_BASELINE]
    found: list[str] = []
    for text in network["factors"].dropna():
        for name in str(text).split(","):
            name = name.strip()
            if name and name not in found and name not in NOT_CELL_FACTORS:
                found.append(name)
    if not found:
        found = [name for name in PARAM_COLUMNS if network[name].nunique(dropna=False) > 1]
    unknown = [name for name in found if name not in PARAM_COLUMNS]
    if unknown:
        logger.warning("factors %s are not trainer settings; they are left out of the cells", unknown)
    return [name for name in found if name in PARAM_COLUMNS]


# ---------------------------------------------------------------------------------------------------- MLflow


def run_rows(run, *, sweep_name: str, parent_run_id: str) -> list[dict[str, Any]]:
    """Rows of one child run: one per requested epoch count (its ``val_acc_at_<E>`` metrics).

    A baseline run without summary metrics gives one row from its ``val_acc`` metric, with ``epochs=None``.
    A run with no finished epoch gives no rows.
    """
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    trainer = tags.get(names.TRAINER_TAG) or (names.TRAINER_BASELINE if names.BASELINE_PARAM in params
                                              else names.TRAINER_KERAS)
    is_baseline = trainer == names.TRAINER_BASELINE
    base = {"sweep_name": sweep_name, "parent_run_id": parent_run_id, "run_id": run.info.run_id,
            "trial_id": tags.get(names.TRIAL_ID_TAG, ""), "status": run.info.status, "trainer": trainer,
            "model": params.get(names.BASELINE_PARAM, names.TRAINER_BASELINE) if is_baseline else trainer,
            "cell": tags.get(names.CELL_TAG, ""), "factors": params.get(names.FACTORS_PARAM, ""),
            "max_epochs": _as_int(params.get("epochs")), "seed": _as_int(params.get("seed"))}
    base.update({name: metrics.get(name, math.nan) for name in FLOAT_COLUMNS if name not in ("val_acc", "val_loss")})
    base.update({name: params.get(name) for name in PARAM_COLUMNS})
    counts = sorted(int(match.group(1)) for key in metrics if (match := names.VAL_ACC_AT_PATTERN.fullmatch(key)))
    rows = [dict(base, epochs=count, val_acc=metrics[names.val_acc_at(count)],
                 val_loss=metrics.get(names.val_loss_at(count), math.nan)) for count in counts]
    if not rows and is_baseline and names.VAL_ACC in metrics:
        rows = [dict(base, epochs=None, val_acc=metrics[names.VAL_ACC],
                     val_loss=metrics.get(names.VAL_LOSS, math.nan))]
    return rows


def read_mlflow(sweep: str, *, tracking_uri: str | None = None, experiment: str | None = None,
                with_history: bool = True) -> SweepFrame:
    """Read a sweep's child runs from MLflow into a ``SweepFrame`` (see ``read_runs``)."""
    import mlflow

    parent = search.find_parent_run(sweep, tracking_uri=tracking_uri, experiment=experiment)
    parent_run_id = parent.info.run_id
    sweep_name = parent.data.tags.get(names.SWEEP_NAME_TAG, parent_run_id)
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    rows, history, skipped = [], [], []
    for run in search.child_runs(tracking_uri, parent_run_id, experiment_ids=[parent.info.experiment_id]):
        if run.data.tags.get(names.ROLE_TAG, names.ROLE_TRIAL) != names.ROLE_TRIAL:
            continue
        found = run_rows(run, sweep_name=sweep_name, parent_run_id=parent_run_id)
        if not found:
            skipped.append(run.info.run_id)
            continue
        rows.extend(found)
        if with_history and found[0]["trainer"] != names.TRAINER_BASELINE:
            history.extend(_run_history(client, found[0]))
    if skipped:
        logger.warning("%d child runs have no finished epoch and are left out: %s", len(skipped), ", ".join(skipped))
    runs = runs_frame(rows)
    return SweepFrame(runs=runs, history=history_frame(history),
                      sweep_name=sweep_name, parent_run_id=parent_run_id, factors=cell_factors(runs),
                      source=client.tracking_uri, tracking_uri=client.tracking_uri,
                      experiment_id=parent.info.experiment_id, skipped=skipped)


def _run_history(client, row: dict) -> list[dict]:
    """One dict per finished epoch of a run from its ``val_acc`` step metric (last value logged per step)."""
    by_step: dict[int, Any] = {}
    for metric in client.get_metric_history(row["run_id"], names.VAL_ACC):
        # A retried or resumed epoch logs its step again: keep the newest value.
        if metric.step not in by_step or metric.timestamp >= by_step[metric.step].timestamp:
            by_step[metric.step] = metric
    keep = ("run_id", "trainer", "model", "seed") + PARAM_COLUMNS
    return [dict({name: row[name] for name in keep}, epoch=int(step), val_acc=float(metric.value))
            for step, metric in sorted(by_step.items())]


def _as_int(text: str | None) -> int | None:
    try:
        return int(text) if text not in (None, "", "None") else None
    except ValueError:
        return None
