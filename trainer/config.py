"""The one typed trainer configuration, generated from one registry of factors.

Each trainer setting ("factor") is declared once in ``FACTORS``: its name, type, default, one-line help,
allowed values or bounds, and the stage of the pipeline it shapes (``split``, ``vectorize``, ``embedding``:
the prepared arrays; ``training``: only the run). From that one entry come ``TrainerConfig``'s field and
check, the ``glovesweep train`` flag, the sweep-file validation, the prepared-data cache key
(``data_key_items``), the MLflow param and the report's value order. Adding a factor is one entry here plus
its implementation in the module that resolves it.

A bad value raises ``ValueError`` naming the field and the allowed values; unknown keys are rejected by
``TrainerConfig.from_dict`` (nanoGPT's configurator habit: a typo is an error, never ignored).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, Callable

# The pipeline stages a factor can shape; the first three shape the prepared arrays (the cache key).
STAGES = ("split", "vectorize", "embedding", "training")
DATA_STAGES = ("split", "vectorize", "embedding")

# The defaults each vectorizer mode brings when the config leaves them unset.
# Keras blog (2016/2017): MAX_NB_WORDS = 20000, MAX_SEQUENCE_LENGTH = 1000.
# keras-io "Using pre-trained word embeddings" (2020): max_tokens=20000, output_sequence_length=200.
VECTORIZER_DEFAULTS = {
    "keras2": {"max_num_words": 20000, "max_sequence_length": 1000},
    "kerasio2020": {"max_num_words": 20000, "max_sequence_length": 200},
}

# What the data key receives besides the config: the content hashes of the sources, known before any text is
# read (``archive_sha256`` of the dataset archive or folder, ``glove_sha256`` of the GloVe file).
DataKeyItems = Callable[["TrainerConfig", dict[str, str]], dict[str, Any]]


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
        One of ``STAGES``: what the factor shapes.
    choices : tuple
        Allowed values, in the order reports list them; empty: any value within the bounds.
    ge, gt, lt : float, optional
        Inclusive lower, exclusive lower and exclusive upper bounds for numbers.
    optional : bool
        ``None`` is allowed (the vectorizer mode then supplies the value).
    data_key : callable, optional
        ``(config, hashes) -> dict`` of the items this factor adds to the prepared-data key; by default
        ``{name: value}`` for data stages and nothing for ``training``. Some factors enter only in some modes
        (the seed only when the split uses it), some through a content hash (paths).
    """

    name: str
    type: type
    default: Any
    help: str
    stage: str
    choices: tuple = ()
    ge: float | None = None
    gt: float | None = None
    lt: float | None = None
    optional: bool = False
    data_key: DataKeyItems | None = None

    @property
    def shapes_data(self) -> bool:
        return self.stage in DATA_STAGES

    def key_items(self, config: "TrainerConfig", hashes: dict[str, str]) -> dict[str, Any]:
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


def uses_split(config: "TrainerConfig") -> bool:
    """Whether validation documents are drawn by a seeded split (bydate's official test set is not)."""
    return config.dataset != "bydate" or config.validation == "split"


FACTORS: dict[str, Factor] = {factor.name: factor for factor in (
    Factor("dataset", str, "19997", "20 Newsgroups version: 19997 (original, the blog's folder), bydate "
           "(scikit-learn's), 18828.", "split", choices=("19997", "bydate", "18828")),
    # A path enters the key through the content hash of what it names, never as text.
    Factor("data_path", str, "", "Explicit archive (.tar.gz) or extracted folder; empty: data home, then download.",
           "split", data_key=lambda config, hashes: {"archive_sha256": hashes["archive_sha256"]}),
    Factor("strip", str, "none", "Header stripping applied to every post before tokenizing.", "split",
           choices=("none", "blank_line", "first_10_lines", "sklearn_headers", "sklearn_all")),
    Factor("validation", str, "auto", "auto: bydate uses its official test set, others an 80/20 split; split: "
           "always split train.", "split", choices=("auto", "split")),
    Factor("validation_split", float, 0.2, "Fraction of (shuffled) training documents held out for validation in "
           "split mode.", "split", gt=0.0, lt=1.0,
           data_key=lambda config, hashes: {"validation_split": config.validation_split if uses_split(config)
                                            else None}),
    Factor("dedup", bool, False, "Drop documents whose stripped body is identical to an earlier one.", "split"),
    Factor("documents_per_group", int, 0, "Keep only the first N documents (sorted by id) of each group per "
           "split; 0: all.", "split", ge=0),
    Factor("vectorizer", str, "keras2", "keras2: Keras 2 Tokenizer + pad_sequences; kerasio2020: "
           "TextVectorization-like.", "vectorize", choices=("keras2", "kerasio2020")),
    Factor("max_num_words", int, None, "Vocabulary cap (Tokenizer num_words / TextVectorization max_tokens); "
           "None: mode default.", "vectorize", ge=3, optional=True,
           data_key=lambda config, hashes: {"num_words": config.num_words}),
    Factor("max_sequence_length", int, None, "Padded sequence length in tokens; None: the vectorizer mode's "
           "default.", "vectorize", ge=8, optional=True,
           data_key=lambda config, hashes: {"sequence_length": config.sequence_length}),
    # GloVe enters by content and size, and not at all for a random (trained from scratch) embedding.
    Factor("glove_dim", int, 50, "GloVe 6B vector size in dimensions.", "embedding", choices=(50, 100, 200, 300),
           data_key=lambda config, hashes: {"glove": None if config.embedding == "random"
                                            else [hashes["glove_sha256"], config.glove_dim]}),
    Factor("glove_path", str, "", "Explicit glove.6B.zip or glove.6B.<d>d.txt; empty: offline 50d package, data "
           "home, download.", "embedding", data_key=lambda config, hashes: {}),
    # Frozen and trainable share the arrays; random has no matrix, which the 'glove' item already says.
    Factor("embedding", str, "frozen", "frozen / trainable pretrained vectors, or random (trained from scratch, "
           "no GloVe).", "embedding", choices=("frozen", "trainable", "random"),
           data_key=lambda config, hashes: {}),
    Factor("sizing", str, "vocab_plus_one", "Embedding-matrix row count policy (see trainer.embeddings.SIZING).",
           "embedding", choices=("vocab_plus_one", "num_words", "num_words_plus_one")),
    Factor("architecture", str, "blog_flatten", "blog_flatten (MaxPooling1D(35)+Flatten), global_max (Keras >= "
           "2.0.9), kerasio2020.", "training", choices=("blog_flatten", "global_max", "kerasio2020")),
    Factor("epochs", int, 2, "Number of training epochs.", "training", ge=1),
    Factor("batch_size", int, 128, "Minibatch size in samples.", "training", ge=1),
    Factor("learning_rate", float, 0.001, "RMSprop learning rate (Keras default 0.001), constant.", "training",
           gt=0.0),
    # bydate's official split does not depend on the seed, so its seeds share one entry.
    Factor("seed", int, 0, "Seed for the split, weight init and per-epoch shuffle.", "split", ge=0,
           data_key=lambda config, hashes: {"split_seed": config.seed if uses_split(config) else None}),
    Factor("deterministic", bool, True, "Enable TensorFlow op determinism (same seed on CPU -> same metrics).",
           "training"),
    # How train() computes the same network: fast skips pre-padding's work (trainer/fastpath.py) where it is
    # exact and falls back to keras elsewhere; keras is model.fit over the full padded rows.
    Factor("compute_path", str, "fast", "fast: skip pre-padding's work, same function and gradients (else keras); "
           "keras: model.fit.", "training", choices=("fast", "keras")),
)}

