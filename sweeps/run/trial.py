"""The Ray Tune trial function: one network trained to ``max(epochs)``, or one baseline, logged to MLflow.

Each trial trains to ``max(epochs)``, reporting every epoch to Tune with a checkpoint and to MLflow as step
metrics; a trial whose worker dies is retried from its last epoch (``FailureConfig(max_failures)``) and
continues the same child run, found by Tune's trial id.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import pathlib
import platform
import shutil
import tempfile
from typing import Any

import ray
from ray import tune

from sweeps.tracking import names
from sweeps import spec as spec_module
from sweeps.tracking import mlflow_runs
from sweeps.tracking import trial_run
from sweeps.run import identity as identity_module
from sweeps.run import state as state_module

logger = logging.getLogger(__name__)

# Reported to Tune with every epoch: metric values waiting for an unreachable tracking server.
PENDING_METRIC = "mlflow_pending"


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
        The cell, seed and kind (``keras`` or ``baseline``) to run.
    resume_from : tuple of str
        Checkpoint folders or URIs, newest first, from earlier Tune runs of this sweep (``resume``); empty in a
        first run.
    """

    trial: spec_module.Trial
    resume_from: tuple[str, ...] = ()

    def as_param(self) -> dict[str, Any]:
        """The task as a param-space value: ``{"trial": Trial.as_dict(), "resume_from": [...]}``."""
        return {"trial": self.trial.as_dict(), "resume_from": list(self.resume_from)}

    @classmethod
    def from_param(cls, value: dict[str, Any]) -> "TrialTask":
        """The task ``as_param`` wrote."""
        return cls(trial=spec_module.Trial.from_dict(value["trial"]),
                   resume_from=tuple(value.get("resume_from") or ()))

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


def make_trainable(context: TrialContext):
    """The trial function bound to ``context``, with the sweep's per-trial resources."""
    trainable = tune.with_parameters(run_trial, context=context)
    resources = context.spec.resources
    return tune.with_resources(trainable, {"cpu": resources["cpu"], "gpu": resources["gpu"]})


