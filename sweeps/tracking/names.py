"""Every MLflow tag, param and metric name glovesweep writes (docs/DESIGN.md, "MLflow schema").

The driver and ``sweeps.tracking.mlflow_runs`` write these names, ``sweeps.report.reader`` reads them back for the report, and the UI's
columns use them: one spelling, defined here. Names marked "new" may be absent from runs logged before they
existed; readers treat a missing one as missing data, never as an error.
"""

from __future__ import annotations

import re

# ----------------------------------------------------------------------------------------------------- tags
PARENT_TAG = "mlflow.parentRunId"  # MLflow's own: a child run names its parent run.
ROLE_TAG = "glovesweep.role"  # "sweep" on the parent run, "trial" on each child run.
ROLE_SWEEP = "sweep"
ROLE_TRIAL = "trial"
SWEEP_NAME_TAG = "glovesweep.sweep_name"
SWEEP_HASH_TAG = "glovesweep.sweep_hash"  # SHA-256 of the sweep file's text.
SWEEP_DIR_TAG = "glovesweep.sweep_dir"
SWEEP_FILE_TAG = "glovesweep.sweep_file"
EPOCHS_TAG = "glovesweep.epochs"  # requested epoch counts, comma-separated
FACTORS_TAG = "glovesweep.factors"  # factor names, comma-separated
SMOKE_TEST_TAG = "glovesweep.smoke_test"
TRIAL_ID_TAG = "glovesweep.trial_id"  # the trial's key (spec.Trial.key): stable across retries and resumes
TUNE_TRIAL_ID_TAG = "glovesweep.tune_trial_id"  # Ray Tune's id of the latest Tune trial that ran it
TUNE_TRIAL_IDS_TAG = "glovesweep.tune_trial_ids"  # every Tune trial id that ran it, comma-separated (trial_<id> folders)
CELL_TAG = "glovesweep.cell"  # the trial's factor values, "name=value" joined by commas
TRAINER_TAG = "trainer"  # a child run's trainer kind: TRAINER_KERAS, TRAINER_BASELINE or a user trainer's name
TRAINER_KERAS = "keras"
TRAINER_BASELINE = "baseline"
ERROR_TAG = "glovesweep.error"  # new: a FAILED trial's exception, "Type: last line"
TRAINER_NAME_TAG = "glovesweep.trainer"  # new: the sweep's trainer as its file names it (parent run)
OBJECTIVE_TAG = "glovesweep.objective"  # new: the objective metric, "name:mode[:low:high]" (parent run)
SPACE_TAG = "glovesweep.space"  # new: a search's distributions, JSON [[name, record], ...] (parent run; none: a grid)
BEST_TAG_PREFIX = "glovesweep.best."  # new: a search's best configuration, one tag per factor (parent run)
BEST_RUN_TAG = "glovesweep.best_run"  # new: the child run id of a search's best trial (parent run)
CONFIRMED_TAG = "glovesweep.best_confirmed"  # new: "true" when the best.* tags are the confirm stage's (parent run)
STAGE_TAG = "glovesweep.stage"  # new: a search's child run: search, confirm or final (sweeps.spec.stages names them)
NON_FINITE_TAG = "glovesweep.non_finite"  # new: metrics that came out NaN or infinite, "name@epoch" joined by commas
RESUMED_FROM_EPOCH_TAG = "glovesweep.resumed_from_epoch"
WORKER_PID_TAG = "glovesweep.worker_pid"
NODE_TAG = "glovesweep.node"
DATA_KEY_TAG = "glovesweep.data_key"  # the prepare cache key of the trial's data
SHARES_TRIAL_TAG = "glovesweep.shares_trial"  # new: this trial was merged with an identical one (its trial id)
# New: a search's configuration (spec.Trial.config_key), the same on the child run of each of its seeds.
CONFIG_ID_TAG = "glovesweep.config_id"
GIT_COMMIT_TAG = "git_commit"
GIT_DIRTY_TAG = "git_dirty"
VERSIONS_TAG = "versions"  # "name=version;..." of the packages that shape a result
DEVICE_TAG = "device"
ARCHIVE_SHA256_TAG = "archive_sha256"
GLOVE_SOURCE_TAG = "glove_source"

# ------------------------------------------------------------------------------------------------- params
# Every TrainerConfig field is a param under its own name; these two are added beside them.
FACTORS_PARAM = "factors"  # the sweep's factor names, comma-separated
BASELINE_PARAM = "baseline"  # a baseline run's model: "multinomial_nb" or "linear_svm"

# ------------------------------------------------------------------------------------------------ metrics
# Step metrics, one value per 1-based epoch.
LOSS = "loss"
ACC = "acc"
VAL_LOSS = "val_loss"
VAL_ACC = "val_acc"
EPOCH_SECONDS = "epoch_seconds"
STEP_METRICS = (LOSS, ACC, VAL_LOSS, VAL_ACC, EPOCH_SECONDS)
# Summary metrics from ``Prepared.stats`` (step 0).
LEAKAGE = "leakage"  # fraction of validation documents whose stripped body occurs in train
GLOVE_COVERAGE = "glove_coverage"
OUT_OF_RANGE_IDS = "out_of_range_ids"
VOCABULARY_SIZE = "vocabulary_size"
NUM_TRAIN = "num_train"
NUM_VAL = "num_val"
DROPPED_DUPLICATES = "dropped_duplicates"
GLOVE_FOUND = "glove_found"
# New: fraction of documents still carrying a label-bearing header line after stripping.
LEAK_FRACTION_TRAIN = "leak_fraction_train"
LEAK_FRACTION_VAL = "leak_fraction_val"
# New: number of groups (classes) the trial trained on; 20 unless the data was wrong.
NUM_CLASSES = "num_classes"
STATS_METRICS = (LEAKAGE, GLOVE_COVERAGE, OUT_OF_RANGE_IDS, VOCABULARY_SIZE, NUM_TRAIN, NUM_VAL, DROPPED_DUPLICATES,
                 GLOVE_FOUND, LEAK_FRACTION_TRAIN, LEAK_FRACTION_VAL, NUM_CLASSES)
VAL_ACC_AT = "val_acc_at_{epochs}"  # validation accuracy after E epochs, one per requested epoch count E
VAL_LOSS_AT = "val_loss_at_{epochs}"
VAL_ACC_AT_PATTERN = re.compile(r"val_acc_at_(\d+)")


# A search's parent run, after its stages (sweeps.run.parent_run): the confirmed best's mean over its seeds with
# the interval's ends, the search's own value of it, the optimism (search minus confirmed, in the direction that
# favours the objective) with its interval, and the final stage's test score.
CONFIRMED_PARTS = ("mean", "low", "high")


def stage_metric(stage: str, metric: str, part: str = "") -> str:
    """``confirmed_val_acc_mean``, ``search_val_acc``, ``optimism_val_acc_low``, ``test_val_acc_mean``."""
    return f"{stage}_{metric}" + (f"_{part}" if part else "")


def metric_at(name: str, epochs: int) -> str:
    """The summary metric name of ``name`` after ``epochs`` epochs, e.g. ``val_acc_at_10``, ``rmse_at_5``."""
    return f"{name}_at_{epochs}"


def val_acc_at(epochs: int) -> str:
    """The summary metric name of validation accuracy after ``epochs`` epochs, e.g. ``val_acc_at_10``."""
    return VAL_ACC_AT.format(epochs=epochs)


def val_loss_at(epochs: int) -> str:
    """The summary metric name of validation loss after ``epochs`` epochs, e.g. ``val_loss_at_10``."""
    return VAL_LOSS_AT.format(epochs=epochs)
