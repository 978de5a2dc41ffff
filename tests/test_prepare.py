"""prepare(): the content-hash cache (reuse, keys, corruption, concurrent builders) on tiny real files."""

import threading

import numpy as np
import pytest

from trainer import config as config_module
from trainer import prepare as prepare_module

GLOVE_WORDS = ("god", "image", "engine", "orbit", "post", "the", "in", "about", "for", "line")


@pytest.fixture
def tiny_glove(tmp_path):
    """A 50d GloVe text file of ten words (word i's vector is all i + 1)."""
    path = tmp_path / "glove.6B.50d.txt"
    path.write_text("".join(f"{word} " + " ".join([str(index + 1.0)] * 50) + "\n"
                            for index, word in enumerate(GLOVE_WORDS)), encoding="utf-8")
    return path


def tiny_config(corpus, glove, **changes):
    values = dict(dataset=corpus.version, data_path=str(corpus.archive), glove_path=str(glove),
                  architecture="global_max", max_sequence_length=149, epochs=1)
    values.update(changes)
    return config_module.TrainerConfig(**values)


def test_first_call_builds_second_reuses_the_same_arrays(tiny_archives, tiny_glove, tmp_path):
    config = tiny_config(tiny_archives["19997"], tiny_glove)
    built = prepare_module.prepare(config, cache_dir=tmp_path / "cache")
    reused = prepare_module.prepare(config, cache_dir=tmp_path / "cache")
    assert (built.stats["cache_hit"], reused.stats["cache_hit"]) == (False, True)
    for name in prepare_module.ARRAY_NAMES:
        np.testing.assert_array_equal(getattr(built, name), getattr(reused, name))
    # 4 groups x 3 posts; the blog's split holds out int(0.2 * 12) = 2 documents.
    assert (built.x_train.shape, built.x_val.shape) == ((10, 149), (2, 149))
    assert built.x_train.dtype == np.int32 and built.y_train.dtype == np.int64
    assert built.label_names == ["alt.atheism", "comp.graphics", "rec.autos", "sci.space"]
    # vocab_plus_one: one row per word plus the padding row; every id fits.
    assert built.matrix_rows == built.stats["vocabulary_size"] + 1 == built.embedding_matrix.shape[0]
    assert built.stats["out_of_range_ids"] == 0 and 0 < built.stats["glove_found"] <= len(GLOVE_WORDS)
    assert int(built.x_train.max()) < built.matrix_rows


def test_bydate_official_split_shares_one_entry_across_seeds_but_19997_does_not(tiny_archives, tiny_glove, tmp_path):
    cache = tmp_path / "cache"
    for version, shared in (("bydate", True), ("19997", False)):
        config = tiny_config(tiny_archives[version], tiny_glove)
        prepare_module.prepare(config, cache_dir=cache)
        other_seed = prepare_module.prepare(config.replace(seed=7), cache_dir=cache)
        assert other_seed.stats["cache_hit"] is shared, version


def test_settings_that_shape_the_arrays_change_the_key(tiny_archives, tiny_glove):
    config = tiny_config(tiny_archives["19997"], tiny_glove)
    key = prepare_module.cache_key(config, archive_sha256="a", glove_sha256="g")
    for change in (dict(strip="blank_line"), dict(sizing="num_words"), dict(dedup=True), dict(seed=1),
                   dict(max_sequence_length=200)):
        assert prepare_module.cache_key(config.replace(**change), archive_sha256="a", glove_sha256="g") != key, change
    assert prepare_module.cache_key(config, archive_sha256="b", glove_sha256="g") != key
    assert prepare_module.cache_key(config, archive_sha256="a", glove_sha256="h") != key
    # Training-only settings share the entry.
    for change in (dict(epochs=9), dict(embedding="trainable"), dict(architecture="kerasio2020"),
                   dict(learning_rate=0.01)):
        assert prepare_module.cache_key(config.replace(**change), archive_sha256="a", glove_sha256="g") == key


