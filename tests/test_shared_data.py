"""The sweep's data preparation: one Ray task per archive, each archive read once, every data key's arrays
exactly those ``prepare()`` builds alone (issue 11: the first command's fixed costs)."""

from __future__ import annotations

import textwrap

import numpy as np
from conftest import build_tiny_data_home

from sweeps import shared_data
from sweeps import spec as spec_module
from trainer import config as config_module
from trainer import data as data_module
from trainer import prepare as prepare_module

SWEEP = """\
name: shared
factors:
  dataset: ["19997", "bydate"]
  strip: [none, sklearn_all]
  epochs: [1]
fixed:
  architecture: global_max
  max_sequence_length: 160
  embedding: random
seeds: 2
"""


def counting_reads(monkeypatch) -> list:
    """Record every archive read (``trainer.data.load_documents`` still runs for real)."""
    reads = []
    real = data_module.load_documents

    def load_documents(source, version, **options):
        reads.append((str(source), version))
        return real(source, version, **options)

    monkeypatch.setattr(data_module, "load_documents", load_documents)
    return reads


def test_an_archive_reader_reads_each_source_once(tiny_archives, monkeypatch):
    reads = counting_reads(monkeypatch)
    reader = data_module.ArchiveReader()
    corpus = tiny_archives["19997"]
    first = reader.documents(corpus.archive, "19997")
    assert reader.documents(corpus.archive, "19997") is first
    other = reader.documents(tiny_archives["bydate"].archive, "bydate")
    assert reads == [(str(corpus.archive), "19997"), (str(tiny_archives["bydate"].archive), "bydate")]
    assert first == data_module.load_documents(corpus.archive, "19997") and other != first


def test_data_sets_of_one_archive_share_one_read_and_equal_separate_builds(tiny_archives, tmp_path, monkeypatch):
    corpus = tiny_archives["19997"]
    configs = [config_module.TrainerConfig(
        dataset="19997", data_path=str(corpus.archive), strip=strip, embedding="random", architecture="global_max",
        max_sequence_length=149, epochs=1) for strip in ("none", "sklearn_all", "blank_line")]
    reads = counting_reads(monkeypatch)
    reader = data_module.ArchiveReader()
    shared = [prepare_module.prepare(config, cache_dir=tmp_path / "a", reader=reader) for config in configs]
    assert len(reads) == 1
    alone = [prepare_module.prepare(config, cache_dir=tmp_path / "b") for config in configs]
    assert len(reads) == 1 + len(configs)
    for left, right in zip(shared, alone):
        for name in ("x_train", "y_train", "x_val", "y_val"):
            np.testing.assert_array_equal(getattr(left, name), getattr(right, name))
    assert shared[0].stats["leak_fraction_val"] > 0.9 and shared[1].stats["leak_fraction_val"] == 0.0


def test_the_sweep_prepares_each_data_key_once_per_archive_task(ray_local, tmp_path, capsys):
    home = build_tiny_data_home(tmp_path / "data")
    spec = spec_module.parse_sweep(textwrap.dedent(SWEEP), source_path="shared.yaml")
    sources = shared_data.resolve_sources(spec, data_home=str(home), download_if_missing=False)
    shared = shared_data.prepare_shared_data(spec, sources, data_home=str(home), cache_dir=str(tmp_path / "cache"),
                                             download_if_missing=False)
    # 2 datasets x 2 strips = 4 data keys; the two seeds of 19997 split differently (the seed shapes the split).
    configs = {config.digest(): config for config in map(spec.trial_config, spec.trials())}
    assert set(shared.keys) == set(configs) and len(shared.data) == len(set(shared.keys.values())) == 6
    assert "prepared 6 data set(s) (0 from cache)" in capsys.readouterr().out
    import ray

    for digest, key in shared.keys.items():
        got = ray.get(shared.data[key])
        expected = prepare_module.prepare(configs[digest], data_home=home, cache_dir=tmp_path / "alone")
        np.testing.assert_array_equal(got.x_train, expected.x_train)
        np.testing.assert_array_equal(got.y_val, expected.y_val)
        assert shared.stats[key]["num_train"] == expected.stats["num_train"]
        assert shared.stats[key]["content_digest"]
