"""A search's configuration trained at k seeds side by side in one Tune trial: the unit its searcher and its
scheduler see.

``seeds: k`` in a search (``SweepSpec.seeds_side_by_side``) makes each suggested configuration one Tune trial whose
k seeds train in threads of the trial's process, each running the trial function of one seed
(``trial.run_trial``): its own MLflow child run (its own trial key, so a retry or a resume finds it again; the tag
``glovesweep.config_id`` the same on all k) and its own checkpoints. A barrier gathers epoch E from every seed, then
the trial reports to Tune once: each metric's mean over the seeds at E, ``<objective>_sd`` and ``seeds``. ASHA and
HyperBand rungs therefore compare k-seed means at an epoch, never one lucky seed (Ray's ``Repeater`` averages its
repeats only when they complete, and its docstring advises against an early-stopping scheduler beside it).

When Tune stops the trial (``SystemExit`` at its report, while every seed waits at the same epoch), every seed stops
there and its run is left as a stopped single trial's (``SweepCallback`` marks each seed's run). A seed that raises
fails the configuration: its run is FAILED with the error, the others stop at their next report, and Tune retries
the trial (``max_failures``). Each seed then continues from its own part of the configuration's checkpoint (one
folder per seed, ``seed_<s>``), and a seed whose run FINISHED before is never trained again: its epochs are read
back from MLflow, on a retry as on ``resume``.

Threads share the process. A thread-safe trainer keeps its random state in objects (``np.random.default_rng(seed)``)
and its seeds train at once. A trainer that keeps process-wide state (``np.random.seed``, Keras' session and global
seeds: the built-in Keras network) declares ``takes_turns``: its seeds pass a baton (``sweeps.run.baton``), one seed
trains at a time, handing over at each epoch's report, and each seed's process-wide random state is saved and restored
at every handover, so each seed's epochs are those it would train alone. The k seeds share the trial's resources: one
trial slot for k trainings.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import math
import os
import shutil
import statistics
import tempfile
import threading
from typing import Any, Callable, Iterator

from sweeps.run import baton as baton_module
from sweeps.run import session as session_module
from sweeps.run import trial as trial_module
from sweeps.tracking import mlflow_runs
from sweeps.tracking import names
from sweeps.tracking import outbox
from sweeps.tracking import trial_run

# One folder per seed inside a configuration's checkpoint.
SEED_FOLDER = "seed_{seed}"
# Reported to Tune with each epoch: how many seeds the means hold, and the objective's spread over them.
SEEDS_METRIC = "seeds"
SD_SUFFIX = "_sd"
# Not averaged: bookkeeping that each seed reports.
NOT_AVERAGED = ("epoch", session_module.PENDING_METRIC, "already_finished")


@dataclasses.dataclass
class Seed:
    """One seed of a configuration, as its group sees it.

    Attributes
    ----------
    trial : Trial
        The configuration at this seed (its own key and child run).
    values : dict of int to dict
        Epoch (1-based) -> the numbers it reported then (or read back from MLflow when it finished earlier).
    start_from : ray.tune.Checkpoint or None
        Its part of the configuration's checkpoint when the trial is retried.
    waiting : int
        The epoch it waits at for the group's report to Tune (0: not waiting).
    checkpoint : ray.tune.Checkpoint or None
        The checkpoint it reported with that epoch.
    done : bool
        Its training ended (returned, stopped, failed) or had finished before (``replayed``).
    error : BaseException or None
        What it raised.
    """

    trial: Any
    values: dict[int, dict[str, float]] = dataclasses.field(default_factory=dict)
    start_from: Any = None
    waiting: int = 0
    checkpoint: Any = None
    done: bool = False
    replayed: bool = False
    error: BaseException | None = None


@dataclasses.dataclass(frozen=True)
class Step:
    """One report of the configuration to Tune: epoch ``epoch``'s means over the seeds that reached it, and the
    seeds' checkpoints of that epoch (seed -> checkpoint)."""

    epoch: int
    metrics: dict[str, float]
    checkpoints: dict[int, Any]


class SeedFailed(RuntimeError):
    """A seed of the configuration raised: the configuration's trial fails (and is retried per ``max_failures``)."""