# scikit-learn baselines (trainer/baselines.py); their result depends on the split-stage factors only.
BASELINES = ("multinomial_nb", "linear_svm")


def choices(name: str) -> tuple:
    """Allowed values of factor ``name`` in report order (empty when it takes any value within bounds)."""
    return FACTORS[name].choices


def factor_names(stage: str | None = None) -> tuple[str, ...]:
    """Factor names, in declaration order, optionally only those of one ``stage`` (or ``"data"``)."""
    if stage == "data":
        return tuple(name for name, factor in FACTORS.items() if factor.shapes_data)
    return tuple(name for name, factor in FACTORS.items() if stage is None or factor.stage == stage)


def field_help(name: str) -> str:
    return FACTORS[name].help


class _ConfigMethods:
    """Checks, resolved values and conversions shared by every ``TrainerConfig`` class built from a registry."""

    def __post_init__(self) -> None:
        for factor in type(self).FACTORS.values():
            factor.check(getattr(self, factor.name))
        steps = final_conv_steps(self.sequence_length)
        if steps < 1:
            raise ValueError(
                f"max_sequence_length={self.sequence_length} is too short for the Conv1D(5)/MaxPooling1D(5) stack: "
                f"it needs at least 149 tokens"
            )
        if self.architecture == "blog_flatten" and steps < 35:
            raise ValueError(
                f"architecture='blog_flatten' needs max_sequence_length >= 999 (MaxPooling1D(35) after the third "
                f"conv); got {self.sequence_length}. Use architecture='global_max' for shorter sequences."
            )

    # Resolved values: the vectorizer mode supplies what the config leaves unset.
    @property
    def num_words(self) -> int:
        """Vocabulary cap in effect (Tokenizer ``num_words`` / TextVectorization ``max_tokens``)."""
        if self.max_num_words is not None:
            return self.max_num_words
        return VECTORIZER_DEFAULTS[self.vectorizer]["max_num_words"]

    @property
    def sequence_length(self) -> int:
        """Padded sequence length in effect, in tokens."""
        if self.max_sequence_length is not None:
            return self.max_sequence_length
        return VECTORIZER_DEFAULTS[self.vectorizer]["max_sequence_length"]

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


def make_config_class(factors: dict[str, Factor]) -> type:
    """A frozen dataclass with one field per factor (its default) and the shared checks and conversions."""
    fields = [(factor.name, factor.type | None if factor.optional else factor.type,
               dataclasses.field(default=factor.default, metadata={"help": factor.help}))
              for factor in factors.values()]
    namespace = {"__doc__": "Everything that shapes one training run; hashable, JSON-able, validated on "
                            "construction. One field per entry of ``trainer.config.FACTORS``.",
                 "FACTORS": factors, "__module__": __name__}
    return dataclasses.make_dataclass("TrainerConfig", fields, bases=(_ConfigMethods,), frozen=True,
                                      namespace=namespace)


TrainerConfig = make_config_class(FACTORS)


def final_conv_steps(sequence_length: int) -> int:
    """Time steps out of the third Conv1D(5) ('valid'), after two Conv1D(5) + MaxPooling1D(5) stages."""
    steps = sequence_length
    for _ in range(2):
        steps = (steps - 4) // 5
    return steps - 4
