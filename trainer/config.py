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

from typing import Any

from trainer import factors as factors_module
from trainer.factors import DATA_STAGES, STAGES, Factor  # noqa: F401 - the registry's vocabulary, re-exported

# The defaults each vectorizer mode brings when the config leaves them unset.
# Keras blog (2016/2017): MAX_NB_WORDS = 20000, MAX_SEQUENCE_LENGTH = 1000.
# keras-io "Using pre-trained word embeddings" (2020): max_tokens=20000, output_sequence_length=200.
VECTORIZER_DEFAULTS = {
    "keras2": {"max_num_words": 20000, "max_sequence_length": 1000},
    "kerasio2020": {"max_num_words": 20000, "max_sequence_length": 200},
}
# The Dropout rate each architecture brings when ``dropout`` is unset (0: no Dropout layer).
# Keras blog 2016 and examples/pretrained_word_embeddings.py (Keras 2.0.9): no Dropout.
# keras-io "Using pre-trained word embeddings" (2020): Dropout(0.5) after Dense(128).
ARCHITECTURE_DROPOUT = {"blog_flatten": 0.0, "global_max": 0.0, "kerasio2020": 0.5}
# MaxPooling1D(5) after the first two convolutions (Keras blog 2016); fixed, unlike the Conv1D kernel_size.
POOL_SIZE = 5

def uses_split(config: "TrainerConfig") -> bool:
    """Whether validation documents are drawn by a seeded split (bydate's official test set is not)."""
    return config.dataset != "bydate" or config.validation == "split"


FACTORS: dict[str, Factor] = {factor.name: factor for factor in (
    Factor("dataset", str, "19997", "20 Newsgroups version: 19997 (original, the blog's folder), bydate "
           "(scikit-learn's), 18828.", "split", choices=("19997", "bydate", "18828")),
    # A path enters the key through the content hash of what it names, never as text.
    Factor("data_path", str, "", "Explicit archive (.tar.gz) or extracted folder; empty: data home, then download.",
           "split", data_key=lambda config, hashes: {"archive_sha256": hashes["archive_sha256"]}, path=True),
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
           "home, download.", "embedding", data_key=lambda config, hashes: {}, path=True),
    # Frozen and trainable share the arrays; random has no matrix, which the 'glove' item already says.
    Factor("embedding", str, "frozen", "frozen / trainable pretrained vectors, or random (trained from scratch, "
           "no GloVe).", "embedding", choices=("frozen", "trainable", "random"),
           data_key=lambda config, hashes: {}),
    Factor("sizing", str, "vocab_plus_one", "Embedding-matrix row count policy (see trainer.embeddings.SIZING).",
           "embedding", choices=("vocab_plus_one", "num_words", "num_words_plus_one")),
    Factor("architecture", str, "blog_flatten", "blog_flatten (MaxPooling1D(35)+Flatten), global_max (Keras >= "
           "2.0.9), kerasio2020.", "training", choices=("blog_flatten", "global_max", "kerasio2020")),
    # The network's sizes (issue 20 item 8). The defaults are the 2016 blog's Conv1D(128, 5) x 3 and Dense(128), and
    # each architecture's own dropout, so every existing cell builds the same network and keeps its keys.
    Factor("filters", int, 128, "Conv1D filters of each of the three convolutions (blog: 128).", "training", ge=1),
    Factor("kernel_size", int, 5, "Conv1D kernel width in tokens (blog: 5; other widths run on the Keras path).",
           "training", ge=1),
    Factor("dense_units", int, 128, "Units of the Dense(relu) layer before the softmax (blog: 128).", "training",
           ge=1),
    Factor("dropout", float, None, "Dropout rate after the dense layer; None: the architecture's own (0.5 for "
           "kerasio2020, else none); 0: no Dropout layer.", "training", ge=0.0, lt=1.0, optional=True),
    Factor("epochs", int, 2, "Number of training epochs.", "training", ge=1),
    Factor("batch_size", int, 128, "Minibatch size in samples.", "training", ge=1),
    Factor("learning_rate", float, 0.001, "RMSprop learning rate (Keras default 0.001), constant.", "training",
           gt=0.0),
    # bydate's official split does not depend on the seed, so its seeds share one entry. The item is the split
    # seed in effect (split_seed, else seed): with split_seed unset every key is the one of before.
    Factor("seed", int, 0, "Seed for the split, weight init and per-epoch shuffle (each overridable: split_seed, "
           "init_seed, order_seed).", "split", ge=0,
           data_key=lambda config, hashes: {"split_seed": config.effective_split_seed if uses_split(config)
                                            else None}),
    # The three parts of the seed as separable factors (issue 21 item 5), for a crossed design that estimates
    # each part's share of the seed noise. None takes `seed`, so every existing cell trains as before.
    Factor("split_seed", int, None, "Seed of the train/validation split's shuffle (where a split is drawn); None: "
           "seed.", "split", ge=0, optional=True, data_key=lambda config, hashes: {}),
    Factor("init_seed", int, None, "Seed of the weight initialisation (and dropout masks); None: seed.", "training",
           ge=0, optional=True),
    Factor("order_seed", int, None, "Seed of each epoch's training order, drawn from (order_seed, epoch); None: "
           "seed.", "training", ge=0, optional=True),
    Factor("deterministic", bool, True, "Enable TensorFlow op determinism (same seed on CPU -> same metrics).",
           "training"),
    # How train() computes the same network: fast skips pre-padding's work (trainer/fastpath.py) where it is
    # exact and falls back to keras elsewhere; keras is model.fit over the full padded rows.
    Factor("compute_path", str, "fast", "fast: skip pre-padding's work, same function and gradients (else keras); "
           "keras: model.fit.", "training", choices=("fast", "keras")),
)}

