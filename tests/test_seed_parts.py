"""The seed's three parts (issue 21 item 5): split_seed, init_seed and order_seed, each defaulting to seed.

Left unset they change nothing (cache keys, splits, initial weights, epoch orders, histories); set, each moves
its own part and only that.
"""

import numpy as np
import pytest
from test_prepare import _cache_key_before_the_registry
from test_train import small, tiny_prepared

from sweeps.run import merging
from trainer import config as config_module
from trainer import model as model_module
from trainer import prepare as prepare_module
from trainer import split as split_module
from trainer import train as train_module

HASHES = {"archive_sha256": "a" * 64, "glove_sha256": "b" * 64}
PARTS = ("split_seed", "init_seed", "order_seed")


def key(config):
    return prepare_module.cache_key(config, **HASHES)


def test_the_parts_default_to_seed_and_are_ordinary_split_and_training_factors():
    config = config_module.TrainerConfig(seed=7)
    assert (config.split_seed, config.init_seed, config.order_seed) == (None, None, None)
    assert (config.effective_split_seed, config.effective_init_seed, config.effective_order_seed) == (7, 7, 7)
    moved = config.replace(split_seed=1, init_seed=2, order_seed=3)
    assert (moved.effective_split_seed, moved.effective_init_seed, moved.effective_order_seed) == (1, 2, 3)
    assert [config_module.FACTORS[name].stage for name in PARTS] == ["split", "training", "training"]
    with pytest.raises(ValueError, match="init_seed=-1: must be an integer >= 0"):
        config.replace(init_seed=-1)


@pytest.mark.parametrize("changes", [
    {}, {"seed": 2}, {"dataset": "bydate"}, {"dataset": "bydate", "seed": 3},
    {"dataset": "bydate", "validation": "split", "seed": 4}, {"embedding": "random"}, {"max_num_words": 500},
])
def test_unset_parts_keep_every_cache_key_of_before(changes):
    config = config_module.TrainerConfig().replace(**changes)
    assert key(config) == _cache_key_before_the_registry(config, **HASHES)
    # The training parts never shape the arrays; the split part set to the seed is the same split.
    assert key(config) == key(config.replace(init_seed=9, order_seed=9)) == \
        key(config.replace(split_seed=config.seed))


def test_the_split_part_keys_the_split_where_a_split_is_drawn():
    blog = config_module.TrainerConfig(seed=0)
    assert key(blog.replace(split_seed=5)) != key(blog)
    assert key(blog.replace(split_seed=5)) == key(blog.replace(seed=5)) == key(blog.replace(seed=9, split_seed=5))
    official = config_module.TrainerConfig(dataset="bydate")
    assert key(official.replace(split_seed=5)) == key(official), "bydate's official split draws nothing"
    drawn = official.replace(validation="split")
    assert key(drawn.replace(split_seed=5)) == key(drawn.replace(seed=5)) != key(drawn)


def split_of(corpus, **changes):
    config = config_module.TrainerConfig(dataset=corpus.version, data_path=str(corpus.archive), **changes)
    split = split_module.make_split(config)
    return split.train_ids, split.val_ids


def test_only_the_split_part_moves_the_split(tiny_archives):
    corpus = tiny_archives["19997"]
    before = split_of(corpus, seed=0)
    assert split_of(corpus, seed=0, init_seed=3, order_seed=3) == before
    assert split_of(corpus, seed=0, split_seed=3) == split_of(corpus, seed=3) != before
    assert split_of(corpus, seed=3, split_seed=0) == before


def test_only_the_order_part_moves_the_epoch_order():
    base = config_module.TrainerConfig(seed=1)
    first = train_module.epoch_order(base, 1, 50)
    # The draw of before: (seed, epoch).
    assert np.array_equal(first, np.random.default_rng([1, 1]).permutation(50))
    assert np.array_equal(first, train_module.epoch_order(base.replace(split_seed=8, init_seed=8), 1, 50))
    moved = train_module.epoch_order(base.replace(order_seed=8), 1, 50)
    assert not np.array_equal(first, moved)
    assert np.array_equal(moved, train_module.epoch_order(base.replace(seed=8), 1, 50))


def initial_weights(config, data):
    train_module.seed_everything(config)
    model = model_module.build_model(config, matrix_rows=data.matrix_rows, embedding_matrix=data.embedding_matrix,
                                     num_classes=data.num_classes)
    return [weight.numpy() for weight in model.trainable_weights]


def same_weights(first, second):
    return all(np.array_equal(one, other) for one, other in zip(first, second, strict=True))


def test_only_the_init_part_moves_the_initial_weights():
    data = tiny_prepared(documents=40)
    before = initial_weights(small(seed=0), data)
    assert same_weights(before, initial_weights(small(seed=0, split_seed=4, order_seed=4), data))
    moved = initial_weights(small(seed=0, init_seed=4), data)
    assert not same_weights(before, moved)
    assert same_weights(moved, initial_weights(small(seed=4), data))


def test_the_seed_is_its_parts_a_run_with_each_part_set_to_it_is_bit_identical():
    data = tiny_prepared(documents=64)
    whole = train_module.train(small(seed=1), data)
    parts = train_module.train(small(seed=0, split_seed=1, init_seed=1, order_seed=1), data)
    only_order = train_module.train(small(seed=1, order_seed=0), data)
    for name in ("loss", "acc", "val_loss", "val_acc"):
        assert whole[name] == parts[name], name
    assert whole["loss"] != only_order["loss"]


def test_merging_reads_the_parts_in_effect():
    digest = "d" * 24
    base = config_module.TrainerConfig(seed=3)
    identity = merging.training_identity(base, digest)
    assert identity == merging.training_identity(base.replace(init_seed=3, order_seed=3), digest)
    assert identity != merging.training_identity(base.replace(init_seed=4), digest)
    assert identity != merging.training_identity(base.replace(order_seed=4), digest)
