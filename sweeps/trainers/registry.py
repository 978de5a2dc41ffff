"""Find a trainer by the name a sweep file gives it.

Three ways, tried in this order:
1. an installed trainer: an entry point of the group ``glovesweep.trainers`` (the built-ins ``keras`` and
   ``tfidf`` are declared in glovesweep's own ``pyproject.toml``), as pytest finds plugins;
2. ``module:attribute`` (``my_trainer:train``, ``package.module:train``): a module importable from the sweep
   file's folder (searched first) or from the Python path;
3. nothing else: an unknown name is one line listing the installed trainers.

The attribute must be a ``Trainer`` (a function wrapped by ``sweeps.trainers.trainer``). Importing runs the
user's module, as any Python import does: a sweep file names code, so only run sweep files you trust.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.metadata
import pathlib
import sys
import tempfile
from typing import Iterator

from sweeps.trainers import api

GROUP = "glovesweep.trainers"
DEFAULT = "keras"


def installed() -> dict[str, importlib.metadata.EntryPoint]:
    """Installed trainers by name (entry points of ``GROUP``)."""
    return {entry.name: entry for entry in importlib.metadata.entry_points(group=GROUP)}


@contextlib.contextmanager
def search_path(folder: str | None) -> Iterator[None]:
    """``folder`` first on ``sys.path`` while importing (a trainer module beside its sweep file)."""
    if not folder or folder in sys.path:
        yield
        return
    sys.path.insert(0, folder)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(folder)


def load(name: str, *, folder: str | None = None) -> api.Trainer:
    """The trainer ``name`` names; ``folder`` is the sweep file's folder.

    Raises
    ------
    ValueError
        One line naming the trainer and what went wrong (not found, import failed, not a ``Trainer``).
    """
    entries = installed()
    if name in entries:
        target, where = entries[name].value, f"entry point {name!r} ({entries[name].value})"
    elif ":" in name:
        target, where = name, repr(name)
    else:
        raise ValueError(f"trainer {name!r} not found; installed trainers: {', '.join(sorted(entries)) or '(none)'}; "
                         f"or name your own as module:function (a module beside the sweep file)")
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"trainer {where}: write it as module:function, e.g. my_trainer:train")
    if name not in entries:
        forget_other_copy(module_name, folder)
    with search_path(folder):
        try:
            module = importlib.import_module(module_name)
        except Exception as error:  # noqa: BLE001 - any import-time error of user code is one line
            raise ValueError(f"trainer {where}: cannot import module {module_name!r}: {type(error).__name__}: "
                             f"{str(error).splitlines()[0] if str(error) else ''}".rstrip(": ")) from None
    found = module
    for part in attribute.split("."):
        found = getattr(found, part, None)
        if found is None:
            raise ValueError(f"trainer {where}: module {module_name!r} has no {attribute!r}")
    if not isinstance(found, api.Trainer):
        raise ValueError(f"trainer {where}: {attribute!r} is a {type(found).__name__}, not a trainer; wrap the "
                         f"function with @sweeps.trainers.trainer(factors=..., metrics=...)")
    return found


def forget_other_copy(module_name: str, folder: str | None) -> None:
    """Drop an imported module of the same name that is not the one beside the sweep file (two sweep files in one
    process, each with its own ``my_trainer.py``): the sweep file's folder is searched first, as documented."""
    top = module_name.split(".")[0]
    loaded = sys.modules.get(top)
    if not folder or loaded is None:
        return
    beside = [pathlib.Path(folder) / f"{top}.py", pathlib.Path(folder) / top / "__init__.py"]
    origin = pathlib.Path(getattr(loaded, "__file__", "") or "")
    if any(path.is_file() for path in beside) and origin not in beside:
        for name in [name for name in sys.modules if name == top or name.startswith(top + ".")]:
            del sys.modules[name]


def shipped_module(name: str, folder: str) -> str:
    """The file or package folder beside a sweep file that holds trainer ``name`` (``module:function``), for a
    submitted job to ship with it (Ray's ``py_modules``); '' for an installed trainer or a module not there."""
    if name in installed() or ":" not in name or not folder:
        return ""
    top = name.partition(":")[0].split(".")[0]
    for candidate in (pathlib.Path(folder) / f"{top}.py", pathlib.Path(folder) / top):
        if candidate.is_file() or (candidate / "__init__.py").is_file():
            return str(candidate)
    return ""


def job_package(module: str) -> str:
    """A folder Ray's job client can ship as ``py_modules`` for ``module`` (a ``.py`` file or a package folder).

    A package folder ships as it is. A single file is copied into a package of its name (``<name>/__init__.py``)
    under the temporary folder, named by its content's hash: Ray 2.60's job client uploads only folders from
    ``py_modules`` (it passes a ``.py`` file to its folder upload, which refuses it).
    """
    path = pathlib.Path(module)
    if path.is_dir():
        return str(path)
    text = path.read_bytes()
    folder = pathlib.Path(tempfile.gettempdir()) / f"glovesweep-trainer-{hashlib.sha256(text).hexdigest()[:16]}"
    package = folder / path.stem
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_bytes(text)
    return str(package)


def folder_of(source_path: str) -> str:
    """The folder of a sweep file (its trainer modules' home), or '' for a sweep given as text."""
    path = pathlib.Path(source_path)
    return str(path.parent) if path.is_absolute() and path.parent.is_dir() else ""
