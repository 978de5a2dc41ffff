"""Which windows of a pre-padded batch are surely constant, and how a batch splits into length tiers (NumPy only).

The planning half of the padding-skipping compute path (``trainer.fastpath`` runs the TensorFlow half): for the
blog's Conv1D(5)/MaxPooling1D(5) stack, ``Geometry`` says how many pooled positions of a document's pre-padding
give the constant chain, and ``plan_tiers`` groups a batch's documents so that each tier runs truncated to its
longest member with the least work.
"""

from __future__ import annotations

import dataclasses

import numpy as np

PADDING_ID = 0
# Conv1D(filters, 5) and MaxPooling1D(5) of the blog's stack (trainer/model.py): the planning needs both 5 wide, so
# another kernel_size runs on the Keras path (trainer.fastpath.fallback_reason).
KERNEL = 5


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
