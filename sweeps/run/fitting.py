"""One Tune run of a sweep, from building its Tuner to the runs' final status: what ``glovesweep run``, ``resume``
and a search's stages (``sweeps.run.confirm``) share.

``fit_and_finish`` builds and runs a Tuner, then counts the trials from their MLflow child runs and ends the
parent run FINISHED / FAILED / KILLED with no child run left RUNNING; ``run_config`` holds Tune's run settings
(retries, kept checkpoints, the progress lines) and ``trial_context`` what every trial of a sweep shares.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import shutil
import sys
import time
from typing import Any, Callable

from ray import tune

from sweeps import spec as spec_module
from sweeps.run import progress
from sweeps.run import shared_data
from sweeps.run import state as state_module
from sweeps.run import trial as trial_module
from sweeps.spec import stages
from sweeps.tracking import mlflow_runs
from sweeps.tracking import outbox

logger = logging.getLogger(__name__)

CHECKPOINTS_TO_KEEP = 2


@dataclasses.dataclass
class SweepResult:
    """What a finished (or interrupted) sweep left behind."""

    sweep_dir: str
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    total: int
    done: int
    failed: int
    seconds: float
    prepare_seconds: float = 0.0
    data_checksums: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.done == self.total


def run_config(spec: spec_module.SweepSpec, state: state_module.SweepState, *, name: str,
               storage_path: str) -> tune.RunConfig:
    """Tune's run settings: where it writes, retries from the last epoch, kept checkpoints, our progress lines."""
    quiet_tune_output()
    return tune.RunConfig(
        name=name,
        storage_path=storage_path,
        failure_config=tune.FailureConfig(max_failures=spec.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=CHECKPOINTS_TO_KEEP),
        callbacks=[progress.SweepCallback(state.identity.tracking_uri, state.identity.experiment_id,
                                          state.identity.parent_run_id,
                                          objective=spec.main_trainer.objective.name)],
        verbose=0,
    )


def trial_context(spec: spec_module.SweepSpec, state: state_module.SweepState,
                  shared: shared_data.SharedData) -> trial_module.TrialContext:
    """What every trial of the sweep shares: the spec, the prepared data and the sweep's state."""
    return trial_module.TrialContext(spec=spec, data=shared.data, data_keys=shared.keys, state=state)


