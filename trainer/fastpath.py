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

Scope: the keras2 vectorizer (pre-padding), every embedding mode, and every architecture whose final pooling
covers all conv3 outputs (``global_max``, ``kerasio2020``, and ``blog_flatten`` where MaxPooling1D(35) sees
exactly 35 steps, i.e. 999-1023 tokens), with any ``filters``, ``dense_units`` and ``dropout`` (the layers are
used as built) but the blog's ``kernel_size`` 5 only: the padding slices rely on each conv window being exactly
one MaxPooling1D(5) window wide (``padding_slices``). ``fallback_reason`` names why elsewhere, and ``train()``
logs it and uses the Keras path: the kerasio2020 vectorizer post-pads (the constant part is a suffix, not handled
here).

A trainable (or random, hence trainable) embedding needs one step more. Its gradient is a ``tf.IndexedSlices``
with one slice per token position (the gradient of ``tf.gather``), and Keras' RMSprop squares each slice
before duplicate rows are summed (keras/src/optimizers/rmsprop.py ``update_step``: ``ops.square(gradient)``,
then ``ops.add`` densifies by summing per row), so the padding row's velocity is the sum of the squares of
its per-position slices, not the square of their sum. The fast path hands the optimizer the same multiset of
slices: the tails' slices come from the tape as on the Keras path, and the constant prefix's (tokens before
``5 * a1``) are computed from the gradients that reach each copy of ``c1``, ``c2`` and ``c3`` by following
Keras' own routing (``padding_slices``): MaxPooling1D's gradient goes to the first of equal values (TF's
MaxPoolGrad), so each constant pool window passes its gradient to its first conv output, whose five input
tokens get one slice each; GlobalMaxPooling1D (``reduce_max``) splits it equally among equal values, which
the trainable step reproduces by running the model's own final pooling layer over all conv3 steps with the
``c3`` copies in front. Keras computes the constant prefix bit for bit equal at every position, which is
what makes those ties exact (tests/test_fastpath.py checks both, and the slices against the Keras path's).
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from trainer import config as config_module
from trainer import padding_gradient
from trainer import tiers as tiers_module

DEFAULT_TIERS = 4


def fallback_reason(config: config_module.TrainerConfig) -> str:
    """Why the padding-skipping path does not compute this configuration's network; empty where it does.

    It does not for the kerasio2020 vectorizer (post-padding), for a ``kernel_size`` other than 5, and for
    ``blog_flatten`` when its MaxPooling1D(35) would see other than 35 conv3 steps (then it has several windows,
    or drops trailing steps). Every embedding mode is supported: a trainable one gets the Keras path's sparse
    gradient (see the module docstring); so are any ``filters``, ``dense_units`` and ``dropout``.
    """
    if config.vectorizer != "keras2":
        return f"vectorizer={config.vectorizer!r} post-pads; the fast path skips pre-padding only"
    if config.kernel_size != tiers_module.KERNEL:
        return (f"kernel_size={config.kernel_size}; the fast path's windows are Conv1D({tiers_module.KERNEL}) over "
                f"MaxPooling1D({tiers_module.KERNEL}) only")
    steps = config_module.final_conv_steps(config.sequence_length, config.kernel_size)
    if config.architecture == "blog_flatten" and steps != 35:
        return (f"architecture='blog_flatten' at max_sequence_length={config.sequence_length} gives MaxPooling1D(35) "
                f"{steps} steps, not one window of 35")
    return ""


def supports(config: config_module.TrainerConfig) -> bool:
    """Whether the padding-skipping path computes exactly this configuration's network (``fallback_reason``)."""
    return not fallback_reason(config)


@dataclasses.dataclass
class _Layers:
    """The model's layers in call order, found by type (the structure ``trainer.model`` builds)."""

    embedding: keras.layers.Layer
    convs: list
    pools: list
    dense: keras.layers.Layer
    dropout: keras.layers.Layer | None
    classes: keras.layers.Layer
    final_pool: keras.layers.Layer  # MaxPooling1D(35) (blog_flatten) or GlobalMaxPooling1D


def _find_layers(model: keras.Model) -> _Layers:
    by_type: dict[str, list] = {}
    for layer in model.layers:
        by_type.setdefault(type(layer).__name__, []).append(layer)
    convs, pools, dense = by_type.get("Conv1D", []), by_type.get("MaxPooling1D", []), by_type.get("Dense", [])
    final_pools = pools[2:] + by_type.get("GlobalMaxPooling1D", [])
    widths = {tuple(layer.kernel_size) for layer in convs} | {tuple(layer.pool_size) for layer in pools[:2]}
    if (len(convs) != 3 or len(pools) not in (2, 3) or len(final_pools) != 1 or len(dense) != 2
            or len(by_type.get("Embedding", [])) != 1 or widths != {(tiers_module.KERNEL,)}):
        raise ValueError(f"{model.name}: not the blog's Embedding + 3 x Conv1D(5) stack the fast path computes; "
                         f"use compute_path='keras'")
    dropout = by_type.get("Dropout", [None])[0]
    return _Layers(embedding=by_type["Embedding"][0], convs=convs, pools=pools[:2], dense=dense[0],
                   dropout=dropout, classes=dense[1], final_pool=final_pools[0])


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
        self.geometry = tiers_module.Geometry(sequence_length)
        self.tiers = tiers
        # sparse_categorical_crossentropy and "acc" as model.compile resolves them (trainer/model.py).
        self.loss_function = keras.losses.SparseCategoricalCrossentropy()
        # A trainable embedding's gradient is assembled slice by slice as the Keras path's (module docstring).
        self.sparse_embedding = self.layers.embedding.trainable
        self._steps: dict[int, tf.types.experimental.GenericFunction] = {}
        self._predict = tf.function(self._probabilities_of_tier, input_signature=_TIER_SPEC)

    # ------------------------------------------------------------------ the network, tail by tail
    def _constants(self, embedding_gradient: bool = True):
        """``(c1, c2, c3)``, each of shape (1, 1, filters): the stage outputs over all-padding windows.

        Without ``embedding_gradient`` the padding row reaches them as a constant: the trainable step adds its
        gradient itself, position by position (``padding_slices``).
        """
        conv1, conv2, conv3 = self.layers.convs
        padding = tf.fill([1, tiers_module.KERNEL], tf.constant(tiers_module.PADDING_ID, tf.int32))
        embedded = self.layers.embedding(padding)
        constant1 = conv1(embedded if embedding_gradient else tf.stop_gradient(embedded))
        constant2 = conv2(tf.tile(constant1, [1, tiers_module.KERNEL, 1]))
        constant3 = conv3(tf.tile(constant2, [1, tiers_module.KERNEL, 1]))
        return constant1, constant2, constant3

    def _tier_features(self, tier, constants):
        """Pooled conv3 features, shape (documents, filters), of one tier (see ``_TIER_SPEC``)."""
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

    def _tier_features_with_copies(self, tier, constants):
        """``_tier_features`` for the trainable step: (features (documents, filters), the constants' copies).

        The copies of ``c1``, ``c2`` and ``c3`` are returned so that their per-document gradients can be taken;
        the final pooling is the model's own layer over all conv3 steps, ``c3`` copies in front, so that equal
        maxima share the gradient as on the Keras path (the frozen step's ``tf.maximum`` gives it all to one).
        """
        tokens, copies1, copies2, _ = tier
        constant1, constant2, constant3 = constants
        conv1, conv2, conv3 = self.layers.convs
        pool1, pool2 = self.layers.pools
        tensor = pool1(conv1(self.layers.embedding(tokens)))
        documents = tf.shape(tensor)[0]
        copies = [tf.tile(constant1, [documents, copies1, 1])]
        tensor = pool2(conv2(tf.concat([copies[0], tensor], axis=1)))
        copies.append(tf.tile(constant2, [documents, copies2, 1]))
        tensor = conv3(tf.concat([copies[1], tensor], axis=1))
        copies.append(tf.tile(constant3, [documents, self.geometry.steps - tf.shape(tensor)[1], 1]))
        tensor = self.layers.final_pool(tf.concat([copies[2], tensor], axis=1))
        return tf.reshape(tensor, [-1, tensor.shape[-1]]), copies

    def _head(self, features, training: bool):
        """Dense(dense_units, relu) [+ Dropout] + Dense(classes, softmax) on pooled features (documents, filters)."""
        tensor = self.layers.dense(features)
        if self.layers.dropout is not None:
            tensor = self.layers.dropout(tensor, training=training)
        return self.layers.classes(tensor)

    def _probabilities_of_tier(self, tokens, copies1, copies2, with_constant3):
        features = self._tier_features((tokens, copies1, copies2, with_constant3), self._constants())
        return self._head(features, training=False)

    def _loss_and_gradients(self, tiers, restore, labels):
        """Mean loss, probabilities (batch order) and the gradients of ``model.trainable_variables``."""
        if self.sparse_embedding:
            return self._loss_and_sparse_gradients(tiers, restore, labels)
        trainable = self.model.trainable_variables
        with tf.GradientTape() as tape:
            constants = self._constants()
            features = tf.concat([self._tier_features(tier, constants) for tier in tiers], axis=0)
            # Back to batch order, so Dropout's mask and the loss's sum see the batch as drawn.
            probabilities = self._head(tf.gather(features, restore), training=True)
            loss = self.loss_function(labels, probabilities)
        return loss, probabilities, tape.gradient(loss, trainable)

    def _loss_and_sparse_gradients(self, tiers, restore, labels):
        """``_loss_and_gradients`` with a trainable embedding: its gradient holds the Keras path's slices."""
        trainable = self.model.trainable_variables
        with tf.GradientTape() as tape:
            constants = self._constants(embedding_gradient=False)
            outputs = [self._tier_features_with_copies(tier, constants) for tier in tiers]
            features = tf.concat([tier_features for tier_features, _ in outputs], axis=0)
            probabilities = self._head(tf.gather(features, restore), training=True)
            loss = self.loss_function(labels, probabilities)
        copies = [copy for _, tier_copies in outputs for copy in tier_copies]
        gradients = tape.gradient(loss, list(trainable) + copies,
                                  unconnected_gradients=tf.UnconnectedGradients.ZERO)
        gradients, copy_gradients = gradients[:len(trainable)], gradients[len(trainable):]
        kernels = [tf.convert_to_tensor(conv.kernel) for conv in self.layers.convs]
        prefix = [padding_gradient.padding_slices(copy_gradients[index:index + 3], constants, kernels)
                  for index in range(0, len(copy_gradients), 3)]
        [position] = [index for index, variable in enumerate(trainable)
                      if variable is self.layers.embedding.embeddings]
        # The tape's slices cover the tails' tokens; the prefix's padding tokens are all row tiers_module.PADDING_ID.
        tails = gradients[position]
        values = tf.concat([tails.values] + prefix, axis=0)
        padding = tf.fill([tf.shape(values)[0] - tf.shape(tails.values)[0]],
                          tf.constant(tiers_module.PADDING_ID, tails.indices.dtype))
        gradients[position] = tf.IndexedSlices(values, tf.concat([tails.indices, padding], axis=0),
                                               tails.dense_shape)
        return loss, probabilities, gradients

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
        constant_steps = max(constant_pool2 - (tiers_module.KERNEL - 1), 0)
        return (tf.constant(token_ids[:, tiers_module.KERNEL * constant_pool1:], tf.int32),
                tf.constant(constant_pool1 - tiers_module.KERNEL * constant_pool2, tf.int32),
                tf.constant(constant_pool2 - constant_steps, tf.int32),
                tf.constant(constant_steps > 0))

    def plan(self, token_ids: np.ndarray, padding: np.ndarray, tiers: int):
        """Split a batch into length tiers (``tiers_module.plan_tiers``) and make their tensors.

        Parameters
        ----------
        token_ids : np.ndarray of int32, shape (documents, sequence_length)
        padding : np.ndarray of int, shape (documents,)
            Leading padding ids per document (``tiers_module.leading_padding``).
        tiers : int

        Returns
        -------
        (tuple of tier tensors, restore) where ``restore`` (int32, documents) puts the tiers' concatenated
        rows back in batch order.
        """
        parts, order = [], []
        for members, constant_pool1 in tiers_module.plan_tiers(padding, self.geometry, tiers):
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
        padding = tiers_module.leading_padding(x)
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
        tiers, restore = self.plan(x, tiers_module.leading_padding(x), self.tiers)
        return self._loss_and_gradients(tiers, restore, tf.constant(y, tf.int64))

    def predict(self, x: np.ndarray, batch_size: int) -> np.ndarray:
        """Class probabilities, shape (documents, classes), in inference mode (no dropout).

        Documents are sorted by length and run ``batch_size`` at a time, each batch truncated to its longest.
        """
        padding = tiers_module.leading_padding(x)
        constant = (self.geometry.constant_pool1(padding) // tiers_module.KERNEL) * tiers_module.KERNEL
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
