"""A sweep's progress, read from what its trials record in MLflow (never from log text).

Each trial has one child run under the sweep's parent run (``sweeps.tracking.mlflow_runs``): its status says whether the
trial finished, failed, runs or was killed; the history of the sweep's objective (the parent's
``glovesweep.objective``; ``val_acc`` for sweeps logged before it) has one step per epoch trained; its latest value
scores its cell, best in the objective's direction. Trials without a child run yet are pending. An ``http(s)://``
tracking server is read over its REST API, without importing ``mlflow`` (``sweeps.tracking.fast_read``).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import math
import statistics
import time
from typing import Any

from sweeps.tracking import fast_read
from sweeps.tracking import mlflow_runs
from sweeps.tracking import names


@dataclasses.dataclass(frozen=True)
class Progress:
    """Where a sweep stands.

    Attributes
    ----------
    total, done, running, pending, failed, killed : int
        Trials: all of them, then by state (``pending``: no child run yet).
    epochs_done, epochs_total : int
        Network epochs trained so far, and in all (network trials x max epochs; ASHA may stop some early).
    best_cell : str or None
        The cell (``glovesweep.cell``) with the best mean latest objective value over its trainer's runs (highest,
        or lowest for a ``min`` objective).
    best_val_acc : float or None
        That mean where the objective is ``val_acc`` (the key scripts have read since the service began), else None.
    best_runs : int
        Runs averaged into ``best_value``.
    first_start : float or None
        When the first trial started (seconds since the epoch).
    objective : str
        The objective metric's name.
    best_value : float or None
        The best cell's mean of the objective.
    """

    total: int
    done: int
    running: int
    pending: int
    failed: int
    killed: int
    epochs_done: int
    epochs_total: int
    best_cell: str | None
    best_val_acc: float | None
    best_runs: int
    first_start: float | None
    objective: str = names.VAL_ACC
    best_value: float | None = None

    def __post_init__(self) -> None:
        # A Progress made the way it was before objectives were named gives its best cell as best_val_acc.
        if self.best_value is None and self.best_val_acc is not None:
            object.__setattr__(self, "best_value", self.best_val_acc)

    def seconds_left(self, now: float | None = None) -> float | None:
        """Estimated seconds to the end, from the epoch rate so far; None before the first epoch."""
        if not self.epochs_done or self.first_start is None:
            return None
        rate = self.epochs_done / max(1e-3, (now or time.time()) - self.first_start)
        return max(0, self.epochs_total - self.epochs_done) / rate

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class SweepStatus:
    """One sweep as ``glovesweep status`` and ``list`` show it: its newest job's state and its progress.

    Attributes
    ----------
    sweep_id, name : str
        The sweep's id (its first job's submission id) and its sweep file's name.
    state : str
        The newest job's state: pending, running, succeeded, failed or stopped.
    job : str
        The newest job's submission id (``<id>-resume-<n>`` after a resume).
    parent_run_id, mlflow_url : str
        The sweep's MLflow parent run, and its page (or the command that opens the UI on the store).
    elapsed_seconds : float
        From the first job's start to the newest one's end (or now).
    seconds_left : float or None
        Estimated, while running; None before the first epoch or when not running.
    progress : Progress or None
        None when MLflow could not be read (``progress_error`` says why).
    message : str or None
        Ray's message of a failed job.
    progress_error : str or None
        Why ``progress`` is missing.
    """

    sweep_id: str
    name: str
    state: str
    job: str
    parent_run_id: str
    mlflow_url: str
    elapsed_seconds: float
    seconds_left: float | None = None
    progress: Progress | None = None
    message: str | None = None
    progress_error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` form: these keys in this order, ``progress`` as a dict, ``progress_error`` only when
        progress is missing (the keys scripts have read since the service began)."""
        entry = {"sweep_id": self.sweep_id, "name": self.name, "state": self.state, "job": self.job,
                 "parent_run_id": self.parent_run_id, "mlflow_url": self.mlflow_url,
                 "elapsed_seconds": self.elapsed_seconds, "seconds_left": self.seconds_left,
                 "progress": self.progress.as_dict() if self.progress is not None else None, "message": self.message}
        if self.progress_error is not None:
            entry["progress_error"] = self.progress_error
        return entry


def read_progress(tracking_uri: str, experiment_id: str, parent_run_id: str, *, total: int, network_trials: int,
                  max_epochs: int) -> Progress:
    """Count a sweep's trials by state and its epochs from its child runs.

    Parameters
    ----------
    tracking_uri, experiment_id, parent_run_id : str
        Where the sweep logs.
    total, network_trials, max_epochs : int
        Trials of the sweep, those that train a network, and the epochs each of those trains.
    """
    children = fast_read.child_runs(tracking_uri, experiment_id, parent_run_id)
    statuses = [run.status for run in children]
    # The trainer's own runs: the references beside it (the TF-IDF baselines) train no epochs.
    networks = [run for run in children if run.tags.get(names.TRAINER_TAG) != names.TRAINER_BASELINE]
    name, mode = objective_of(tracking_uri, parent_run_id)

    def epochs(run: fast_read.RunSummary) -> int:
        return len(fast_read.metric_steps(tracking_uri, run.run_id, name))

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        epochs_done = sum(pool.map(epochs, networks))
    scores: dict[str, list[float]] = {}
    for run in networks:
        if math.isfinite(run.metrics.get(name, math.nan)):
            scores.setdefault(run.tags.get(names.CELL_TAG, "?"), []).append(run.metrics[name])
    sign = 1 if mode == "max" else -1
    best = max(scores, key=lambda cell: sign * statistics.fmean(scores[cell]), default=None)
    best_value = statistics.fmean(scores[best]) if best else None
    return Progress(
        total=total, done=statuses.count("FINISHED"), running=statuses.count("RUNNING"),
        pending=max(0, total - len(children)), failed=statuses.count("FAILED"), killed=statuses.count("KILLED"),
        epochs_done=epochs_done, epochs_total=network_trials * max_epochs, best_cell=best,
        best_val_acc=best_value if name == names.VAL_ACC else None, best_runs=len(scores[best]) if best else 0,
        first_start=min((run.start_time for run in children), default=None) / 1000 if children else None,
        objective=name, best_value=best_value)


def objective_of(tracking_uri: str, parent_run_id: str) -> tuple[str, str]:
    """(name, mode) of the sweep's objective from its parent run's ``glovesweep.objective`` tag (``name:mode...``);
    ``val_acc``, ``max`` for a sweep logged before the tag existed."""
    if fast_read.speaks(tracking_uri):
        run = fast_read.call(tracking_uri, "GET", "/runs/get", query={"run_id": parent_run_id})["run"]
        tags = {tag["key"]: tag.get("value", "") for tag in run.get("data", {}).get("tags", [])}
    else:
        tags = mlflow_runs.get_run(tracking_uri, parent_run_id).data.tags
    parts = (tags.get(names.OBJECTIVE_TAG) or f"{names.VAL_ACC}:max").split(":")
    return parts[0], parts[1] if len(parts) > 1 else "max"


def run_url(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    """The MLflow UI page of a run (an ``http(s)://`` store), else the command that opens the UI on the store."""
    if tracking_uri.startswith(("http://", "https://")):
        return f"{tracking_uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"
    return f"glovesweep ui --tracking-uri {tracking_uri}"


def duration(seconds: float | None) -> str:
    """``1h02m``, ``3m05s``, ``12s``; ``?`` when unknown."""
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"
