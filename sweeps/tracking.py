"""MLflow logging for sweeps: one parent run per sweep, one child run per trial (docs/DESIGN.md schema).

The schema is binding (the report reads exactly this):

- parent run: tags ``glovesweep.role=sweep``, ``glovesweep.sweep_name``, ``glovesweep.sweep_hash``; the
  sweep file as the artifact ``sweep.yaml`` (and the effective spec as ``sweep_effective.json``);
- child run: tags ``mlflow.parentRunId``, ``glovesweep.role=trial``, ``glovesweep.trial_id``,
  ``glovesweep.cell``, ``trainer`` (``keras`` / ``baseline``); params: every ``TrainerConfig`` field plus
  ``factors`` (and ``baseline`` for baselines); step metrics ``loss``, ``acc``, ``val_loss``, ``val_acc``,
  ``epoch_seconds`` per epoch; summary metrics ``val_acc_at_<E>``, ``val_loss_at_<E>``, ``leakage``,
  ``glove_coverage``, ``out_of_range_ids``; provenance tags ``git_commit``, ``archive_sha256``,
  ``glove_source``, ``device``, ``versions``.

A trial creates its child run itself, or finds and continues the one it made before (by the tag
``glovesweep.trial_id`` under the parent run), so a retried or resumed trial never duplicates a run.
Only ``MlflowClient`` is used (no fluent active-run state), so reused Ray workers carry nothing over.
"""

from __future__ import annotations

import importlib.metadata
import logging
import math
import pathlib
import subprocess
import time
import urllib.error
import urllib.request
from typing import Any, Callable, TypeVar

logger = logging.getLogger(__name__)

ROLE_TAG = "glovesweep.role"
TRIAL_ID_TAG = "glovesweep.trial_id"
CELL_TAG = "glovesweep.cell"
SWEEP_NAME_TAG = "glovesweep.sweep_name"
SWEEP_HASH_TAG = "glovesweep.sweep_hash"
PARENT_TAG = "mlflow.parentRunId"
STEP_METRICS = ("loss", "acc", "val_loss", "val_acc", "epoch_seconds")
VERSION_PACKAGES = ("glovesweep", "tensorflow", "keras", "numpy", "scikit-learn", "ray", "mlflow")
# sqlite allows one writer at a time; concurrent trials retry a locked database instead of failing.
_RETRIES = 8

T = TypeVar("T")


def _client(tracking_uri: str):
    from mlflow import tracking as mlflow_tracking

    return mlflow_tracking.MlflowClient(tracking_uri=tracking_uri)


def _retry(call: Callable[[], T], *, what: str) -> T:
    """Run an MLflow call, retrying transient sqlite lock errors with a growing pause."""
    for attempt in range(_RETRIES):
        try:
            return call()
        except Exception as error:  # noqa: BLE001 - MLflow wraps driver errors in several types
            transient = "database is locked" in str(error) or "database table is locked" in str(error)
            if not transient or attempt == _RETRIES - 1:
                raise
            logger.info("MLflow %s: database locked, retrying (%d)", what, attempt + 1)
            time.sleep(0.2 * 2 ** attempt)
    raise AssertionError("unreachable")


def check_reachable(tracking_uri: str, *, timeout: float = 10.0) -> None:
    """Raise ``OSError`` naming the URI and the fix when the tracking store cannot be used; no run is created.

    ``http(s)://`` servers are asked for ``/health`` with a short timeout (MLflow's own client would retry
    for minutes); a ``sqlite:///`` file needs a writable folder; then one real query is made.
    """
    if tracking_uri.startswith(("http://", "https://")):
        url = tracking_uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - user's tracking server
                response.read()
        except (urllib.error.URLError, OSError) as error:
            raise OSError(f"MLflow tracking server {tracking_uri} is unreachable ({error}); start it (mlflow server "
                          f"--host 127.0.0.1 --port ...) or set mlflow.tracking_uri / --tracking-uri") from error
    elif tracking_uri.startswith("sqlite:///"):
        folder = pathlib.Path(tracking_uri[len("sqlite:///"):]).parent
        if not folder.is_dir():
            raise OSError(f"MLflow tracking store {tracking_uri}: folder {folder} does not exist; create it or "
                          f"set mlflow.tracking_uri / --tracking-uri")
    try:
        _retry(lambda: _client(tracking_uri).search_experiments(max_results=1), what="check")
    except Exception as error:  # noqa: BLE001 - any failure here means the store is unusable
        raise OSError(f"MLflow tracking store {tracking_uri} is not usable: {error}") from error


