"""``train()``: the one function every caller (CLI, Ray trial, tests, benchmarks) runs."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pathlib
import time
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from trainer import checkpoint_files
from trainer import config as config_module
from trainer import fastpath as fastpath_module
from trainer import model as model_module
from trainer import paths
from trainer import prepare as prepare_module

METRICS = ("loss", "acc", "val_loss", "val_acc", "epoch_seconds")
# The checkpoint's files and their safe reader live in trainer.checkpoint_files (no TensorFlow needed there).
CHECKPOINT_ARRAYS = checkpoint_files.CHECKPOINT_ARRAYS
CHECKPOINT_STATE = checkpoint_files.CHECKPOINT_STATE
read_checkpoint = checkpoint_files.read_checkpoint

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class TrainState:
    """The state after a finished epoch; ``save`` writes it so ``train(resume=...)`` can continue."""

    config: config_module.TrainerConfig
    model: keras.Model
    epoch: int
    history: dict[str, list[float]]

    def save(self, directory: str | os.PathLike) -> pathlib.Path:
        """Write a resumable checkpoint (weights, optimizer slots, epoch, history) into ``directory``.

        A frozen embedding is not written: it is rebuilt from the prepared data, which keeps an epoch's
        checkpoint at a few MB. Files are written to temporary names and renamed, never half-written.
        """
        directory = pathlib.Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        arrays = {f"model_{index}": variable.numpy() for index, variable in enumerate(self.model.weights)
                  if not _is_frozen_embedding(variable, self.model)}
        arrays.update({f"optimizer_{index}": variable.numpy()
                       for index, variable in enumerate(self.model.optimizer.variables)})
        paths.atomic_write(directory / CHECKPOINT_ARRAYS, lambda handle: np.savez(handle, **arrays))
        state = {"epoch": self.epoch, "history": self.history, "config": self.config.to_dict()}
        paths.atomic_write(directory / CHECKPOINT_STATE, json.dumps(state))
        return directory


def _is_frozen_embedding(variable, model: keras.Model) -> bool:
    embedding = model.get_layer("embedding")
    return not embedding.trainable and any(variable is weight for weight in embedding.weights)


def _restore(model: keras.Model, config: config_module.TrainerConfig, directory: str | os.PathLike):
    """Load a checkpoint written by ``TrainState.save``; returns (epoch, history)."""
    state, arrays = read_checkpoint(directory)
    saved = config_module.TrainerConfig.from_dict(state["config"])
    # Both compute paths train the same variables, so a checkpoint of one resumes on the other.
    if saved.replace(epochs=config.epochs, compute_path=config.compute_path) != config:
        raise ValueError(f"checkpoint in {directory} was written for a different config; only 'epochs' and "
                         f"'compute_path' may differ")
    try:
        for index, variable in enumerate(model.weights):
            if f"model_{index}" in arrays:
                variable.assign(arrays[f"model_{index}"])
        model.optimizer.build(model.trainable_variables)
        for index, variable in enumerate(model.optimizer.variables):
            variable.assign(arrays[f"optimizer_{index}"])
    except (KeyError, ValueError) as error:
        raise OSError(f"checkpoint in {directory} does not fit the model: {' '.join(str(error).split())[:200]}") from None
    return int(state["epoch"]), {name: list(values) for name, values in state["history"].items()}


def seed_everything(config: config_module.TrainerConfig) -> None:
    """Reset Keras' global state, seed Python, NumPy and TensorFlow from the init seed in effect
    (``init_seed``, else ``seed``: weight initialisation and dropout masks); with ``deterministic`` also make TF
    ops deterministic."""
    # Layer names come from a per-process counter, and Grappler's arithmetic optimizer orders the sum of a
    # variable's gradients from several uses (the fast path's tiers) by node name: a fresh state makes a
    # second run in one process (a reused Ray worker) repeat a first run bit for bit.
    keras.backend.clear_session()
    keras.utils.set_random_seed(config.effective_init_seed)
    if config.deterministic:
        # Same seed on CPU -> same metrics. (GPU cuDNN kernels are deterministic too under this flag.)
        tf.config.experimental.enable_op_determinism()


def epoch_order(config: config_module.TrainerConfig, epoch: int, size: int) -> np.ndarray:
    """Shuffle order of the training set for a 1-based ``epoch``: drawn from (order seed, epoch) alone, the order
    seed in effect being ``order_seed``, else ``seed``.

    Keras' own ``shuffle=True`` draws from a global stream, so epoch E's order would depend on how many
    epochs ran before in this process; a per-epoch draw makes epoch E of a 10-epoch run identical to an
    E-epoch run and to a run resumed at E - 1.
    """
    return np.random.default_rng([config.effective_order_seed, epoch]).permutation(size)


def train(
    config: config_module.TrainerConfig,
    data: prepare_module.Prepared | None = None,
    *,
    on_epoch: Callable[[int, dict[str, float], TrainState], Any] | None = None,
    resume: str | os.PathLike | None = None,
    data_home: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    download_if_missing: bool = True,
) -> dict[str, Any]:
    """Train the configured network for ``config.epochs`` epochs.

    Parameters
    ----------
    config : TrainerConfig
    data : Prepared, optional
        Arrays from ``trainer.prepare.prepare``; built (through the cache) when omitted.
    on_epoch : callable, optional
        Called after every epoch as ``on_epoch(epoch, metrics, state)``: 1-based epoch, a dict with
        ``loss``, ``acc``, ``val_loss``, ``val_acc`` and ``epoch_seconds`` (wall seconds of the epoch's fit
        and validation), and a ``TrainState`` whose ``save(directory)`` writes a resumable checkpoint.
    resume : path, optional
        A folder written by ``TrainState.save``; training continues after its epoch.

    Returns
    -------
    dict
        ``epoch`` (list of 1-based epochs), one list per metric, ``stats`` (from ``prepare``) and ``config``.
    """
    if data is None:
        data = prepare_module.prepare(config, data_home=data_home, cache_dir=cache_dir,
                                      download_if_missing=download_if_missing)
    seed_everything(config)
    model = model_module.build_model(config, matrix_rows=data.matrix_rows, embedding_matrix=data.embedding_matrix,
                                     num_classes=data.num_classes)
    history: dict[str, list[float]] = {name: [] for name in ("epoch",) + METRICS}
    finished = 0
    if resume is not None:
        finished, history = _restore(model, config, resume)
    # The fast path computes the same function and gradients over the same variables (trainer/fastpath.py);
    # where it would not be exact, the Keras path runs and the log says why.
    fast = None
    if config.compute_path == "fast":
        reason = fastpath_module.fallback_reason(config)
        if reason:
            logger.info("compute_path='fast' runs on the Keras path: %s", reason)
        else:
            fast = fastpath_module.FastPath(model, config.sequence_length)
    for epoch in range(finished + 1, config.epochs + 1):
        order = epoch_order(config, epoch, len(data.x_train))
        started = time.perf_counter()
        if fast is None:
            result = model.fit(data.x_train[order], data.y_train[order], batch_size=config.batch_size, epochs=1,
                               shuffle=False, validation_data=(data.x_val, data.y_val), verbose=0)
            metrics = {name: float(result.history[name][-1]) for name in ("loss", "acc", "val_loss", "val_acc")}
        else:
            metrics = fast.train_epoch(data.x_train[order], data.y_train[order], config.batch_size)
            validation = fast.evaluate(data.x_val, data.y_val, config.batch_size)
            metrics.update(val_loss=validation["loss"], val_acc=validation["acc"])
        metrics["epoch_seconds"] = time.perf_counter() - started
        history["epoch"].append(epoch)
        for name in METRICS:
            history[name].append(metrics[name])
        if on_epoch is not None:
            on_epoch(epoch, metrics, TrainState(config=config, model=model, epoch=epoch, history=history))
    return {**history, "stats": dict(data.stats), "config": config.to_dict()}
