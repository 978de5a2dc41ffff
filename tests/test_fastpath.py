"""The padding-skipping path computes the Keras path's function: logits, every gradient, one optimizer step."""

import importlib.util
import json
import pathlib

import keras
import numpy as np
import pytest
import tensorflow as tf

from trainer import config as config_module
from trainer import fastpath as fastpath_module
from trainer import tiers as tiers_module
from trainer import model as model_module
from trainer import train as train_module
from tests import conftest
from tests import test_train

ROOT = pathlib.Path(__file__).resolve().parents[1]

ROWS, CLASSES = 40, 5
TOLERANCE = dict(rtol=2e-4, atol=2e-5)


def real_lengths(sequence_length):
    """Every remainder mod 25, shorter than conv3's 149-token receptive field, empty, full, one short of full."""
    remainders = [300 + remainder for remainder in range(25)]
    short = [1, 4, 5, 9, 24, 100, 148, 149, 150]
    return [0] + short + remainders + [sequence_length - 1, sequence_length]


def padded_batch(sequence_length, seed=0):
    """Pre-padded rows (padding id 0 in front), one per length of ``real_lengths``; some real ids are 0 too."""
    rng = np.random.default_rng(seed)
    lengths = [length for length in real_lengths(sequence_length) if length <= sequence_length]
    x = np.zeros((len(lengths), sequence_length), dtype=np.int32)
    for row, length in enumerate(lengths):
        x[row, sequence_length - length:] = rng.integers(1, ROWS, size=length)
    # Out-of-range ids map to row 0 inside documents (trainer/embeddings.clip_out_of_range): still exact.
    x[-3, -7] = 0
    y = rng.integers(0, CLASSES, size=len(lengths)).astype(np.int64)
    return x, y


def build(config, padding_row=False, seed=0):
    """The network with small random pretrained rows and biases; ``padding_row`` makes row 0 non-zero.

    Keras starts biases at zero, which with a zero padding row makes the constant prefix relu(0) = 0 at every
    stage; random biases (as after some training) make it non-zero, so the prefix's terms are tested.
    """
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    matrix = rng.normal(size=(ROWS, config.glove_dim)).astype(np.float32)
    if not padding_row:
        matrix[0] = 0.0
    model = model_module.build_model(config, matrix_rows=ROWS, embedding_matrix=matrix, num_classes=CLASSES)
    for layer in model.layers:
        if getattr(layer, "bias", None) is not None:
            layer.bias.assign(rng.normal(scale=0.1, size=layer.bias.shape).astype(np.float32))
    return model


def keras_gradients(model, x, y):
    with tf.GradientTape() as tape:
        probabilities = model(x, training=True)
        loss = keras.losses.SparseCategoricalCrossentropy()(y, probabilities)
    return loss, probabilities, tape.gradient(loss, model.trainable_variables)


CASES = {
    # The blog network at its 1,000 tokens (the config requires >= 999 for MaxPooling1D(35)).
    "blog_frozen": (dict(), False),
    "blog_trainable_padding_row": (dict(embedding="trainable"), True),
    "global_max_trainable": (dict(architecture="global_max", max_sequence_length=400, embedding="trainable"), False),
    "kerasio2020_dropout": (dict(architecture="kerasio2020", max_sequence_length=400, embedding="trainable"), True),
    "blog_random": (dict(embedding="random"), True),
    # The network's sizes (issue 20 item 8): other filter and dense widths, and dropout where the blog has none.
    "blog_sized_dropout_trainable": (dict(filters=16, dense_units=24, dropout=0.3, embedding="trainable"), True),
    "global_max_sized_frozen": (dict(architecture="global_max", max_sequence_length=400, filters=48,
                                     dense_units=200, dropout=0.1), True),
}
TRAINABLE = sorted(case for case, (changes, _) in CASES.items() if changes.get("embedding", "frozen") != "frozen")