def ensure_experiment(tracking_uri: str, name: str) -> str:
    """Experiment id of ``name``, creating it when absent (safe when several processes race)."""
    client = _client(tracking_uri)
    experiment = _retry(lambda: client.get_experiment_by_name(name), what="get experiment")
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            raise ValueError(f"MLflow experiment {name!r} is deleted; restore it (mlflow experiments restore) "
                             f"or choose another mlflow.experiment")
        return experiment.experiment_id
    try:
        return _retry(lambda: client.create_experiment(name), what="create experiment")
    except Exception:  # noqa: BLE001 - another process created it first
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def git_commit() -> tuple[str, bool]:
    """(commit hash, dirty) of the checkout this package runs from; ("unknown", False) outside git."""
    folder = pathlib.Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "-C", str(folder), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        return commit, bool(status)
    except (OSError, subprocess.SubprocessError):
        return "unknown", False


def package_versions() -> str:
    """``name=version`` of the packages that shape a result, joined by ``;`` (the ``versions`` tag)."""
    found = []
    for name in VERSION_PACKAGES:
        try:
            found.append(f"{name}={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{name}=absent")
    return ";".join(found)


def start_parent_run(tracking_uri: str, experiment_id: str, *, spec, tags: dict[str, str]) -> str:
    """Create the sweep's parent run; log the sweep file and the effective spec as artifacts. Returns its id."""
    import json

    client = _client(tracking_uri)
    all_tags = {ROLE_TAG: "sweep", SWEEP_NAME_TAG: spec.name, SWEEP_HASH_TAG: spec.source_sha256,
                "glovesweep.smoke_test": str(spec.smoke_test).lower(),
                "glovesweep.epochs": ",".join(map(str, spec.epochs)),
                "glovesweep.factors": ",".join(spec.factor_names), **tags}
    run_name = f"{spec.name}{' (smoke)' if spec.smoke_test else ''}"
    run = _retry(lambda: client.create_run(experiment_id, tags=all_tags, run_name=run_name), what="create parent")
    run_id = run.info.run_id
    _retry(lambda: client.log_text(run_id, spec.source_text, "sweep.yaml"), what="log sweep file")
    _retry(lambda: client.log_text(run_id, json.dumps(spec.to_dict(), indent=1, sort_keys=True),
                                   "sweep_effective.json"), what="log spec")
    return run_id


def reopen_run(tracking_uri: str, run_id: str) -> None:
    """Mark a run RUNNING again (a resumed sweep's parent)."""
    client = _client(tracking_uri)
    _retry(lambda: client.update_run(run_id, status="RUNNING"), what="reopen run")


def end_run(tracking_uri: str, run_id: str, status: str) -> None:
    """Set a run's final status (``FINISHED``, ``FAILED`` or ``KILLED``)."""
    client = _client(tracking_uri)
    _retry(lambda: client.set_terminated(run_id, status=status), what="end run")


def find_trial_run(tracking_uri: str, experiment_id: str, parent_run_id: str, trial_id: str):
    """The child run a trial made earlier (``mlflow.entities.Run``), or None."""
    from mlflow.entities import ViewType

    client = _client(tracking_uri)
    query = f"tags.`{TRIAL_ID_TAG}` = '{trial_id}' and tags.`{PARENT_TAG}` = '{parent_run_id}'"
    runs = _retry(lambda: client.search_runs([experiment_id], filter_string=query, run_view_type=ViewType.ALL,
                                             max_results=10), what="find trial run")
    if len(runs) > 1:
        logger.warning("%d MLflow runs carry trial id %s; continuing the oldest", len(runs), trial_id)
    return min(runs, key=lambda run: run.info.start_time) if runs else None


