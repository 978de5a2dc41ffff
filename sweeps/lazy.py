"""Package faces whose public names load on first use (PEP 562 ``__getattr__``).

A package's ``__init__`` names its public surface in ``__all__``; the modules behind those names load only when
a name is used, so importing ``sweeps.run`` (for its state file, say) starts neither Ray nor TensorFlow, and
``glovesweep --help`` and ``glovesweep ui`` stay light.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable


def public_names(package: str, homes: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: ``homes`` maps each public name to its module in the package."""

    def __getattr__(name: str) -> Any:
        if name not in homes:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{homes[name]}"), name)

    return __getattr__
