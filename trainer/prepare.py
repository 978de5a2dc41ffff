"""Everything before the model: split, vectorize, embedding matrix, through a content-hash cache.

A cache entry holds the padded id arrays, the labels and the embedding matrix for one combination of
(archive content, stripping, split, seed when it shapes the split, dedup, vectorizer, GloVe content, sizing).
Entries are written to a temporary folder and renamed into place (never half-written), built under a file
lock (two trials on one node build an entry once), and verified against the SHA-256 of every array before
use: a corrupt entry is rebuilt, never trusted.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import pathlib
import shutil
import time
from typing import Any

import filelock
import numpy as np

from trainer import config as config_module
from trainer import data as data_module
from trainer import embeddings as embeddings_module
from trainer import paths
from trainer import split as split_module
from trainer import vectorizer as vectorizer_module

logger = logging.getLogger(__name__)

# Bump when the code that fills an entry changes meaning, so old entries are never reused.
# 4: stats gained leak_fraction_train/val (label-bearing header lines) and num_classes.
CACHE_VERSION = 4
ARRAY_NAMES = ("x_train", "y_train", "x_val", "y_val", "embedding_matrix")


@dataclasses.dataclass
class Prepared:
    """Model-ready arrays for one trainer configuration.

    Attributes
    ----------
    x_train, x_val : np.ndarray of int32, shape (documents, sequence_length)
        Padded token ids; every id is < ``matrix_rows``.
    y_train, y_val : np.ndarray of int64, shape (documents,)
        Label indices into ``label_names``.
    embedding_matrix : np.ndarray of float32, shape (matrix_rows, glove_dim), or None
        Pretrained rows; None for ``embedding="random"``.
    matrix_rows : int
        Rows of the embedding layer.
    label_names : list of str
        Newsgroup names, sorted.
    stats : dict
        Leakage, label-header fractions (``leak_fraction_train``, ``leak_fraction_val``), GloVe coverage,
        out-of-range id count, sizes and provenance (see docs/DESIGN.md).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    embedding_matrix: np.ndarray | None
    matrix_rows: int
    label_names: list[str]
    stats: dict[str, Any]

    @property
    def num_classes(self) -> int:
        return len(self.label_names)


def cache_key(config: config_module.TrainerConfig, *, archive_sha256: str, glove_sha256: str) -> str:
    """Content hash of everything that shapes a cache entry (hex, 24 characters).

    The items come from each factor's own declaration in ``trainer.config.FACTORS`` (no hand list here), so a
    new data-shaping factor can never be forgotten and give a stale cache hit.
    """
    shaping = {"version": CACHE_VERSION,
               **config.data_key_items({"archive_sha256": archive_sha256, "glove_sha256": glove_sha256})}
    return hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:24]


def prepare(
    config: config_module.TrainerConfig,
    *,
    data_home: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    download_if_missing: bool = True,
    reader: data_module.ArchiveReader | None = None,
) -> Prepared:
    """Build (or load from the node's cache) the arrays one trial trains on.

    ``reader`` (a ``trainer.data.ArchiveReader``) lets several calls share one read of their archive; a
    cache hit reads nothing.

    Raises
    ------
    OSError
        When the dataset or GloVe files are absent and downloads are off (or fail).
    """
    started = time.perf_counter()
    source = data_module.resolve_dataset(config.dataset, data_path=config.data_path, data_home=data_home,
                                         download_if_missing=download_if_missing)
    archive_sha256 = data_module.source_sha256(source)
    glove = None
    glove_sha256 = ""
    if config.embedding != "random":
        glove = embeddings_module.load_glove(config.glove_dim, glove_path=config.glove_path, data_home=data_home,
                                             cache_dir=cache_dir, download_if_missing=download_if_missing)
        glove_sha256 = glove.sha256
    key = cache_key(config, archive_sha256=archive_sha256, glove_sha256=glove_sha256)
    entry = paths.cache_home(cache_dir) / "prepared" / key
    with filelock.FileLock(str(entry) + ".lock", timeout=600):
        prepared = _load_entry(entry)
        cache_hit = prepared is not None
        if prepared is None:
            prepared = _build(config, data_home=data_home, download_if_missing=download_if_missing, glove=glove,
                              reader=reader)
            prepared.stats.update(archive_sha256=archive_sha256, glove_source=glove.source if glove else "random",
                                  glove_sha256=glove_sha256)
            _write_entry(entry, prepared)
    prepared.stats.update(cache_key=key, cache_hit=cache_hit, source=str(source),
                          prepare_seconds=round(time.perf_counter() - started, 3))
    return prepared


