"""Sweep-file schema: the shipped files, the trial list, and every documented rejection message."""

from __future__ import annotations

import pathlib
import textwrap

import pytest

from sweeps import spec as spec_module
from trainer import config as config_module

ROOT = pathlib.Path(__file__).resolve().parents[1]
SWEEP_FILES = sorted((ROOT / "sweeps").glob("*.yaml"))

MINIMAL = """\
name: tiny
factors:
  dataset: ["19997", "bydate"]
  strip: [none, blank_line]
  epochs: [4, 2]
fixed:
  architecture: global_max
  max_sequence_length: 160
seeds: 2
"""


def parse(text: str, **kwargs) -> spec_module.SweepSpec:
    return spec_module.parse_sweep(textwrap.dedent(text), source_path="test.yaml", **kwargs)


def rejected(text: str, **kwargs) -> str:
    with pytest.raises(ValueError) as caught:
        parse(text, **kwargs)
    return str(caught.value)


@pytest.mark.parametrize("path", SWEEP_FILES, ids=lambda path: path.name)
def test_shipped_sweep_files_start_with_their_command_and_validate(path):
    first_line = path.read_text().splitlines()[0]
    assert first_line.startswith(f"# Run: glovesweep run sweeps/{path.name}")
    full = spec_module.load_sweep(path)
    smoke = spec_module.load_sweep(path, smoke_test=True)
    assert full.name == path.stem
    assert smoke.smoke_test and not full.smoke_test
    assert len(smoke.trials()) <= 6, "smoke mode must stay a handful of trials"
    # A search's smoke variant runs one configuration: each searched factor held at one value.
    assert all(distribution.kind == "choice" and len(distribution.values) == 1 for distribution in smoke.space.values())
    assert smoke.resources["gpu"] == 0, "smoke mode runs on a CPU-only CI machine"
    assert all(spec_module.Trial.from_dict(trial.as_dict()) == trial for trial in full.trials())


def test_blog_discrepancy_is_the_full_study():
    spec = spec_module.load_sweep(ROOT / "sweeps" / "blog-discrepancy.yaml")
    assert spec.factors == {
        "dataset": ["19997", "bydate"],
        "strip": ["none", "blank_line", "sklearn_all"],
        "embedding": ["frozen", "trainable"],
        "sizing": ["vocab_plus_one", "num_words", "num_words_plus_one"],
    }
    assert spec.epochs == [2, 10, 20] and spec.epochs_is_factor
    assert spec.seeds == [0, 1, 2]
    network = [trial for trial in spec.trials() if trial.kind == "keras"]
    baselines = [trial for trial in spec.trials() if trial.kind == "baseline"]
    assert len(network) == 36 * 3
    # One baseline per dataset x strip cell and kind, whatever the model factors and seeds.
    assert len(baselines) == 2 * 3 * 2
    assert {trial.baseline for trial in baselines} == {"multinomial_nb", "linear_svm"}
    assert all(set(trial.cell) == {"dataset", "strip"} for trial in baselines)
    # Baselines (seconds each) run first; a sweep cut short has them all.
    assert [trial.kind for trial in spec.trials()[:len(baselines)]] == ["baseline"] * len(baselines)
    config = spec.trial_config(network[0])
    assert config.epochs == 20 and config.architecture == "blog_flatten" and config.sequence_length == 1000


def test_quick_is_the_blogs_network_on_dataset_by_strip_and_runs_on_two_cpus():
    # Issue 11: README command 1 answers with the blog's own network and tokenizer, on fewer documents.
    spec = spec_module.load_sweep(ROOT / "sweeps" / "quick.yaml")
    assert [trial.cell for trial in spec.trials()] == [
        {"dataset": "19997", "strip": "none"}, {"dataset": "19997", "strip": "sklearn_all"},
        {"dataset": "bydate", "strip": "none"}, {"dataset": "bydate", "strip": "sklearn_all"}]
    config = spec.trial_config(spec.trials()[0])
    assert (config.architecture, config.vectorizer, config.sequence_length, config.num_words) == \
        ("blog_flatten", "keras2", 1000, 20000)
    assert (config.embedding, config.sizing, config.batch_size, config.glove_dim) == \
        ("frozen", "vocab_plus_one", 128, 50)
    assert 0 < config.documents_per_group <= 250 and spec.max_epochs <= 8
    assert spec.resources["cpu"] * spec.max_concurrent_trials <= 2.0 and spec.resources["gpu"] == 0.0


def test_trials_are_cells_times_seeds_and_train_to_the_largest_epoch_count():
    spec = parse(MINIMAL)
    assert spec.epochs == [2, 4]
    assert spec.factor_names == ["dataset", "strip", "epochs"]
    trials = spec.trials()
    assert len(trials) == 2 * 2 * 2
    assert [trial.seed for trial in trials[:5]] == [0, 0, 0, 0, 1], "seed-major: every cell at seed 0 first"
    assert trials[0].label == "dataset=19997,strip=none"
    configs = [spec.trial_config(trial) for trial in trials]
    assert {config.epochs for config in configs} == {4}
    assert len({config.digest() for config in configs}) == 8
    assert configs[-1] == config_module.TrainerConfig(dataset="bydate", strip="blank_line", architecture="global_max",
                                                      max_sequence_length=160, epochs=4, seed=1)