class SeedGroup:
    """The barrier of a configuration's seeds: each seed's epoch waits until the group has reported that epoch.

    Parameters
    ----------
    seeds : list of Seed
    objective : str
        The metric whose spread over the seeds is reported as ``<objective>_sd``.
    floor : int
        The epoch the configuration's checkpoint holds (a retry): epochs up to it were reported to Tune before, so a
        seed that trains them again (it had no part in the checkpoint) passes them without waiting.
    read_back : callable, optional
        ``read_back(trial)``: epoch -> values its child run holds, for a seed that continued past its last epoch.
    baton : Baton, optional
        The seeds take turns (a trainer that keeps process-wide state): a seed gives the baton up while it waits
        here and takes it again before it goes on. None: they train side by side.
    """

    def __init__(self, seeds: list[Seed], objective: str, *, floor: int = 0,
                 read_back: Callable[[Any], dict[int, dict[str, float]]] | None = None,
                 baton: baton_module.Baton | None = None) -> None:
        self.seeds = seeds
        self.baton = baton
        self.objective = objective
        self.reported = floor
        self.told = False
        self.read_back = read_back
        self.stopped = False
        self.condition = threading.Condition()

    def report(self, seed: Seed, metrics: dict[str, Any], *, checkpoint=None, **kwargs: Any) -> None:
        """A seed's report (from its thread): kept, then held until the group reported its epoch to Tune. Seeds that
        take turns hand the baton over here (the end of an epoch) and take it back before going on.

        Raises ``SystemExit`` once the group stopped (Tune stopped the configuration, or a sibling seed failed), as
        Tune's own report does in a stopped trial.
        """
        if self.baton is None:
            return self.wait(seed, metrics, checkpoint)
        self.baton.give(seed.trial.seed)
        self.wait(seed, metrics, checkpoint)  # a SystemExit leaves without the baton: the seed only unwinds
        self.take_turn(seed)

    def take_turn(self, seed: Seed) -> None:
        """Hold the baton with ``seed`` (``SystemExit``, the baton given back, where the group stopped meanwhile)."""
        self.baton.take(seed.trial.seed)
        if self.stopped:
            self.baton.give(seed.trial.seed)
            raise SystemExit(0)

    def wait(self, seed: Seed, metrics: dict[str, Any], checkpoint) -> None:
        """Keep the report's values and hold the seed until the group reported its epoch (``report``)."""
        epoch = int(metrics["epoch"])
        with self.condition:
            if self.stopped:
                raise SystemExit(0)
            seed.values[epoch] = session_module.numbers(metrics)
            if epoch <= self.reported:
                return
            seed.waiting, seed.checkpoint = epoch, checkpoint
            self.condition.notify_all()
            self.condition.wait_for(lambda: self.stopped or seed.waiting == 0)
            if self.stopped:
                raise SystemExit(0)

    def finish(self, seed: Seed, error: BaseException | None = None) -> None:
        """A seed's thread ended (``error``: what it raised)."""
        with self.condition:
            seed.done, seed.error, seed.waiting = True, error, 0
            self.condition.notify_all()

    def stop(self) -> None:
        """Every seed stops at its next report (or now, where it waits)."""
        with self.condition:
            self.stopped = True
            self.condition.notify_all()

    def next_step(self) -> Step | None:
        """Wait until every seed waits or is done, then the lowest epoch waited at; None when all are done.

        Raises ``SeedFailed`` (after stopping the group) when a seed raised.
        """
        with self.condition:
            self.condition.wait_for(lambda: any(seed.error is not None for seed in self.seeds)
                                    or all(seed.done or seed.waiting for seed in self.seeds))
            failed = next((seed for seed in self.seeds if seed.error is not None), None)
            if failed is not None:
                self.stopped = True
                self.condition.notify_all()
                last = (str(failed.error).strip().splitlines() or [""])[-1]
                raise SeedFailed(f"seed {failed.trial.seed} of configuration {failed.trial.label} failed: "
                                 f"{type(failed.error).__name__}: {last}") from failed.error
            waiting = [seed.waiting for seed in self.seeds if seed.waiting]
            if waiting:
                epoch = min(waiting)
                checkpoints = {seed.trial.seed: seed.checkpoint for seed in self.seeds
                               if seed.waiting == epoch and seed.checkpoint is not None}
                return Step(epoch, self.means(epoch), checkpoints)
            # Every seed is done. Tune still needs the last epoch where this attempt told it nothing: the seeds had
            # finished before (replayed), or continued from a checkpoint of their last epoch, whose report Tune lost
            # (it keeps results buffered with an error that follows them, Trainable.train_buffered).
            last = max((max(seed.values) for seed in self.seeds if seed.values), default=0)
            if last and (last > self.reported or not self.told):
                for seed in self.seeds:
                    if last not in seed.values and self.read_back is not None:
                        seed.values.update(self.read_back(seed.trial))
                metrics = self.means(last)
                if all(seed.replayed for seed in self.seeds):
                    metrics["already_finished"] = True
                return Step(last, metrics, {})
            return None

    def release(self, epoch: int) -> None:
        """Tune took ``epoch``: the seeds waiting at it go on."""
        with self.condition:
            self.reported, self.told = max(self.reported, epoch), True
            for seed in self.seeds:
                if seed.waiting == epoch:
                    seed.waiting, seed.checkpoint = 0, None
            self.condition.notify_all()

    def means(self, epoch: int) -> dict[str, Any]:
        """Each metric's mean over the seeds that reached ``epoch`` (those all of them report), the objective's
        sample standard deviation (where two or more), their count, the epoch and the values awaiting MLflow."""
        present = [seed.values[epoch] for seed in self.seeds if epoch in seed.values]
        keys = [key for key in present[0] if key not in NOT_AVERAGED and all(key in values for values in present)]
        metrics: dict[str, Any] = {key: statistics.fmean(values[key] for values in present) for key in keys}
        if self.objective in metrics and len(present) > 1:
            spread = [values[self.objective] for values in present]
            # statistics.stdev works on exact fractions, which a NaN or an infinity has none of.
            finite = all(math.isfinite(value) for value in spread)
            metrics[self.objective + SD_SUFFIX] = statistics.stdev(spread) if finite else math.nan
        pending = sum(int(values.get(session_module.PENDING_METRIC, 0)) for values in present)
        return metrics | {SEEDS_METRIC: len(present), "epoch": epoch, session_module.PENDING_METRIC: pending}