def child_runs(tracking_uri: str, experiment_id: str, parent_run_id: str) -> list:
    """Every child run of a sweep's parent run (any status), oldest first."""
    from mlflow.entities import ViewType

    client = _client(tracking_uri)
    runs, token = [], None
    while True:
        page = _retry(lambda: client.search_runs([experiment_id], filter_string=f"tags.`{PARENT_TAG}` = "
                                                 f"'{parent_run_id}'", run_view_type=ViewType.ALL,
                                                 max_results=1000, page_token=token), what="list runs")
        runs.extend(page)
        token = page.token
        if not token:
            return sorted(runs, key=lambda run: run.info.start_time)


def mark_trial(tracking_uri: str, experiment_id: str, parent_run_id: str, trial_id: str, status: str,
               *, only_if_running: bool = True) -> bool:
    """Driver side: set a trial's child run to ``status`` (a killed worker cannot). True when changed."""
    run = find_trial_run(tracking_uri, experiment_id, parent_run_id, trial_id)
    if run is None or (only_if_running and run.info.status != "RUNNING"):
        return False
    end_run(tracking_uri, run.info.run_id, status)
    return True


class TrialRun:
    """The child run of one trial, created or continued; used inside the Ray trial.

    Parameters
    ----------
    tracking_uri, experiment_id, parent_run_id : str
    trial_id : str
        Ray Tune's trial id: stable across retries and ``Tuner.restore``.
    """

    def __init__(self, tracking_uri: str, experiment_id: str, parent_run_id: str, trial_id: str) -> None:
        self.tracking_uri = tracking_uri
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.trial_id = trial_id
        self.client = _client(tracking_uri)
        self.run_id = ""
        self.continued = False
        self._logged_steps: set[tuple[str, int]] = set()
        self._logged_params: dict[str, str] = {}

    def find(self):
        """This trial's earlier child run (``mlflow.entities.Run``), or None."""
        return find_trial_run(self.tracking_uri, self.experiment_id, self.parent_run_id, self.trial_id)

    def start(self, *, run_name: str, cell: str, trainer: str, params: dict[str, Any], tags: dict[str, str],
              existing=None) -> str:
        """Create the child run, or continue ``existing`` (this trial's earlier run; status back to RUNNING).

        Returns the run id.
        """
        if existing is None:
            run_tags = {PARENT_TAG: self.parent_run_id, ROLE_TAG: "trial", TRIAL_ID_TAG: self.trial_id,
                        CELL_TAG: cell, "trainer": trainer}
            run = _retry(lambda: self.client.create_run(self.experiment_id, tags=run_tags, run_name=run_name),
                         what="create trial run")
            self.run_id = run.info.run_id
        else:
            self.run_id = existing.info.run_id
            self.continued = True
            self._logged_params = dict(existing.data.params)
            for key in STEP_METRICS:
                history = _retry(lambda: self.client.get_metric_history(self.run_id, key), what="metric history")
                self._logged_steps.update((key, metric.step) for metric in history)
            _retry(lambda: self.client.update_run(self.run_id, status="RUNNING"), what="reopen trial run")
        self.log_params(params)
        self.set_tags(tags)
        return self.run_id

    def log_params(self, params: dict[str, Any]) -> None:
        """Log params not logged yet (MLflow params are write-once; a continued run keeps its values)."""
        from mlflow import entities

        new = {key: _param_text(value) for key, value in params.items() if key not in self._logged_params}
        if not new:
            return
        items = [entities.Param(key, value) for key, value in new.items()]
        for start in range(0, len(items), 100):  # MLflow's batch limit is 100 params.
            _retry(lambda: self.client.log_batch(self.run_id, params=items[start:start + 100]), what="log params")
        self._logged_params.update(new)

    def set_tags(self, tags: dict[str, Any]) -> None:
        from mlflow import entities

        if tags:
            items = [entities.RunTag(key, str(value)) for key, value in tags.items()]
            _retry(lambda: self.client.log_batch(self.run_id, tags=items), what="set tags")

    def log_metrics(self, metrics: dict[str, float], *, step: int = 0) -> None:
        """Log metrics at ``step``; a step already logged for a key (a re-run epoch after a retry) is skipped."""
        from mlflow import entities

        now = int(time.time() * 1000)
        items = []
        for key, value in metrics.items():
            if (key, step) in self._logged_steps or value is None:
                continue
            items.append(entities.Metric(key, float(value), now, step))
            self._logged_steps.add((key, step))
        if items:
            _retry(lambda: self.client.log_batch(self.run_id, metrics=items), what="log metrics")

    def log_epoch(self, epoch: int, metrics: dict[str, float], *, requested_epochs: list[int]) -> None:
        """Step metrics for a 1-based ``epoch``, plus ``val_acc_at_<E>``/``val_loss_at_<E>`` when E is requested."""
        self.log_metrics({key: metrics[key] for key in STEP_METRICS if key in metrics}, step=epoch)
        if epoch in requested_epochs:
            self.log_metrics({f"val_acc_at_{epoch}": metrics["val_acc"],
                              f"val_loss_at_{epoch}": metrics["val_loss"]}, step=0)

    def end(self, status: str) -> None:
        _retry(lambda: self.client.set_terminated(self.run_id, status=status), what="end trial run")


