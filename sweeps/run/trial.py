"""The Ray Tune trial function: one trial of the sweep's trainer (or of a reference trainer beside it).

A trial creates or continues its MLflow child run (found by the trial's stable key across retries and resumes),
then hands a ``TrialSession`` to its trainer: the built-ins' runners (``sweeps.run.builtin``), or a user's
training function (``sweeps.run.session.run_function``). A trial with an ``epochs`` factor trains to
``max(epochs)``, reporting every epoch; a trial whose worker dies is retried (``FailureConfig(max_failures)``)
from its last checkpoint where its trainer keeps them.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import platform
from typing import Any

from ray import tune

from sweeps.tracking import names
from sweeps import spec as spec_module
from sweeps.spec import stages
from sweeps.tracking import mlflow_runs
from sweeps.tracking import trial_run
from sweeps.run import identity as identity_module
from sweeps.run import session as session_module
from sweeps.run import state as state_module

logger = logging.getLogger(__name__)

PENDING_METRIC = session_module.PENDING_METRIC


# The one key of Tune's param space; Tune writes the resolved value into each trial's params.json.
TASK_KEY = "task"


@dataclasses.dataclass(frozen=True)
class TrialTask:
    """One entry of the sweep's Tune grid: the trial to run and the checkpoints it left in earlier Tune runs.

    Tune keeps the param space as plain values (each trial folder's ``params.json``, which ``resume`` reads
    without unpickling anything), so a task crosses into Tune as ``as_param()`` and back with ``of_config``.

    Attributes
    ----------
    trial : Trial
        The cell, seed and trainer kind to run.
    resume_from : tuple of str
        Checkpoint folders or URIs, newest first, from earlier Tune runs of this sweep (``resume``); empty in a
        first run.
    seeds : tuple of int
        A search's configuration trained at these seeds side by side (``sweeps.run.seed_group``; ``trial`` is its
        first seed); empty: the one trial.
    """

    trial: spec_module.Trial
    resume_from: tuple[str, ...] = ()
    seeds: tuple[int, ...] = ()

    def as_param(self) -> dict[str, Any]:
        """The task as a param-space value: ``{"trial": Trial.as_dict(), "resume_from": [...]}`` (and ``"seeds"``
        for a configuration at several seeds)."""
        value = {"trial": self.trial.as_dict(), "resume_from": list(self.resume_from)}
        return dict(value, seeds=list(self.seeds)) if self.seeds else value

    @classmethod
    def from_param(cls, value: dict[str, Any]) -> "TrialTask":
        """The task ``as_param`` wrote."""
        return cls(trial=spec_module.Trial.from_dict(value["trial"]),
                   resume_from=tuple(value.get("resume_from") or ()),
                   seeds=tuple(int(seed) for seed in value.get("seeds") or ()))

    def seed_trials(self) -> list[spec_module.Trial]:
        """The trials this task trains: one per seed of a configuration, else its one trial."""
        return [dataclasses.replace(self.trial, seed=seed) for seed in self.seeds] or [self.trial]

    @classmethod
    def of_config(cls, config: dict[str, Any]) -> "TrialTask":
        """The task of a Tune trial's resolved config (``Trial.config``, the trial function's argument)."""
        return cls.from_param(config[TASK_KEY])


def param_space(tasks: list[TrialTask]) -> dict[str, Any]:
    """Tune's param space: one grid entry per task, so Tune runs each task once (every search mode)."""
    return {TASK_KEY: tune.grid_search([task.as_param() for task in tasks])}


@dataclasses.dataclass(frozen=True)
class TrialContext:
    """What every trial of one sweep shares; Tune ships it to the workers once (``tune.with_parameters``).

    Attributes
    ----------
    spec : SweepSpec
    data : dict of str to ObjectRef
        Data key -> prepared arrays in the object store (``shared_data.SharedData.data``).
    data_keys : dict of str to str
        ``TrainerConfig.digest()`` -> data key.
    state : SweepState
        The sweep's state: its identity (MLflow store, experiment, parent run, and the sweep folder, where
        MLflow writes that outlast an outage are kept: ``sweeps.tracking.outbox``), the code's commit and the
        data options.
    """

    spec: spec_module.SweepSpec
    data: dict[str, Any]
    data_keys: dict[str, str]
    state: state_module.SweepState

    @property
    def identity(self) -> identity_module.SweepIdentity:
        return self.state.identity


