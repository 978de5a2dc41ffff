"""How a report writes where it read from: a path relative to the working directory, a store without credentials.

A report folder gets committed and shared, so nothing it writes names a folder of one machine or a password.
"""

from __future__ import annotations

import os
import pathlib
import re
import urllib.parse


def shown_path(path: str | os.PathLike) -> str:
    """A file or folder as written into a report: relative to the working directory, never absolute.

    A relative path stays as given; an absolute one inside the working directory becomes relative to it; one
    outside it is shown by its name alone, so no file a report writes names a folder of one machine.
    """
    path = pathlib.Path(path)
    if not path.is_absolute():
        return path.as_posix()
    try:
        return path.resolve().relative_to(pathlib.Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.name


def shown_store(uri: str) -> str:
    """A tracking URI as written into a report: a file store's path as ``shown_path`` shows it, no credentials.

    A ``file:`` store is shown as its path (MLflow takes a path as a tracking URI).

    ``sqlite:////home/me/study/mlflow.db`` run from ``/home/me/study`` -> ``sqlite:///mlflow.db``;
    ``postgresql://user:secret@db:5432/mlflow?sslmode=require`` -> ``postgresql://db:5432/mlflow``.
    """
    if not uri:
        return ""
    if match := re.fullmatch(r"(sqlite[+\w]*:///)(.+)", uri):
        return match.group(1) + shown_path(match.group(2))
    parsed = urllib.parse.urlsplit(uri)
    if not parsed.scheme or parsed.scheme == "file":
        return shown_path(urllib.parse.unquote(parsed.path))
    if not parsed.netloc:
        return uri
    return urllib.parse.urlunsplit((parsed.scheme, parsed.netloc.rpartition("@")[2], parsed.path, "", ""))
