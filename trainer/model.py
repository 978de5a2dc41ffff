"""The blog's Conv1D network and its later variants, one registry entry per architecture."""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from trainer import config as config_module


def _conv_stack(tensor, config: config_module.TrainerConfig):
    """Three Conv1D(filters, kernel_size, relu) stages, the first two each followed by MaxPooling1D(5).

    The 2016 blog's stack is Conv1D(128, 5) x 3; ``filters`` and ``kernel_size`` default to those.
    """
    for _ in range(2):
        tensor = layers.Conv1D(config.filters, config.kernel_size, activation="relu")(tensor)
        tensor = layers.MaxPooling1D(config_module.POOL_SIZE)(tensor)
    return layers.Conv1D(config.filters, config.kernel_size, activation="relu")(tensor)


def _blog_flatten(tensor, config: config_module.TrainerConfig):
    # Keras blog 2016 / examples/pretrained_word_embeddings.py up to Keras 2.0.8: MaxPooling1D(35) + Flatten.
    tensor = layers.MaxPooling1D(35)(_conv_stack(tensor, config))
    return layers.Flatten()(tensor)


def _global_max(tensor, config: config_module.TrainerConfig):
    # Keras 2.0.9 examples/pretrained_word_embeddings.py replaced MaxPooling1D(35) + Flatten by GlobalMaxPooling1D.
    return layers.GlobalMaxPooling1D()(_conv_stack(tensor, config))


# Each architecture's pooled conv features; the dense head follows in ``build_model``. keras-io "Using pre-trained
# word embeddings" (2020) pools as global_max does and adds Dropout(0.5), its default in ARCHITECTURE_DROPOUT.
ARCHITECTURES = {"blog_flatten": _blog_flatten, "global_max": _global_max, "kerasio2020": _global_max}
assert set(ARCHITECTURES) == set(config_module.choices("architecture"))


def build_model(
    config: config_module.TrainerConfig,
    *,
    matrix_rows: int,
    embedding_matrix: np.ndarray | None,
    num_classes: int,
) -> keras.Model:
    """Build and compile the network.

    Parameters
    ----------
    config : TrainerConfig
        Architecture, the network's sizes (``filters``, ``kernel_size``, ``dense_units``, ``dropout``), embedding
        mode, sequence length, GloVe size and learning rate.
    matrix_rows : int
        Rows of the embedding layer (the sizing policy's result).
    embedding_matrix : np.ndarray of float32, shape (matrix_rows, glove_dim), or None
        Pretrained rows, or None for ``embedding="random"`` (the blog's "from scratch" control).
    num_classes : int
        Width of the softmax output.

    Returns
    -------
    keras.Model
        Compiled with RMSprop, sparse categorical cross-entropy (the same loss as the blog's one-hot
        categorical cross-entropy) and accuracy reported as ``acc``.
    """
    inputs = keras.Input(shape=(config.sequence_length,), dtype="int32", name="token_ids")
    embedding = layers.Embedding(matrix_rows, config.glove_dim, name="embedding",
                                 trainable=config.embedding != "frozen")
    tensor = embedding(inputs)
    if embedding_matrix is not None:
        if embedding_matrix.shape != (matrix_rows, config.glove_dim):
            raise ValueError(f"embedding_matrix has shape {embedding_matrix.shape}, expected "
                             f"({matrix_rows}, {config.glove_dim})")
        # Keras blog: Embedding(..., weights=[embedding_matrix], trainable=False).
        embedding.set_weights([embedding_matrix])
    tensor = ARCHITECTURES[config.architecture](tensor, config)
    # Keras blog 2016: Dense(128, activation='relu') before the softmax; keras-io 2020: Dropout(0.5) after it.
    tensor = layers.Dense(config.dense_units, activation="relu")(tensor)
    if config.effective_dropout > 0:
        tensor = layers.Dropout(config.effective_dropout)(tensor)
    outputs = layers.Dense(num_classes, activation="softmax", name="classes")(tensor)
    model = keras.Model(inputs, outputs, name=f"glovesweep_{config.architecture}")
    model.compile(
        optimizer=keras.optimizers.RMSprop(learning_rate=config.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["acc"],
    )
    return model
