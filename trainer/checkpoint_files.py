"""A training checkpoint's files, and the reader that runs no code from them (no TensorFlow needed).

``trainer.train.TrainState.save`` writes ``state.json`` (epoch, history, config) and ``checkpoint.npz``
(weights and optimizer slots). ``resume`` reads checkpoints that may sit on shared storage, written by anyone
who can write there, so nothing here unpickles: JSON, and NumPy arrays loaded with ``allow_pickle=False``.
"""

from __future__ import annotations

import json
import os
import pathlib
import zipfile
from typing import Any

import numpy as np

CHECKPOINT_ARRAYS = "checkpoint.npz"
CHECKPOINT_STATE = "state.json"


def read_checkpoint(directory: str | os.PathLike) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read a checkpoint's JSON state and arrays without running any code from it.

    The arrays are loaded with ``allow_pickle=False``: a checkpoint on shared storage may have been written by
    someone else, and a pickled object array could run code when loaded.

    Raises
    ------
    OSError
        The folder holds no readable glovesweep checkpoint; the message names it.
    """
    directory = pathlib.Path(directory)
    try:
        state = json.loads((directory / CHECKPOINT_STATE).read_text())
        with np.load(directory / CHECKPOINT_ARRAYS, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
        if not isinstance(state, dict) or not isinstance(state.get("epoch"), int) or "config" not in state:
            raise ValueError("state.json lacks epoch or config")
    # A write cut short leaves a zip without its central directory: BadZipFile (the chaos run found it).
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as error:
        raise OSError(f"cannot resume from {directory}: not a readable glovesweep checkpoint: {' '.join(str(error).split())}") from None
    return state, arrays