@pytest.mark.parametrize("case", sorted(CASES))
def test_gradients_and_probabilities_equal_the_keras_path(case):
    changes, padding_row = CASES[case]
    config = config_module.TrainerConfig(**changes)
    x, y = padded_batch(config.sequence_length)
    keras_model = build(config, padding_row)
    loss, probabilities, gradients = keras_gradients(keras_model, x, y)
    fast_model = build(config, padding_row)
    fast_loss, fast_probabilities, fast_gradients = fastpath_module.FastPath(
        fast_model, config.sequence_length).gradients(x, y)
    np.testing.assert_allclose(fast_probabilities, probabilities, **TOLERANCE)
    np.testing.assert_allclose(float(fast_loss), float(loss), **TOLERANCE)
    names = [variable.path for variable in keras_model.trainable_variables]
    assert len(fast_gradients) == len(gradients) == len(names)
    for name, fast, reference in zip(names, fast_gradients, gradients):
        reference = tf.convert_to_tensor(reference).numpy()
        scale = np.abs(reference).max()
        np.testing.assert_allclose(tf.convert_to_tensor(fast).numpy(), reference, rtol=2e-4, atol=1e-5 * scale,
                                   err_msg=name)
    if changes.get("embedding", "frozen") != "frozen":
        # The padding row learns through the constant prefix (conv1 over embedding row 0).
        embedding_gradient = tf.convert_to_tensor(gradients[0]).numpy()
        assert np.abs(embedding_gradient[0]).max() > 0


@pytest.mark.parametrize("case", ["blog_frozen", "kerasio2020_dropout", "global_max_sized_frozen"])
def test_one_optimizer_step_gives_the_same_weights(case):
    # The step is compared with a frozen embedding, the one the fast path runs (trainer.fastpath.supports).
    changes, padding_row = CASES[case]
    changes = dict(changes, embedding="frozen")
    config = config_module.TrainerConfig(**changes)
    x, y = padded_batch(config.sequence_length, seed=1)
    keras_model = build(config, padding_row)
    keras_model.train_on_batch(x, y)
    fast_model = build(config, padding_row)
    result = fastpath_module.FastPath(fast_model, config.sequence_length).train_epoch(x, y, batch_size=len(x))
    assert 0.0 < result["loss"]
    moved = 0
    for before, keras_weight, fast_weight in zip(build(config, padding_row).weights, keras_model.weights,
                                                 fast_model.weights):
        np.testing.assert_allclose(fast_weight.numpy(), keras_weight.numpy(), rtol=1e-4, atol=1e-5,
                                   err_msg=keras_weight.path)
        moved += not np.array_equal(before.numpy(), keras_weight.numpy())
    assert moved == len(keras_model.trainable_variables)  # every trainable variable took the step
    for keras_slot, fast_slot in zip(keras_model.optimizer.variables, fast_model.optimizer.variables):
        np.testing.assert_allclose(fast_slot.numpy(), keras_slot.numpy(), rtol=1e-4, atol=1e-9)


def nonzero_slices_of_row(gradient, row):
    """The non-zero slices of ``row`` in a ``tf.IndexedSlices`` gradient, sorted (a multiset made comparable)."""
    values = gradient.values.numpy()[gradient.indices.numpy() == row]
    values = values[np.abs(values).max(axis=1) > 0]
    return values[np.lexsort(values.T[::-1])]


@pytest.mark.parametrize("case", TRAINABLE)
def test_the_padding_row_gets_the_keras_paths_slices(case):
    """RMSprop squares each slice before rows are summed, so the multiset of slices, not only their sum, counts."""
    changes, padding_row = CASES[case]
    config = config_module.TrainerConfig(**changes)
    x, y = padded_batch(config.sequence_length)
    _, _, gradients = keras_gradients(build(config, padding_row), x, y)
    _, _, fast_gradients = fastpath_module.FastPath(build(config, padding_row), config.sequence_length).gradients(x, y)
    reference, fast = nonzero_slices_of_row(gradients[0], 0), nonzero_slices_of_row(fast_gradients[0], 0)
    # One slice per padding position that the gradient reaches: thousands here, not the constant chain's five.
    assert len(reference) > 1000 and fast.shape == reference.shape
    np.testing.assert_allclose(fast, reference, rtol=2e-4, atol=1e-5 * np.abs(reference).max())
    np.testing.assert_allclose((fast ** 2).sum(axis=0), (reference ** 2).sum(axis=0), rtol=2e-4)


