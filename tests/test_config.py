"""TrainerConfig: defaults, resolved values and the errors a user sees."""

import dataclasses

import pytest

from trainer import config as config_module


def test_defaults_are_the_2016_blog_setup():
    config = config_module.TrainerConfig()
    assert (config.dataset, config.strip, config.embedding, config.sizing) == ("19997", "none", "frozen",
                                                                               "vocab_plus_one")
    # Keras blog: MAX_NB_WORDS = 20000, MAX_SEQUENCE_LENGTH = 1000, batch_size=128.
    assert (config.num_words, config.sequence_length, config.batch_size) == (20000, 1000, 128)


def test_kerasio2020_vectorizer_brings_its_own_lengths():
    config = config_module.TrainerConfig(vectorizer="kerasio2020", architecture="kerasio2020")
    assert (config.num_words, config.sequence_length) == (20000, 200)
    assert config.replace(max_sequence_length=300).sequence_length == 300


def test_every_field_has_help():
    names = [field.name for field in dataclasses.fields(config_module.TrainerConfig)]
    assert names == list(config_module.FACTORS)
    assert all(len(config_module.field_help(name)) > 10 for name in names)


@pytest.mark.parametrize("field, value, fragment", [
    ("strip", "headers", "allowed values: 'none', 'blank_line'"),
    ("dataset", 19997, "dataset=19997 is not allowed"),
    ("glove_dim", 64, "allowed values: 50, 100, 200, 300"),
    ("sizing", "rows", "'vocab_plus_one', 'num_words', 'num_words_plus_one'"),
    ("epochs", 0, "epochs=0: must be an integer >= 1"),
    ("validation_split", 1.5, "must be a number in (0, 1)"),
    ("dedup", "yes", "dedup='yes': must be a bool"),
])
def test_bad_values_name_the_field_and_the_allowed_values(field, value, fragment):
    with pytest.raises(ValueError) as error:
        config_module.TrainerConfig(**{field: value})
    assert fragment in str(error.value)


def test_unknown_keys_are_errors_not_ignored():
    with pytest.raises(ValueError, match=r"unknown trainer setting\(s\) \['epoch'\]"):
        config_module.TrainerConfig.from_dict({"epoch": 2})


def test_sequence_length_must_fit_the_conv_stack():
    # 149 tokens: 145 -> 29 -> 25 -> 5 -> 1 step out of the third conv.
    assert config_module.final_conv_steps(149) == 1
    config_module.TrainerConfig(architecture="global_max", max_sequence_length=149)
    with pytest.raises(ValueError, match="at least 149 tokens"):
        config_module.TrainerConfig(architecture="global_max", max_sequence_length=148)
    # The blog's MaxPooling1D(35) sees exactly 35 steps at its MAX_SEQUENCE_LENGTH of 1000.
    assert config_module.final_conv_steps(1000) == 35
    with pytest.raises(ValueError, match="blog_flatten"):
        config_module.TrainerConfig(max_sequence_length=900)


def test_digest_tracks_named_fields_only():
    base = config_module.TrainerConfig()
    assert base.digest("dataset") == base.replace(seed=3).digest("dataset")
    assert base.digest() != base.replace(seed=3).digest()
