"""MLflow logging for sweeps: one parent run per sweep, one child run per trial (docs/DESIGN.md schema).

The schema is binding (the report reads exactly this); every name is a constant of ``sweeps.tracking.names``:

- parent run: tags ``glovesweep.role=sweep``, ``glovesweep.sweep_name``, ``glovesweep.sweep_hash``; the
  sweep file as the artifact ``sweep.yaml`` (and the effective spec as ``sweep_effective.json``); a search's
  distributions as ``glovesweep.space``;
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

from sweeps.spec import space as space_module
from sweeps.spec import stages
from sweeps.tracking import names
from sweeps.tracking import search

logger = logging.getLogger(__name__)

# The names live in sweeps.tracking.names; these aliases keep the callers that read them from here working.
ROLE_TAG = names.ROLE_TAG
TRIAL_ID_TAG = names.TRIAL_ID_TAG
CELL_TAG = names.CELL_TAG
SWEEP_NAME_TAG = names.SWEEP_NAME_TAG
SWEEP_HASH_TAG = names.SWEEP_HASH_TAG
PARENT_TAG = names.PARENT_TAG
STEP_METRICS = names.STEP_METRICS
VERSION_PACKAGES = ("glovesweep", "tensorflow", "keras", "numpy", "scikit-learn", "ray", "mlflow")
# sqlite allows one writer at a time; concurrent trials retry a locked database instead of failing.
_RETRIES = 8

T = TypeVar("T")


def client_for(tracking_uri: str):
    """An ``MlflowClient`` for ``tracking_uri`` (no fluent, process-global run state)."""
    return _client(tracking_uri)


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


def with_lock_retries(call: Callable[[], T], *, what: str) -> T:
    """Run an MLflow call, retrying transient sqlite lock errors (other errors propagate at once)."""
    return _retry(call, what=what)


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


def start_parent_run(tracking_uri: str, experiment_id: str, *, spec, tags: dict[str, str],
                     params: dict[str, str] | None = None) -> str:
    """Create the sweep's parent run with its ``params``; log the sweep file and the effective spec as
    artifacts. Returns its id."""
    import json

    client = _client(tracking_uri)
    all_tags = {names.ROLE_TAG: names.ROLE_SWEEP, names.SWEEP_NAME_TAG: spec.name,
                names.SWEEP_HASH_TAG: spec.source_sha256, names.SMOKE_TEST_TAG: str(spec.smoke_test).lower(),
                names.EPOCHS_TAG: ",".join(map(str, spec.epochs)), names.FACTORS_TAG: ",".join(spec.factor_names),
                names.TRAINER_NAME_TAG: spec.trainer, names.OBJECTIVE_TAG: spec.main_trainer.objective.as_text(),
                **tags}
    if spec.space:
        # A search: its distributions, which the report reads to tell a search from a grid and to refit Optuna.
        all_tags[names.SPACE_TAG] = json.dumps(space_module.to_records(spec.space))
    run_name = f"{spec.name}{' (smoke)' if spec.smoke_test else ''}"
    run = _retry(lambda: client.create_run(experiment_id, tags=all_tags, run_name=run_name), what="create parent")
    run_id = run.info.run_id
    if params:
        log_to_run(tracking_uri, run_id, params=params)
    _retry(lambda: client.log_text(run_id, spec.source_text, "sweep.yaml"), what="log sweep file")
    _retry(lambda: client.log_text(run_id, json.dumps(spec.to_dict(), indent=1, sort_keys=True),
                                   "sweep_effective.json"), what="log spec")
    return run_id


def log_to_run(tracking_uri: str, run_id: str, *, params: dict[str, Any] | None = None,
               tags: dict[str, Any] | None = None, metrics: dict[str, float] | None = None) -> None:
    """Log params, tags and step-0 metrics to a run in batches of MLflow's limits."""
    from mlflow import entities

    client = _client(tracking_uri)
    now = int(time.time() * 1000)
    items = ([("params", entities.Param(key, _param_text(value))) for key, value in (params or {}).items()]
             + [("tags", entities.RunTag(key, str(value))) for key, value in (tags or {}).items()]
             + [("metrics", entities.Metric(key, float(value), now, 0)) for key, value in (metrics or {}).items()])
    for start in range(0, len(items), 100):  # MLflow's batch limit for params and tags is 100.
        chunk = items[start:start + 100]
        grouped = {kind: [item for name, item in chunk if name == kind] for kind in ("params", "tags", "metrics")}
        _retry(lambda: client.log_batch(run_id, **grouped), what="log to run")


