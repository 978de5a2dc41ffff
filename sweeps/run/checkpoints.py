"""Find a sweep's trial checkpoints for ``resume`` without loading anything that could run code.

Ray Tune's own restore unpickles ``tuner.pkl``, ``trainable.pkl``, the trial states inside
``experiment_state-*.json`` and ``error.pkl``: on shared storage anyone who can write the sweep folder could
run code on the head that way. ``resume`` therefore never restores Tune's state. The trial list is
recomputed from the sweep file (``SweepSpec.trials``), finished trials are read from MLflow, and each
unfinished trial gets the checkpoints it wrote, found here from two kinds of plain data only: the trial
folder's ``params.json`` (JSON) and the checkpoint folders' names. The checkpoints themselves hold JSON and a
NumPy archive loaded with ``allow_pickle=False`` (``trainer.train.verify_checkpoint``).
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile

from pyarrow import fs as pyarrow_fs

from sweeps import spec as spec_module
from sweeps import storage
from sweeps.run import trial as trial_module
from trainer import checkpoint_files

logger = logging.getLogger(__name__)

PARAMS_FILE = "params.json"
CHECKPOINT_PREFIX = "checkpoint_"


def trial_of_params(text: str) -> spec_module.Trial | None:
    """The trial a Tune ``params.json`` describes (this version's ``TrialTask`` or the older ``trial`` layout)."""
    try:
        params = json.loads(text)
        if trial_module.TASK_KEY in params:
            return trial_module.TrialTask.of_config(params).trial
        return spec_module.Trial.from_dict(params["trial"])
    except (ValueError, KeyError, TypeError):
        return None


def find_checkpoints(sweep_dir: str) -> dict[str, list[str]]:
    """The newest readable checkpoint of each trial, from every Tune run under ``sweep_dir``.

    A trial retried or resumed before has folders under several Tune runs; they are ordered by the epoch
    their JSON state records, and an unreadable one (damaged, or holding pickled objects) is skipped with a
    one-line notice, so the trial continues from the one before it.

    Returns
    -------
    dict of str to list of str
        ``Trial.key`` -> [checkpoint folder (local path or URI)].
    """
    filesystem, root = storage.filesystem_of(sweep_dir)
    scheme = sweep_dir.split("://", 1)[0] + "://" if "://" in sweep_dir else ""
    infos = filesystem.get_file_info(pyarrow_fs.FileSelector(root, recursive=True, allow_not_found=True))
    folders: dict[str, list[str]] = {}
    checkpoints: dict[str, list[str]] = {}
    for info in infos:
        parent, _, name = info.path.rpartition("/")
        if info.type == pyarrow_fs.FileType.File and name == PARAMS_FILE:
            try:
                with filesystem.open_input_stream(info.path) as stream:
                    trial = trial_of_params(stream.read().decode("utf-8", errors="replace"))
            except OSError as error:
                logger.warning("cannot read %s: %s", info.path, error)
                continue
            if trial is not None:
                folders.setdefault(trial.key, []).append(parent)
        elif info.type == pyarrow_fs.FileType.Directory and name.startswith(CHECKPOINT_PREFIX):
            checkpoints.setdefault(parent, []).append(name)
    found = {}
    for key, trial_folders in folders.items():
        candidates = [f"{folder}/{name}" for folder in trial_folders for name in checkpoints.get(folder, [])]
        # Tune numbers checkpoints per Tune run; the epoch inside orders them across runs.
        ordered = sorted(candidates, key=lambda path: _epoch(filesystem, path), reverse=True)
        usable = next((path for path in ordered if _readable(filesystem, path)), None)
        if usable is not None:
            found[key] = [scheme + usable if scheme and not usable.startswith(scheme) else usable]
    return found


def _readable(filesystem, folder: str) -> bool:
    """Whether a checkpoint folder reads as a glovesweep checkpoint; a one-line notice when it does not."""
    local = folder
    temporary = None
    if not isinstance(filesystem, pyarrow_fs.LocalFileSystem):
        temporary = local = tempfile.mkdtemp(prefix="glovesweep-verify-")
        pyarrow_fs.copy_files(folder, temporary, source_filesystem=filesystem)
    try:
        checkpoint_files.read_checkpoint(local)
        return True
    except OSError as error:
        print(f"glovesweep: skipping checkpoint {folder}: {str(error).splitlines()[0][:300]}", flush=True)
        return False
    finally:
        if temporary:
            shutil.rmtree(temporary, ignore_errors=True)


def _epoch(filesystem, folder: str) -> int:
    """The epoch a checkpoint folder's JSON state records (-1 when unreadable: tried last)."""
    try:
        with filesystem.open_input_stream(f"{folder}/{checkpoint_files.CHECKPOINT_STATE}") as stream:
            return int(json.loads(stream.read())["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return -1