def make_trainable(context: TrialContext, function=None):
    """The trial function (``run_trial``, or ``function`` of the same signature) bound to ``context``, with the
    sweep's per-trial resources."""
    trainable = tune.with_parameters(function or run_trial, context=context)
    resources = context.spec.resources
    return tune.with_resources(trainable, {"cpu": resources["cpu"], "gpu": resources["gpu"]})


def compact_name(trial: spec_module.Trial) -> str:
    """A child run's name: the cell's values whole and the seed, e.g. ``19997 · none · frozen · s0``."""
    parts = [trial.baseline] if trial.baseline else []
    parts += [str(value) for value in trial.cell.values()] or ["all"]
    if not trial.baseline:
        parts.append(f"s{trial.seed}")
    return " · ".join(parts + ([trial.stage] if trial.stage else []))


def stage_tags(spec: spec_module.SweepSpec, trial: spec_module.Trial) -> dict[str, str]:
    """A search's trial: its stage (``search``, ``confirm``, ``final``) and its configuration's key; else none."""
    if not spec.searched:
        return {}
    return {names.STAGE_TAG: trial.stage or stages.SEARCH, names.CONFIG_ID_TAG: trial.config_key}


def trial_params(spec: spec_module.SweepSpec, trial: spec_module.Trial, config) -> dict[str, Any]:
    """The MLflow params of a trial's child run: every factor of its trainer, the sweep's factor names, and the
    variant of a reference trainer (a baseline's model)."""
    params = {**config.to_dict(), names.FACTORS_PARAM: ",".join(spec.factor_names)}
    variant = spec.trainer_of(trial).variant
    if variant:
        params[variant] = trial.baseline
    return params


def run_trial(param: dict[str, Any], context: TrialContext) -> None:
    """One Ray Tune trial: its trainer's run, logged to its child run (FINISHED, or FAILED with the error).

    ``param`` is the trial's resolved param space (``{TASK_KEY: TrialTask.as_param()}``).
    """
    spec = context.spec
    task = TrialTask.of_config(param)
    trial = task.trial
    trainer = spec.trainer_of(trial)
    config = spec.trial_config(trial)
    # The stable trial key finds the child run across retries and resumes (Tune's ids change on resume).
    identity = context.identity
    run = trial_run.TrialRun(identity.tracking_uri, identity.experiment_id, identity.parent_run_id, trial.key,
                             sweep_dir=identity.sweep_dir)
    existing = run.find()
    tune_ids = run.record_tune_trial(existing, tune.get_context().get_trial_id())
    if existing is not None and existing.info.status == "FINISHED":
        # Finished before the driver died, after Tune's last state snapshot: report it, never run it again.
        run.run_id = existing.info.run_id
        run.set_tags(tune_ids)
        metrics = existing.data.metrics
        tune.report({metric.name: metrics[metric.name] for metric in trainer.metrics if metric.name in metrics}
                    | {"epoch": config.epochs if trainer.epoch_axis else 0, "already_finished": True})
        return
    run.start(existing=existing, run_name=compact_name(trial), cell=trial.label, trainer=trainer.kind,
              params=trial_params(spec, trial, config),
              tags={names.GIT_COMMIT_TAG: context.state.git_commit, names.VERSIONS_TAG: mlflow_runs.package_versions(),
                    names.DEVICE_TAG: f"CPU: {platform.machine()}", names.NODE_TAG: platform.node(),
                    names.WORKER_PID_TAG: os.getpid()} | tune_ids | stage_tags(spec, trial))
    session = session_module.TrialSession(trainer=trainer, trial=trial, config=config, run=run, context=context,
                                          requested_epochs=spec.epochs,
                                          resume_from=list(task.resume_from))
    try:
        (trainer.runner or session_module.run_function)(session)
    except SystemExit:
        # Tune ends a stopped trial's thread with SystemExit at its next report (an ASHA early stop, or the
        # sweep interrupted). The driver knows which: SweepCallback finishes the run, or the sweep kills it.
        raise
    except BaseException as error:
        try:
            last = (str(error).strip().splitlines() or [""])[-1]
            run.set_tags({names.ERROR_TAG: f"{type(error).__name__}: {last}"[:500]})
            run.end("FAILED")
        except Exception as failure:  # noqa: BLE001 - the trial's own error matters more
            logger.warning("could not mark run %s FAILED: %s", run.run_id, failure)
        raise
    run.end("FINISHED")
