"""Keras ``pad_sequences`` for token ids stored concatenated, as the vectorizers produce them.

Same output as keras-preprocessing 1.1.x ``sequence.pad_sequences`` (Keras 3: ``keras.utils.pad_sequences``,
the tests' reference) without building one Python list per document.
"""

from __future__ import annotations

from typing import Any

import numpy as np

PADDING_CHOICES = ("pre", "post")


def check_padding(padding: str, truncating: str) -> None:
    if padding not in PADDING_CHOICES:
        raise ValueError(f"padding={padding!r} is not allowed; allowed values: 'pre', 'post'")
    if truncating not in PADDING_CHOICES:
        raise ValueError(f"truncating={truncating!r} is not allowed; allowed values: 'pre', 'post'")


def pad_flat(
    flat: np.ndarray,
    lengths: np.ndarray,
    maxlen: int,
    *,
    padding: str = "pre",
    truncating: str = "pre",
    value: int | float = 0,
    dtype: Any = "int32",
) -> np.ndarray:
    """Keras ``pad_sequences`` for sequences stored concatenated in ``flat`` with per-sequence ``lengths``.

    Parameters
    ----------
    flat : np.ndarray of int, shape (sum(lengths),)
        Token ids of every sequence, concatenated.
    lengths : np.ndarray of int, shape (num_sequences,)
        Tokens per sequence.
    maxlen : int
        Output length in steps.
    padding, truncating : {'pre', 'post'}
        Where padding is added and where overlong sequences are cut (Keras default 'pre' for both).
    value : number
        Padding value.
    dtype : numpy dtype
        Output dtype (Keras default 'int32').

    Returns
    -------
    np.ndarray, shape (len(lengths), maxlen)
    """
    check_padding(padding, truncating)
    lengths = np.asarray(lengths, dtype=np.int64)
    output = np.full((len(lengths), maxlen), value, dtype=dtype)
    kept = np.minimum(lengths, maxlen)
    ends = np.cumsum(lengths)
    # keras_preprocessing/sequence.py: 'pre' truncation keeps s[-maxlen:], 'post' keeps s[:maxlen].
    starts = ends - kept if truncating == "pre" else ends - lengths
    flat = np.asarray(flat)
    for row, (start, count) in enumerate(zip(starts.tolist(), kept.tolist())):
        if not count:
            continue  # Keras: an empty sequence stays all padding.
        if padding == "pre":
            output[row, maxlen - count:] = flat[start:start + count]
        else:
            output[row, :count] = flat[start:start + count]
    return output
