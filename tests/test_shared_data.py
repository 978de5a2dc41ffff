"""The sweep's data preparation: one Ray task per archive, each archive read once, every data key's arrays
exactly those ``prepare()`` builds alone (issue 11: the first command's fixed costs)."""

from __future__ import annotations

import dataclasses
import textwrap

import numpy as np
import pytest
from conftest import build_tiny_data_home

from sweeps.checks import cluster_checks
from sweeps.run import shared_data as shared_data_module
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
    sources = shared_data_module.resolve_sources(spec, data_home=str(home), download_if_missing=False)
    shared = shared_data_module.prepare_shared_data(spec, sources, data_home=str(home),
                                                    cache_dir=str(tmp_path / "cache"), download_if_missing=False)
    # 2 datasets x 2 strips = 4 data keys; the two seeds of 19997 split differently (the seed shapes the split).
    configs = {config.digest(): config for config in map(spec.trial_config, spec.trials())}
    assert set(shared.keys) == set(configs) and len(shared.data) == len(set(shared.keys.values())) == 6
    assert "prepared 6 data set(s) (0 from cache)" in capsys.readouterr().out
    import ray

    # One local node: the driver's node holds every CPU of the cluster.
    assert cluster_checks.driver_node_cpus() == int(ray.cluster_resources()["CPU"])
    for digest, key in shared.keys.items():
        got = ray.get(shared.data[key])
        expected = prepare_module.prepare(configs[digest], data_home=home, cache_dir=tmp_path / "alone")
        np.testing.assert_array_equal(got.x_train, expected.x_train)
        np.testing.assert_array_equal(got.y_val, expected.y_val)
        assert shared.stats[key]["num_train"] == expected.stats["num_train"]
        assert shared.stats[key]["content_digest"]


def test_sources_read_only_archives_that_no_preparation_task_reads(tmp_path, monkeypatch):
    """An archive that a preparation task reads is checked there, not read a second time on the driver; a
    baseline's archive (its trial reads it, no preparation task does) is read before any trial, unless it is
    the published one (SHA-256 as published), which holds no truncation, missing group or binary post."""
    spec = spec_module.parse_sweep(textwrap.dedent(SWEEP), source_path="shared.yaml")
    home = build_tiny_data_home(tmp_path / "data")
    reads = counting_reads(monkeypatch)
    sources = shared_data_module.resolve_sources(spec, data_home=str(home), download_if_missing=False)
    assert reads == [] and set(sources.checksums()) == {"19997", "bydate"}
    baselines = spec_module.parse_sweep(textwrap.dedent(SWEEP) + "baselines: [multinomial_nb]\n",
                                        source_path="shared.yaml")
    baseline_trials = [trial for trial in baselines.data_trials() if not baselines.trainer_of(trial).prepares_data]
    shared_data_module.resolve_sources(baselines, data_home=str(home), download_if_missing=False,
                                       trials=baseline_trials)
    assert sorted(version for _, version in reads) == ["19997", "bydate"]
    # Make the tiny 19997 archive the published one (its checksum the published checksum): no longer read.
    archive = home / data_module.ARCHIVES["19997"].filename
    published = dataclasses.replace(data_module.ARCHIVES["19997"], sha256=data_module.source_sha256(archive))
    monkeypatch.setitem(data_module.ARCHIVES, "19997", published)
    reads.clear()
    shared_data_module.resolve_sources(baselines, data_home=str(home), download_if_missing=False,
                                       trials=baseline_trials)
    assert [version for _, version in reads] == ["bydate"]
    # The same archive cut short is not the published one any more: it is read, and refused before any trial.
    archive.write_bytes(archive.read_bytes()[:-200])
    assert not data_module.is_published(archive, "19997")
    with pytest.raises(OSError, match="20news-19997.tar.gz"):
        shared_data_module.resolve_sources(baselines, data_home=str(home), download_if_missing=False,
                                           trials=baseline_trials)


@pytest.mark.parametrize("cpus, sizes, expected", [
    (2, {"19997": 2, "bydate": 2}, [2, 2]),        # README command 1: one task, one read, per archive
    (2, {"19997": 4, "bydate": 4}, [4, 4]),        # the CPU study on two cores: still one read per archive
    (16, {"19997": 4, "bydate": 4}, [1] * 8),      # many cores: every data set in parallel
    (2, {"19997": 10}, [4, 3, 3]),                 # no task holds more than four data sets
    (3, {"19997": 1, "bydate": 5}, [1, 3, 2]),
])
def test_task_groups_read_each_archive_once_where_the_cores_allow(cpus, sizes, expected):
    by_archive = {(dataset, ""): {f"{dataset}-{index}": index for index in range(count)}
                  for dataset, count in sizes.items()}
    groups = shared_data_module.task_groups(by_archive, cpus)
    assert [len(group) for group in groups] == expected
    # Every data key lands in exactly one task, with only its own archive's keys.
    assert sorted(key for group in groups for key in group) == sorted(
        key for configs in by_archive.values() for key in configs)
    assert all(len({key.split("-")[0] for key in group}) == 1 for group in groups)
