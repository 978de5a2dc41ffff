"""Factors: a trainer's settings, each declared once, and the typed config class made from them.

A ``Factor`` carries a setting's name, type, default, one-line help, allowed values or bounds, and the stage of
the pipeline it shapes. ``make_config_class`` turns a registry of factors into a frozen dataclass that checks
every value on construction. The Keras trainer's registry is ``trainer.config.FACTORS``; any other trainer
declares its own (``sweeps.trainers.trainer``). No TensorFlow here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, Callable

# The pipeline stages a factor can shape; the first three shape the prepared arrays (the cache key).
STAGES = ("split", "vectorize", "embedding", "training")
DATA_STAGES = ("split", "vectorize", "embedding")

# What the data key receives besides the config: the content hashes of the sources, known before any text is
# read (``archive_sha256`` of the dataset archive or folder, ``glove_sha256`` of the GloVe file).
DataKeyItems = Callable[[Any, dict[str, str]], dict[str, Any]]


@dataclasses.dataclass(frozen=True)
class Factor:
    """One trainer setting, declared once.

    Attributes
    ----------
    name : str
        Field name (``TrainerConfig`` attribute, MLflow param, sweep-file key; flag ``--name-with-dashes``).
    type : type
        ``str``, ``int``, ``float`` or ``bool``.
    default : object
        Default value (``None`` only where ``optional``).
    help : str
        One line, shown by ``glovesweep train --help`` and in the docs.
    stage : str
        One of ``STAGES``: what the factor shapes (default ``training``: only the run, not the prepared data).
    choices : tuple
        Allowed values, in the order reports list them; empty: any value within the bounds.
    ge, gt, lt : float, optional
        Inclusive lower, exclusive lower and exclusive upper bounds for numbers.
    optional : bool
        ``None`` is allowed (the vectorizer mode then supplies the value).
    path : bool
        A file or folder path: a sweep file's relative value resolves against the sweep file's folder.
    data_key : callable, optional
        ``(config, hashes) -> dict`` of the items this factor adds to the prepared-data key; by default
        ``{name: value}`` for data stages and nothing for ``training``. Some factors enter only in some modes
        (the seed only when the split uses it), some through a content hash (paths).
    """

    name: str
    type: type
    default: Any
    help: str = ""
    stage: str = "training"
    choices: tuple = ()
    ge: float | None = None
    gt: float | None = None
    lt: float | None = None
    optional: bool = False
    data_key: DataKeyItems | None = None
    path: bool = False

    @property
    def shapes_data(self) -> bool:
        return self.stage in DATA_STAGES

    def __post_init__(self) -> None:
        if self.type not in (str, int, float, bool):
            raise ValueError(f"factor {self.name!r}: type {self.type!r} is not allowed; use str, int, float or bool")
        if self.stage not in STAGES:
            raise ValueError(f"factor {self.name!r}: stage {self.stage!r} is not allowed; allowed: {', '.join(STAGES)}")
        if not self.optional or self.default is not None:
            self.check(self.default)

    def key_items(self, config: Any, hashes: dict[str, str]) -> dict[str, Any]:
        """The items this factor adds to the prepared-data key of ``config`` (empty for training factors)."""
        if self.data_key is not None:
            return self.data_key(config, hashes)
        return {self.name: getattr(config, self.name)} if self.shapes_data else {}

    def check(self, value: Any) -> None:
        """Raise ``ValueError`` naming the field, the value and what is allowed."""
        if value is None and self.optional:
            return
        if self.choices:
            if value not in self.choices or type(value) is not type(self.choices[0]):
                raise ValueError(f"{self.name}={value!r} is not allowed; allowed values: "
                                 f"{', '.join(map(repr, self.choices))}")
            return
        if self.type is bool:
            if not isinstance(value, bool):
                raise ValueError(f"{self.name}={value!r}: must be a bool (true or false)")
            return
        if self.type is str:
            if not isinstance(value, str):
                raise ValueError(f"{self.name}={value!r}: must be a str")
            return
        kinds = (int,) if self.type is int else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds) or not self._within_bounds(value):
            noun = "an integer" if self.type is int else "a number"
            raise ValueError(f"{self.name}={value!r}: must be {noun} {self.bounds_text()}".rstrip())

    def _within_bounds(self, value: float) -> bool:
        return ((self.ge is None or value >= self.ge) and (self.gt is None or value > self.gt)
                and (self.lt is None or value < self.lt))

    def bounds_text(self) -> str:
        """The bounds in words, e.g. ``>= 1`` or ``in (0, 1)``."""
        if self.gt is not None and self.lt is not None:
            return f"in ({self.gt:g}, {self.lt:g})"
        parts = [f">= {self.ge:g}" if self.ge is not None else "", f"> {self.gt:g}" if self.gt is not None else "",
                 f"< {self.lt:g}" if self.lt is not None else ""]
        return " and ".join(part for part in parts if part)


class ConfigMethods:
    """Checks and conversions shared by every config class built from a registry of factors."""

    def __post_init__(self) -> None:
        for factor in type(self).FACTORS.values():
            factor.check(getattr(self, factor.name))

    @classmethod
    def from_dict(cls, values: dict[str, Any]):
        """Build a config from a mapping; unknown keys raise ``ValueError`` listing the known ones."""
        unknown = sorted(set(values) - set(cls.FACTORS))
        if unknown:
            raise ValueError(f"unknown trainer setting(s) {unknown}; allowed: {sorted(cls.FACTORS)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any):
        return dataclasses.replace(self, **changes)

    def digest(self, *fields: str) -> str:
        """SHA-256 (hex, 16 chars) of the named fields, or of every field when none are named."""
        values = self.to_dict()
        chosen = {name: values[name] for name in (fields or sorted(values))}
        return hashlib.sha256(json.dumps(chosen, sort_keys=True).encode()).hexdigest()[:16]

    def data_key_items(self, hashes: dict[str, str]) -> dict[str, Any]:
        """Everything that shapes this config's prepared arrays, from each factor's own declaration.

        ``hashes`` holds ``archive_sha256`` and ``glove_sha256`` (empty for a random embedding).
        """
        items: dict[str, Any] = {}
        for factor in type(self).FACTORS.values():
            items.update(factor.key_items(self, hashes))
        return items



def make_config_class(factors: dict[str, Factor], *, name: str = "TrainerConfig", bases: tuple = (ConfigMethods,),
                      module: str = __name__, doc: str = "") -> type:
    """A frozen dataclass with one field per factor (its default) and the shared checks and conversions.

    ``bases`` adds a trainer's own checks (a ``__post_init__`` calling ``super().__post_init__()``) and
    resolved values (properties).
    """
    fields = [(factor.name, factor.type | None if factor.optional else factor.type,
               dataclasses.field(default=factor.default, metadata={"help": factor.help}))
              for factor in factors.values()]
    namespace = {"__doc__": doc or "Everything that shapes one training run; hashable, JSON-able, validated on "
                                   "construction. One field per declared factor.",
                 "FACTORS": factors, "__module__": module}
    return dataclasses.make_dataclass(name, fields, bases=bases, frozen=True, namespace=namespace)
