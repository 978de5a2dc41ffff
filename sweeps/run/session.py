"""Inside one trial: what a trainer's reports become (its MLflow child run and Tune), for any trainer.

``TrialSession`` is handed to a trainer's runner. ``run_function`` runs a user's training function: each
``report`` (``sweeps.trainers.report`` or ``ray.tune.report``, which both reach Tune's session) is intercepted
and written to the trial's child run first (buffered through outages, ``TrialRun``), then passed to Tune with
the epoch number; the user's own ``mlflow.log_*`` calls land in the same child run (``MLFLOW_RUN_ID``).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import json
import logging
import math
import os
import pathlib
from typing import Any, Callable, Iterator

from sweeps import spec as spec_module
from sweeps.tracking import names
from sweeps.tracking import trial_run
from sweeps.trainers import api
from trainer import checkpoint_files

logger = logging.getLogger(__name__)

# Reported to Tune with every epoch: metric values waiting for an unreachable tracking server.
PENDING_METRIC = "mlflow_pending"
# Written beside a user trainer's checkpoint: the epoch it holds, so a continued trial numbers on from it.
EPOCH_FILE = ".glovesweep_epoch.json"
# A child run's tag listing metrics that came out NaN or infinite ("name@epoch" joined by commas).
NON_FINITE_TAG = names.NON_FINITE_TAG


@dataclasses.dataclass
class SeedRoute:
    """Where one seed's reports go when a search's configuration trains its seeds side by side in one Tune trial
    (``sweeps.run.seed_group``): each seed runs in a thread of its own, and the trial's Tune session is shared.

    Attributes
    ----------
    forward : callable
        ``forward(metrics, checkpoint=None)``: the configuration's barrier, in place of Tune's report.
    checkpoint : ray.tune.Checkpoint or None
        This seed's part of the configuration's checkpoint (a retried trial), in place of Tune's.
    tags : dict
        Tags of this seed's child run (the configuration's id).
    handler : callable or None
        The seed's report as ``intercepted_reports`` made it (its child run first); set while it runs.
    """

    forward: Callable[..., None]
    checkpoint: Any = None
    tags: dict[str, str] = dataclasses.field(default_factory=dict)
    handler: Callable[..., None] | None = None


# The running thread's seed (a thread of ``sweeps.run.seed_group``), or None in a trial of one seed.
SEED_ROUTE: contextvars.ContextVar[SeedRoute | None] = contextvars.ContextVar("glovesweep_seed_route", default=None)


@dataclasses.dataclass
class TrialSession:
    """One running trial, as its trainer's runner sees it.

    Attributes
    ----------
    trainer : Trainer
    trial : Trial
    config : the trainer's typed config
    run : TrialRun
        The child run (already started).
    context : TrialContext
        The sweep's shared context (the built-in trainers read the prepared data from it).
    requested_epochs : list of int
        The epoch counts the sweep asks for (summaries ``<metric>_at_<E>``).
    resume_from : list of str
        Checkpoints of earlier Tune runs of this sweep, newest first.
    """

    trainer: api.Trainer
    trial: spec_module.Trial
    config: Any
    run: trial_run.TrialRun
    context: Any
    requested_epochs: list[int]
    resume_from: list[str]
    epoch: int = 0
    non_finite: list[str] = dataclasses.field(default_factory=list)

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        """Step metrics of a 1-based epoch and the objective's summary where the epoch is a requested count."""
        bad = [f"{key}@{epoch}" for key, value in metrics.items() if not math.isfinite(value)]
        if bad:
            self.non_finite += bad
            self.run.set_tags({NON_FINITE_TAG: ",".join(self.non_finite)})
        self.run.log_epoch(epoch, metrics, requested_epochs=self.requested_epochs,
                           summary=[metric.name for metric in self.trainer.metrics], step_keys=None)


def numbers(metrics: dict[str, Any]) -> dict[str, float]:
    """The numeric values of a report (booleans and text left out)."""
    return {key: float(value) for key, value in metrics.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "epoch"}