def test_keras_ties_that_the_padding_slices_rely_on():
    """The Keras path's all-padding stages are bit for bit equal at every position, and MaxPooling1D gives a
    window's gradient to its first maximum while GlobalMaxPooling1D splits it (trainer.padding_gradient.padding_slices)."""
    config = config_module.TrainerConfig(embedding="trainable")
    model = build(config, padding_row=True)
    tensor = model.get_layer("embedding")(np.zeros((1, config.sequence_length), np.int32))
    convs = [layer for layer in model.layers if type(layer).__name__ == "Conv1D"]
    pools = [layer for layer in model.layers if type(layer).__name__ == "MaxPooling1D"]
    for stage, conv in enumerate(convs):
        tensor = conv(tensor)
        assert len(np.unique(tensor.numpy()[0], axis=0)) == 1, f"conv{stage + 1}"
        assert np.abs(tensor.numpy()).max() > 0
        tensor = pools[stage](tensor)
    ties = tf.ones((1, 10, 2))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(ties)
        first, shared = (tf.reduce_sum(layer(ties)) for layer in (keras.layers.MaxPooling1D(5),
                                                                  keras.layers.GlobalMaxPooling1D()))
    assert tape.gradient(first, ties).numpy()[0, :, 0].tolist() == [1, 0, 0, 0, 0, 1, 0, 0, 0, 0]
    np.testing.assert_allclose(tape.gradient(shared, ties).numpy()[0, :, 0], 0.1)


# RMSprop's first steps divide each element's gradient by its own running magnitude, so an embedding element whose
# gradient is a near-cancelling sum (summed in another order by each path, and by TensorFlow's threads from run to
# run) can land a small fraction of a step apart after five steps: about 1 in 200 elements did, by up to 2.1e-5.
# 1e-4 is 3% of one RMSprop step at the start (learning rate 0.001 / sqrt(1 - rho) = 3.2e-3).
EMBEDDING_ATOL = 1e-4


def assert_same_weights_and_slots(keras_model, fast_model, config, padding_row):
    moved = 0
    for before, keras_weight, fast_weight in zip(build(config, padding_row).weights, keras_model.weights,
                                                 fast_model.weights):
        atol = EMBEDDING_ATOL if "embedding" in keras_weight.path and config.embedding != "frozen" else 1e-5
        np.testing.assert_allclose(fast_weight.numpy(), keras_weight.numpy(), rtol=1e-4, atol=atol,
                                   err_msg=keras_weight.path)
        moved += not np.array_equal(before.numpy(), keras_weight.numpy())
    assert moved == len(keras_model.trainable_variables)  # every trainable variable took the steps
    for keras_slot, fast_slot in zip(keras_model.optimizer.variables, fast_model.optimizer.variables):
        np.testing.assert_allclose(fast_slot.numpy(), keras_slot.numpy(), rtol=1e-4, atol=1e-9,
                                   err_msg=keras_slot.path)


def resynchronize(fast_model, keras_model):
    """Copy the Keras path's weights and optimizer state (iteration count and velocities) into the fast model."""
    for target, source in zip(fast_model.weights + fast_model.optimizer.variables,
                              keras_model.weights + keras_model.optimizer.variables):
        target.assign(source)


@pytest.mark.parametrize("batch_size", [64, 8])
@pytest.mark.parametrize("case", TRAINABLE + ["blog_frozen"])
def test_optimizer_steps_give_the_same_weights_and_slots(case, batch_size):
    """One step (the whole batch) and five steps of 8 (and 5) documents: weights and RMSprop velocities agree
    after every step, the padding row's velocity included (the sum of its slices' squares).

    Each step starts from the Keras path's state: a pooling window whose two largest values lie within float
    rounding of each other may pick the other one on the other path, and later steps would amplify that
    discrete difference into a whole filter's kernel (CI saw 177 elements of one conv filter 3e-4 apart after
    five steps). Starting each step level tests what the fast path computes, step by step, with a velocity and
    an iteration count that are not those of a first step."""
    changes, padding_row = CASES[case]
    config = config_module.TrainerConfig(**changes)
    x, y = padded_batch(config.sequence_length, seed=1)
    keras_model = build(config, padding_row)
    fast_model = build(config, padding_row)
    fast = fastpath_module.FastPath(fast_model, config.sequence_length)
    steps = range(0, len(x), batch_size)
    for step, start in enumerate(steps):
        rows = slice(start, start + batch_size)
        keras_model.train_on_batch(x[rows], y[rows])
        result = fast.train_epoch(x[rows], y[rows], batch_size=batch_size)
        assert 0.0 < result["loss"]
        assert_same_weights_and_slots(keras_model, fast_model, config, padding_row)
        if step < len(steps) - 1:
            resynchronize(fast_model, keras_model)
    assert int(fast_model.optimizer.iterations.numpy()) == len(steps)
    if config.embedding != "frozen":
        [velocity] = [slot.numpy() for slot in keras_model.optimizer.variables
                      if tuple(slot.shape) == (ROWS, config.glove_dim)]
        assert velocity[0].max() > 0  # the padding row learned, and its velocity was compared above


