"""The Keras path's embedding-gradient slices of the constant padding prefix, for a trainable embedding.

``trainer.fastpath`` skips the padding prefix's windows; a trainable embedding still needs the per-position
slices the Keras path would hand RMSprop for padding row 0 (see ``trainer.fastpath``'s docstring for why the
slices, not their sum). This module follows the gradient down from the copies of the constants ``c1``, ``c2``,
``c3`` the way Keras routes it over the full padded row.
"""

from __future__ import annotations

import tensorflow as tf


def input_gradient(output_gradient, kernel):
    """Gradient of a 'valid', stride-1 Conv1D's input from its output's: (documents, steps + width - 1, in).

    ``output_gradient`` is (documents, steps, out) before the activation; ``kernel`` (width, in, out).
    """
    width = kernel.shape[0]
    return tf.add_n([tf.pad(tf.einsum("dso,io->dsi", output_gradient, kernel[offset]),
                            [[0, 0], [offset, width - 1 - offset], [0, 0]]) for offset in range(width)])


def padding_slices(copy_gradients, constants, kernels):
    """The Keras path's per-position embedding-gradient slices of one tier's constant prefix (row 0).

    Follows the gradient down from the copies of the constants the way the Keras path routes it over the full
    padded row: conv3 outputs ``0..n3-1`` (``c3``) pass it to pool2 positions ``0..n3+3``; each constant pool2
    window ``p`` (all equal to ``c2``) gives it to its first conv2 output ``5p`` (MaxPoolGrad takes the first
    maximum), which passes it to pool1 positions ``5p..5p+4``; each constant pool1 window ``j`` gives it to
    conv1 output ``5j``, whose five input tokens ``5j..5j+4`` are the slices. ReLU passes gradient where its
    output is positive. The windows' tokens do not overlap, so each position gets exactly one slice.

    Parameters
    ----------
    copy_gradients : (tensor, tensor, tensor)
        Loss gradients at the tier's copies of ``c1`` (documents, copies1, filters), ``c2`` (documents, copies2,
        filters) and ``c3`` (documents, n3, filters), where pool1 position ``a1 = 5 * a2 + copies1``, pool2 ``a2 = n3 +
        copies2`` (``FastPath._tier``).
    constants : (c1, c2, c3), each (1, 1, filters)
    kernels : the three Conv1D kernels, (5, in, filters)

    Returns
    -------
    tf.Tensor, shape (documents * 5 * a1, glove_dim)
        One slice per padding token before ``5 * a1``, document by document, in token order.
    """
    gradient1, gradient2, gradient3 = copy_gradients
    constant1, constant2, constant3 = constants
    kernel1, kernel2, kernel3 = kernels
    documents, copies3 = tf.shape(gradient3)[0], tf.shape(gradient3)[1]
    # Pool2 positions 0..a2-1: from the c3 copies through conv3, and from conv3 outputs >= n3 at the c2 copies.
    from_constant3 = input_gradient(gradient3 * tf.cast(constant3 > 0, gradient3.dtype), kernel3)
    pool2 = from_constant3[:, :copies3 + tf.shape(gradient2)[1]] + tf.pad(gradient2, [[0, 0], [copies3, 0], [0, 0]])
    # Pool2 window p -> conv2 output 5p -> pool1 positions 5p..5p+4, then the c1 copies' own gradients.
    pool1 = tf.einsum("dpo,mio->dpmi", pool2 * tf.cast(constant2 > 0, pool2.dtype), kernel2)
    pool1 = tf.concat([tf.reshape(pool1, [documents, -1, kernel2.shape[1]]), gradient1], axis=1)
    # Pool1 window j -> conv1 output 5j -> tokens 5j..5j+4.
    tokens = tf.einsum("djo,meo->djme", pool1 * tf.cast(constant1 > 0, pool1.dtype), kernel1)
    return tf.reshape(tokens, [-1, kernel1.shape[1]])
