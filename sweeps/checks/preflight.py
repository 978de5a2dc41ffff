"""Checks that a sweep's own files can take what it will write, run before any compute starts.

A store that cannot be written fails only when the first trial logs its first epoch, after the data is
prepared; these checks move that failure to the start, in one line naming the file.
"""

from __future__ import annotations

import os
import pathlib
import tempfile

SQLITE_PREFIX = "sqlite:///"


def check_store_writable(tracking_uri: str) -> None:
    """Refuse a ``sqlite:///`` store whose file or folder cannot be written (read-only mount, immutable, mode).

    SQLite writes the database file in place and a journal file beside it, so both must be writable. The
    file is opened for update and a scratch file is created and removed in its folder: unlike
    ``os.access``, that also holds for root, for whom file modes do not apply but read-only mounts do.

    Raises
    ------
    OSError
        Naming the file (or folder), the reason and the fix.
    """
    if not tracking_uri.startswith(SQLITE_PREFIX):
        return
    path = pathlib.Path(tracking_uri[len(SQLITE_PREFIX):])
    folder = path.parent
    fix = "make it writable, or set mlflow.tracking_uri / --tracking-uri to a writable place"
    try:
        if path.exists():
            with open(path, "r+b"):
                pass
        if folder.is_dir():
            with tempfile.NamedTemporaryFile(dir=folder, prefix=f".{path.name}-write-check-"):
                pass
    except OSError as error:
        what = f"the MLflow store {path}" if path.exists() else f"the folder {folder} of the MLflow store"
        raise OSError(f"{what} is not writable ({error.strerror or error}): the sweep could not record its runs; "
                      f"{fix}") from None


def check_storage_path(storage_path: str) -> None:
    """Refuse a local ``storage_path`` that cannot be created or written, before any MLflow run exists.

    The nearest folder that exists must be a folder where a scratch folder can be made and removed (that
    holds for root too, as in ``check_store_writable``); nothing is created. A URI (``s3://``, ``gs://``...) is
    left to pyarrow, which Tune asks when it starts.

    Raises
    ------
    OSError
        One line naming the key, the path and the fix.
    """
    if "://" in storage_path and not storage_path.startswith("file://"):
        return
    path = pathlib.Path(storage_path.removeprefix("file://")).expanduser()
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    fix = "set storage_path in the sweep file (or --storage-path) to a writable folder"
    try:
        if not existing.is_dir():
            raise NotADirectoryError(f"{existing} is not a folder")
        with tempfile.TemporaryDirectory(dir=existing, prefix=".glovesweep-write-check-"):
            pass
    except OSError as error:
        raise OSError(f"storage_path {storage_path}: the sweep's results cannot be written there "
                      f"({error.strerror or error}); {fix}") from None