def test_the_constant_prefix_is_counted_not_dropped(monkeypatch):
    """The constant c3 wins some final pooling windows, and dropping it changes the logits."""
    config = config_module.TrainerConfig()
    x, _ = padded_batch(config.sequence_length)
    model = build(config)
    conv3 = [layer for layer in model.layers if type(layer).__name__ == "Conv1D"][2]
    steps = keras.Model(model.inputs, conv3.output)([x]).numpy()  # (documents, 35, 128)
    # Conv3 output q reads tokens 25q..25q+148: where they are all padding it is the constant c3.
    padding = tiers_module.leading_padding(x)
    constant = 25 * np.arange(steps.shape[1])[None, :] + 148 < padding[:, None]  # (documents, 35)
    short = constant[:, 0] & ~constant[:, -1]
    real_maximum = np.where(constant[:, :, None], -np.inf, steps).max(axis=1)
    assert (steps[short, 0] > real_maximum[short] + 1e-3).any()
    reference = model(x, training=False).numpy()
    fast = fastpath_module.FastPath(model, config.sequence_length)
    np.testing.assert_allclose(fast.predict(x, batch_size=1), reference, **TOLERANCE)
    original = fast._tier

    def without_constant(token_ids, constant_pool1):
        tier = original(token_ids, constant_pool1)
        return tier[:3] + (tf.constant(False),)

    monkeypatch.setattr(fast, "_tier", without_constant)
    assert not np.allclose(fast.predict(x, batch_size=1), reference, **TOLERANCE)


def test_tiers_are_the_least_work_split():
    widths = np.array([150, 175, 175, 400, 425, 1000])
    assert tiers_module.tier_bounds(widths, 3) == [(0, 3), (3, 5), (5, 6)]
    assert tiers_module.tier_bounds(widths, 1) == [(0, 6)]
    assert tiers_module.tier_bounds(widths[:2], 4) == [(0, 1), (1, 2)]


def test_leading_padding_and_constant_positions():
    x = np.array([[0, 0, 0, 5, 0], [0, 0, 0, 0, 0], [3, 0, 0, 0, 0]])
    assert tiers_module.leading_padding(x).tolist() == [3, 5, 0]
    geometry = tiers_module.Geometry(1000)
    assert (geometry.pool1, geometry.pool2, geometry.steps) == (199, 39, 35)
    # Pool1 position j is constant iff its last conv1 window (tokens 5j+4..5j+8) is padding: j <= (z - 9) / 5.
    assert geometry.constant_pool1(np.array([0, 8, 9, 13, 14, 1000])).tolist() == [0, 0, 1, 1, 2, 198]


