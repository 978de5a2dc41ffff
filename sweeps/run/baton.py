"""Seeds that take turns: a configuration's seeds of a trainer that keeps process-wide state, trained one at a time in
one process, each with its own copy of that state.

A search's ``seeds: k`` trains a configuration's k seeds in threads of one Tune trial (``sweeps.run.seed_group``). A
trainer that seeds process-wide state (the built-in Keras network: ``keras.utils.set_random_seed`` seeds Python's
``random``, NumPy's global generator and TensorFlow's global seed, and ``keras.backend.clear_session`` resets Keras'
global state) declares ``takes_turns`` (``sweeps.trainers.Trainer``); its seeds then pass a baton. Only the seed that
holds it runs trainer code: a seed takes it when its thread starts, gives it up when it reports an epoch (before it
waits for the other seeds at the barrier), takes it again when the barrier lets it go on, and gives it up when its
thread ends. Model building and weight initialisation therefore happen while holding it, as every epoch does.

At each handover the giver's process-wide random state is saved and the taker's restored (``capture`` and
``restore``), so each seed sees the state it would see training alone in the process:

- Python's ``random`` (Keras draws an unseeded initializer's or SeedGenerator's seed from it when a layer is built,
  keras/src/random/seed_generator.py ``make_default_seed``);
- NumPy's global ``RandomState`` (``np.random.seed``);
- Keras' global state, where it is loaded: the two ``threading.local`` trackers of
  keras/src/backend/common/global_state.py, which hold the layer-name counters, the seed ``set_random_seed`` stored
  and the global ``SeedGenerator`` of unseeded ``keras.random`` calls. ``clear_session`` replaces both trackers for
  the whole process, so a seed's clear would otherwise wipe the others' layer-name counters;
- TensorFlow's, where it is loaded: the eager context's global seed and the ``random.Random`` it draws operation seeds
  from (``tf.random.set_seed``, tensorflow/python/eager/context.py ``_set_global_seed``; a ``tf.function`` traced
  later takes its graph seed from it), and the global ``tf.random.Generator``.

A seed's first turn starts from the state the process had when the group began. What no handover can carry: the
state of stateful TensorFlow random kernels (``tf.random.uniform`` without a seed tensor), which TensorFlow keeps in
its kernel cache; Keras 3 draws every random number of the network (initializers, dropout masks) with stateless ops
from a seed tensor instead. ``tf.config.experimental.enable_op_determinism`` stays on once a seed turns it on: the
seeds of one configuration share that setting (``deterministic``).

Thread-safe trainers (random state in objects such as ``np.random.default_rng(seed)``) do not take turns: their seeds
train side by side, as before.
"""

from __future__ import annotations

import dataclasses
import random
import sys
import threading
from typing import Any

import numpy as np

KERAS_STATE_MODULE = "keras.src.backend.common.global_state"
TENSORFLOW_CONTEXT_MODULE = "tensorflow.python.eager.context"
TENSORFLOW_GENERATOR_MODULE = "tensorflow.python.ops.stateful_random_ops"


@dataclasses.dataclass(frozen=True)
class ProcessState:
    """The process-wide random state a seed carries between its turns (module docstring).

    Attributes
    ----------
    python_random : tuple
        ``random.getstate()``.
    numpy_random : tuple
        ``np.random.get_state()``.
    keras_trackers : tuple or None
        Keras' (state, settings) tracker objects; None where Keras was not loaded.
    tensorflow_seed : tuple or None
        The eager context's (global seed, state of its operation-seed ``random.Random`` or None); None where
        TensorFlow was not loaded.
    tensorflow_generator : tuple or None
        ``(global tf.random.Generator or None,)``; None where TensorFlow's random ops were not loaded.
    """

    python_random: tuple
    numpy_random: tuple
    keras_trackers: tuple | None = None
    tensorflow_seed: tuple | None = None
    tensorflow_generator: tuple | None = None


def capture() -> ProcessState:
    """The process's random state now (only the libraries already imported: capturing imports nothing)."""
    keras_state = sys.modules.get(KERAS_STATE_MODULE)
    trackers = None if keras_state is None else (keras_state.GLOBAL_STATE_TRACKER,
                                                 keras_state.GLOBAL_SETTINGS_TRACKER)
    context_module = sys.modules.get(TENSORFLOW_CONTEXT_MODULE)
    seed = None
    if context_module is not None:
        context = context_module.context()
        operation_seeds = getattr(context, "_rng", None)
        seed = (context._seed, None if operation_seeds is None else operation_seeds.getstate())
    generator_module = sys.modules.get(TENSORFLOW_GENERATOR_MODULE)
    generator = None if generator_module is None else (generator_module.global_generator,)
    return ProcessState(python_random=random.getstate(), numpy_random=np.random.get_state(),
                        keras_trackers=trackers, tensorflow_seed=seed, tensorflow_generator=generator)


def restore(state: ProcessState) -> None:
    """Put ``state`` back (the parts it holds; a library loaded since keeps its state)."""
    random.setstate(state.python_random)
    np.random.set_state(state.numpy_random)
    if state.keras_trackers is not None:
        keras_state = sys.modules[KERAS_STATE_MODULE]
        keras_state.GLOBAL_STATE_TRACKER, keras_state.GLOBAL_SETTINGS_TRACKER = state.keras_trackers
    if state.tensorflow_seed is not None:
        context = sys.modules[TENSORFLOW_CONTEXT_MODULE].context()
        seed, operation_seeds = state.tensorflow_seed
        context._seed = seed
        if operation_seeds is not None:
            context._rng = random.Random()
            context._rng.setstate(operation_seeds)
    if state.tensorflow_generator is not None:
        sys.modules[TENSORFLOW_GENERATOR_MODULE].global_generator = state.tensorflow_generator[0]


class Baton:
    """Only its holder among a configuration's seeds runs trainer code; each seed's process-wide random state travels
    with it (module docstring). Seeds are named by their seed number."""

    def __init__(self) -> None:
        self.condition = threading.Condition()
        self.holder: int | None = None
        self.start = capture()
        self.states: dict[int, ProcessState] = {}

    def take(self, seed: int) -> None:
        """Wait until no seed holds the baton, then hold it with ``seed``'s state restored."""
        with self.condition:
            self.condition.wait_for(lambda: self.holder is None or self.holder == seed)
            if self.holder == seed:
                return
            self.holder = seed
            restore(self.states.pop(seed, self.start))

    def give(self, seed: int) -> None:
        """``seed`` gives the baton up (if it holds it), its state saved for its next turn."""
        with self.condition:
            if self.holder != seed:
                return
            self.states[seed] = capture()
            self.holder = None
            self.condition.notify_all()