def summary_from_history(history: dict[str, Any], requested_epochs: list[int]) -> dict[str, float]:
    """``val_acc_at_<E>`` and ``val_loss_at_<E>`` for every requested E the history reached."""
    summary = {}
    for epoch_count in requested_epochs:
        if epoch_count in history.get("epoch", []):
            index = history["epoch"].index(epoch_count)
            summary[f"val_acc_at_{epoch_count}"] = history["val_acc"][index]
            summary[f"val_loss_at_{epoch_count}"] = history["val_loss"][index]
    return summary


def stats_metrics(stats: dict[str, Any]) -> dict[str, float]:
    """The summary metrics taken from ``Prepared.stats``: leakage, GloVe coverage, out-of-range ids."""
    chosen = {}
    for key in ("leakage", "glove_coverage", "out_of_range_ids", "vocabulary_size", "num_train", "num_val",
                "dropped_duplicates", "glove_found"):
        value = stats.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            chosen[key] = float(value)
    return chosen


def _param_text(value: Any) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return str(value)



# ------------------------------------------------------------------------------ the sweep service (submit)
SWEEP_DIR_TAG = "glovesweep.sweep_dir"
SWEEP_ID_TAG = "glovesweep.sweep_id"
# Set by the sweep's job once the cluster can run its trials, or to the reason why it never can.
RESOURCES_TAG = "glovesweep.resources"


def set_run_tags(tracking_uri: str, run_id: str, tags: dict[str, Any]) -> None:
    """Set (or overwrite) tags of an existing run."""
    from mlflow import entities

    items = [entities.RunTag(key, str(value)) for key, value in tags.items()]
    _retry(lambda: _client(tracking_uri).log_batch(run_id, tags=items), what="set run tags")


def get_run(tracking_uri: str, run_id: str):
    """The run (``mlflow.entities.Run``); ``OSError`` naming the store when it holds no such run."""
    try:
        return _retry(lambda: _client(tracking_uri).get_run(run_id), what="get run")
    except Exception as error:  # noqa: BLE001 - MLflow raises MlflowException for a missing run
        raise OSError(f"MLflow tracking store {tracking_uri} has no run {run_id} ({error})") from error


def metric_steps(tracking_uri: str, run_id: str, key: str) -> list[int]:
    """Steps at which ``key`` was logged in a run, sorted."""
    history = _retry(lambda: _client(tracking_uri).get_metric_history(run_id, key), what="metric history")
    return sorted(metric.step for metric in history)