def configure_tensorflow(cpus: float) -> str:
    """Before TensorFlow touches a GPU: memory growth (fractional GPUs pack trials), threads = our CPUs.

    Ray already limits ``CUDA_VISIBLE_DEVICES`` to the trial's GPUs. Returns a device description.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # Without growth TensorFlow maps nearly all GPU memory at start, so a second trial on the card fails.
    os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:
            pass  # A reused worker initialised TensorFlow in an earlier trial, with growth already on.
    threads = max(1, math.ceil(cpus))
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(min(2, threads))
    except RuntimeError:
        pass  # Already initialised by an earlier trial in this worker with the same resources.
    if gpus:
        names = [tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name) for gpu in gpus]
        return f"GPU: {', '.join(names)}"
    return f"CPU: {platform.machine()} {platform.processor() or ''} ({threads} threads)".replace("  ", " ")


def compact_name(trial: spec_module.Trial) -> str:
    """A child run's name: the cell's values whole and the seed, e.g. ``19997 · none · frozen · s0``."""
    parts = [trial.baseline] if trial.baseline else []
    parts += [str(value) for value in trial.cell.values()] or ["all"]
    if trial.kind == "keras":
        parts.append(f"s{trial.seed}")
    return " · ".join(parts)


def trial_params(spec: spec_module.SweepSpec, trial: spec_module.Trial, config) -> dict[str, Any]:
    """The MLflow params of a trial's child run: every factor of the registry, the sweep's factor names, the
    baseline kind."""
    params = {**config.to_dict(), "factors": ",".join(spec.factor_names)}
    if trial.kind == "baseline":
        params["baseline"] = trial.baseline
    return params


def run_trial(param: dict[str, Any], context: TrialContext) -> None:
    """One Ray Tune trial: a network trained to ``max(epochs)`` or one baseline, logged to its child run.

    ``param`` is the trial's resolved param space (``{TASK_KEY: TrialTask.as_param()}``).
    """
    spec = context.spec
    task = TrialTask.of_config(param)
    trial = task.trial
    config = spec.trial_config(trial)
    device = configure_tensorflow(spec.resources["cpu"]) if trial.kind == "keras" else f"CPU: {platform.machine()}"
    # The stable trial key finds the child run across retries and resumes (Tune's ids change on resume).
    identity = context.identity
    run = trial_run.TrialRun(identity.tracking_uri, identity.experiment_id, identity.parent_run_id, trial.key,
                             sweep_dir=identity.sweep_dir)
    params = trial_params(spec, trial, config)
    run_name = compact_name(trial)
    existing = run.find()
    if existing is not None and existing.info.status == "FINISHED":
        # Finished before the driver died, after Tune's last state snapshot: report it, never run it again.
        metrics = existing.data.metrics
        tune.report({key: metrics[key] for key in ("loss", "acc", "val_loss", "val_acc") if key in metrics}
                    | {"epoch": config.epochs if trial.kind == "keras" else 0, "already_finished": True})
        return
    run.start(existing=existing, run_name=run_name, cell=trial.label,
              trainer="baseline" if trial.kind == "baseline" else "keras", params=params,
              tags={names.GIT_COMMIT_TAG: context.state.git_commit, names.VERSIONS_TAG: mlflow_runs.package_versions(),
                    names.DEVICE_TAG: device, names.NODE_TAG: platform.node(), names.WORKER_PID_TAG: os.getpid(),
                    names.TUNE_TRIAL_ID_TAG: tune.get_context().get_trial_id()})
    try:
        if trial.kind == "baseline":
            _run_baseline(trial, config, run, context)
        else:
            _run_network(config, run, context, requested_epochs=spec.epochs,
                         resume_candidates=list(task.resume_from))
    except SystemExit:
        # Tune ends a stopped trial's thread with SystemExit at its next report (an ASHA early stop, or the
        # sweep interrupted). The driver knows which: SweepCallback finishes the run, or the sweep kills it.
        raise
    except BaseException:
        try:
            run.end("FAILED")
        except Exception as error:  # noqa: BLE001 - the trial's own error matters more
            logger.warning("could not mark run %s FAILED: %s", run.run_id, error)
        raise
    run.end("FINISHED")


def _run_network(config, run: trial_run.TrialRun, context: TrialContext, *, requested_epochs: list[int],
                 resume_candidates: list[str]) -> None:
    from trainer import train as train_module

    key = context.data_keys[config.digest()]
    prepared = ray.get(context.data[key])
    run.log_metrics(trial_run.stats_metrics(prepared.stats))
    run.set_tags({names.ARCHIVE_SHA256_TAG: prepared.stats.get("archive_sha256", ""),
                  names.GLOVE_SOURCE_TAG: prepared.stats.get("glove_source", ""), names.DATA_KEY_TAG: key})
    stats = prepared.stats
    run.log_input(name=f"20news-{config.dataset} · {config.strip}", digest=stats.get("archive_sha256", ""),
                  source=stats.get("source", config.dataset),
                  profile={"dataset": config.dataset, "strip": config.strip, "num_train": stats.get("num_train"),
                           "num_val": stats.get("num_val"), "num_classes": len(prepared.label_names),
                           "archive_sha256": stats.get("archive_sha256", "")})

    def on_epoch(epoch: int, metrics: dict[str, float], state) -> None:
        # MLflow first: a worker killed between the two re-runs this epoch, and its step is skipped then.
        run.log_epoch(epoch, metrics, requested_epochs=requested_epochs)
        with tempfile.TemporaryDirectory(prefix="glovesweep-checkpoint-") as directory:
            state.save(directory)
            tune.report({**metrics, "epoch": epoch, PENDING_METRIC: run.pending},
                        checkpoint=tune.Checkpoint.from_directory(directory))

    # A retry within this Tune run has Tune's checkpoint; a resumed sweep hands the trial its own earlier ones.
    checkpoint = tune.get_checkpoint()
    candidates = [checkpoint.path, *older_checkpoints(checkpoint.path)] if checkpoint is not None else resume_candidates
    resume_directory = usable_checkpoint(candidates)
    try:
        if resume_directory is not None:
            state, _ = train_module.read_checkpoint(resume_directory)
            run.set_tags({names.RESUMED_FROM_EPOCH_TAG: state["epoch"]})
            # Epochs the killed attempt trained but could not send (found missing by the chaos run).
            run.log_history(state["history"], requested_epochs=requested_epochs)
        history = train_module.train(config, prepared, on_epoch=on_epoch, resume=resume_directory)
    finally:
        if resume_directory:
            shutil.rmtree(resume_directory, ignore_errors=True)
    run.log_metrics(trial_run.summary_from_history(history, requested_epochs))


def older_checkpoints(path: str) -> list[str]:
    """The trial's other kept checkpoints older than ``path`` (its siblings ``checkpoint_<n>``), newest first.

    Tune hands a retry only its newest checkpoint; when that one was cut short (the worker died while it was
    written), the one before it is the place to continue from. Local folders only (a URI: none).
    """
    if "://" in path:
        return []
    folder = pathlib.Path(path)
    siblings = sorted(folder.parent.glob("checkpoint_*"), reverse=True)
    return [str(sibling) for sibling in siblings if sibling.name < folder.name]


def usable_checkpoint(candidates: list[str]) -> str | None:
    """Copy the first readable checkpoint of ``candidates`` (folders or URIs, newest first) to a local folder.

    An unreadable one (damaged, or holding pickled objects) is skipped with a one-line warning, and the next
    older one is tried; None when none is usable (the trial starts from epoch 0).
    """
    from trainer import train as train_module

    for candidate in candidates:
        directory = tempfile.mkdtemp(prefix="glovesweep-resume-")
        try:
            tune.Checkpoint(path=candidate).to_directory(directory)
            train_module.read_checkpoint(directory)
            return directory
        except (OSError, ValueError) as error:
            print(f"glovesweep: skipping checkpoint {candidate}: {str(error).splitlines()[0][:300]}", flush=True)
            shutil.rmtree(directory, ignore_errors=True)
    return None


def _run_baseline(trial, config, run: trial_run.TrialRun, context: TrialContext) -> None:
    try:
        from trainer import baselines as baselines_module
    except ImportError as error:  # pragma: no cover - the trainer ships it
        raise OSError(f"baseline {trial.baseline!r} needs trainer.baselines: {error}") from error

    result = baselines_module.run_baseline(config, trial.baseline, data_home=context.state.data_home,
                                           download_if_missing=context.state.download_if_missing)
    numbers = {key: value for key, value in result.items()
               if isinstance(value, (int, float)) and not isinstance(value, bool)}
    run.log_metrics(numbers)
    tune.report({"val_acc": result["val_acc"], "epoch": 0})
