"""The network's sizes as factors (issue 20 item 8): filters, kernel_size, dense_units and dropout.

Left at their defaults they change nothing (the three networks, layer by layer; the cache keys; the trial keys and
cell labels of every shipped sweep file); set, each shapes its own layers, is checked with a one-line error, and is
a factor a grid or a search can name.
"""

import hashlib
import pathlib
import textwrap

import numpy as np
import pytest
from test_prepare import _cache_key_before_the_registry
from test_train import small

from sweeps import cli
from sweeps import spec as spec_module
from sweeps.run import merging
from trainer import config as config_module
from trainer import model as model_module
from trainer import prepare as prepare_module
from trainer import train as train_module

ROOT = pathlib.Path(__file__).resolve().parents[1]
HASHES = {"archive_sha256": "a" * 64, "glove_sha256": "b" * 64}
NETWORK = ("filters", "kernel_size", "dense_units", "dropout")
SIZED = dict(filters=16, kernel_size=3, dense_units=32, dropout=0.25)

# Each architecture's network as trainer/model.py built it before these factors (computed on main at dec2e91):
# (layer class, output shape) in order, and count_params, for 1,000 embedding rows of 50d and 20 classes.
# 265,316 = 50,000 embedding + 32,128 + 2 x 82,048 convolutions + 16,512 Dense(128) + 2,580 softmax.
CONV_STACK = [("InputLayer", (None, 1000)), ("Embedding", (None, 1000, 50)), ("Conv1D", (None, 996, 128)),
              ("MaxPooling1D", (None, 199, 128)), ("Conv1D", (None, 195, 128)), ("MaxPooling1D", (None, 39, 128)),
              ("Conv1D", (None, 35, 128))]
HEAD = [("Dense", (None, 128)), ("Dense", (None, 20))]
NETWORKS_BEFORE = {
    "blog_flatten": (CONV_STACK + [("MaxPooling1D", (None, 1, 128)), ("Flatten", (None, 128))] + HEAD, 265316),
    "global_max": (CONV_STACK + [("GlobalMaxPooling1D", (None, 128))] + HEAD, 265316),
    "kerasio2020": (CONV_STACK + [("GlobalMaxPooling1D", (None, 128)), HEAD[0], ("Dropout", (None, 128)), HEAD[1]],
                    265316),
}
# sweeps/quick.yaml's trial keys (MLflow glovesweep.trial_id), computed on main at dec2e91: a content hash of each
# trial's kind, cell and seed, which names only the factors the file sets.
QUICK_KEYS = ["87d02b71971585a3", "f21330f05958acfd", "69f82db8f5ce2596", "6b08c2a7ad5b40f6"]
# The prepared-data cache key of a default config (HASHES), computed on main at dec2e91.
DEFAULT_CACHE_KEY = "d88e27d4c7925e7c0be55286"


# Each weight's sum of squares after ``seed_everything`` at seed 0, as main built them (dec2e91): the same layers
# created in the same order draw the same initial weights (kerasio2020's Dropout draws a seed before the softmax).
INITIAL_WEIGHTS = [41.964693, 71.92128, 0.0, 127.682256, 0.0, 128.869569, 0.0, 128.401321, 0.0, 34.874346, 0.0]
INITIAL_WEIGHTS_BEFORE = {"blog_flatten": INITIAL_WEIGHTS, "global_max": INITIAL_WEIGHTS,
                          "kerasio2020": INITIAL_WEIGHTS[:9] + [34.500897, 0.0]}


def layer_list(model):
    return [(type(layer).__name__, tuple(layer.output.shape)) for layer in model.layers]


def built(config, rows=1000, classes=20):
    return model_module.build_model(config, matrix_rows=rows, embedding_matrix=None, num_classes=classes)


