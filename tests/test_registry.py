"""The factor registry: one entry per trainer setting, and everything derived from it.

A made-up factor added to ``trainer.config.FACTORS`` must appear, with no other change, in the config's
validation, the ``glovesweep train`` flags, the sweep-file validation, the prepared-data cache key and the
MLflow params of a trial.
"""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from sweeps import cli_train
from sweeps import spec as spec_module
from sweeps.run import builtin
from sweeps.run import trial as trial_module
from sweeps.spec import sweep as sweep_module
from trainer import config as config_module
from trainer import prepare as prepare_module

SWEEP = """
name: madeup
factors:
  dataset: ["19997", bydate]
  lowercase_mode: [keep, fold]
fixed: {architecture: global_max, max_sequence_length: 160}
"""


def use_factors(monkeypatch, factors):
    """The registry with a contributor's new entry, as if written into trainer/config.py: the config class and
    the built-in trainers are made from it."""
    config_class = config_module.make_trainer_config(factors)
    monkeypatch.setattr(config_module, "FACTORS", factors)
    monkeypatch.setattr(config_module, "TrainerConfig", config_class)
    for name in ("KERAS", "TFIDF"):
        monkeypatch.setattr(builtin, name, dataclasses.replace(getattr(builtin, name), factors=factors,
                                                               config_class=config_class))
    monkeypatch.setattr(sweep_module, "_LOADED", {})


@pytest.fixture
def made_up_factor(monkeypatch):
    """A new data-shaping factor declared the way a contributor would: one registry entry."""
    factor = config_module.Factor("lowercase_mode", str, "keep", "Case folding before tokenizing (made up).",
                                  "vectorize", choices=("keep", "fold", "fold_ascii"))
    factors = {**config_module.FACTORS, factor.name: factor}
    monkeypatch.setattr(config_module, "FACTORS", factors)
    use_factors(monkeypatch, factors)
    return factor


def test_the_config_gets_the_field_its_default_and_its_check(made_up_factor):
    config = config_module.TrainerConfig()
    assert config.lowercase_mode == "keep" and config.to_dict()["lowercase_mode"] == "keep"
    with pytest.raises(ValueError, match="lowercase_mode='upper' is not allowed; allowed values: 'keep', 'fold'"):
        config_module.TrainerConfig(lowercase_mode="upper")


def test_the_train_command_gets_the_flag_with_its_allowed_values(made_up_factor):
    parser = argparse.ArgumentParser()
    cli_train.add_arguments(parser)
    assert parser.parse_args(["--lowercase-mode", "fold"]).lowercase_mode == "fold"
    assert "fold_ascii" in parser.format_help()


def test_sweep_files_accept_its_values_and_reject_others(made_up_factor):
    spec = spec_module.parse_sweep(SWEEP, source_path="madeup.yaml")
    assert [cell["lowercase_mode"] for cell in spec.cells()] == ["keep", "fold", "keep", "fold"]
    message = str(pytest.raises(ValueError, spec_module.parse_sweep, SWEEP.replace("[keep, fold]", "[keep, up]"),
                                source_path="madeup.yaml").value)
    assert message.startswith("madeup.yaml: factors.lowercase_mode value 'up'") and "'fold_ascii'" in message


def test_a_data_factor_enters_the_cache_key_and_the_trial_params(made_up_factor):
    hashes = {"archive_sha256": "a" * 64, "glove_sha256": "b" * 64}
    keep = config_module.TrainerConfig()
    assert prepare_module.cache_key(keep, **hashes) != prepare_module.cache_key(keep.replace(lowercase_mode="fold"),
                                                                                **hashes)
    spec = spec_module.parse_sweep(SWEEP, source_path="madeup.yaml")
    trial = spec.trials()[1]
    params = trial_module.trial_params(spec, trial, spec.trial_config(trial))
    assert params["lowercase_mode"] == "fold" and "lowercase_mode" in params["factors"].split(",")


def test_a_training_factor_leaves_the_cache_key_alone(monkeypatch):
    factor = config_module.Factor("warmup_epochs", int, 0, "Made up.", "training", ge=0)
    factors = {**config_module.FACTORS, factor.name: factor}
    monkeypatch.setattr(config_module, "FACTORS", factors)
    use_factors(monkeypatch, factors)
    hashes = {"archive_sha256": "a" * 64, "glove_sha256": "b" * 64}
    config = config_module.TrainerConfig()
    assert prepare_module.cache_key(config, **hashes) == prepare_module.cache_key(config.replace(warmup_epochs=3),
                                                                                  **hashes)
    with pytest.raises(ValueError, match="warmup_epochs=-1: must be an integer >= 0"):
        config.replace(warmup_epochs=-1)


def test_every_factor_declares_a_known_stage_and_a_default_that_passes_its_own_check():
    for factor in config_module.FACTORS.values():
        assert factor.stage in config_module.STAGES
        factor.check(factor.default)
    # The split-stage factors are exactly what a TF-IDF baseline's result depends on.
    assert config_module.factor_names("split") == ("dataset", "data_path", "strip", "validation",
                                                   "validation_split", "dedup", "documents_per_group", "seed",
                                                   "split_seed")