def test_a_corrupt_entry_is_rebuilt_not_trusted(tiny_archives, tiny_glove, tmp_path):
    config = tiny_config(tiny_archives["19997"], tiny_glove)
    built = prepare_module.prepare(config, cache_dir=tmp_path / "cache")
    entry = tmp_path / "cache" / "prepared" / built.stats["cache_key"]
    array_file = entry / "x_train.npy"
    raw = bytearray(array_file.read_bytes())
    raw[-1] ^= 0xFF  # flip one token id
    array_file.write_bytes(bytes(raw))
    rebuilt = prepare_module.prepare(config, cache_dir=tmp_path / "cache")
    assert rebuilt.stats["cache_hit"] is False
    np.testing.assert_array_equal(rebuilt.x_train, built.x_train)
    (entry / "manifest.json").write_text("{not json")
    assert prepare_module.prepare(config, cache_dir=tmp_path / "cache").stats["cache_hit"] is False


def test_two_trials_starting_together_build_the_entry_once(tiny_archives, tiny_glove, tmp_path, monkeypatch):
    config = tiny_config(tiny_archives["19997"], tiny_glove)
    builds = []
    original = prepare_module._build

    def counting_build(*args, **kwargs):
        builds.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(prepare_module, "_build", counting_build)
    results = []
    threads = [threading.Thread(target=lambda: results.append(prepare_module.prepare(config, cache_dir=tmp_path / "c")))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(builds) == 1
    assert sorted(result.stats["cache_hit"] for result in results) == [False, True]


def test_random_embedding_needs_no_glove_and_keeps_the_row_count(tiny_archives, tmp_path):
    config = tiny_config(tiny_archives["19997"], "", embedding="random", sizing="num_words_plus_one",
                         max_num_words=5)
    prepared = prepare_module.prepare(config, cache_dir=tmp_path / "cache")
    assert prepared.embedding_matrix is None
    # Keras 2.2.4 sizing: min(MAX_NUM_WORDS, len(word_index)) + 1 rows; Tokenizer ids stay < num_words.
    assert prepared.matrix_rows == 6 and int(prepared.x_train.max()) <= 4


def test_out_of_range_ids_are_mapped_to_row_zero_and_counted(tiny_archives, tiny_glove, tmp_path):
    # num_words sizing with a vocabulary smaller than num_words: rows = len(word_index), the last id falls out.
    config = tiny_config(tiny_archives["19997"], tiny_glove, sizing="num_words")
    prepared = prepare_module.prepare(config, cache_dir=tmp_path / "cache")
    assert prepared.matrix_rows == prepared.stats["vocabulary_size"]
    assert prepared.stats["out_of_range_ids"] > 0
    assert int(max(prepared.x_train.max(), prepared.x_val.max())) < prepared.matrix_rows


def test_tokenizer_is_fitted_in_the_blogs_corpus_order():
    import types

    split = types.SimpleNamespace(train_ids=["b.group/10", "a.group/9"], val_ids=["a.group/10"])
    # sorted(os.listdir(...)) compares file names as strings: "10" < "9".
    assert prepare_module.corpus_order(split, official=False) == [2, 1, 0]
    # bydate's official split: every train document before any test document.
    assert prepare_module.corpus_order(split, official=True) == [1, 0, 2]


@pytest.mark.parametrize("embedding", ["frozen", "trainable"])
def test_with_the_keras2_tokenizer_every_sizing_trains_identically(tiny_archives, tiny_glove, tmp_path, embedding):
    # The Keras 2 Tokenizer(num_words=N) emits ids 1..N-1 only (keras_preprocessing 1.1.2, texts_to_sequences),
    # so rows at or past N are never read: len(word_index) + 1 (blog), N (Keras 2.0) and N + 1 (Keras 2.2.4)
    # rows give the same network, frozen or trained (an unread row gets a zero gradient). The study's
    # sizing cells (sweeps/study-cpu-ablations.yaml) check the same on the real data.
    from trainer import train as train_module

    histories, rows = {}, {}
    for sizing in ("vocab_plus_one", "num_words", "num_words_plus_one"):
        config = tiny_config(tiny_archives["19997"], tiny_glove, max_num_words=20, sizing=sizing, embedding=embedding,
                             epochs=2, batch_size=4)
        data = prepare_module.prepare(config, cache_dir=tmp_path / "cache")
        assert data.stats["out_of_range_ids"] == 0 and int(data.x_train.max()) < 20
        rows[sizing] = data.matrix_rows
        histories[sizing] = train_module.train(config, data)
    assert rows["vocab_plus_one"] > 21 and (rows["num_words"], rows["num_words_plus_one"]) == (20, 21)
    for sizing in ("num_words", "num_words_plus_one"):
        for name in ("loss", "acc", "val_loss", "val_acc"):
            assert histories[sizing][name] == histories["vocab_plus_one"][name], (sizing, name)


def _cache_key_before_the_registry(config, *, archive_sha256, glove_sha256):
    """The hand-listed cache key that shipped before the factor registry (kept to prove the keys are unchanged)."""
    import hashlib
    import json

    uses_split = config.dataset != "bydate" or config.validation == "split"
    shaping = {
        "version": prepare_module.CACHE_VERSION, "archive_sha256": archive_sha256, "dataset": config.dataset,
        "strip": config.strip, "validation": config.validation,
        "validation_split": config.validation_split if uses_split else None,
        "split_seed": config.seed if uses_split else None, "dedup": config.dedup,
        "documents_per_group": config.documents_per_group, "vectorizer": config.vectorizer,
        "num_words": config.num_words, "sequence_length": config.sequence_length,
        "glove": None if config.embedding == "random" else [glove_sha256, config.glove_dim], "sizing": config.sizing,
    }
    return hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:24]