def set_experiment_tags(tracking_uri: str, experiment_id: str, tags: dict[str, str]) -> None:
    client = _client(tracking_uri)
    for key, value in tags.items():
        _retry(lambda: client.set_experiment_tag(experiment_id, key, value), what="set experiment tag")


def reopen_run(tracking_uri: str, run_id: str) -> None:
    """Mark a run RUNNING again (a resumed sweep's parent)."""
    client = _client(tracking_uri)
    _retry(lambda: client.update_run(run_id, status="RUNNING"), what="reopen run")


def run_by_id(tracking_uri: str, run_id: str):
    """The ``mlflow.entities.Run`` with this id."""
    client = _client(tracking_uri)
    return _retry(lambda: client.get_run(run_id), what="get run")


def run_status(tracking_uri: str, run_id: str) -> str:
    """A run's status (``RUNNING``, ``FINISHED``, ``FAILED``, ``KILLED``...)."""
    client = _client(tracking_uri)
    return _retry(lambda: client.get_run(run_id), what="get run").info.status


def end_run(tracking_uri: str, run_id: str, status: str) -> None:
    """Set a run's final status (``FINISHED``, ``FAILED`` or ``KILLED``)."""
    client = _client(tracking_uri)
    _retry(lambda: client.set_terminated(run_id, status=status), what="end run")


def find_trial_run(tracking_uri: str, experiment_id: str, parent_run_id: str, trial_id: str):
    """The child run a trial made earlier (``mlflow.entities.Run``), or None."""
    from mlflow.entities import ViewType

    client = _client(tracking_uri)
    query = f"tags.`{names.TRIAL_ID_TAG}` = '{trial_id}' and tags.`{names.PARENT_TAG}` = '{parent_run_id}'"
    runs = _retry(lambda: client.search_runs([experiment_id], filter_string=query, run_view_type=ViewType.ALL,
                                             max_results=10), what="find trial run")
    if len(runs) > 1:
        logger.warning("%d MLflow runs carry trial id %s; continuing the oldest", len(runs), trial_id)
    return min(runs, key=lambda run: run.info.start_time) if runs else None


def child_runs(tracking_uri: str, experiment_id: str, parent_run_id: str) -> list:
    """Every child run of a sweep's parent run (any status, deleted ones too), oldest first."""
    return _retry(lambda: search.child_runs(tracking_uri, parent_run_id, experiment_ids=[experiment_id],
                                          deleted_too=True), what="list runs")


def trial_statuses(tracking_uri: str, experiment_id: str, parent_run_id: str, *,
                   stage: str | None = None) -> dict[str, str]:
    """Trial key (tag ``glovesweep.trial_id``) -> status of its child run; the oldest run wins a duplicate.

    ``stage``: only a search's runs of that stage (tag ``glovesweep.stage``; runs without one count as ``search``).
    """
    statuses: dict[str, str] = {}
    for run in child_runs(tracking_uri, experiment_id, parent_run_id):
        key = run.data.tags.get(TRIAL_ID_TAG)
        if stage is not None and run.data.tags.get(names.STAGE_TAG, stages.SEARCH) != stage:
            continue
        if key and key not in statuses:
            statuses[key] = run.info.status
    return statuses


def mark_trial(tracking_uri: str, experiment_id: str, parent_run_id: str, trial_id: str, status: str,
               *, only_if_running: bool = True) -> bool:
    """Driver side: set a trial's child run to ``status`` (a killed worker cannot). True when changed."""
    run = find_trial_run(tracking_uri, experiment_id, parent_run_id, trial_id)
    if run is None or (only_if_running and run.info.status != "RUNNING"):
        return False
    end_run(tracking_uri, run.info.run_id, status)
    return True


def log_metric_values(tracking_uri: str, run_id: str, metrics: list) -> None:
    """Log ``mlflow.entities.Metric`` values in batches of MLflow's limit (1,000 per request)."""
    client = _client(tracking_uri)
    for start in range(0, len(metrics), 1000):
        _retry(lambda: client.log_batch(run_id, metrics=metrics[start:start + 1000]), what="log metrics")


def param_text(value: Any) -> str:
    """A param value as MLflow stores it (``nan`` for a float NaN)."""
    return _param_text(value)


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


def metric_history(tracking_uri: str, run_id: str, key: str) -> list:
    """Every value of ``key`` logged in a run (``mlflow.entities.Metric``: value, step, timestamp in ms)."""
    return _retry(lambda: _client(tracking_uri).get_metric_history(run_id, key), what="metric history")


def metric_steps(tracking_uri: str, run_id: str, key: str) -> list[int]:
    """Steps at which ``key`` was logged in a run, sorted."""
    return sorted(metric.step for metric in metric_history(tracking_uri, run_id, key))