def quiet_tune_output() -> None:
    """Tune's own tables and hints off: ``SweepCallback`` prints one line per event instead."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # One progress line per failed trial says why (progress.error_summary); Tune's traceback per attempt
    # (68-136 lines with colour codes, once per retry) stays in the trial's error file.
    os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")
    # Keeping 2 checkpoints per trial forces a state snapshot every few epochs; that is cheap, not a warning.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")


def fit_and_finish(make_tuner: Callable[[], tune.Tuner], state: state_module.SweepState, *, started: float,
                   trial_keys: list[str] | None, status_if_not_started: str = "FAILED",
                   after_fit: Callable[[], Any] | None = None) -> SweepResult:
    """Build and run the Tuner; end the parent run FINISHED / FAILED / KILLED, no child run left RUNNING.

    Trials are counted from their MLflow child runs (one per trial key; ``trial_keys`` None: a search's, every
    child run of its search stage), the record every reader uses.
    ``status_if_not_started`` is the parent's status when the Tuner cannot even be built (a resume keeps the
    parent's earlier status then). ``after_fit`` runs before the count (it records merged trials).
    """
    identity = state.identity
    tracking_uri, experiment_id, parent_run_id = identity.tracking_uri, identity.experiment_id, identity.parent_run_id
    sweep_dir = identity.sweep_dir
    try:
        tuner = make_tuner()
    except BaseException as error:
        close_runs(tracking_uri, experiment_id, parent_run_id, status_if_not_started, sweep_dir=sweep_dir)
        # Restoring the Tuner writes into the folder too (found by scripts/chaos.py --smoke: a resume during its
        # disk_full fault said only "[Errno 28] Error writing bytes to file").
        full = full_disk_error(error, sweep_dir)
        if full is not None:
            raise full from None
        raise
    try:
        results = tuner.fit()
    except BaseException as error:
        close_runs(tracking_uri, experiment_id, parent_run_id, "KILLED", sweep_dir=sweep_dir)
        full = full_disk_error(error, sweep_dir)
        if full is not None:
            raise full from None
        print(f"glovesweep: interrupted; continue with: glovesweep resume {sweep_dir}", file=sys.stderr, flush=True)
        raise
    total = len(trial_keys) if trial_keys is not None else len(results)
    try:
        outbox.replay(tracking_uri, experiment_id, sweep_dir)
        if after_fit is not None:
            after_fit()
        # A search counts its own trials; its stages count theirs (sweeps.run.confirm).
        statuses = mlflow_runs.trial_statuses(tracking_uri, experiment_id, parent_run_id,
                                              stage=stages.SEARCH if trial_keys is None else None)
        if trial_keys is None:
            trial_keys = list(statuses)
            total = len(trial_keys)
        done = sum(1 for key in trial_keys if statuses.get(key) == "FINISHED")
        failed = sum(1 for key in trial_keys if statuses.get(key) == "FAILED")
    except Exception as error:  # noqa: BLE001 - the server may be down right now: count from Tune
        if not outbox.unreachable(error):
            raise
        failed = results.num_errors
        done = len(results) - failed - (total - len(results))
    # Tune returns early (unfinished trials) when the sweep was interrupted with Ctrl-C.
    status = "FAILED" if failed else ("FINISHED" if done == total else "KILLED")
    close_runs(tracking_uri, experiment_id, parent_run_id, status, sweep_dir=sweep_dir)
    seconds = time.perf_counter() - started
    print(f"glovesweep: {done}/{total} trials done, {failed} failed in {seconds:.0f} s", flush=True)
    print(f"glovesweep: results in {sweep_dir}", flush=True)
    if status != "FINISHED":
        full = full_disk_message(sweep_dir)
        if full:
            print(full, file=sys.stderr, flush=True)
        print(f"glovesweep: {'retry the failed' if failed else 'finish the missing'} trials with: "
              f"glovesweep resume {sweep_dir}", flush=True)
    return SweepResult(sweep_dir=sweep_dir, tracking_uri=tracking_uri, experiment_id=experiment_id,
                       parent_run_id=parent_run_id, total=total, done=done, failed=failed, seconds=seconds)


def full_disk_error(error: BaseException, sweep_dir: str) -> OSError | None:
    """The one-line error that names the full results folder and the fix, where ``error`` came from a full disk
    (its errno, or the folder's free space: a full disk also truncates Tune's own error files, which it then fails
    to read back with an ``EOFError``); None otherwise."""
    full = full_disk_message(sweep_dir)
    if not full and not (isinstance(error, OSError) and error.errno == errno.ENOSPC):
        return None
    return OSError(full.replace("glovesweep: error: ", "") or
                   f"the results folder {sweep_dir} is full ({' '.join(str(error).split())[:120]}); free space there, "
                   f"then: glovesweep resume {sweep_dir}")


def full_disk_message(sweep_dir: str, *, minimum_free: int = 16 << 20) -> str:
    """One line when a local sweep folder's disk has less than ``minimum_free`` bytes left (checkpoints fail)."""
    if "://" in sweep_dir or not os.path.isdir(sweep_dir):
        return ""
    free = shutil.disk_usage(sweep_dir).free
    if free >= minimum_free:
        return ""
    return (f"glovesweep: error: the results folder {sweep_dir} is full ({free // 1024} KB free): trials could not "
            f"save their checkpoints; free space there, then: glovesweep resume {sweep_dir}")


def close_runs(tracking_uri: str, experiment_id: str, parent_run_id: str, parent_status: str, *,
               sweep_dir: str = "") -> None:
    """After the Tuner: a child still RUNNING has no live worker; it ends FAILED (KILLED when interrupted).

    With the tracking server down, the statuses go to the sweep's outbox, applied when it answers again (at
    the end of this sweep or at the next ``resume``), so no run stays RUNNING for good.
    """
    child_status = "KILLED" if parent_status == "KILLED" else "FAILED"
    try:
        for run in mlflow_runs.child_runs(tracking_uri, experiment_id, parent_run_id):
            if run.info.status == "RUNNING":
                mlflow_runs.end_run(tracking_uri, run.info.run_id, child_status)
        mlflow_runs.end_run(tracking_uri, parent_run_id, parent_status)
    except Exception as error:  # noqa: BLE001 - closing runs must not hide the sweep's own outcome
        if sweep_dir and outbox.unreachable(error):
            path = outbox.write(sweep_dir, run_id=parent_run_id, status=parent_status, children_status=child_status)
            print(f"glovesweep: MLflow at {tracking_uri} is unreachable; the runs' final status ({parent_status}) "
                  f"is kept in {path} and applied when it answers (or by: glovesweep resume {sweep_dir})",
                  file=sys.stderr, flush=True)
        else:
            logger.warning("could not close MLflow runs of parent %s: %s", parent_run_id, error)

