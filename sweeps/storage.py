"""The sweep folder's storage: a local folder or an object store (``s3://``, ``gs://``) through pyarrow.

Every file glovesweep keeps in a sweep folder (the sweep's state, the MLflow outbox) is written with
``write_bytes``: a temporary file and a rename locally (``trainer.paths.atomic_write``), one PUT on an object
store, which is atomic there; a reader sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import pathlib

from trainer import paths


def join(storage_path: str, name: str) -> str:
    """``storage_path/name`` for a local folder or a URI."""
    return f"{storage_path.rstrip('/')}/{name}"


def is_uri(path: str) -> bool:
    return "://" in path


def filesystem_of(path: str):
    """(pyarrow filesystem, path inside it) for a local folder or a URI of the sweep folder."""
    from pyarrow import fs as pyarrow_fs

    if is_uri(path):
        return pyarrow_fs.FileSystem.from_uri(path)
    return pyarrow_fs.LocalFileSystem(), path


def write_bytes(target: str, payload: bytes) -> str:
    """The sweep folder's one atomic write: temporary file + rename locally, one PUT on an object store."""
    if is_uri(target):
        filesystem, path = filesystem_of(target)
        filesystem.create_dir(path.rsplit("/", 1)[0], recursive=True)
        with filesystem.open_output_stream(path) as stream:  # One PUT: the object appears whole or not at all.
            stream.write(payload)
    else:
        paths.atomic_write(target, payload)
    return target


def read_bytes(target: str) -> bytes:
    """A file of the sweep folder (local path or URI); ``OSError`` when absent."""
    if is_uri(target):
        filesystem, path = filesystem_of(target)
        with filesystem.open_input_stream(path) as stream:
            return stream.read()
    return pathlib.Path(target).read_bytes()


def list_files(folder: str) -> list[str]:
    """Paths (or URIs) of the files directly in ``folder``; empty when it does not exist."""
    from pyarrow import fs as pyarrow_fs

    if is_uri(folder):
        filesystem, path = filesystem_of(folder)
        scheme = folder.split("://", 1)[0] + "://"
        infos = filesystem.get_file_info(pyarrow_fs.FileSelector(path, allow_not_found=True))
        return sorted(scheme + info.path for info in infos if info.type == pyarrow_fs.FileType.File)
    local = pathlib.Path(folder)
    return sorted(str(item) for item in local.iterdir() if item.is_file()) if local.is_dir() else []


def remove_file(target: str) -> None:
    if is_uri(target):
        filesystem, path = filesystem_of(target)
        filesystem.delete_file(path)
    else:
        pathlib.Path(target).unlink(missing_ok=True)
