"""No wasted trials: identical cells train once and share the result; different ones never merge."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
from conftest import build_tiny_data_home
from test_sweep import client, history, runs_of

from sweeps.run import driver
from sweeps.run import merging
from sweeps.tracking import names
from sweeps import spec as spec_module
from trainer import config as config_module
from trainer import prepare as prepare_module
from trainer import train as train_module

SWEEP = """\
name: {name}
factors:
  sizing: [vocab_plus_one, num_words_plus_one]
  strip: [none, blank_line]
  epochs: [3]
fixed: {{dataset: "19997", architecture: global_max, max_sequence_length: 160, max_num_words: 60}}
seeds: 1
resources: {{cpu: 1, gpu: 0}}
mlflow: {{tracking_uri: "{uri}", experiment: {name}}}
storage_path: {storage}
"""


@pytest.fixture(scope="module")
def tiny_home(tmp_path_factory):
    root = tmp_path_factory.mktemp("merging-data")
    return {"data_home": str(build_tiny_data_home(root)), "cache_dir": str(root / "cache")}


def prepared_for(config, tiny_home):
    return prepare_module.prepare(config, data_home=tiny_home["data_home"], cache_dir=tiny_home["cache_dir"],
                                  download_if_missing=False)


def test_sizings_under_the_num_words_cap_merge_and_train_identically(tiny_home):
    base = config_module.TrainerConfig(dataset="19997", architecture="global_max", max_sequence_length=160,
                                       max_num_words=60, epochs=2)
    first, second = (base.replace(sizing=sizing) for sizing in ("vocab_plus_one", "num_words_plus_one"))
    data_first, data_second = prepared_for(first, tiny_home), prepared_for(second, tiny_home)
    assert data_first.matrix_rows != data_second.matrix_rows, "the pair differs in its matrix size"
    digest_first, digest_second = merging.content_digest(data_first), merging.content_digest(data_second)
    assert merging.training_identity(first, digest_first) == merging.training_identity(second, digest_second)
    # Merged both ways: trained apart, the two give identical histories.
    histories = [train_module.train(config, data) for config, data in ((first, data_first), (second, data_second))]
    for key in ("loss", "val_loss", "val_acc"):
        assert histories[0][key] == histories[1][key]


def test_a_different_pair_is_not_merged(tiny_home):
    base = config_module.TrainerConfig(dataset="19997", architecture="global_max", max_sequence_length=160,
                                       max_num_words=60, epochs=1)
    digest = merging.content_digest(prepared_for(base, tiny_home))
    assert digest != merging.content_digest(prepared_for(base.replace(strip="blank_line"), tiny_home))
    assert merging.training_identity(base, digest) != merging.training_identity(base.replace(seed=1), digest)
    assert merging.training_identity(base, digest) != merging.training_identity(base.replace(embedding="trainable"),
                                                                                digest)
    random = base.replace(embedding="random")
    random_rows = base.replace(embedding="random", sizing="num_words_plus_one")
    assert merging.content_digest(prepared_for(random, tiny_home)) != \
        merging.content_digest(prepared_for(random_rows, tiny_home)), "a random matrix's shape shapes its values"


def test_a_sweep_trains_each_group_once_and_records_the_rest(mlflow_server, ray_local, tiny_home, tmp_path):
    path = tmp_path / "merge.yaml"
    path.write_text(SWEEP.format(name="merge", uri=mlflow_server, storage=tmp_path / "results"))
    result = driver.run_sweep(spec_module.load_sweep(path), download_if_missing=False, **tiny_home)
    assert result.ok and result.total == 4
    _, children = runs_of(mlflow_server, "merge")
    assert len(children) == 4 and {run.info.status for run in children} == {"FINISHED"}
    shared = [run for run in children if names.SHARES_TRIAL_TAG in run.data.tags]
    trained = {run.data.tags[names.TRIAL_ID_TAG]: run for run in children if run not in shared}
    assert len(shared) == 2 and len(trained) == 2
    for run in shared:
        source = trained[run.data.tags[names.SHARES_TRIAL_TAG]]
        assert run.data.params["sizing"] == "num_words_plus_one" and source.data.params["sizing"] == "vocab_plus_one"
        assert run.data.params["strip"] == source.data.params["strip"]
        assert history(mlflow_server, run.info.run_id, "val_acc") == history(mlflow_server, source.info.run_id,
                                                                            "val_acc")
