"""trainer.data refuses data that would train on the wrong task: truncated archives, missing or unknown
groups, binary posts; and the number of classes reaches the prepared stats (issue 12, items 7 and 8)."""

from __future__ import annotations

import pytest
from conftest import build_tiny_corpus

from sweeps.tracking import names
from trainer import config as config_module
from trainer import data as data_module
from trainer import prepare as prepare_module
from trainer import split as split_module


def complete_corpus(root, version="19997", *, posts_per_group=2, files=None):
    """A tiny corpus holding all 20 groups (``posts_per_group`` posts each)."""
    return build_tiny_corpus(root, version, files, groups=data_module.NEWSGROUPS, posts_per_group=posts_per_group)


@pytest.mark.slow
def test_the_known_groups_are_the_twenty_of_the_real_archive(shared_data):
    documents = data_module.load_documents(shared_data / "20news-19997.tar.gz", "19997", require_all_groups=True)
    assert sorted({document.group for document in documents}) == sorted(data_module.NEWSGROUPS)


def test_a_complete_archive_is_accepted_and_subsetting_posts_keeps_all_groups(tmp_path, monkeypatch):
    monkeypatch.delenv(data_module.ALLOW_GROUP_SUBSET_ENV, raising=False)
    corpus = complete_corpus(tmp_path / "c")
    config = config_module.TrainerConfig(dataset="19997", data_path=str(corpus.archive), documents_per_group=1,
                                         validation_split=0.25)
    split = split_module.make_split(config)
    assert len(split.label_names) == 20
    assert len(split.train_texts) + len(split.val_texts) == 20


def test_an_archive_holding_two_groups_is_an_oserror_naming_the_missing_ones(tmp_path, monkeypatch):
    monkeypatch.delenv(data_module.ALLOW_GROUP_SUBSET_ENV, raising=False)
    corpus = build_tiny_corpus(tmp_path / "c", "19997", groups=("alt.atheism", "sci.space"), posts_per_group=4)
    config = config_module.TrainerConfig(dataset="19997", data_path=str(corpus.archive))
    with pytest.raises(OSError, match=r"holds 2 of the 20 groups \(missing: comp\.graphics, .*talk\.religion\.misc\)"
                       ) as error:
        split_module.make_split(config)
    assert str(corpus.archive) in str(error.value)
    # The extracted folder is checked the same way.
    with pytest.raises(OSError, match="holds 2 of the 20 groups"):
        data_module.load_documents(corpus.folder, "19997", require_all_groups=True)
    # The tests' escape accepts it (and only a subset of the known names).
    assert len(data_module.load_documents(corpus.archive, "19997", require_all_groups=False)) == 8


def test_a_group_of_another_name_is_refused_even_with_the_escape(tmp_path):
    files = {"20_newsgroups/alt.atheism/1": "From: a\n\nhello\n", "20_newsgroups/my.own.group/2": "From: b\n\nhi\n"}
    corpus = build_tiny_corpus(tmp_path / "c", "19997", files)
    with pytest.raises(OSError, match=r"my\.own\.group that are not 20 Newsgroups groups"):
        data_module.load_documents(corpus.archive, "19997", require_all_groups=False)


@pytest.mark.parametrize("payload", [b"From: a\n\nhello\x00world\n", bytes(range(1, 32)) * 20 + b"text"],
                         ids=["nul-byte", "control-bytes"])
def test_a_binary_post_is_an_oserror_naming_the_first_bad_file(tmp_path, payload):
    corpus = complete_corpus(tmp_path / "c", posts_per_group=1)
    (corpus.folder / "20_newsgroups" / "sci.space" / "9").write_bytes(payload)
    with pytest.raises(OSError, match=r"post sci\.space/9 \(all\) is binary"):
        data_module.load_documents(corpus.folder, "19997", require_all_groups=True)


@pytest.mark.slow
def test_the_real_archives_worst_post_is_not_binary(shared_data):
    # sci.crypt/16017 (an encrypted block) holds the most control bytes of any real post: 7.4 %.
    documents = data_module.load_documents(shared_data / "20news-bydate.tar.gz", "bydate", require_all_groups=True)
    assert len(documents) == 18846


@pytest.mark.parametrize("keep", [index / 20 for index in range(1, 20)] + [0.98])
def test_a_truncated_archive_is_an_oserror_naming_the_archive_and_the_fix(tmp_path, keep):
    corpus = complete_corpus(tmp_path / "c", posts_per_group=3)
    truncated = tmp_path / corpus.archive.name
    content = corpus.archive.read_bytes()
    truncated.write_bytes(content[:int(len(content) * keep)])
    with pytest.raises(OSError, match=r"cannot read archive .*20news-19997\.tar\.gz: it is truncated or corrupt .*"
                                      r"download or copy 20news-19997\.tar\.gz again"):
        data_module.load_documents(truncated, "19997")


def test_prepared_stats_hold_the_number_of_classes_and_it_is_logged(tmp_path):
    corpus = complete_corpus(tmp_path / "c")
    config = config_module.TrainerConfig(dataset="19997", data_path=str(corpus.archive), embedding="random",
                                         architecture="global_max", max_sequence_length=149, validation_split=0.25)
    prepared = prepare_module.prepare(config, cache_dir=tmp_path / "cache")
    assert prepared.stats["num_classes"] == prepared.num_classes == 20
    assert names.NUM_CLASSES == "num_classes" and names.NUM_CLASSES in names.STATS_METRICS
    # Every trial logs its prepared stats through this filter (sweeps.run.trial).
    from sweeps.tracking import trial_run

    assert trial_run.stats_metrics(prepared.stats)["num_classes"] == 20.0
    # An entry written before the count existed is never reused: the cache key moved.
    assert prepare_module.CACHE_VERSION >= 3