def test_the_defaults_are_the_blogs_sizes_and_each_architectures_dropout():
    config = config_module.TrainerConfig()
    assert (config.filters, config.kernel_size, config.dense_units, config.dropout) == (128, 5, 128, None)
    assert [config_module.FACTORS[name].stage for name in NETWORK] == ["training"] * 4
    assert {architecture: config.replace(architecture=architecture).effective_dropout
            for architecture in config_module.choices("architecture")} == {
        "blog_flatten": 0.0, "global_max": 0.0, "kerasio2020": 0.5}
    assert config.replace(architecture="kerasio2020", dropout=0.0).effective_dropout == 0.0


@pytest.mark.parametrize("architecture", sorted(NETWORKS_BEFORE))
def test_a_default_config_builds_the_network_of_before(architecture):
    layers, parameters = NETWORKS_BEFORE[architecture]
    model = built(config_module.TrainerConfig(architecture=architecture))
    assert layer_list(model) == layers
    assert model.count_params() == parameters
    # Setting a default explicitly is the same network (kerasio2020's own Dropout(0.5) included).
    explicit = config_module.TrainerConfig(architecture=architecture, filters=128, kernel_size=5, dense_units=128,
                                           dropout=config_module.ARCHITECTURE_DROPOUT[architecture])
    assert layer_list(built(explicit)) == layers and built(explicit).count_params() == parameters
    for config in (config_module.TrainerConfig(architecture=architecture), explicit):
        train_module.seed_everything(config)
        squares = [float(np.square(weight.numpy().astype(np.float64)).sum()) for weight in built(config).weights]
        np.testing.assert_allclose(squares, INITIAL_WEIGHTS_BEFORE[architecture], rtol=1e-5, atol=1e-6)


def test_the_factors_shape_their_layers():
    model = built(config_module.TrainerConfig(**SIZED), rows=100, classes=4)
    convs = [layer for layer in model.layers if type(layer).__name__ == "Conv1D"]
    assert [tuple(layer.kernel.shape) for layer in convs] == [(3, 50, 16), (3, 16, 16), (3, 16, 16)]
    # 1000 tokens at width 3: 998 -> 199 -> 197 -> 39 -> 37 steps, one MaxPooling1D(35) window of 16 filters.
    assert tuple(convs[2].output.shape) == (None, 37, 16)
    dense, classes = [layer for layer in model.layers if type(layer).__name__ == "Dense"]
    assert tuple(dense.kernel.shape) == (16, 32) and tuple(classes.kernel.shape) == (32, 4)
    [dropout] = [layer for layer in model.layers if type(layer).__name__ == "Dropout"]
    assert dropout.rate == 0.25 and model.layers.index(dropout) == model.layers.index(dense) + 1
    # Embedding, three convolutions, Dense(32), the softmax.
    assert model.count_params() == 100 * 50 + (3 * 50 * 16 + 16) + 2 * (3 * 16 * 16 + 16) + 16 * 32 + 32 + 32 * 4 + 4
    # dropout 0 leaves kerasio2020 without its Dropout layer: global_max's network.
    without = built(small(architecture="kerasio2020", dropout=0.0))
    assert layer_list(without) == layer_list(built(small(architecture="global_max")))


@pytest.mark.parametrize("field, value, message", [
    ("filters", 0, "filters=0: must be an integer >= 1"),
    ("kernel_size", 0, "kernel_size=0: must be an integer >= 1"),
    ("dense_units", 2.5, "dense_units=2.5: must be an integer >= 1"),
    ("dropout", 1.0, "dropout=1.0: must be a number >= 0 and < 1"),
    ("dropout", -0.1, "dropout=-0.1: must be a number >= 0 and < 1"),
])
def test_out_of_bounds_values_are_one_line_errors(field, value, message):
    with pytest.raises(ValueError) as caught:
        config_module.TrainerConfig(**{field: value})
    assert str(caught.value) == message


