"""train(): determinism, the exact epoch axis, resume, and the architectures (tiny synthetic arrays)."""

import numpy as np
import pytest

from trainer import config as config_module
from trainer import model as model_module
from trainer import prepare as prepare_module
from trainer import train as train_module

LENGTH = 149  # the shortest sequence the conv stack accepts, to keep these tests fast


def tiny_prepared(rows=300, dim=50, classes=4, documents=160, seed=0, with_matrix=True):
    """A learnable toy task: the first tokens of each document name its class."""
    rng = np.random.default_rng(seed)
    x = rng.integers(1, rows, size=(documents, LENGTH)).astype(np.int32)
    y = rng.integers(0, classes, size=documents).astype(np.int64)
    x[:, :6] = (10 + y)[:, None]
    split = documents * 3 // 4
    matrix = rng.normal(size=(rows, dim)).astype(np.float32) if with_matrix else None
    return prepare_module.Prepared(x_train=x[:split], y_train=y[:split], x_val=x[split:], y_val=y[split:],
                                   embedding_matrix=matrix, matrix_rows=rows,
                                   label_names=[f"group{index}" for index in range(classes)], stats={"leakage": 0.0})


@pytest.fixture(scope="module")
def data():
    return tiny_prepared()


def small(**changes):
    values = dict(architecture="global_max", max_sequence_length=LENGTH, batch_size=32, epochs=2)
    values.update(changes)
    return config_module.TrainerConfig(**values)


def test_on_epoch_sees_every_epoch_and_the_history_matches(data):
    seen = []
    history = train_module.train(small(epochs=3), data, on_epoch=lambda epoch, metrics, state: seen.append(
        (epoch, sorted(metrics), state.epoch)))
    assert [entry[0] for entry in seen] == [1, 2, 3] == history["epoch"]
    assert seen[0][1] == sorted(train_module.METRICS)
    assert all(0.0 <= value <= 1.0 for value in history["val_acc"])
    assert history["stats"] == {"leakage": 0.0}


def test_same_seed_same_metrics_and_another_seed_differs(data):
    first = train_module.train(small(), data)
    second = train_module.train(small(), data)
    other = train_module.train(small(seed=1), data)
    assert first["loss"] == second["loss"] and first["val_acc"] == second["val_acc"]
    assert first["loss"] != other["loss"]


def test_epoch_e_of_a_longer_run_equals_an_e_epoch_run(data):
    long_run = train_module.train(small(epochs=4), data)
    short_run = train_module.train(small(epochs=2), data)
    for name in ("loss", "acc", "val_loss", "val_acc"):
        assert long_run[name][:2] == short_run[name]


@pytest.mark.parametrize("embedding", ["frozen", "trainable"])
def test_resume_from_a_checkpoint_continues_exactly(data, tmp_path, embedding):
    config = small(epochs=4, embedding=embedding)
    full = train_module.train(config, data, on_epoch=lambda epoch, metrics, state: state.save(tmp_path / str(epoch)))
    resumed = train_module.train(config, data, resume=tmp_path / "2")
    assert resumed["epoch"] == [1, 2, 3, 4]
    assert resumed["val_loss"] == full["val_loss"] and resumed["loss"] == full["loss"]
    saved = np.load(tmp_path / "2" / train_module.CHECKPOINT_ARRAYS)
    shapes = [saved[name].shape for name in saved.files if name.startswith("model_")]
    # A frozen embedding is rebuilt from the data, so its 300 x 50 matrix is not in the checkpoint.
    assert ((300, 50) in shapes) == (embedding == "trainable")


def test_resume_refuses_a_different_config(data, tmp_path):
    train_module.train(small(), data, on_epoch=lambda epoch, metrics, state: state.save(tmp_path))
    with pytest.raises(ValueError, match="different config"):
        train_module.train(small(seed=5), data, resume=tmp_path)
    with pytest.raises(OSError, match="cannot resume"):
        train_module.train(small(), data, resume=tmp_path / "missing")


def test_frozen_embedding_keeps_glove_rows_and_trainable_moves_them(data):
    kept = {}
    for mode in ("frozen", "trainable"):
        def grab(epoch, metrics, state, mode=mode):
            kept[mode] = state.model.get_layer("embedding").get_weights()[0]
        train_module.train(small(epochs=1, embedding=mode), data, on_epoch=grab)
    np.testing.assert_array_equal(kept["frozen"], data.embedding_matrix)
    assert not np.allclose(kept["trainable"], data.embedding_matrix)


def test_random_embedding_trains_without_pretrained_rows():
    data = tiny_prepared(with_matrix=False)
    history = train_module.train(small(epochs=1, embedding="random"), data)
    assert len(history["val_acc"]) == 1


def test_blog_architecture_shapes():
    config = config_module.TrainerConfig()
    model = model_module.build_model(config, matrix_rows=1000, embedding_matrix=None, num_classes=20)
    pools = [layer.pool_size for layer in model.layers if layer.__class__.__name__ == "MaxPooling1D"]
    # Keras blog 2016: MaxPooling1D(5), MaxPooling1D(5), MaxPooling1D(35) on 1000-token sequences.
    assert [tuple(pool) if not isinstance(pool, int) else (pool,) for pool in pools] == [(5,), (5,), (35,)]
    assert model.output_shape == (None, 20)
    assert model.get_layer("embedding").trainable is False
    dropout = model_module.build_model(small(architecture="kerasio2020"), matrix_rows=50, embedding_matrix=None,
                                       num_classes=3)
    assert any(layer.__class__.__name__ == "Dropout" for layer in dropout.layers)


def test_matrix_shape_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match=r"expected \(10, 50\)"):
        model_module.build_model(small(), matrix_rows=10, embedding_matrix=np.zeros((11, 50), np.float32),
                                 num_classes=2)
