"""The two built-in trainers, declared through the same seam as a user's: the Keras network and TF-IDF baselines.

``KERAS`` (entry point ``keras``, the default) trains the blog network (``trainer.train``) on the data the
driver prepared once per sweep, with pickle-free epoch checkpoints, the exact epoch axis, merging of identical
trials and the header-leak measure. ``TFIDF`` (entry point ``tfidf``; the sweep file's ``baselines:`` list
picks its models) fits TF-IDF + a linear model on the same split in seconds and runs beside the network: once
per distinct data cell, at the first seed. Both keep the ``trainer`` tag values of the runs they logged before
(``keras``, ``baseline``). Ray and TensorFlow load only when a trial runs.
"""

from __future__ import annotations

import math
import os
import pathlib
import platform
import shutil
import tempfile

from sweeps.run import session as session_module
from sweeps.tracking import names
from sweeps.tracking import trial_run
from sweeps.trainers import api
from trainer import config as config_module

KERAS_METRICS = (api.VAL_ACC, api.Metric("val_loss", "min", low=0.0, help="validation loss"),
                 api.Metric("acc", "max", low=0.0, high=1.0, help="training accuracy"),
                 api.Metric("loss", "min", low=0.0, help="training loss"))


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
        found = [tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name) for gpu in gpus]
        return f"GPU: {', '.join(found)}"
    return f"CPU: {platform.machine()} {platform.processor() or ''} ({threads} threads)".replace("  ", " ")


def run_network(session: session_module.TrialSession) -> None:
    """The Keras network trained to ``max(epochs)`` on the sweep's shared data, an epoch checkpoint each epoch."""
    import ray
    from ray import tune

    from trainer import train as train_module

    config, run, context = session.config, session.run, session.context
    run.set_tags({names.DEVICE_TAG: configure_tensorflow(context.spec.resources["cpu"])})
    key = data_key(context, session.trial, config)
    prepared_ref = context.data[key]
    prepared = ray.get(prepared_ref)
    run.log_metrics(trial_run.stats_metrics(prepared.stats))
    run.set_tags({names.ARCHIVE_SHA256_TAG: prepared.stats.get("archive_sha256", ""),
                  names.GLOVE_SOURCE_TAG: prepared.stats.get("glove_source", ""), names.DATA_KEY_TAG: key})
    stats = prepared.stats
    run.log_input(name=f"20news-{config.dataset} · {config.strip}", digest=stats.get("archive_sha256", ""),
                  source=stats.get("source", config.dataset),
                  profile={"dataset": config.dataset, "strip": config.strip, "num_train": stats.get("num_train"),
                           "num_val": stats.get("num_val"), "num_classes": len(prepared.label_names),
                           "archive_sha256": stats.get("archive_sha256", "")})
    requested_epochs = session.requested_epochs

    def on_epoch(epoch: int, metrics: dict[str, float], state) -> None:
        # MLflow first: a worker killed between the two re-runs this epoch, and its step is skipped then.
        run.log_epoch(epoch, metrics, requested_epochs=requested_epochs)
        with tempfile.TemporaryDirectory(prefix="glovesweep-checkpoint-") as directory:
            state.save(directory)
            tune.report({**metrics, "epoch": epoch, session_module.PENDING_METRIC: run.pending},
                        checkpoint=tune.Checkpoint.from_directory(directory))

    # A retry within this Tune run has Tune's checkpoint (a seed of a configuration: its part of it); a resumed sweep
    # hands the trial its own earlier ones.
    checkpoint = session_module.current_checkpoint()
    candidates = [checkpoint.path, *older_checkpoints(checkpoint.path)] if checkpoint is not None \
        else list(session.resume_from)
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


def data_key(context, trial, config: config_module.TrainerConfig) -> str:
    """The key of the shared data a trial trains on: its config's own, else (a search's suggested configuration) that
    of the data trial with its data settings and seed (``SweepSpec.data_trial_of``)."""
    key = context.data_keys.get(config.digest())
    if key is None and context.spec.searched:
        key = context.data_keys.get(context.spec.trial_config(context.spec.data_trial_of(trial)).digest())
    if key is None and len(set(context.data_keys.values())) == 1:
        key = next(iter(context.data_keys.values()))  # one data set: the one every trial reads
    return key


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
    from ray import tune

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


def run_tfidf(session: session_module.TrialSession) -> None:
    """One TF-IDF baseline (``trainer.baselines``) on the trial's split: one result, no epochs."""
    from ray import tune

    from trainer import baselines as baselines_module

    state = session.context.state
    result = baselines_module.run_baseline(session.config, session.trial.baseline, data_home=state.data_home,
                                           download_if_missing=state.download_if_missing)
    session.run.log_metrics(session_module.numbers(result))
    tune.report({"val_acc": result["val_acc"], "epoch": 0})


KERAS = api.Trainer(
    name="keras", function=None, factors=config_module.FACTORS, metrics=KERAS_METRICS, checkpoints=True,
    leak_metric=names.LEAKAGE, runner=run_network, reads_archives=True, prepares_data=True, config_class=config_module.TrainerConfig,
    description="The Keras blog's GloVe + Conv1D network on 20 Newsgroups (trainer/).",
    # bydate's validation: auto is its official test set; a search selects on a split of its training files.
    test_set=lambda config: not config_module.uses_split(config), final_settings={"validation": "auto"},
    # It seeds Python, NumPy, TensorFlow and Keras process-wide (trainer.train.seed_everything): a search's seeds of
    # one configuration take turns in their trial (sweeps.run.baton).
    takes_turns=True)

TFIDF = api.Trainer(
    name="tfidf", function=None, factors=config_module.FACTORS, metrics=(api.VAL_ACC,),
    leak_metric=names.LEAKAGE, data_fields=config_module.factor_names("split"), variant=names.BASELINE_PARAM,
    kind=names.TRAINER_BASELINE, runner=run_tfidf, reads_archives=True, config_class=config_module.TrainerConfig,
    description="TF-IDF + multinomial Naive Bayes or a linear SVM on the same split (trainer/baselines.py).")
