"""The padding-skipping compute path: the same network, function and gradients, without the padding's work.

With pre-padding (Keras 2 ``pad_sequences``, padding='pre') a document of n real tokens in a 1,000-token row
starts with ``1000 - n`` padding ids (0). Every conv1 window that lies wholly in that prefix sees the same
input (embedding row 0), so it gives one value ``c1``; a pool1 window of such outputs pools to ``c1``; conv2
over five ``c1`` gives ``c2``; and so on to ``c3`` at the last conv. This path computes, for each document,

* the constant chain ``c1 -> c2 -> c3`` once per step (three convolutions of one five-step window), and
* the tail of each stage that may differ from the constant: conv1 on the tokens from ``5 * a1`` on, where
  ``a1`` is the number of pool1 positions that are surely ``c1``; conv2 on that tail with ``a1 - 5 * a2``
  copies of ``c1`` in front (``a2`` constant pool2 positions), so that the pooling windows, which count from
  the start of the sequence, stay aligned; conv3 likewise with copies of ``c2``;

and the final max pooling takes ``max(c3, max over the computed conv3 outputs)`` when some conv3 output was
left out (it is then ``c3``). That is the same function of the same variables: the constants are functions
of the kernels, biases and embedding row 0, so their gradients (conv1's bias, conv2/conv3 kernels and
biases, and row 0 of a trainable embedding) flow through them once, where the Keras path's max-pooling
gradient picks one of many equal copies. Only the summation order of float sums differs.

A batch stays as drawn (same documents, one optimizer step): its documents are split into a few length
tiers, each tier is run truncated to its longest document, and the pooled features are put back in batch
order before the dense head, so that Dropout draws the same mask as the Keras path.

Scope: the keras2 vectorizer (pre-padding), a frozen embedding, and every architecture whose final pooling
covers all conv3 outputs (``global_max``, ``kerasio2020``, and ``blog_flatten`` where MaxPooling1D(35) sees
exactly 35 steps, i.e. 999-1023 tokens). ``supports`` is False elsewhere and ``train()`` uses the Keras path:

* the kerasio2020 vectorizer post-pads (the constant part is a suffix, not handled here);
* a trainable (or random, hence trainable) embedding: the gradients are exact here too, padding row
  included (tests/test_fastpath.py checks them), but Keras' RMSprop applies a sparse ``tf.IndexedSlices``
  gradient slice by slice (keras/src/optimizers/rmsprop.py ``update_step``: ``ops.square(gradient)`` squares
  each slice before duplicate rows are summed), so the padding row's velocity depends on how many padding
  positions the gradient was split into; the Keras path splits it into one slice per padding position, this
  path into a few, and the step would differ.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from trainer import config as config_module

PADDING_ID = 0
KERNEL = 5  # Conv1D(128, 5) and MaxPooling1D(5) of the blog's stack (trainer/model.py).
DEFAULT_TIERS = 4


def supports(config: config_module.TrainerConfig) -> bool:
    """Whether the padding-skipping path computes exactly this configuration's network.

    False for the kerasio2020 vectorizer (post-padding), for a trainable or random embedding (the optimizer
    step on its sparse gradient would differ, see the module docstring) and for ``blog_flatten`` when its
    MaxPooling1D(35) would see other than 35 conv3 steps (then it has several windows, or drops trailing steps).
    """
    if config.vectorizer != "keras2" or config.embedding != "frozen":
        return False
    if config.architecture == "blog_flatten":
        return config_module.final_conv_steps(config.sequence_length) == 35
    return True


@dataclasses.dataclass(frozen=True)
class Geometry:
    """Lengths of each stage for a padded length, and how many leading positions are surely constant.

    ``pool1`` and ``pool2`` are the MaxPooling1D(5) output lengths; ``steps`` the third conv's.
    """

    sequence_length: int

    @property
    def pool1(self) -> int:
        return (self.sequence_length - (KERNEL - 1)) // KERNEL

    @property
    def pool2(self) -> int:
        return (self.pool1 - (KERNEL - 1)) // KERNEL

    @property
    def steps(self) -> int:
        return self.pool2 - (KERNEL - 1)

    def constant_pool1(self, leading_padding: np.ndarray) -> np.ndarray:
        """Pool1 positions that are surely ``c1`` for documents with ``leading_padding`` pad ids in front.

        Pool1 position j pools conv1 outputs 5j..5j+4, whose windows reach token 5j+8: all padding iff
        5j + 8 < leading_padding. The result is capped so that every stage keeps at least one step.
        """
        constant = np.maximum((np.asarray(leading_padding) - (KERNEL - 1)) // KERNEL, 0)
        return np.minimum(constant, self.pool1 - 1)

    def constant_pool2(self, constant_pool1: int) -> int:
        """Pool2 positions that are surely ``c2`` when the first ``constant_pool1`` pool1 positions are ``c1``."""
        return int(min(max((constant_pool1 - (KERNEL - 1)) // KERNEL, 0), self.pool2 - 1))


def leading_padding(token_ids: np.ndarray) -> np.ndarray:
    """Number of leading padding ids per row.

    Parameters
    ----------
    token_ids : np.ndarray of int, shape (documents, sequence_length)

    Returns
    -------
    np.ndarray of int64, shape (documents,)
        The sequence length for an all-padding (empty) document.
    """
    real = token_ids != PADDING_ID
    first = real.argmax(axis=1).astype(np.int64)
    first[~real.any(axis=1)] = token_ids.shape[1]
    return first


def tier_bounds(widths: np.ndarray, tiers: int) -> list[tuple[int, int]]:
    """Split ``widths`` (ascending) into ``tiers`` contiguous non-empty groups of least padded work.

    A group [i, j) costs ``(j - i) * widths[j - 1]`` (every member runs at the group's widest length);
    dynamic programming over the sorted widths finds the exact minimum.

    Parameters
    ----------
    widths : np.ndarray, shape (documents,)
        Tokens each document needs, ascending.
    tiers : int
        Number of groups; fewer when there are fewer documents.

    Returns
    -------
    list of (start, stop) index pairs into ``widths``, covering it in order.
    """
    count = len(widths)
    tiers = max(1, min(tiers, count))
    ends = np.arange(count + 1)
    widths = np.asarray(widths, dtype=np.float64)
    # cost[i, j]: documents i..j-1 as one group (infinite where j <= i).
    cost = np.full((count + 1, count + 1), np.inf)
    upper = np.triu_indices(count + 1, k=1)
    cost[upper] = (upper[1] - upper[0]) * widths[upper[1] - 1]
    best = cost[0].copy()
    choices = []
    for _ in range(tiers - 1):
        total = best[:, None] + cost
        choices.append(total.argmin(axis=0))
        best = total.min(axis=0)
    bounds, stop = [], count
    for choice in reversed(choices):
        start = int(choice[stop])
        bounds.append((start, stop))
        stop = start
    bounds.append((0, stop))
    assert ends[-1] == count and bounds[0][1] == count
    return bounds[::-1]


def plan_tiers(padding: np.ndarray, geometry: Geometry, tiers: int) -> list[tuple[np.ndarray, int]]:
    """Group a batch's documents into length tiers of least padded work.

    Parameters
    ----------
    padding : np.ndarray of int, shape (documents,)
        Leading padding ids per document (``leading_padding``).
    geometry : Geometry
    tiers : int

    Returns
    -------
    list of (members, constant_pool1): row indices into the batch, and the pool1 positions that are constant
    for all of them; the tier runs on tokens ``5 * constant_pool1`` onward.
    """
    # Rounding a1 down to a multiple of 5 keeps more (still exact) and leaves ~40 distinct tail lengths,
    # so the convolution kernels see few distinct shapes.
    constant = (geometry.constant_pool1(padding) // KERNEL) * KERNEL
    order = np.argsort(-constant, kind="stable")
    widths = geometry.sequence_length - KERNEL * constant[order]
    return [(order[start:stop], int(constant[order[start:stop]].min()))
            for start, stop in tier_bounds(widths, tiers)]


@dataclasses.dataclass
class _Layers:
    """The model's layers in call order, found by type (the structure ``trainer.model`` builds)."""

    embedding: keras.layers.Layer
    convs: list
    pools: list
    dense: keras.layers.Layer
    dropout: keras.layers.Layer | None
    classes: keras.layers.Layer


def _find_layers(model: keras.Model) -> _Layers:
    by_type: dict[str, list] = {}
    for layer in model.layers:
        by_type.setdefault(type(layer).__name__, []).append(layer)
    convs, pools, dense = by_type.get("Conv1D", []), by_type.get("MaxPooling1D", []), by_type.get("Dense", [])
    if len(convs) != 3 or len(pools) not in (2, 3) or len(dense) != 2 or len(by_type.get("Embedding", [])) != 1:
        raise ValueError(f"{model.name}: not the blog's Embedding + 3 x Conv1D stack the fast path computes; "
                         f"use compute_path='keras'")
    dropout = by_type.get("Dropout", [None])[0]
    return _Layers(embedding=by_type["Embedding"][0], convs=convs, pools=pools[:2], dense=dense[0],
                   dropout=dropout, classes=dense[1])


_TIER_SPEC = (tf.TensorSpec([None, None], tf.int32),  # token ids from 5 * a1 on
              tf.TensorSpec([], tf.int32),  # copies of c1 in front of the pool1 tail
              tf.TensorSpec([], tf.int32),  # copies of c2 in front of the pool2 tail
              tf.TensorSpec([], tf.bool))  # some conv3 output was left out: it equals c3


class FastPath:
    """Training step and evaluation of a built ``trainer.model`` network over its padding-free tails.

    Parameters
    ----------
    model : keras.Model
        Built and compiled by ``trainer.model.build_model``; its variables and optimizer are used as they are,
        so checkpoints are the same as the Keras path's.
    sequence_length : int
        Padded length of the rows it will see, in tokens.
    tiers : int
        Length tiers per training batch.
    """

    def __init__(self, model: keras.Model, sequence_length: int, *, tiers: int = DEFAULT_TIERS):
        self.model = model
        self.layers = _find_layers(model)
        self.geometry = Geometry(sequence_length)
        self.tiers = tiers
        # sparse_categorical_crossentropy and "acc" as model.compile resolves them (trainer/model.py).
        self.loss_function = keras.losses.SparseCategoricalCrossentropy()
        self._steps: dict[int, tf.types.experimental.GenericFunction] = {}
        self._predict = tf.function(self._probabilities_of_tier, input_signature=_TIER_SPEC)

    # ------------------------------------------------------------------ the network, tail by tail
    def _constants(self):
        """``(c1, c2, c3)``, each of shape (1, 1, 128): the stage outputs over all-padding windows."""
        conv1, conv2, conv3 = self.layers.convs
        padding = tf.fill([1, KERNEL], tf.constant(PADDING_ID, tf.int32))
        constant1 = conv1(self.layers.embedding(padding))
        constant2 = conv2(tf.tile(constant1, [1, KERNEL, 1]))
        constant3 = conv3(tf.tile(constant2, [1, KERNEL, 1]))
        return constant1, constant2, constant3

    def _tier_features(self, tier, constants):
        """Pooled conv3 features, shape (documents, 128), of one tier (see ``_TIER_SPEC``)."""
        tokens, copies1, copies2, with_constant3 = tier
        constant1, constant2, constant3 = constants
        conv1, conv2, conv3 = self.layers.convs
        pool1, pool2 = self.layers.pools
        tensor = pool1(conv1(self.layers.embedding(tokens)))
        documents = tf.shape(tensor)[0]
        tensor = tf.concat([tf.tile(constant1, [documents, copies1, 1]), tensor], axis=1)
        tensor = pool2(conv2(tensor))
        tensor = tf.concat([tf.tile(constant2, [documents, copies2, 1]), tensor], axis=1)
        tensor = tf.reduce_max(conv3(tensor), axis=1)
        return tf.where(with_constant3, tf.maximum(tensor, constant3[0]), tensor)

    def _head(self, features, training: bool):
        """Dense(128, relu) [+ Dropout] + Dense(classes, softmax) on pooled features (documents, 128)."""
        tensor = self.layers.dense(features)
        if self.layers.dropout is not None:
            tensor = self.layers.dropout(tensor, training=training)
        return self.layers.classes(tensor)

    def _probabilities_of_tier(self, tokens, copies1, copies2, with_constant3):
        features = self._tier_features((tokens, copies1, copies2, with_constant3), self._constants())
        return self._head(features, training=False)

    def _loss_and_gradients(self, tiers, restore, labels):
        """Mean loss, probabilities (batch order) and the gradients of ``model.trainable_variables``."""
        trainable = self.model.trainable_variables
        with tf.GradientTape() as tape:
            constants = self._constants()
            features = tf.concat([self._tier_features(tier, constants) for tier in tiers], axis=0)
            # Back to batch order, so Dropout's mask and the loss's sum see the batch as drawn.
            probabilities = self._head(tf.gather(features, restore), training=True)
            loss = self.loss_function(labels, probabilities)
        return loss, probabilities, tape.gradient(loss, trainable)

    def _train_step(self, tiers, restore, labels):
        """One RMSprop step on a batch given as tiers; returns (mean loss, correct predictions)."""
        loss, probabilities, gradients = self._loss_and_gradients(tiers, restore, labels)
        self.model.optimizer.apply_gradients(zip(gradients, self.model.trainable_variables))
        correct = tf.reduce_sum(keras.metrics.sparse_categorical_accuracy(labels, probabilities))
        return loss, correct

    def _step_function(self, tiers: int):
        if tiers not in self._steps:
            signature = [tuple([_TIER_SPEC] * tiers), tf.TensorSpec([None], tf.int32), tf.TensorSpec([None], tf.int64)]
            self._steps[tiers] = tf.function(self._train_step, input_signature=signature)
        return self._steps[tiers]

    # ------------------------------------------------------------------ host side: tiers of a batch
    def _tier(self, token_ids: np.ndarray, constant_pool1: int):
        """Tensors of one tier whose documents all have at least ``constant_pool1`` constant pool1 positions."""
        constant_pool2 = self.geometry.constant_pool2(constant_pool1)
        # Conv3 output q reads pool2 q..q+4: it is c3 when q + 4 < constant_pool2.
        constant_steps = max(constant_pool2 - (KERNEL - 1), 0)
        return (tf.constant(token_ids[:, KERNEL * constant_pool1:], tf.int32),
                tf.constant(constant_pool1 - KERNEL * constant_pool2, tf.int32),
                tf.constant(constant_pool2 - constant_steps, tf.int32),
                tf.constant(constant_steps > 0))

    def plan(self, token_ids: np.ndarray, padding: np.ndarray, tiers: int):
        """Split a batch into length tiers (``plan_tiers``) and make their tensors.

        Parameters
        ----------
        token_ids : np.ndarray of int32, shape (documents, sequence_length)
        padding : np.ndarray of int, shape (documents,)
            Leading padding ids per document (``leading_padding``).
        tiers : int

        Returns
        -------
        (tuple of tier tensors, restore) where ``restore`` (int32, documents) puts the tiers' concatenated
        rows back in batch order.
        """
        parts, order = [], []
        for members, constant_pool1 in plan_tiers(padding, self.geometry, tiers):
            parts.append(self._tier(token_ids[members], constant_pool1))
            order.append(members)
        order = np.concatenate(order)
        restore = np.empty(len(order), dtype=np.int32)
        restore[order] = np.arange(len(order), dtype=np.int32)
        return tuple(parts), tf.constant(restore)

    # ------------------------------------------------------------------ public: an epoch, an evaluation
    def train_epoch(self, x: np.ndarray, y: np.ndarray, batch_size: int) -> dict[str, float]:
        """One pass over ``x`` in the given order, one optimizer step per ``batch_size`` rows.

        Parameters
        ----------
        x : np.ndarray of int32, shape (documents, sequence_length)
        y : np.ndarray of int64, shape (documents,)
        batch_size : int

        Returns
        -------
        dict
            ``loss`` (mean of the batch losses weighted by batch size, as Keras' ``fit`` reports it) and
            ``acc`` (fraction of documents predicted right at their step).
        """
        if not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        padding = leading_padding(x)
        losses, corrects = [], []
        for start in range(0, len(x), batch_size):
            rows = slice(start, start + batch_size)
            tiers, restore = self.plan(x[rows], padding[rows], self.tiers)
            loss, correct = self._step_function(len(tiers))(tiers, restore, tf.constant(y[rows], tf.int64))
            losses.append(loss * len(y[rows]))
            corrects.append(correct)
        return {"loss": float(np.sum([value.numpy() for value in losses], dtype=np.float64) / len(x)),
                "acc": float(np.sum([value.numpy() for value in corrects], dtype=np.float64) / len(x))}

    def gradients(self, x: np.ndarray, y: np.ndarray):
        """Training-mode loss, probabilities and gradients of one batch, without a step (for checks).

        Returns
        -------
        (loss, probabilities of shape (documents, classes), list of gradients in ``model.trainable_variables``
        order; a trainable embedding's as ``tf.IndexedSlices``)
        """
        tiers, restore = self.plan(x, leading_padding(x), self.tiers)
        return self._loss_and_gradients(tiers, restore, tf.constant(y, tf.int64))

    def predict(self, x: np.ndarray, batch_size: int) -> np.ndarray:
        """Class probabilities, shape (documents, classes), in inference mode (no dropout).

        Documents are sorted by length and run ``batch_size`` at a time, each batch truncated to its longest.
        """
        padding = leading_padding(x)
        constant = (self.geometry.constant_pool1(padding) // KERNEL) * KERNEL
        order = np.argsort(-constant, kind="stable")
        chunks = []
        for start in range(0, len(order), batch_size):
            members = order[start:start + batch_size]
            chunks.append(self._predict(*self._tier(x[members], int(constant[members].min()))).numpy())
        probabilities = np.empty((len(x), chunks[0].shape[1]), dtype=np.float32)
        probabilities[order] = np.concatenate(chunks)
        return probabilities

    def evaluate(self, x: np.ndarray, y: np.ndarray, batch_size: int) -> dict[str, float]:
        """``loss`` (mean sparse categorical cross-entropy) and ``acc`` over ``(x, y)``, as Keras evaluates."""
        probabilities = self.predict(x, batch_size)
        losses = keras.losses.sparse_categorical_crossentropy(y, probabilities)
        correct = keras.metrics.sparse_categorical_accuracy(y, probabilities)
        return {"loss": float(np.mean(np.asarray(losses), dtype=np.float64)),
                "acc": float(np.mean(np.asarray(correct), dtype=np.float64))}