def test_yaml_integers_become_dataset_names_and_paths_become_absolute(tmp_path):
    spec = spec_module.parse_sweep(textwrap.dedent("""\
        name: paths
        factors: {dataset: [19997]}
        fixed: {data_path: archives/x.tar.gz}
        mlflow: {tracking_uri: "sqlite:///runs/mlflow.db"}
        storage_path: results
        """), base_dir=tmp_path)
    assert spec.factors["dataset"] == ["19997"]
    assert spec.fixed["data_path"] == str(tmp_path / "archives" / "x.tar.gz")
    assert spec.tracking_uri == f"sqlite:///{tmp_path}/runs/mlflow.db"
    assert spec.storage_path == str(tmp_path / "results")
    assert spec.experiment == "paths"
    assert spec.epochs == [config_module.TrainerConfig().epochs]
    uri_spec = parse("name: u\nmlflow: {tracking_uri: 'http://127.0.0.1:5000'}\nstorage_path: s3://bucket/sweeps\n")
    assert uri_spec.tracking_uri == "http://127.0.0.1:5000" and uri_spec.storage_path == "s3://bucket/sweeps"


def test_smoke_overrides_data_size_epochs_seeds_factors_and_resources():
    spec = parse(MINIMAL + textwrap.dedent("""\
        resources: {cpu: 2, gpu: 0.5}
        smoke:
          documents_per_group: 5
          epochs: [1]
          seeds: 1
          factors: {strip: [blank_line]}
          resources: {cpu: 1, gpu: 0}
        """), smoke_test=True)
    assert spec.epochs == [1] and spec.seeds == [0]
    assert spec.factors == {"dataset": ["19997", "bydate"], "strip": ["blank_line"]}
    assert spec.resources == {"cpu": 1.0, "gpu": 0.0}
    assert spec.trial_config(spec.trials()[0]).documents_per_group == 5
    assert len(spec.source_sha256) == 64 and spec.source_sha256 != parse(MINIMAL).source_sha256
    # Without --smoke-test the same file keeps its study values.
    full = parse(MINIMAL + "smoke: {documents_per_group: 5}\n")
    assert full.trial_config(full.trials()[0]).documents_per_group == 0


def test_random_and_asha_search_settings():
    spec = parse(MINIMAL + "search: {mode: asha, num_samples: 6, grace_period: 2}\n")
    assert spec.search == {"mode": "asha", "num_samples": 6, "grace_period": 2}
    assert parse(MINIMAL + "search: {mode: random, num_samples: 3}\n").search == {"mode": "random", "num_samples": 3}


@pytest.mark.parametrize("text, expected", [
    # Unknown keys name the key and list the allowed ones.
    (MINIMAL + "sedes: 3\n", ["unknown key 'sedes'", "allowed keys:", "seeds"]),
    (MINIMAL + "resources: {cpu: 1, tpu: 1}\n", ["unknown key resources.'tpu'", "cpu, gpu"]),
    (MINIMAL + "mlflow: {uri: x}\n", ["unknown key mlflow.'uri'", "experiment, tracking_uri"]),
    (MINIMAL + "search: {mode: grid, num_samples: 3}\n", ["unknown key search.'num_samples'", "allowed keys: mode"]),
    (MINIMAL.replace("strip:", "stripping:"), ["factors.stripping: unknown setting of trainer", "allowed:", "strip"]),
    (MINIMAL.replace("max_sequence_length: 160", "max_seq_len: 160"), ["fixed.max_seq_len: unknown setting of trainer"]),
    # Bad factor values name the key, the value and the allowed values.
    (MINIMAL.replace("[none, blank_line]", "[none, headers]"),
     ["factors.strip value 'headers'", "allowed values", "'blank_line'", "'sklearn_all'"]),
    (MINIMAL.replace('["19997", "bydate"]', '["19997", "20000"]'),
     ["factors.dataset value '20000'", "'18828'"]),
    (MINIMAL.replace("epochs: [4, 2]", "epochs: [2, 0]"), ["epochs value 0", "integer >= 1"]),
    (MINIMAL.replace("epochs: [4, 2]", "epochs: 2"), ["factors.epochs=2", "non-empty list"]),
    (MINIMAL.replace("epochs: [4, 2]", "epochs: [2, 2]"), ["factors.epochs=[2, 2] lists a value twice"]),
    (MINIMAL + "baselines: [naive_bayes]\n", ["baselines[0]='naive_bayes'", "'multinomial_nb' or 'linear_svm'"]),
    # Structural mistakes.
    (MINIMAL.replace("seeds: 2", "seeds: 0"), ["seeds=0", "integer >= 1"]),
    (MINIMAL.replace("seeds: 2", "seeds: [1, 1]"), ["seeds=[1, 1] lists a seed twice"]),
    (MINIMAL.replace("fixed:\n", "fixed:\n  seed: 3\n"), ["fixed.seed", "seeds: [3]"]),
    (MINIMAL.replace("fixed:\n", "fixed:\n  strip: none\n"), ["strip is both a factor and fixed"]),
    (MINIMAL + "search: {mode: bayes}\n", ["search.mode='bayes'", "grid, random, asha"]),
    (MINIMAL + "search: {mode: asha, num_samples: 4, grace_period: 9}\n", ["grace_period=9", "1..4"]),
    (MINIMAL + "baselines: [linear_svm]\nsearch: {mode: random, num_samples: 2}\n", ["baselines run only in"]),
    ("trainer: tfidf\n" + MINIMAL, ["trainer: 'tfidf' is a reference trainer", "baselines: [linear_svm]"]),
    (MINIMAL + "resources: {cpu: 0}\n", ["resources.cpu=0", "> 0"]),
    (MINIMAL + "resources: {cpu: 1, gpu: -1}\n", ["resources.gpu=-1", ">= 0"]),
    (MINIMAL + "max_concurrent_trials: -1\n", ["max_concurrent_trials=-1"]),
    (MINIMAL.replace("name: tiny", "name: 'a b'"), ["name='a b'"]),
    ("- just\n- a list\n", ["a sweep file is a mapping"]),
    ("name: [unclosed\n", ["not valid YAML"]),
    # Combinations are checked for every cell before any compute.
    (MINIMAL.replace("architecture: global_max", "architecture: blog_flatten"),
     ["max_sequence_length", "global_max"]),
    (MINIMAL.replace("max_sequence_length: 160", "max_sequence_length: 64"),
     ["max_sequence_length=64"]),
])
def test_bad_sweep_files_are_rejected_with_messages_that_name_the_mistake(text, expected):
    message = rejected(text)
    assert message.startswith("test.yaml: ")
    for fragment in expected:
        assert fragment in message, (fragment, message)


