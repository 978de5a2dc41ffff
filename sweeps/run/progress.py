"""Driver-side progress: one concise line per trial event, and MLflow status a dead worker could not set."""

from __future__ import annotations

import logging
import pathlib
import sys
import time

from ray import tune

from sweeps import console
from sweeps.tracking import mlflow_runs
from sweeps.tracking import names
from sweeps.run import trial as trial_module

logger = logging.getLogger(__name__)


class SweepCallback(tune.Callback):
    """Driver-side: one concise progress line per event, and MLflow status a dead worker could not set.

    Holds only strings and numbers, so Tune can pickle it into the experiment state. The trial count comes
    from Tune at the start (``setup``): with ``max_concurrent_trials`` Tune creates a trial only when a slot is
    free, so the trials it has not created yet are pending too. Each epoch's line shows ``objective``, the
    sweep's objective metric (its trainer's first), or ``val_acc`` where a trial reports no such metric (the
    TF-IDF baselines beside the network).
    """

    def __init__(self, tracking_uri: str, experiment_id: str, parent_run_id: str, *,
                 objective: str = names.VAL_ACC) -> None:
        self.tracking_uri = tracking_uri
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.objective = objective
        self.reported_outage = False
        self.total_trials: int | None = None

    def setup(self, stop=None, num_samples=None, total_num_samples=None, **info):
        # Tune's count of the trials its grid makes (ray/tune/tune.py passes search_alg.total_samples).
        self.total_trials = total_num_samples

    def _counts(self, trials) -> str:
        return counts_text([trial.status for trial in trials], self.total_trials)

    def _name(self, tune_trial) -> str:
        task = trial_module.TrialTask.of_config(tune_trial.config)
        trial = task.trial
        seeds = f" seeds={','.join(map(str, task.seeds))}" if task.seeds else f" seed={trial.seed}"
        return f"{trial.baseline or ''} {trial.label}".strip() + seeds

    def _print(self, trials, message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {self._counts(trials)} | {message}", flush=True)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        pending = int(result.get("mlflow_pending") or 0)
        if pending and not self.reported_outage:
            self._print(trials, f"MLflow at {self.tracking_uri} is unreachable: {pending} metric values of "
                                f"{self._name(trial)} wait in its buffer; training goes on, they are sent when it "
                                f"answers")
        elif not pending and self.reported_outage:
            self._print(trials, f"MLflow at {self.tracking_uri} answers again; buffered values sent")
        self.reported_outage = bool(pending)
        shown = next((name for name in (self.objective, names.VAL_ACC) if isinstance(result.get(name), (int, float))),
                     None)
        if shown is not None:
            epoch = result.get("epoch", result.get("training_iteration"))
            self._print(trials, f"{self._name(trial)}: epoch {epoch} {shown} {result[shown]:.4g}")

    def on_trial_complete(self, iteration, trials, trial, **info):
        # A scheduler-stopped trial (ASHA) never reaches its own end; its run is finished here.
        self._mark(trial, "FINISHED")
        self._print(trials, f"{self._name(trial)}: done")

    def on_trial_recover(self, iteration, trials, trial, **info):
        reason = error_summary(trial)
        self._print(trials, f"{self._name(trial)}: failed{': ' + reason if reason else ''}; retrying (from its last "
                            f"epoch checkpoint where its trainer keeps them)")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._mark(trial, "FAILED")
        reason = error_summary(trial)
        self._print(trials, f"{self._name(trial)}: FAILED{': ' + reason if reason else ''} "
                            f"(see {trial.local_path or trial.path})")

    def _mark(self, trial, status: str) -> None:
        try:
            # A configuration trained at several seeds (sweeps.run.seed_group): each seed's run.
            for seed_trial in trial_module.TrialTask.of_config(trial.config).seed_trials():
                mlflow_runs.mark_trial(self.tracking_uri, self.experiment_id, self.parent_run_id, seed_trial.key,
                                       status)
        except Exception as error:  # noqa: BLE001 - progress must not stop the sweep
            logger.warning("could not set MLflow status of trial %s: %s", trial.trial_id, error)


def counts_text(statuses: list[str], total: int | None) -> str:
    """``2 done, 2 running, 0 failed, 4 pending``: Tune's trial statuses counted, against the sweep's total.

    Parameters
    ----------
    statuses : list of str
        The status (``PENDING``, ``RUNNING``, ``TERMINATED``, ``ERROR``...) of each trial Tune created so far.
    total : int or None
        Trials of this Tune run; the ones Tune has not created yet count as pending. None: unknown (only the
        created ones count).
    """
    not_created = max(0, total - len(statuses)) if total is not None and total < sys.maxsize else 0
    return (f"{statuses.count('TERMINATED')} done, {statuses.count('RUNNING')} running, "
            f"{statuses.count('ERROR')} failed, {statuses.count('PENDING') + not_created} pending")


def error_summary(tune_trial) -> str:
    """The last line of a failed trial's error file (e.g. ``ValueError: ...``), no colour codes; "" if none.

    Tune's own traceback per failure is off (``TUNE_PRINT_ALL_TRIAL_ERRORS=0``, ``fitting.quiet_tune_output``):
    this line says why, the error file holds the traceback.
    """
    try:
        text = pathlib.Path(tune_trial.error_file).read_text(errors="replace")
    except (OSError, TypeError):
        return ""
    lines = console.plain_lines(text)
    return lines[-1][:300] if lines else ""