def test_supported_configurations():
    assert fastpath_module.supports(config_module.TrainerConfig())
    assert fastpath_module.supports(config_module.TrainerConfig(architecture="global_max", max_sequence_length=149))
    # Post-padding (TextVectorization) and a MaxPooling1D(35) over other than 35 steps use the Keras path.
    assert not fastpath_module.supports(config_module.TrainerConfig(vectorizer="kerasio2020",
                                                                    architecture="kerasio2020"))
    assert not fastpath_module.supports(config_module.TrainerConfig(max_sequence_length=1200))
    # Trainable and random embeddings get the Keras path's sparse gradient (test_the_padding_row_gets_...).
    assert fastpath_module.supports(config_module.TrainerConfig(embedding="trainable"))
    assert fastpath_module.supports(config_module.TrainerConfig(embedding="random"))
    with pytest.raises(ValueError, match="compute_path='gpu' is not allowed; allowed values: 'fast', 'keras'"):
        config_module.TrainerConfig(compute_path="gpu")
    # The network's sizes: any filters, dense units and dropout; the blog's kernel width 5 only.
    assert fastpath_module.supports(config_module.TrainerConfig(filters=16, dense_units=8, dropout=0.5))
    assert fastpath_module.fallback_reason(config_module.TrainerConfig(kernel_size=3)) == (
        "kernel_size=3; the fast path's windows are Conv1D(5) over MaxPooling1D(5) only")
    with pytest.raises(ValueError, match=r"not the blog's Embedding \+ 3 x Conv1D\(5\) stack"):
        fastpath_module.FastPath(build(config_module.TrainerConfig(kernel_size=3)), 1000)


def test_another_kernel_size_runs_on_the_keras_path_and_says_so(monkeypatch, caplog):
    fast_epochs = []
    train_epoch = fastpath_module.FastPath.train_epoch
    monkeypatch.setattr(fastpath_module.FastPath, "train_epoch", lambda self, *args, **kwargs: (
        fast_epochs.append(1), train_epoch(self, *args, **kwargs))[1])
    data = test_train.tiny_prepared()
    data.x_train[::2, :100] = 0
    with caplog.at_level("INFO", logger=train_module.__name__):
        fast = train_module.train(test_train.small(epochs=1, kernel_size=3, compute_path="fast"), data)
    assert fast_epochs == []
    assert [record.getMessage() for record in caplog.records if record.name == train_module.__name__] == [
        "compute_path='fast' runs on the Keras path: kernel_size=3; the fast path's windows are Conv1D(5) over "
        "MaxPooling1D(5) only"]
    keras_path = train_module.train(test_train.small(epochs=1, kernel_size=3, compute_path="keras"), data)
    assert fast["val_loss"] == keras_path["val_loss"] and fast["loss"] == keras_path["loss"]


def test_train_metrics_match_and_checkpoints_cross_paths(tmp_path):
    data = test_train.tiny_prepared()
    # The tiny task pads nothing; give half its documents a padded prefix so the fast path has work to skip.
    for x in (data.x_train, data.x_val):
        x[::2, :100] = 0
    histories = {}
    for path in ("keras", "fast"):
        config = test_train.small(epochs=2, compute_path=path)
        histories[path] = train_module.train(config, data, on_epoch=lambda epoch, metrics, state, path=path:
                                             state.save(tmp_path / path / str(epoch)))
    for name in ("loss", "acc", "val_loss", "val_acc"):
        np.testing.assert_allclose(histories["fast"][name], histories["keras"][name], rtol=1e-4, err_msg=name)
    # A checkpoint written by the fast path resumes on the Keras path (same variables, same optimizer slots).
    resumed = train_module.train(test_train.small(epochs=2, compute_path="keras"), data,
                                 resume=tmp_path / "fast" / "1")
    np.testing.assert_allclose(resumed["val_loss"], histories["keras"]["val_loss"], rtol=1e-4)


@pytest.mark.parametrize("embedding", ["trainable", "random"])
def test_train_runs_a_trainable_embedding_on_the_fast_path_with_the_keras_paths_metrics(embedding, monkeypatch):
    epochs_on_the_fast_path = []
    train_epoch = fastpath_module.FastPath.train_epoch
    monkeypatch.setattr(fastpath_module.FastPath, "train_epoch", lambda self, *args, **kwargs: (
        epochs_on_the_fast_path.append(self.sparse_embedding), train_epoch(self, *args, **kwargs))[1])
    data = test_train.tiny_prepared(with_matrix=embedding != "random")
    for x in (data.x_train, data.x_val):
        x[::2, :100] = 0
    histories = {path: train_module.train(test_train.small(epochs=2, compute_path=path, embedding=embedding), data)
                 for path in ("keras", "fast")}
    assert epochs_on_the_fast_path == [True, True]  # compute_path="fast" ran both epochs there, not on model.fit
    for name in ("loss", "acc", "val_loss", "val_acc"):
        np.testing.assert_allclose(histories["fast"][name], histories["keras"][name], rtol=1e-4, err_msg=name)