def test_smoke_test_needs_a_smoke_section_and_rejects_unknown_smoke_keys():
    assert "needs a 'smoke' section" in rejected(MINIMAL, smoke_test=True)
    assert "unknown key smoke.'epoch'" in rejected(MINIMAL + "smoke: {epoch: 1}\n")
    assert "smoke.factors.dedup: not a factor" in rejected(MINIMAL + "smoke: {factors: {dedup: [true]}}\n",
                                                           smoke_test=True)


def test_load_sweep_missing_file_is_an_oserror(tmp_path):
    with pytest.raises(OSError, match="cannot read sweep file .*missing.yaml"):
        spec_module.load_sweep(tmp_path / "missing.yaml")


def test_smoke_test_validates_the_file_as_written_first():
    # The smoke section replaces epochs and seeds; the real run would still need them valid.
    smoke = "smoke: {documents_per_group: 5, epochs: [1], seeds: 1}\n"
    assert "epochs value 0" in rejected(MINIMAL.replace("epochs: [4, 2]", "epochs: [2, 0]") + smoke, smoke_test=True)
    assert "seeds=0" in rejected(MINIMAL.replace("seeds: 2", "seeds: 0") + smoke, smoke_test=True)
    assert parse(MINIMAL + smoke, smoke_test=True).epochs == [1]


def test_every_error_is_one_line():
    for text in (MINIMAL + "sedes: 3\n", MINIMAL + "search: {mode: asha}\n", "name: [unclosed\n",
                 MINIMAL.replace("epochs: [4, 2]", 'epochs: [2, "x"]')):
        message = rejected(text)
        assert "\n" not in message and message.startswith("test.yaml: "), message


def test_asha_and_random_need_num_samples():
    assert "search.num_samples is required" in rejected(MINIMAL + "search: {mode: asha}\n")
    assert "search.num_samples is required" in rejected(MINIMAL + "search: {mode: random}\n")


def test_a_file_that_is_not_utf8_is_named(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(MINIMAL.replace("tiny", "caf\xe9").encode("latin-1"))
    with pytest.raises(ValueError, match=f"{path}: not UTF-8 text"):
        spec_module.load_sweep(path)


def test_answer_cells_and_claims_name_factor_values():
    text = MINIMAL + textwrap.dedent("""\
        answer: {blog_cell: {dataset: 19997, strip: none}, user_cell: {dataset: bydate, strip: blank_line}}
        claims:
          - {source: "Keras blog 2016", cell: {dataset: 19997, strip: none}, epoch: 2, value: 0.95}
        """)
    spec = parse(text)
    assert spec.answer == {"blog_cell": {"dataset": "19997", "strip": "none"},
                           "user_cell": {"dataset": "bydate", "strip": "blank_line"}}
    assert spec.claims == [{"source": "Keras blog 2016", "cell": {"dataset": "19997", "strip": "none"}, "epoch": 2,
                            "value": 0.95}]
    assert "answer.user_cell.strip='sklearn_all': not among the factor's values" in \
        rejected(text.replace("strip: blank_line}}", "strip: sklearn_all}}"))
    assert "claims[0].value=1.5" in rejected(text.replace("value: 0.95", "value: 1.5"))
    assert "answer.blog_cell.embedding: not a factor" in rejected(text.replace("{dataset: 19997, strip: none}, user",
                                                                               "{embedding: frozen}, user"))