# The seed and its parts: runs that differ only in these repeat one cell (replicates), so the report pools them
# into the cell's interval instead of taking them for factors of it.
SEED_FACTORS = ("seed", "split_seed", "init_seed", "order_seed")
assert set(SEED_FACTORS) <= set(FACTORS)

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


class _KerasConfigMethods(factors_module.ConfigMethods):
    """The Keras network's own checks (its conv stack needs enough tokens) and resolved values."""

    def __post_init__(self) -> None:
        super().__post_init__()
        steps = final_conv_steps(self.sequence_length, self.kernel_size)
        if steps < 1:
            raise ValueError(
                f"max_sequence_length={self.sequence_length} is too short for the Conv1D({self.kernel_size})/"
                f"MaxPooling1D({POOL_SIZE}) stack: it needs at least {shortest_sequence(1, self.kernel_size)} tokens"
            )
        if self.architecture == "blog_flatten" and steps < 35:
            raise ValueError(
                f"architecture='blog_flatten' needs max_sequence_length >= {shortest_sequence(35, self.kernel_size)} "
                f"(MaxPooling1D(35) after the third conv, kernel_size={self.kernel_size}); got "
                f"{self.sequence_length}. Use architecture='global_max' for shorter sequences."
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

    @property
    def effective_dropout(self) -> float:
        """Dropout rate after the dense layer in effect (``dropout``, else the architecture's own; 0: none)."""
        return ARCHITECTURE_DROPOUT[self.architecture] if self.dropout is None else self.dropout

    # The seeds in effect: each part's own seed, else ``seed``.
    @property
    def effective_split_seed(self) -> int:
        """Seed of the train/validation split's shuffle (``split_seed``, else ``seed``)."""
        return self.seed if self.split_seed is None else self.split_seed

    @property
    def effective_init_seed(self) -> int:
        """Seed of the weight initialisation and dropout masks (``init_seed``, else ``seed``)."""
        return self.seed if self.init_seed is None else self.init_seed

    @property
    def effective_order_seed(self) -> int:
        """Seed of the per-epoch training order (``order_seed``, else ``seed``)."""
        return self.seed if self.order_seed is None else self.order_seed


def make_trainer_config(factors: dict[str, Factor]) -> type:
    """The network's config class for a registry of factors (``FACTORS``, or FACTORS plus a new one in tests)."""
    return factors_module.make_config_class(
        factors, bases=(_KerasConfigMethods,), module=__name__,
        doc="Everything that shapes one training run; hashable, JSON-able, validated on construction. One field "
            "per entry of ``trainer.config.FACTORS``.")


TrainerConfig = make_trainer_config(FACTORS)


def final_conv_steps(sequence_length: int, kernel_size: int = 5) -> int:
    """Time steps out of the third Conv1D(kernel_size) ('valid'), after two Conv1D + MaxPooling1D(5) stages."""
    steps = sequence_length
    for _ in range(2):
        steps = (steps - (kernel_size - 1)) // POOL_SIZE
    return steps - (kernel_size - 1)


def shortest_sequence(steps: int, kernel_size: int = 5) -> int:
    """The fewest tokens that give ``steps`` time steps out of the third conv (``final_conv_steps``' inverse)."""
    tokens = steps
    for _ in range(2):
        tokens = POOL_SIZE * (tokens + kernel_size - 1)
    return tokens + kernel_size - 1