@pytest.mark.parametrize("changes", [
    {}, {"dataset": "bydate"}, {"dataset": "bydate", "seed": 3}, {"dataset": "bydate", "validation": "split"},
    {"seed": 2}, {"embedding": "random"}, {"embedding": "random", "glove_dim": 100}, {"embedding": "trainable"},
    {"validation_split": 0.3}, {"dataset": "bydate", "validation_split": 0.3}, {"architecture": "global_max"},
    {"vectorizer": "kerasio2020", "architecture": "kerasio2020"}, {"max_num_words": 500}, {"sizing": "num_words"},
])
def test_registry_cache_key_equals_the_hand_listed_key_of_before(changes):
    config = config_module.TrainerConfig().replace(**changes)
    hashes = {"archive_sha256": "a" * 64, "glove_sha256": "b" * 64}
    assert prepare_module.cache_key(config, **hashes) == _cache_key_before_the_registry(config, **hashes)


def test_bydate_seeds_share_an_entry_and_random_ignores_glove():
    hashes = {"archive_sha256": "a" * 64, "glove_sha256": "b" * 64}
    bydate = config_module.TrainerConfig(dataset="bydate")
    assert prepare_module.cache_key(bydate, **hashes) == prepare_module.cache_key(bydate.replace(seed=5), **hashes)
    assert prepare_module.cache_key(bydate.replace(validation="split"), **hashes) != \
        prepare_module.cache_key(bydate.replace(validation="split", seed=5), **hashes)
    random = config_module.TrainerConfig(embedding="random")
    assert prepare_module.cache_key(random, **hashes) == prepare_module.cache_key(random.replace(glove_dim=300), glove_sha256="",
                                                                    archive_sha256="a" * 64)
    assert prepare_module.cache_key(random, **hashes) != prepare_module.cache_key(random.replace(embedding="frozen"), **hashes)
    # Frozen and trainable read the same arrays.
    assert prepare_module.cache_key(random.replace(embedding="frozen"), **hashes) == \
        prepare_module.cache_key(random.replace(embedding="trainable"), **hashes)
