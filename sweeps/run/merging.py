"""No wasted trials: cells that would train identically are trained once.

Two network trials train identically when they see the same token arrays and labels, the same embedding rows
for every id that occurs, and the same training settings otherwise (seed, embedding mode, architecture,
epochs, batch, learning rate...). Rows that no document reads never change the network: under the Keras 2
Tokenizer's ``num_words`` cap the three historical matrix sizings differ only in such rows, so they merge
(``tests/test_prepare.py`` shows they train bit-identically). A random embedding's initial values depend on
the matrix's shape, so there the row count counts too.

The first trial of a group trains; each other member is recorded in MLflow as the same result (its own
params, the shared trial's metrics) with the tag ``glovesweep.shares_trial`` naming the trial that trained.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

import numpy as np

from sweeps.tracking import names
from sweeps import spec as spec_module
from sweeps.tracking import mlflow_runs
from trainer import config as config_module


def content_digest(prepared) -> str:
    """SHA-256 (hex, 24) of what a network can read from prepared data: ids, labels, the rows ids reach."""
    digest = hashlib.sha256()
    for array in (prepared.x_train, prepared.y_train, prepared.x_val, prepared.y_val):
        digest.update(str(array.shape).encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    if prepared.embedding_matrix is None:
        digest.update(f"random:{prepared.matrix_rows}".encode())
    else:
        used = int(max(prepared.x_train.max(initial=0), prepared.x_val.max(initial=0))) + 1
        digest.update(np.ascontiguousarray(prepared.embedding_matrix[:used]).tobytes())
    return digest.hexdigest()[:24]


def training_identity(config: config_module.TrainerConfig, data_digest: str) -> str:
    """What decides a network trial's numbers: the readable data and every setting outside the data."""
    settings = {name: getattr(config, name) for name in config_module.factor_names("training")}
    # The seed reaches training through the init and order seeds in effect (the split is in the data digest), so
    # init_seed left unset and init_seed set to the seed train alike and merge; so do dropout left unset and set to
    # the architecture's own.
    settings.update(init_seed=config.effective_init_seed, order_seed=config.effective_order_seed,
                    dropout=config.effective_dropout, embedding=config.embedding, data=data_digest)
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:24]


@dataclasses.dataclass(frozen=True)
class Plan:
    """The trials that train (``train``) and the ones that share another's result (``shares``: key -> trial)."""

    train: list[spec_module.Trial]
    shares: dict[str, spec_module.Trial]
    members: dict[str, spec_module.Trial]

    @property
    def merged(self) -> list[tuple[spec_module.Trial, spec_module.Trial]]:
        """(member that does not train, trial it shares) pairs, in sweep order."""
        return [(self.members[key], primary) for key, primary in self.shares.items()]


def plan_trials(spec: spec_module.SweepSpec, data_digests: dict[str, str]) -> Plan:
    """Group the sweep's trials; ``data_digests`` maps ``TrainerConfig.digest()`` to ``content_digest``."""
    first: dict[str, spec_module.Trial] = {}
    train, shares, members = [], {}, {}
    for trial in spec.trials():
        config = spec.trial_config(trial)
        if not spec.trainer_of(trial).prepares_data or config.digest() not in data_digests:
            train.append(trial)
            continue
        identity = training_identity(config, data_digests[config.digest()])
        if identity in first:
            shares[trial.key] = first[identity]
            members[trial.key] = trial
        else:
            first[identity] = trial
            train.append(trial)
    return Plan(train=train, shares=shares, members=members)


def record_shared(tracking_uri: str, experiment_id: str, parent_run_id: str, spec: spec_module.SweepSpec,
                  plan: Plan, *, trial_params) -> int:
    """Give every member that did not train a FINISHED child run with its trial's results; returns how many."""
    client = mlflow_runs.client_for(tracking_uri)
    runs = {run.data.tags.get(names.TRIAL_ID_TAG): run
            for run in mlflow_runs.child_runs(tracking_uri, experiment_id, parent_run_id)}
    recorded = 0
    for member, primary in plan.merged:
        source = runs.get(primary.key)
        if (member.key in runs and runs[member.key].info.status == "FINISHED") or source is None \
                or source.info.status != "FINISHED":
            continue
        tags = {names.PARENT_TAG: parent_run_id, names.ROLE_TAG: names.ROLE_TRIAL, names.TRIAL_ID_TAG: member.key,
                names.CELL_TAG: member.label, names.TRAINER_TAG: names.TRAINER_KERAS,
                names.SHARES_TRIAL_TAG: primary.key}
        tags.update({key: value for key, value in source.data.tags.items()
                     if key in (names.GIT_COMMIT_TAG, names.VERSIONS_TAG, names.DEVICE_TAG, names.ARCHIVE_SHA256_TAG)})
        run = client.create_run(experiment_id, tags=tags, run_name=f"{source.info.run_name} (shared)")
        params = trial_params(spec, member, spec.trial_config(member))
        values: list[Any] = []
        for key in source.data.metrics:
            values += client.get_metric_history(source.info.run_id, key)
        mlflow_runs.log_to_run(tracking_uri, run.info.run_id, params=params)
        mlflow_runs.log_metric_values(tracking_uri, run.info.run_id, values)
        mlflow_runs.end_run(tracking_uri, run.info.run_id, "FINISHED")
        recorded += 1
    return recorded
