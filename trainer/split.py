"""Split one 20 Newsgroups version for training: keep the first N posts per group, strip headers, optionally
dedup, split into training and validation, and measure what the split leaks (duplicates across the split,
header lines that name the label). Reading the archives is ``trainer.data``'s job.
"""

from __future__ import annotations

import dataclasses
import logging
import os

import numpy as np

from trainer import config as config_module
from trainer import data as data_module
from trainer import headers

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, eq=False)
class Split:
    """Training and validation texts with labels, plus what the split measured.

    ``train_labels`` and ``val_labels`` are int64 arrays of shape (N,) holding indices into
    ``label_names`` (the sorted group names). ``leakage`` is the fraction (0..1) of validation documents
    whose normalised stripped text also occurs in training. ``leak_fraction_train`` and ``leak_fraction_val``
    are the fractions (0..1) of training and validation documents whose stripped text still holds a
    header line that names their own group (``label_header_fraction``): the label, readable in the input.
    """

    train_texts: list[str]
    train_labels: np.ndarray
    train_ids: list[str]
    val_texts: list[str]
    val_labels: np.ndarray
    val_ids: list[str]
    label_names: list[str]
    leakage: float
    leak_fraction_train: float
    leak_fraction_val: float
    dropped_duplicates: int
    archive_sha256: str
    source: str


def make_split(
    config: config_module.TrainerConfig,
    *,
    data_home: str | os.PathLike | None = None,
    download_if_missing: bool = True,
    reader: data_module.ArchiveReader | None = None,
) -> Split:
    """Load, strip, optionally dedup and split the dataset the config names.

    Steps: resolve and load the documents (through ``reader`` when given, so several splits of one archive
    read it once); keep the first ``documents_per_group`` of each group per
    subset (load order); strip with ``config.strip``; with ``config.dedup`` drop documents whose
    normalised stripped text equals an earlier one's (load order); then split. ``19997``/``18828``, and
    ``bydate`` with ``validation="split"`` (its train files only), use the blog's split: shuffle the load
    order with ``numpy.random.default_rng(config.effective_split_seed).permutation`` and hold out the last
    ``int(validation_split * N)`` documents. ``bydate`` with ``validation="auto"`` trains on the official
    train files and validates on the test files, both in load order.

    Returns
    -------
    Split
        Deterministic for a given config and source.

    Raises
    ------
    OSError
        When the data cannot be found or downloaded (see ``resolve_dataset``).
    ValueError
        When too few documents remain to hold any out for validation.
    """
    source = data_module.resolve_dataset(config.dataset, data_path=config.data_path, data_home=data_home,
                             download_if_missing=download_if_missing)
    documents = (reader or data_module.ArchiveReader()).documents(source, config.dataset)
    if config.documents_per_group > 0:
        documents = _first_per_group(documents, config.documents_per_group)
    texts = [headers.strip_text(document.text, config.strip) for document in documents]
    keys = [headers.normalise_text(text) for text in texts]
    label_names = sorted({document.group for document in documents})
    label_of = {name: index for index, name in enumerate(label_names)}

    dropped_duplicates = 0
    kept = list(range(len(documents)))
    if config.dedup:
        seen: set[str] = set()
        kept = []
        for index, key in enumerate(keys):
            if key in seen:
                dropped_duplicates += 1
            else:
                seen.add(key)
                kept.append(index)

    if config.dataset == "bydate" and config.validation == "auto":
        train_indices = [index for index in kept if documents[index].subset == "train"]
        val_indices = [index for index in kept if documents[index].subset == "test"]
    else:
        # bydate in split mode splits its train files only; the test files are not used.
        pool = [index for index in kept if documents[index].subset in ("all", "train")]
        # Keras blog: indices = np.arange(N); np.random.shuffle(indices) (unseeded there, seeded here).
        order = np.random.default_rng(config.effective_split_seed).permutation(len(pool))
        pool = [pool[position] for position in order]
        # Keras blog: nb_validation_samples = int(VALIDATION_SPLIT * data.shape[0]); x_val = data[-nb:].
        num_val = int(config.validation_split * len(pool))
        if num_val == 0 or num_val == len(pool):
            raise ValueError(f"{len(pool)} documents with validation_split={config.validation_split} leave "
                             f"{num_val} for validation; raise documents_per_group or validation_split")
        train_indices, val_indices = pool[:len(pool) - num_val], pool[len(pool) - num_val:]
    if not train_indices or not val_indices:
        raise ValueError(f"split of {source} has {len(train_indices)} training and {len(val_indices)} "
                         f"validation documents; both must be non-empty")

    train_keys = {keys[index] for index in train_indices}
    leakage = sum(keys[index] in train_keys for index in val_indices) / len(val_indices)
    train_texts = [texts[index] for index in train_indices]
    train_labels = np.array([label_of[documents[index].group] for index in train_indices], dtype=np.int64)
    val_texts = [texts[index] for index in val_indices]
    val_labels = np.array([label_of[documents[index].group] for index in val_indices], dtype=np.int64)
    split = Split(
        train_texts=train_texts,
        train_labels=train_labels,
        train_ids=[documents[index].doc_id for index in train_indices],
        val_texts=val_texts,
        val_labels=val_labels,
        val_ids=[documents[index].doc_id for index in val_indices],
        label_names=label_names,
        leakage=float(leakage),
        leak_fraction_train=float(headers.label_header_fraction(train_texts, train_labels, label_names)),
        leak_fraction_val=float(headers.label_header_fraction(val_texts, val_labels, label_names)),
        dropped_duplicates=dropped_duplicates,
        archive_sha256=data_module.source_sha256(source),
        source=str(source),
    )
    logger.info("dataset %s from %s: %d train, %d validation, %d groups, leakage %.4f, label header in %.4f of "
                "train and %.4f of validation, %d duplicates dropped", config.dataset, source, len(train_indices),
                len(val_indices), len(label_names), leakage, split.leak_fraction_train, split.leak_fraction_val,
                dropped_duplicates)
    return split


def _first_per_group(documents: list[data_module.Document], limit: int) -> list[data_module.Document]:
    """Keep the first ``limit`` documents (load order) of each (subset, group)."""
    counts: dict[tuple[str, str], int] = {}
    kept = []
    for document in documents:
        key = (document.subset, document.group)
        if counts.get(key, 0) < limit:
            counts[key] = counts.get(key, 0) + 1
            kept.append(document)
    return kept
