"""The one typed trainer configuration.

Every field has a default, a one-line help (``FIELD_HELP``) and a check in ``__post_init__``. A bad value
raises ``ValueError`` naming the field and the allowed values; unknown keys are rejected by
``TrainerConfig.from_dict`` (nanoGPT's configurator habit: a typo is an error, never ignored).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

# Allowed values of each choice field. Adding a value here and a branch in the module that resolves it is
# all a new factor level needs: sweep files name it, the trainer resolves it.
DATASETS = ("19997", "bydate", "18828")
STRIP_MODES = ("none", "blank_line", "first_10_lines", "sklearn_headers", "sklearn_all")
VALIDATION_MODES = ("auto", "split")
VECTORIZERS = ("keras2", "kerasio2020")
GLOVE_DIMS = (50, 100, 200, 300)
EMBEDDING_MODES = ("frozen", "trainable", "random")
SIZING_POLICIES = ("vocab_plus_one", "num_words", "num_words_plus_one")
ARCHITECTURES = ("blog_flatten", "global_max", "kerasio2020")
# How train() computes the same network: fast skips the padding's work (trainer/fastpath.py) where it is exact
# and falls back to keras elsewhere; keras is model.fit over the full padded rows.
COMPUTE_PATHS = ("fast", "keras")
# scikit-learn baselines (trainer/baselines.py) and the fields their result depends on: everything that
# shapes the split; vectorizer, GloVe, embedding, sizing, architecture and epochs do not touch it.
BASELINES = ("multinomial_nb", "linear_svm")
BASELINE_DATA_FIELDS = ("dataset", "data_path", "strip", "validation", "validation_split", "dedup",
                        "documents_per_group", "seed")

# The defaults each vectorizer mode brings when the config leaves them unset.
# Keras blog (2016/2017): MAX_NB_WORDS = 20000, MAX_SEQUENCE_LENGTH = 1000.
# keras-io "Using pre-trained word embeddings" (2020): max_tokens=20000, output_sequence_length=200.
VECTORIZER_DEFAULTS = {
    "keras2": {"max_num_words": 20000, "max_sequence_length": 1000},
    "kerasio2020": {"max_num_words": 20000, "max_sequence_length": 200},
}

FIELD_HELP = {
    "dataset": "20 Newsgroups version: 19997 (original, the blog's folder), bydate (scikit-learn's), 18828.",
    "data_path": "Explicit archive (.tar.gz) or extracted folder; empty: data home, then download.",
    "strip": "Header stripping applied to every post before tokenizing.",
    "validation": "auto: bydate uses its official test set, others an 80/20 split; split: always split train.",
    "validation_split": "Fraction of (shuffled) training documents held out for validation in split mode.",
    "dedup": "Drop documents whose stripped body is identical to an earlier one.",
    "documents_per_group": "Keep only the first N documents (sorted by id) of each group per split; 0: all.",
    "vectorizer": "keras2: Keras 2 Tokenizer + pad_sequences; kerasio2020: TextVectorization-like.",
    "max_num_words": "Vocabulary cap (Tokenizer num_words / TextVectorization max_tokens); None: mode default.",
    "max_sequence_length": "Padded sequence length in tokens; None: the vectorizer mode's default.",
    "glove_dim": "GloVe 6B vector size in dimensions.",
    "glove_path": "Explicit glove.6B.zip or glove.6B.<d>d.txt; empty: offline 50d package, data home, download.",
    "embedding": "frozen / trainable pretrained vectors, or random (trained from scratch, no GloVe).",
    "sizing": "Embedding-matrix row count policy (see trainer.embeddings.SIZING).",
    "architecture": "blog_flatten (MaxPooling1D(35)+Flatten), global_max (Keras >= 2.0.9), kerasio2020.",
    "epochs": "Number of training epochs.",
    "batch_size": "Minibatch size in samples.",
    "learning_rate": "RMSprop learning rate (Keras default 0.001), constant.",
    "seed": "Seed for the split, weight init and per-epoch shuffle.",
    "deterministic": "Enable TensorFlow op determinism (same seed on CPU -> same metrics).",
    "compute_path": "fast: skip pre-padding's work, same function and gradients (else keras); keras: model.fit.",
}


@dataclasses.dataclass(frozen=True)
class TrainerConfig:
    """Everything that shapes one training run; hashable, JSON-able, validated on construction."""

    dataset: str = "19997"
    data_path: str = ""
    strip: str = "none"
    validation: str = "auto"
    validation_split: float = 0.2
    dedup: bool = False
    documents_per_group: int = 0
    vectorizer: str = "keras2"
    max_num_words: int | None = None
    max_sequence_length: int | None = None
    glove_dim: int = 50
    glove_path: str = ""
    embedding: str = "frozen"
    sizing: str = "vocab_plus_one"
    architecture: str = "blog_flatten"
    epochs: int = 2
    batch_size: int = 128
    learning_rate: float = 0.001
    seed: int = 0
    deterministic: bool = True
    compute_path: str = "fast"

    def __post_init__(self) -> None:
        _check_choice("dataset", self.dataset, DATASETS)
        _check_choice("strip", self.strip, STRIP_MODES)
        _check_choice("validation", self.validation, VALIDATION_MODES)
        _check_choice("vectorizer", self.vectorizer, VECTORIZERS)
        _check_choice("glove_dim", self.glove_dim, GLOVE_DIMS)
        _check_choice("embedding", self.embedding, EMBEDDING_MODES)
        _check_choice("sizing", self.sizing, SIZING_POLICIES)
        _check_choice("architecture", self.architecture, ARCHITECTURES)
        _check_choice("compute_path", self.compute_path, COMPUTE_PATHS)
        _check_type("data_path", self.data_path, str)
        _check_type("glove_path", self.glove_path, str)
        for name in ("dedup", "deterministic"):
            _check_type(name, getattr(self, name), bool)
        if not (isinstance(self.validation_split, (int, float)) and 0.0 < self.validation_split < 1.0):
            raise ValueError(f"validation_split={self.validation_split!r}: must be a number in (0, 1), e.g. 0.2")
        _check_int("documents_per_group", self.documents_per_group, minimum=0)
        _check_int("epochs", self.epochs, minimum=1)
        _check_int("batch_size", self.batch_size, minimum=1)
        _check_int("seed", self.seed, minimum=0)
        if self.max_num_words is not None:
            _check_int("max_num_words", self.max_num_words, minimum=3)
        if self.max_sequence_length is not None:
            _check_int("max_sequence_length", self.max_sequence_length, minimum=8)
        if not (isinstance(self.learning_rate, (int, float)) and self.learning_rate > 0):
            raise ValueError(f"learning_rate={self.learning_rate!r}: must be a positive number, e.g. 0.001")
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
    def from_dict(cls, values: dict[str, Any]) -> "TrainerConfig":
        """Build a config from a mapping; unknown keys raise ``ValueError`` listing the known ones."""
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown trainer setting(s) {unknown}; allowed: {sorted(known)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "TrainerConfig":
        return dataclasses.replace(self, **changes)

    def digest(self, *fields: str) -> str:
        """SHA-256 (hex, 16 chars) of the named fields, or of every field when none are named."""
        values = self.to_dict()
        chosen = {name: values[name] for name in (fields or sorted(values))}
        return hashlib.sha256(json.dumps(chosen, sort_keys=True).encode()).hexdigest()[:16]


def final_conv_steps(sequence_length: int) -> int:
    """Time steps out of the third Conv1D(5) ('valid'), after two Conv1D(5) + MaxPooling1D(5) stages."""
    steps = sequence_length
    for _ in range(2):
        steps = (steps - 4) // 5
    return steps - 4


def _check_choice(name: str, value: Any, allowed: tuple) -> None:
    if value not in allowed or type(value) is not type(allowed[0]):
        raise ValueError(f"{name}={value!r} is not allowed; allowed values: {', '.join(map(repr, allowed))}")


def _check_type(name: str, value: Any, expected: type) -> None:
    if not isinstance(value, expected):
        raise ValueError(f"{name}={value!r}: must be a {expected.__name__}")


def _check_int(name: str, value: Any, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}={value!r}: must be an integer >= {minimum}")