def coordinate(group: SeedGroup, tune_report: Callable[..., None]) -> None:
    """Report the group's epochs to Tune as they complete (in the trial's own thread), until every seed is done.

    Tune's ``SystemExit`` (a stopped trial) goes through to the caller; each report's checkpoint is one folder per
    seed, copied from the seeds' own (they wait, so theirs still exist), gone once Tune has persisted it.
    """
    from ray import tune

    while (step := group.next_step()) is not None:
        folder = tempfile.mkdtemp(prefix="glovesweep-configuration-") if step.checkpoints else None
        try:
            for seed, checkpoint in step.checkpoints.items():
                checkpoint.to_directory(os.path.join(folder, SEED_FOLDER.format(seed=seed)))
            tune_report(step.metrics, checkpoint=tune.Checkpoint.from_directory(folder) if folder else None)
        finally:
            if folder:
                shutil.rmtree(folder, ignore_errors=True)
        group.release(step.epoch)


@contextlib.contextmanager
def routed_reports() -> Iterator[Callable[..., None]]:
    """Tune's report, shared by the seeds' threads, goes to the calling thread's seed (``SEED_ROUTE``): its
    intercepting handler (its child run first), else its barrier. Yields Tune's own report for the group."""
    from ray.train._internal import session as tune_session_module

    tune_session = tune_session_module.get_session()
    original = tune_session.report

    def report(metrics: dict[str, Any], *, checkpoint=None, **kwargs: Any) -> None:
        route = session_module.SEED_ROUTE.get()
        if route is None:
            return original(metrics, checkpoint=checkpoint, **kwargs)
        return (route.handler or route.forward)(dict(metrics), checkpoint=checkpoint)

    tune_session.report = report
    try:
        yield original
    finally:
        del tune_session.report  # the instance attribute: the class's own method shows again


@contextlib.contextmanager
def tracking_environment(tracking_uri: str) -> Iterator[None]:
    """MLflow's store for the seeds' own ``mlflow.log_*`` calls, and no process-wide run id: each seed's run is
    on its thread's active-run stack (``session.thread_mlflow_run``)."""
    with outbox.environment({"MLFLOW_TRACKING_URI": tracking_uri}, removed=("MLFLOW_RUN_ID",)):
        yield


def finished_values(tracking_uri: str, run_id: str, metrics: list[str]) -> dict[int, dict[str, float]]:
    """Epoch -> the values a finished seed's run holds of ``metrics`` (the newest value of each step)."""
    values: dict[int, dict[str, float]] = {}
    for key in metrics:
        newest: dict[int, Any] = {}
        for metric in mlflow_runs.metric_history(tracking_uri, run_id, key):
            if metric.step not in newest or metric.timestamp >= newest[metric.step].timestamp:
                newest[metric.step] = metric
        for step, metric in newest.items():
            values.setdefault(int(step), {})[key] = float(metric.value)
    return values