def _build(config, *, data_home, download_if_missing, glove, reader=None) -> Prepared:
    split = split_module.make_split(config, data_home=data_home, download_if_missing=download_if_missing,
                                   reader=reader)
    official = config.dataset == "bydate" and config.validation == "auto"
    vectorized = vectorizer_module.vectorize(config, split.train_texts, split.val_texts,
                                             fit_order=corpus_order(split, official=official))
    rows = embeddings_module.matrix_rows(vectorized.word_index, config.num_words, config.sizing)
    matrix = None
    embedding_stats: dict[str, Any] = {"glove_found": 0, "glove_coverage": float("nan")}
    if glove is not None:
        matrix, embedding_stats = embeddings_module.build_embedding_matrix(
            vectorized.word_index, glove, num_words=config.num_words, sizing=config.sizing, dim=config.glove_dim)
        assert matrix.shape[0] == rows, (matrix.shape, rows)
    x_train, out_of_range_train = embeddings_module.clip_out_of_range(vectorized.x_train, rows)
    x_val, out_of_range_val = embeddings_module.clip_out_of_range(vectorized.x_val, rows)
    if out_of_range_train or out_of_range_val:
        # TensorFlow raises on CPU but returns zeros on GPU for such ids; both devices now see row 0.
        logger.warning("%d token ids fall outside the %d-row embedding matrix (sizing=%s); mapped to row 0",
                       out_of_range_train + out_of_range_val, rows, config.sizing)
    stats = {
        "leakage": float(split.leakage),
        "leak_fraction_train": float(split.leak_fraction_train),
        "leak_fraction_val": float(split.leak_fraction_val),
        "glove_coverage": float(embedding_stats["glove_coverage"]),
        "glove_found": int(embedding_stats["glove_found"]),
        "out_of_range_ids": int(out_of_range_train + out_of_range_val),
        "vocabulary_size": int(vectorized.vocabulary_size),
        "matrix_rows": int(rows),
        "num_train": int(len(x_train)),
        "num_val": int(len(x_val)),
        "dropped_duplicates": int(split.dropped_duplicates),
        "num_classes": int(len(split.label_names)),
    }
    return Prepared(
        x_train=np.ascontiguousarray(x_train, dtype=np.int32),
        y_train=np.asarray(split.train_labels, dtype=np.int64),
        x_val=np.ascontiguousarray(x_val, dtype=np.int32),
        y_val=np.asarray(split.val_labels, dtype=np.int64),
        embedding_matrix=None if matrix is None else np.asarray(matrix, dtype=np.float32),
        matrix_rows=int(rows),
        label_names=list(split.label_names),
        stats=stats,
    )


def corpus_order(split: split_module.Split, *, official: bool) -> list[int]:
    """Positions in ``train + val`` in the order the blog read the corpus, before its shuffle.

    Keras blog (2016): ``for name in sorted(os.listdir(TEXT_DATA_DIR))`` then ``sorted(os.listdir(path))``;
    the tokenizer is fitted in that order and word-index ties keep first-seen order, so it decides which
    equally frequent words make the ``num_words`` cut. Subsets keep their order (bydate: train, then test).
    """
    subsets = [0] * len(split.train_ids) + [1 if official else 0] * len(split.val_ids)
    ids = list(split.train_ids) + list(split.val_ids)
    return sorted(range(len(ids)), key=lambda position: (subsets[position], *ids[position].split("/", 1)))


def _array_digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).data).hexdigest()


def _write_entry(entry: pathlib.Path, prepared: Prepared) -> None:
    """Write every array plus a manifest of their digests into a temp folder, then rename it into place."""
    temporary = entry.with_name(f".{entry.name}.{os.getpid()}.tmp")
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir(parents=True)
    digests = {}
    for name in ARRAY_NAMES:
        array = getattr(prepared, name)
        if array is None:
            continue
        np.save(temporary / f"{name}.npy", array)
        digests[name] = _array_digest(array)
    manifest = {"digests": digests, "matrix_rows": prepared.matrix_rows, "label_names": prepared.label_names,
                "stats": prepared.stats}
    (temporary / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
    shutil.rmtree(entry, ignore_errors=True)
    os.replace(temporary, entry)


def _load_entry(entry: pathlib.Path) -> Prepared | None:
    """Load and verify an entry; None (and the entry removed) when it is absent or corrupt."""
    if not entry.exists():
        return None
    try:
        manifest = json.loads((entry / "manifest.json").read_text())
        arrays = {}
        for name in ARRAY_NAMES:
            if name not in manifest["digests"]:
                arrays[name] = None
                continue
            array = np.load(entry / f"{name}.npy", allow_pickle=False)
            if _array_digest(array) != manifest["digests"][name]:
                raise ValueError(f"digest mismatch in {name}")
            arrays[name] = array
        return Prepared(matrix_rows=int(manifest["matrix_rows"]), label_names=list(manifest["label_names"]),
                        stats=dict(manifest["stats"]), **arrays)
    except (OSError, ValueError, KeyError, TypeError) as error:
        logger.warning("cache entry %s is corrupt (%s); rebuilding it", entry, error)
        shutil.rmtree(entry, ignore_errors=True)
        return None
