"""Find a sweep's trial checkpoints for ``resume`` without loading anything that could run code.

Ray Tune's own restore unpickles ``tuner.pkl``, ``trainable.pkl``, the trial states inside
``experiment_state-*.json`` and ``error.pkl``: on shared storage anyone who can write the sweep folder could
run code on the head that way. ``resume`` therefore never restores Tune's state. The trial list is
recomputed from the sweep file (``SweepSpec.trials``), finished trials are read from MLflow, and each
unfinished trial gets the checkpoints it wrote, found here from two kinds of plain data only: the trial
folder's ``params.json`` (JSON) and the checkpoint folders' names. The built-in network's checkpoints hold JSON
and a NumPy archive loaded with ``allow_pickle=False`` (``trainer.checkpoint_files.read_checkpoint``); a trainer
of one's own keeps what it likes in its checkpoint and reads it itself, and glovesweep reads only the epoch it
noted there (``sweeps.run.session.EPOCH_FILE``, JSON). A configuration trained at ``seeds: k`` checkpoints one
folder per seed (``seed_<n>``, ``sweeps.run.seed_group``): usable when every part is, at the oldest part's epoch.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
import shutil
import tempfile

from pyarrow import fs as pyarrow_fs

from sweeps import spec as spec_module
from sweeps import storage
from sweeps.run import session as session_module
from sweeps.run import trial as trial_module
from trainer import checkpoint_files

logger = logging.getLogger(__name__)

PARAMS_FILE = "params.json"
CHECKPOINT_PREFIX = "checkpoint_"
SEED_PART_PREFIX = "seed_"


def trial_of_params(text: str) -> spec_module.Trial | None:
    """The trial a Tune ``params.json`` describes (this version's ``TrialTask`` or the older ``trial`` layout)."""
    try:
        params = json.loads(text)
        if trial_module.TASK_KEY in params:
            return trial_module.TrialTask.of_config(params).trial
        return spec_module.Trial.from_dict(params["trial"])
    except (ValueError, KeyError, TypeError):
        return None


def find_checkpoints(sweep_dir: str, keys: set[str] | None = None) -> dict[str, list[str]]:
    """The newest readable checkpoint of each trial (of those in ``keys``, where given), from every Tune run under
    ``sweep_dir``.

    A trial retried or resumed before has folders under several Tune runs; they are ordered by the epoch
    their JSON state records, and an unreadable one (damaged, or holding pickled objects) is skipped with a
    one-line notice, so the trial continues from the one before it. Trials outside ``keys`` (those that
    finished) are not read at all.

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
            if trial is not None and (keys is None or trial.key in keys):
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
        for part in _parts(pathlib.Path(local)):
            # The built-in network's is read here (JSON, a pickle-free archive); a trainer of one's own reads its own.
            if (part / checkpoint_files.CHECKPOINT_STATE).exists() or not (part / session_module.EPOCH_FILE).is_file():
                checkpoint_files.read_checkpoint(part)
        return True
    except OSError as error:
        print(f"glovesweep: skipping checkpoint {folder}: {str(error).splitlines()[0][:300]}", flush=True)
        return False
    finally:
        if temporary:
            shutil.rmtree(temporary, ignore_errors=True)


def _parts(folder: pathlib.Path) -> list[pathlib.Path]:
    """The checkpoints a folder holds: itself, or a configuration's one part per seed (``seed_<n>``)."""
    if (folder / checkpoint_files.CHECKPOINT_STATE).exists() or (folder / session_module.EPOCH_FILE).exists():
        return [folder]
    parts = sorted(path for path in folder.glob(SEED_PART_PREFIX + "*") if path.is_dir())
    return parts or [folder]


def _epoch(filesystem, folder: str) -> int:
    """The epoch a checkpoint folder records (its JSON state, or the epoch glovesweep noted in a trainer of one's
    own's; a configuration's: its oldest seed part's); -1 when unreadable: tried last."""
    try:
        parts = [folder]
        if not any(_is_file(filesystem, f"{folder}/{name}")
                   for name in (checkpoint_files.CHECKPOINT_STATE, session_module.EPOCH_FILE)):
            listed = filesystem.get_file_info(pyarrow_fs.FileSelector(folder, allow_not_found=True))
            parts = sorted(info.path for info in listed if info.type == pyarrow_fs.FileType.Directory
                           and os.path.basename(info.path).startswith(SEED_PART_PREFIX)) or [folder]
        return min(_noted_epoch(filesystem, part) for part in parts)
    except (OSError, ValueError, KeyError, TypeError):
        return -1


def _is_file(filesystem, path: str) -> bool:
    """Whether ``path`` is a file on ``filesystem`` (pyarrow's, local or remote)."""
    return filesystem.get_file_info(path).type == pyarrow_fs.FileType.File


def _noted_epoch(filesystem, folder: str) -> int:
    """The epoch one checkpoint records: the built-in network's state.json, else glovesweep's epoch note."""
    for name in (checkpoint_files.CHECKPOINT_STATE, session_module.EPOCH_FILE):
        if _is_file(filesystem, f"{folder}/{name}"):
            with filesystem.open_input_stream(f"{folder}/{name}") as stream:
                return int(json.loads(stream.read())["epoch"])
    raise OSError(f"{folder} records no epoch")