def test_the_sequence_length_check_follows_the_kernel_size():
    # Width 7: 1061 tokens -> 1055 -> 211 -> 205 -> 41 -> 35 steps, the fewest that fill MaxPooling1D(35).
    assert config_module.shortest_sequence(35, 7) == 1061 and config_module.final_conv_steps(1061, 7) == 35
    assert config_module.shortest_sequence(35) == 999 and config_module.shortest_sequence(1) == 149
    assert config_module.shortest_sequence(1, 3) == 87 and config_module.final_conv_steps(86, 3) == 0
    config_module.TrainerConfig(kernel_size=7, max_sequence_length=1061)
    with pytest.raises(ValueError, match=r"^architecture='blog_flatten' needs max_sequence_length >= 1061 "
                                         r"\(MaxPooling1D\(35\) after the third conv, kernel_size=7\); got 1000\."):
        config_module.TrainerConfig(kernel_size=7)
    with pytest.raises(ValueError, match=r"the Conv1D\(3\)/MaxPooling1D\(5\) stack: it needs at least 87 tokens$"):
        small(kernel_size=3, max_sequence_length=86)


@pytest.mark.parametrize("changes", [{}, {"dataset": "bydate"}, {"embedding": "random"},
                                     {"vectorizer": "kerasio2020", "architecture": "kerasio2020"}])
def test_the_factors_are_not_in_the_cache_key(changes):
    config = config_module.TrainerConfig().replace(**changes)
    key = prepare_module.cache_key(config, **HASHES)
    assert key == _cache_key_before_the_registry(config, **HASHES)
    assert key == prepare_module.cache_key(config.replace(filters=64, dense_units=32, dropout=0.3), **HASHES)
    assert config.data_key_items(HASHES) == config.replace(**SIZED).data_key_items(HASHES)


def test_the_default_cache_key_and_quicks_trial_keys_are_those_of_before():
    assert prepare_module.cache_key(config_module.TrainerConfig(), **HASHES) == DEFAULT_CACHE_KEY
    spec = spec_module.load_sweep(ROOT / "sweeps" / "quick.yaml")
    assert [trial.key for trial in spec.trials()] == QUICK_KEYS
    assert [trial.label for trial in spec.trials()] == ["dataset=19997,strip=none", "dataset=19997,strip=sklearn_all",
                                                        "dataset=bydate,strip=none", "dataset=bydate,strip=sklearn_all"]
    config = spec.trial_config(spec.trials()[0])
    assert (config.filters, config.kernel_size, config.dense_units, config.effective_dropout) == (128, 5, 128, 0.0)


def test_merging_reads_the_dropout_in_effect_and_tells_other_sizes_apart():
    digest = "d" * 24
    kerasio = config_module.TrainerConfig(architecture="kerasio2020")
    identity = merging.training_identity(kerasio, digest)
    assert identity == merging.training_identity(kerasio.replace(dropout=0.5), digest)
    assert identity != merging.training_identity(kerasio.replace(dropout=0.0), digest)
    for name, value in SIZED.items():
        assert identity != merging.training_identity(kerasio.replace(**{name: value}), digest), name


def shipped_keys(path) -> str:
    """One hash of a sweep file's trial keys and cell labels, in order."""
    spec = spec_module.load_sweep(path)
    text = "\n".join(f"{trial.key} {trial.label}" for trial in spec.trials())
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# Every shipped sweep file's trial keys and labels (``shipped_keys``), computed on main at dec2e91.
SHIPPED_KEYS = {"blog-discrepancy-50d.yaml": "0b7981086f378e12", "blog-discrepancy.yaml": "0b7981086f378e12",
                "quick.yaml": "549bcc9e13633948", "seed-noise.yaml": "9515b6aae04dd873",
                "study-cpu-ablations.yaml": "f0c80dda23311f0b", "study-cpu.yaml": "bf0be2c9bfaae22e"}


@pytest.mark.parametrize("name", sorted(SHIPPED_KEYS))
def test_every_shipped_sweep_files_trial_keys_and_labels_are_those_of_before(name):
    assert shipped_keys(ROOT / "sweeps" / name) == SHIPPED_KEYS[name]


