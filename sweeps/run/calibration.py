"""What a plan times the Keras network on, and the timing: the data sets a sweep would prepare (resolved and
prepared through the cache, never downloaded; a stand-in of the same shape where a file is not here) and the
network's seconds per document, from two epochs on up to ``CALIBRATION_DOCUMENTS`` of its own documents, timed on
the second epoch (the first traces the graph), cached per CPU model, TensorFlow version and network shape.

``sweeps.run.plan`` (a grid's cells) and ``sweeps.run.plan_search`` (a search's distributions) both estimate from
these.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import time
from typing import Any

from sweeps.run import builtin
from sweeps.run import merging
from trainer import paths

CALIBRATION_DOCUMENTS = 1024
# Documents of each public archive (http://qwone.com/~jason/20Newsgroups/: 19997 and 18828 in one set,
# bydate 11314 train + 7532 test), for a plan whose archive is not on this machine.
PUBLISHED_DOCUMENTS = {"19997": 19997, "18828": 18828, "bydate": 18846}
PUBLISHED_TRAIN_DOCUMENTS = {"bydate": 11314}
GROUPS = 20
# The settings that shape an epoch's cost, as the calibration cache names them (a searched factor among them
# makes a search's cost a range, ``sweeps.run.plan_search``).
SHAPE_FACTORS = ("architecture", "max_sequence_length", "glove_dim", "embedding", "batch_size", "filters",
                 "kernel_size", "dense_units", "compute_path")


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else the platform's processor string."""
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def seconds_per_document(config, prepared, *, cpus: float = 1.0, cache_dir=None,
                         recalibrate: bool = False) -> tuple[float, bool]:
    """Training seconds per document per epoch (validation included) of ``config``'s network on the threads of a
    trial of ``cpus`` CPUs; (value, cached)."""
    import tensorflow as tf

    from trainer import train as train_module

    # A trial's network runs on its own CPUs' threads: timed on all cores, a 1-CPU trial looked up to 2x cheaper.
    # The trial's own set-up; where TensorFlow started earlier in this process it keeps its threads (all cores).
    builtin.configure_tensorflow(cpus)
    threads = tf.config.threading.get_intra_op_parallelism_threads() or (os.cpu_count() or 1)
    shape = {"cpu": cpu_model(), "tensorflow": tf.__version__, "threads": threads,
             "architecture": config.architecture,
             "sequence_length": config.sequence_length, "glove_dim": config.glove_dim,
             "embedding": config.embedding, "batch_size": config.batch_size,
             "compute": str(getattr(config, "compute_path", "keras")),
             # The network's sizes (issue 20 item 8) change its cost as much as its shape does.
             "filters": config.filters, "kernel_size": config.kernel_size, "dense_units": config.dense_units}
    key = hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:16]
    memo = paths.cache_home(cache_dir) / "calibration" / f"{key}.json"
    if memo.exists() and not recalibrate:
        return float(json.loads(memo.read_text())["seconds_per_document"]), True
    count = min(CALIBRATION_DOCUMENTS, len(prepared.x_train))
    subset = dataclasses.replace(prepared, x_train=prepared.x_train[:count], y_train=prepared.y_train[:count],
                                 x_val=prepared.x_val[:count // 4], y_val=prepared.y_val[:count // 4])
    history = train_module.train(config.replace(epochs=2), subset)
    value = history["epoch_seconds"][-1] / (count + count // 4)
    paths.atomic_write(memo, json.dumps({"seconds_per_document": value, **shape, "measured": time.time()}))
    return value, False


@dataclasses.dataclass(frozen=True)
class DataSet:
    """What the estimate of one data set needs: arrays to time the network on, and how many documents an
    epoch reads (train plus validation); ``content_digest`` is empty for a stand-in (its merges are unchecked)."""

    calibration: Any
    documents: int
    content_digest: str


def published_documents(config) -> int:
    """Documents an epoch reads (train plus validation) when the archive is not here: the published count."""
    if config.dataset == "bydate" and config.validation == "split":
        total = PUBLISHED_TRAIN_DOCUMENTS["bydate"]
    else:
        total = PUBLISHED_DOCUMENTS[config.dataset]
    if config.documents_per_group:
        total = min(total, GROUPS * config.documents_per_group * (2 if config.dataset == "bydate" else 1))
    return total


def stand_in(config, prepared=None):
    """A ``Prepared`` of ``config``'s shape for timing only: ``prepared``'s token ids (built without GloVe) with
    zero vectors, or random token ids when the archive is missing too."""
    import numpy as np

    from trainer import data as data_module
    from trainer import prepare as prepare_module

    glove_rows = None
    if prepared is not None:
        if config.embedding != "random":
            glove_rows = np.zeros((prepared.matrix_rows, config.glove_dim), dtype=np.float32)
        return dataclasses.replace(prepared, embedding_matrix=glove_rows)
    rows = config.num_words + 1
    generator = np.random.default_rng(0)
    count = CALIBRATION_DOCUMENTS + CALIBRATION_DOCUMENTS // 4
    tokens = generator.integers(1, rows, size=(count, config.sequence_length), dtype=np.int32)
    labels = generator.integers(0, GROUPS, size=count).astype(np.int64)
    if config.embedding != "random":
        glove_rows = np.zeros((rows, config.glove_dim), dtype=np.float32)
    return prepare_module.Prepared(x_train=tokens[:CALIBRATION_DOCUMENTS], y_train=labels[:CALIBRATION_DOCUMENTS],
                                   x_val=tokens[CALIBRATION_DOCUMENTS:], y_val=labels[CALIBRATION_DOCUMENTS:],
                                   embedding_matrix=glove_rows, matrix_rows=rows,
                                   label_names=list(data_module.NEWSGROUPS), stats={})


class DataSets:
    """The data sets of a plan, each prepared once (through the cache) or stood in for; nothing is downloaded.

    ``missing`` maps a file the sweep needs but this machine lacks to the trainer's reason; the configs it shapes
    are timed on a stand-in (``stand_in``) with the published document count.
    """

    def __init__(self, *, data_home=None, cache_dir=None):
        from trainer import data as data_module

        self.data_home, self.cache_dir = data_home, cache_dir
        self.archives: dict[tuple[str, str], tuple[str, str]] = {}
        self.glove: dict[tuple[int, str], str] = {}
        self.missing: dict[str, str] = {}
        self.prepared: dict[str, DataSet] = {}
        self.reader = data_module.ArchiveReader()

    def found(self, config) -> bool:
        """Resolve (never download) the archive and GloVe of ``config``; False when one is not here."""
        from trainer import data as data_module
        from trainer import embeddings as embeddings_module

        key = (config.dataset, config.data_path)
        if key not in self.archives:
            try:
                source = data_module.resolve_dataset(config.dataset, data_path=config.data_path,
                                                     data_home=self.data_home, download_if_missing=False)
                self.archives[key] = (str(source), data_module.source_sha256(source))
            except OSError as error:
                name = config.data_path or data_module.ARCHIVES[config.dataset].filename
                self.missing.setdefault(name, str(error))
                self.archives[key] = ("", "")
        glove_key = (config.glove_dim, config.glove_path)
        if config.embedding != "random" and glove_key not in self.glove:
            try:
                self.glove[glove_key] = embeddings_module.load_glove(
                    config.glove_dim, glove_path=config.glove_path, data_home=self.data_home,
                    cache_dir=self.cache_dir, download_if_missing=False).sha256
            except OSError as error:
                name = config.glove_path or f"{embeddings_module.GLOVE_URL.rsplit('/', 1)[-1]} ({config.glove_dim}d)"
                self.missing.setdefault(name, str(error))
                self.glove[glove_key] = ""
        return bool(self.archives[key][1]) and (config.embedding == "random" or bool(self.glove[glove_key]))

    def key_of(self, config) -> str:
        """The data set's key: the trainer's cache key where every file is here, else a stand-in's."""
        from sweeps.run import shared_data

        complete = self.found(config)
        sources = shared_data.Sources(archives=self.archives, glove=self.glove)
        if complete:
            return sources.data_key(config)
        if self.archives[(config.dataset, config.data_path)][1]:
            return (f"without-glove:{sources.data_key(config.replace(embedding='random'))}:{config.embedding}:"
                    f"{config.glove_dim}")
        return "stand-in:" + config.digest()

    def of(self, config) -> DataSet:
        """``config``'s data set, prepared on first use."""
        from trainer import prepare as prepare_module

        key = self.key_of(config)
        if key not in self.prepared:
            if key.startswith("stand-in:"):
                self.prepared[key] = DataSet(stand_in(config), published_documents(config), "")
            else:
                complete = not key.startswith("without-glove:")
                prepared = prepare_module.prepare(config if complete else config.replace(embedding="random"),
                                                  data_home=self.data_home, cache_dir=self.cache_dir,
                                                  download_if_missing=False, reader=self.reader)
                self.prepared[key] = DataSet(prepared if complete else stand_in(config, prepared),
                                             len(prepared.x_train) + len(prepared.x_val),
                                             merging.content_digest(prepared) if complete else "")
        return self.prepared[key]
