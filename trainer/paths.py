"""Where data and caches live, content hashes, and the one checksummed download routine.

Follows scikit-learn's dataset fetchers: a data home that an environment variable can set, a published
SHA-256 per remote file, a download to a ``.part`` file and an atomic rename, a log line with the URL and
size before the download.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pathlib
import tempfile
import time
import urllib.request
from typing import BinaryIO, Callable

logger = logging.getLogger(__name__)

DATA_ENV = "GLOVESWEEP_DATA"
CACHE_ENV = "GLOVESWEEP_CACHE"
_CHUNK = 1 << 20


def data_home(data_home: str | os.PathLike | None = None) -> pathlib.Path:
    """Folder holding archives and GloVe files: the argument, else ``$GLOVESWEEP_DATA``, else ``~/glovesweep_data``."""
    chosen = data_home or os.environ.get(DATA_ENV) or pathlib.Path.home() / "glovesweep_data"
    return pathlib.Path(chosen).expanduser()


def cache_home(cache_dir: str | os.PathLike | None = None) -> pathlib.Path:
    """Folder for derived caches: the argument, else ``$GLOVESWEEP_CACHE``, else ``~/.cache/glovesweep``."""
    chosen = cache_dir or os.environ.get(CACHE_ENV) or pathlib.Path.home() / ".cache" / "glovesweep"
    path = pathlib.Path(chosen).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file's bytes, memoised in the cache home keyed by absolute path, size and mtime.

    The data folder may be read-only (``../shared/data``), so the memo lives in the cache home.
    """
    path = pathlib.Path(path).resolve()
    stat = path.stat()
    key = hashlib.sha256(f"{path}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:24]
    memo = cache_home() / "sha256" / f"{key}.json"
    try:
        return json.loads(memo.read_text())["sha256"]
    except (OSError, ValueError, KeyError):
        pass
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    value = digest.hexdigest()
    atomic_write(memo, json.dumps({"path": str(path), "sha256": value}))
    return value


def atomic_write(path: str | os.PathLike, content: bytes | str | Callable[[BinaryIO], None]) -> pathlib.Path:
    """Write a file through a unique temporary sibling and ``os.replace``: readers see the old or the new file.

    The project's one atomic-write routine for local files (the sweep state adds one PUT for object stores).

    Parameters
    ----------
    path : path-like
        Destination; its folder is created.
    content : bytes, str or callable
        The bytes, UTF-8 text, or a function that writes into the open binary file (``np.save``...).
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A unique temporary per writer: threads of one process (trials, tests) may write the same file at once.
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            if callable(content):
                content(handle)
            else:
                handle.write(content.encode("utf-8") if isinstance(content, str) else content)
        os.replace(temporary, path)
    except BaseException:
        pathlib.Path(temporary).unlink(missing_ok=True)
        raise
    return path


def _open_url(url: str, timeout: float):
    """The only network call in the project; tests fake exactly this."""
    return urllib.request.urlopen(url, timeout=timeout)  # noqa: S310 - fixed https/http URLs from our tables


def download(
    url: str,
    destination: str | os.PathLike,
    *,
    sha256: str,
    size_hint: str = "",
    retries: int = 3,
    timeout: float = 60.0,
) -> pathlib.Path:
    """Download ``url`` to ``destination``, verifying its SHA-256.

    Bytes go to ``<destination>.part`` first; only a file whose checksum matches is renamed into place. A
    network failure removes the ``.part`` file and is retried ``retries`` times in all, with a growing pause; a
    checksum mismatch fails at once (the server sent other bytes: fetching 822 MB again would not help).

    Raises
    ------
    OSError
        When every attempt failed (network error or checksum mismatch); the message names the URL, the
        destination and how to place the file by hand.
    """
    destination = pathlib.Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    part = destination.with_name(destination.name + ".part")
    last_error: Exception | None = None
    for attempt in range(1, retries + 1):
        logger.warning("Downloading %s (%s) to %s, attempt %d/%d", url, size_hint or "size unknown",
                       destination, attempt, retries)
        try:
            digest = hashlib.sha256()
            with _open_url(url, timeout) as response, open(part, "wb") as handle:
                for chunk in iter(lambda: response.read(_CHUNK), b""):
                    digest.update(chunk)
                    handle.write(chunk)
        except Exception as error:  # noqa: BLE001 - any network failure is retried, then reported as OSError
            last_error = error
            part.unlink(missing_ok=True)
            if attempt < retries:
                time.sleep(min(2.0 ** (attempt - 1), 10.0))
            continue
        if digest.hexdigest() != sha256:
            part.unlink(missing_ok=True)
            raise OSError(f"checksum mismatch for {url}: expected sha256 {sha256}, got {digest.hexdigest()}; the "
                          f"file at that address changed or is damaged: download it by hand, check it and place it "
                          f"at {destination}")
        os.replace(part, destination)
        return destination
    raise OSError(
        f"could not download {url} to {destination} after {retries} attempts ({last_error}); "
        f"download it by hand and place it at {destination}, or set {DATA_ENV}"
    ) from last_error