SEARCH = """\
name: network-search
factors:
  filters: {choice: [64, 128, 256]}
  kernel_size: [3, 5]
  dense_units: {int: [32, 256], log: true}
  dropout: {uniform: [0.0, 0.5]}
fixed: {architecture: global_max, max_sequence_length: 400}
search: {mode: tpe, num_samples: 8, seed: 0}
"""


def parse(text: str) -> spec_module.SweepSpec:
    return spec_module.parse_sweep(textwrap.dedent(text), source_path="search.yaml")


def test_a_search_names_the_network_factors():
    spec = parse(SEARCH)
    assert spec.searched and list(spec.space) == list(NETWORK)
    assert [(distribution.kind, distribution.values or (distribution.low, distribution.high))
            for distribution in spec.space.values()] == [
        ("choice", (64, 128, 256)), ("choice", (3, 5)), ("int", (32, 256)), ("uniform", (0.0, 0.5))]
    trial = spec.search_trial({"filters": 64, "kernel_size": 3, "dense_units": 40, "dropout": 0.1234567})
    assert trial.cell == {"filters": 64, "kernel_size": 3, "dense_units": 40, "dropout": 0.123457}
    config = spec.trial_config(trial)
    assert (config.filters, config.kernel_size, config.dense_units, config.dropout) == (64, 3, 40, 0.123457)


@pytest.mark.parametrize("line, expected", [
    ("filters: {choice: [0, 64]}", "factors.filters value 0: filters=0: must be an integer >= 1"),
    ("dropout: {uniform: [0.0, 1.0]}",
     "factors.dropout: uniform high=1.0 is outside the factor's bounds: dropout=1.0: must be a number >= 0 and < 1"),
    ("dense_units: {int: [0, 64]}", "factors.dense_units: int low=0 is outside the factor's bounds"),
    # Width 9 needs 1,123 tokens for the blog's MaxPooling1D(35): checked at the bound, before any compute.
    ("kernel_size: {int: [3, 9]}", "factors.kernel_size value 9: architecture='blog_flatten' needs "
                                   "max_sequence_length >= 1123"),
])
def test_out_of_bounds_search_values_are_one_line_errors(line, expected):
    with pytest.raises(ValueError) as caught:
        parse(f"name: bad\nfactors:\n  {line}\nsearch: {{mode: tpe, num_samples: 4}}\n")
    message = str(caught.value)
    assert "\n" not in message and message.startswith("search.yaml: ") and expected in message, message


def test_a_grid_crosses_them_and_labels_only_what_it_sets():
    spec = parse("name: grid\nfactors:\n  filters: [64, 128]\n  dropout: [0.0, 0.5]\n"
                 "fixed: {architecture: kerasio2020, max_sequence_length: 400}\n")
    assert [trial.label for trial in spec.trials()] == ["filters=64,dropout=0.0", "filters=64,dropout=0.5",
                                                        "filters=128,dropout=0.0", "filters=128,dropout=0.5"]
    assert [spec.trial_config(trial).effective_dropout for trial in spec.trials()] == [0.0, 0.5, 0.0, 0.5]


def test_glovesweep_train_has_the_flags_and_trains_with_them(tiny_archives, tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    for flag in ("--filters FILTERS", "--kernel-size KERNEL_SIZE", "--dense-units DENSE_UNITS", "--dropout DROPOUT"):
        assert flag in help_text
    assert "(default: 128) [>= 1]" in help_text and "(default: None) [>= 0 and < 1]" in help_text
    corpus = tiny_archives["bydate"]
    code = cli.main(["train", "--dataset", "bydate", "--data-path", str(corpus.folder), "--architecture", "global_max",
                     "--max-sequence-length", "149", "--epochs", "1", "--batch-size", "8", "--filters", "16",
                     "--kernel-size", "3", "--dense-units", "8", "--dropout", "0.2",
                     "--cache-dir", str(tmp_path / "cache"), "--no-download"])
    output = capsys.readouterr().out
    assert code == 0 and "epoch 1/1: loss " in output, output
    assert cli.main(["train", "--filters", "0"]) == 2
    assert "filters=0: must be an integer >= 1" in capsys.readouterr().err