def seed_run(context: trial_module.TrialContext, trial):
    """A seed's child run (``mlflow.entities.Run``), or None where it has none yet."""
    identity = context.identity
    return trial_run.TrialRun(identity.tracking_uri, identity.experiment_id, identity.parent_run_id, trial.key,
                              sweep_dir=identity.sweep_dir).find()


def open_seed(context: trial_module.TrialContext, trial, metrics: list[str], parts_folder: str | None) -> Seed:
    """A seed as the group starts it: replayed from MLflow when its run FINISHED before, else to train (from its
    part of the configuration's checkpoint where there is one)."""
    from ray import tune

    existing = seed_run(context, trial)
    if existing is not None and existing.info.status == "FINISHED":
        values = finished_values(context.identity.tracking_uri, existing.info.run_id, metrics)
        return Seed(trial, values=values, done=True, replayed=True)
    part = os.path.join(parts_folder, SEED_FOLDER.format(seed=trial.seed)) if parts_folder else ""
    return Seed(trial, start_from=tune.Checkpoint(path=part) if part and os.path.isdir(part) else None)


def start_seed(group: SeedGroup, seed: Seed, context: trial_module.TrialContext) -> threading.Thread:
    """A thread training one seed through ``run_trial``, its reports routed to the group (its own context copy)."""
    route = session_module.SeedRoute(forward=functools.partial(group.report, seed), checkpoint=seed.start_from,
                                     tags={names.CONFIG_ID_TAG: seed.trial.config_key})
    param = {trial_module.TASK_KEY: trial_module.TrialTask(trial=seed.trial).as_param()}

    def train() -> None:
        session_module.SEED_ROUTE.set(route)
        try:
            if group.baton is not None:
                group.take_turn(seed)  # building the model (its initial weights) is part of the first turn
            trial_module.run_trial(param, context)
        except SystemExit:
            group.finish(seed)  # stopped with its configuration: its run stays as a stopped trial's
        except BaseException as error:  # noqa: BLE001 - handed to the configuration's trial, which raises it
            group.finish(seed, error)
        else:
            group.finish(seed)
        finally:
            if group.baton is not None:
                group.baton.give(seed.trial.seed)

    thread = threading.Thread(target=contextvars.copy_context().run, args=(train,), daemon=True,
                              name=f"glovesweep-seed-{seed.trial.seed}")
    thread.start()
    return thread


def run_configuration(param: dict[str, Any], context: trial_module.TrialContext) -> None:
    """The Tune trial function of a search that trains its configurations at several seeds: a task with ``seeds``
    trains them side by side (module docstring), any other task is ``run_trial``'s."""
    task = trial_module.TrialTask.of_config(param)
    if not task.seeds:
        return trial_module.run_trial(param, context)
    from ray import tune

    spec = context.spec
    trainer = spec.trainer_of(task.trial)
    # A retry within this Tune run has Tune's checkpoint; a configuration re-created by 'resume', its earlier one.
    composite = tune.get_checkpoint() or (tune.Checkpoint(path=task.resume_from[0]) if task.resume_from else None)
    parts_folder = tempfile.mkdtemp(prefix="glovesweep-seeds-") if composite is not None else None
    try:
        if composite is not None:
            composite.to_directory(parts_folder)
        metrics = [metric.name for metric in trainer.metrics]
        seeds = [open_seed(context, trial, metrics, parts_folder) for trial in task.seed_trials()]
        floor = max((session_module.checkpoint_epoch(seed.start_from) for seed in seeds), default=0)

        def read_back(trial) -> dict[int, dict[str, float]]:
            found = seed_run(context, trial)
            return finished_values(context.identity.tracking_uri, found.info.run_id, metrics) if found else {}

        baton = baton_module.Baton() if trainer.takes_turns else None
        group = SeedGroup(seeds, spec.objective["metric"], floor=floor, read_back=read_back, baton=baton)
        with routed_reports() as tune_report, tracking_environment(context.identity.tracking_uri):
            threads = [start_seed(group, seed, context) for seed in seeds if not seed.done]
            try:
                coordinate(group, tune_report)
            finally:
                group.stop()
                for thread in threads:
                    thread.join()
    finally:
        if parts_folder:
            shutil.rmtree(parts_folder, ignore_errors=True)


def make_trainable(context: trial_module.TrialContext):
    """``trial.make_trainable``, with ``run_configuration`` as the trial function where a search trains its
    configurations at several seeds (elsewhere Tune's actors keep the name ``run_trial``, which tools look for)."""
    several = context.spec.seeds_side_by_side > 1
    return trial_module.make_trainable(context, function=run_configuration if several else None)