def checkpoint_epoch(checkpoint) -> int:
    """The epoch a local checkpoint holds: glovesweep's note in a user trainer's, else the built-in trainer's own
    ``state.json`` (``trainer.checkpoint_files``, read as JSON only); 0 where it has neither."""
    if checkpoint is None or "://" in checkpoint.path:
        return 0
    for name in (EPOCH_FILE, checkpoint_files.CHECKPOINT_STATE):
        try:
            return int(json.loads((pathlib.Path(checkpoint.path) / name).read_text())["epoch"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return 0


def current_checkpoint():
    """Tune's checkpoint for a retry within this Tune run; for a seed of a configuration (``SEED_ROUTE``), its part
    of the configuration's checkpoint. None: none."""
    from ray import tune

    route = SEED_ROUTE.get()
    return route.checkpoint if route is not None else tune.get_checkpoint()


def first_checkpoint(candidates: list[str]):
    """Tune's checkpoint for a retry (a seed's: its part of it), else the newest existing one of a resumed sweep's
    earlier runs."""
    from ray import tune

    current = current_checkpoint()
    if current is not None:
        return current
    for candidate in candidates:
        if "://" in candidate or pathlib.Path(candidate).is_dir():
            return tune.Checkpoint(path=candidate)
    return None


@contextlib.contextmanager
def intercepted_reports(session: TrialSession) -> Iterator[None]:
    """Every Tune report of the trial goes to its MLflow child run first, numbered as an epoch; then to Tune, or for
    a seed side by side with others (``SEED_ROUTE``) to its configuration's barrier."""
    from ray.train._internal import session as tune_session_module

    route = SEED_ROUTE.get()
    tune_session = tune_session_module.get_session()
    original = tune_session.report if route is None else route.forward

    def report(metrics: dict[str, Any], *, checkpoint=None, **kwargs) -> None:
        epoch = metrics.get("epoch")
        session.epoch = int(epoch) if isinstance(epoch, int) and not isinstance(epoch, bool) else session.epoch + 1
        session.log_epoch(session.epoch, numbers(metrics))
        if checkpoint is not None and "://" not in checkpoint.path:
            (pathlib.Path(checkpoint.path) / EPOCH_FILE).write_text(json.dumps({"epoch": session.epoch}))
        original({**metrics, "epoch": session.epoch, PENDING_METRIC: session.run.pending}, checkpoint=checkpoint,
                 **kwargs)

    if route is not None:
        # Tune's session is shared by the seeds' threads: the group's router calls this thread's handler.
        route.handler = report
        try:
            yield
        finally:
            route.handler = None
        return
    tune_session.report = report
    try:
        yield
    finally:
        del tune_session.report  # the instance attribute: the class's own method shows again


@contextlib.contextmanager
def user_mlflow_run(session: TrialSession) -> Iterator[None]:
    """The user's ``mlflow.log_*`` calls inside the trial go to its child run (MLflow's own env variables)."""
    if SEED_ROUTE.get() is not None:
        with thread_mlflow_run(session):
            yield
        return
    saved = {key: os.environ.get(key) for key in ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID")}
    os.environ.update(MLFLOW_TRACKING_URI=session.run.tracking_uri, MLFLOW_RUN_ID=session.run.run_id)
    try:
        yield
    finally:
        import sys

        mlflow = sys.modules.get("mlflow")
        active = mlflow.active_run() if mlflow is not None else None
        if active is not None and active.info.run_id == session.run.run_id:
            # The user's calls opened our run as MLflow's active run: take it off MLflow's stack without ending
            # it (glovesweep sets the final status), then drop the stack entry.
            with contextlib.suppress(Exception):
                mlflow.tracking.fluent._active_run_stack.get().pop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def thread_mlflow_run(session: TrialSession) -> Iterator[None]:
    """A seed's ``mlflow.log_*`` calls go to its child run: seeds side by side share the process's environment, so
    its run goes on MLflow's active-run stack, which is per thread (the group sets ``MLFLOW_TRACKING_URI``)."""
    import mlflow
    from mlflow import entities

    info = entities.RunInfo(run_id=session.run.run_id, experiment_id=session.run.experiment_id, user_id="",
                            status="RUNNING", start_time=0, end_time=None, lifecycle_stage="active")
    active = mlflow.ActiveRun(entities.Run(info, entities.RunData()))
    stack = mlflow.tracking.fluent._active_run_stack.get()
    stack.append(active)
    try:
        yield
    finally:
        if active in stack:
            stack.remove(active)  # off the stack, never ended: glovesweep sets the final status


class LocalTuneSession:
    """Stands in for Tune's session when a trainer runs outside Ray (``glovesweep train --trainer``): both
    ``sweeps.trainers.report`` and ``ray.tune.report`` reach ``on_report``; no checkpoint is loaded."""

    loaded_checkpoint = None

    def __init__(self, on_report) -> None:
        self.on_report = on_report

    def report(self, metrics: dict[str, Any], *, checkpoint=None, **kwargs) -> None:
        self.on_report(dict(metrics))


@contextlib.contextmanager
def local_tune_session(on_report) -> Iterator[None]:
    """Ray Tune's ``report`` calls inside the block go to ``on_report`` (Tune's module-level session slot)."""
    from ray.train._internal import session as tune_session_module

    saved = tune_session_module._session
    tune_session_module._session = LocalTuneSession(on_report)
    try:
        yield
    finally:
        tune_session_module._session = saved


def run_function(session: TrialSession) -> None:
    """Run a user's training function in the trial; a returned dict is its final report."""
    trainer = session.trainer
    checkpoint = first_checkpoint(session.resume_from) if trainer.checkpoints else None
    if checkpoint is not None:
        session.epoch = checkpoint_epoch(checkpoint)
        session.run.set_tags({names.RESUMED_FROM_EPOCH_TAG: session.epoch})
    route = SEED_ROUTE.get()
    if route is not None and route.tags:
        session.run.set_tags(route.tags)
    token = api.CURRENT_CHECKPOINT.set(checkpoint)
    try:
        with intercepted_reports(session), user_mlflow_run(session):
            result = trainer.function(session.config.to_dict())
            if isinstance(result, dict) and result:
                from ray import tune

                tune.report(result)
    finally:
        api.CURRENT_CHECKPOINT.reset(token)
    if session.epoch == 0:
        raise ValueError(f"trainer {trainer.name!r} reported nothing: call sweeps.trainers.report({{...}}) (or "
                         f"ray.tune.report) once per epoch, or return a dict of final metrics")