def test_train_runs_other_sizes_and_dropout_on_the_fast_path_with_the_keras_paths_metrics(monkeypatch):
    fast_epochs = []
    train_epoch = fastpath_module.FastPath.train_epoch
    monkeypatch.setattr(fastpath_module.FastPath, "train_epoch", lambda self, *args, **kwargs: (
        fast_epochs.append(self.layers.dropout.rate), train_epoch(self, *args, **kwargs))[1])
    data = test_train.tiny_prepared()
    for x in (data.x_train, data.x_val):
        x[::2, :100] = 0
    sizes = dict(filters=16, dense_units=24, dropout=0.3, epochs=2)
    histories = {path: train_module.train(test_train.small(compute_path=path, **sizes), data)
                 for path in ("keras", "fast")}
    assert fast_epochs == [0.3, 0.3]  # both epochs ran on the fast path, with the dropout asked for
    for name in ("loss", "acc", "val_loss", "val_acc"):
        np.testing.assert_allclose(histories["fast"][name], histories["keras"][name], rtol=1e-4, err_msg=name)


def test_a_second_run_in_one_process_repeats_the_first_bit_for_bit():
    data = test_train.tiny_prepared()
    data.x_train[::2, :100] = 0
    config = test_train.small(epochs=1, compute_path="fast")
    first = train_module.train(config, data)
    build(config_module.TrainerConfig(architecture="global_max", max_sequence_length=400))  # advances layer names
    second = train_module.train(config, data)
    assert first["loss"] == second["loss"] and first["val_loss"] == second["val_loss"]


def load_equivalence_script():
    spec = importlib.util.spec_from_file_location("fastpath_equivalence", ROOT / "scripts" / "fastpath_equivalence.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_equivalence_script_smoke_on_a_tiny_archive(tmp_path):
    home = conftest.build_tiny_data_home(tmp_path, versions=("19997",))
    out = tmp_path / "equivalence.json"
    report = load_equivalence_script().main(["--smoke", "--data-dir", str(home), "--out", str(out)])
    assert json.loads(out.read_text())["final_val_acc"] == report["final_val_acc"]
    assert [(run["seed"], run["compute_path"]) for run in report["runs"]] == [
        (0, "keras"), (0, "fast"), (1, "keras"), (1, "fast")]
    # One optimizer step on the tiny set: both paths' validation losses agree to float tolerance.
    keras_runs, fast_runs = report["runs"][0::2], report["runs"][1::2]
    for keras_run, fast_run in zip(keras_runs, fast_runs):
        np.testing.assert_allclose(fast_run["val_loss"], keras_run["val_loss"], rtol=1e-4)
    assert report["difference_per_seed"] == [fast - keras for fast, keras in
                                             zip(report["final_val_acc"]["fast"], report["final_val_acc"]["keras"])]


def test_equivalence_script_smoke_with_a_trainable_embedding(tmp_path):
    home = conftest.build_tiny_data_home(tmp_path, versions=("19997",))
    report = load_equivalence_script().main(["--smoke", "--data-dir", str(home), "--embedding", "trainable",
                                             "--out", str(tmp_path / "equivalence.json")])
    assert report["embedding"] == report["config"]["embedding"] == "trainable"
    for keras_run, fast_run in zip(report["runs"][0::2], report["runs"][1::2]):
        np.testing.assert_allclose(fast_run["val_loss"], keras_run["val_loss"], rtol=1e-4)


def test_equivalence_verdict_compares_the_paths_with_the_seed_noise():
    compare = load_equivalence_script().compare
    verdict = compare({"keras": [0.90, 0.93, 0.92], "fast": [0.91, 0.92, 0.94]})
    assert verdict["largest_difference"] == pytest.approx(0.02)
    assert verdict["spread"]["keras"] == pytest.approx(0.03)
    assert verdict["difference_of_means"] == pytest.approx(0.02 / 3)
    assert verdict["within_seed_noise"] and verdict["welch_p_value"] > 0.3
    shifted = compare({"keras": [0.90, 0.91, 0.90], "fast": [0.95, 0.96, 0.95]})
    assert not shifted["within_seed_noise"] and shifted["welch_p_value"] < 0.01
