"""MLflow writes that could not be sent while the tracking server was down, kept until it answers.

A trial that ends while the server is unreachable, or a driver that must close runs then, writes what it could
not send (metric values and final run statuses) as one JSON file into ``<sweep dir>/mlflow-outbox/``. The
driver replays the folder at the end of the sweep and ``glovesweep resume`` at its start; a file is removed
only once everything in it was accepted. Nothing is lost, and no run stays RUNNING once its process is gone.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import uuid
from typing import Any, Iterator

from sweeps import storage

logger = logging.getLogger(__name__)

FOLDER = "mlflow-outbox"
# MLflow 3.17.2 reads its HTTP settings from the environment on every request (``http_request`` in
# mlflow/utils/rest_utils.py) and keeps one requests session per retry setting and process
# (``_cached_get_request_session`` in mlflow/utils/request_utils.py), so a value set for a block of code applies
# to exactly the requests made inside it.
RETRIES_VARIABLE = "MLFLOW_HTTP_REQUEST_MAX_RETRIES"
BACKOFF_VARIABLE = "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"
TIMEOUT_VARIABLE = "MLFLOW_HTTP_REQUEST_TIMEOUT"
# Driver side: urllib3 waits 0, 2, 4, 8 and 16 s between the 6 attempts (30 s for a server that is down, far
# from MLflow's default of about 4 minutes); one attempt waits at most 30 s for an answer.
DRIVER_SETTINGS = {RETRIES_VARIABLE: "5", BACKOFF_VARIABLE: "1", TIMEOUT_VARIABLE: "30"}
# A trial's own calls: one attempt of at most 10 s; the trial buffers or retries itself (``trial_run``).
TRIAL_SETTINGS = {RETRIES_VARIABLE: "0", TIMEOUT_VARIABLE: "10"}


def _outage_types() -> tuple[type[BaseException], ...]:
    import requests
    import urllib3

    # A 5xx answer repeated until the retries ran out arrives as urllib3's MaxRetryError, wrapped in requests'
    # RetryError: a proxy in front of a server that is down answers 502/503/504.
    return (ConnectionError, TimeoutError, requests.exceptions.ConnectionError, requests.exceptions.Timeout,
            requests.exceptions.RetryError, urllib3.exceptions.HTTPError)


def unreachable(error: BaseException) -> bool:
    """Whether ``error`` means the tracking server did not answer (rather than refused a request).

    MLflow wraps requests' error in an ``MlflowException``: a refused connection as its ``__context__``, a
    timeout as its ``__cause__``. The chain is walked for a connection or timeout error of Python, requests or
    urllib3; an error the server answered (a 4xx, a bad value) is not an outage whatever its text says.
    """
    outage_types = _outage_types()
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, outage_types):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def driver_client_settings() -> None:
    """MLflow's HTTP client in a driver process (run, resume, submit, the report): bounded retries.

    A brief outage (a restarted server) is waited out for about 30 s with MLflow's own backoff instead of
    failing a sweep's start, its parent run or its report. A value the user exported is kept.
    """
    for name, value in DRIVER_SETTINGS.items():
        os.environ.setdefault(name, value)


@contextlib.contextmanager
def trial_client_settings() -> Iterator[None]:
    """Inside the block, MLflow calls fail fast (no retries, 10 s timeout): a trial must not block on one.

    For a trial worker's calls only, which buffer metric values and retry with their own bounded backoff
    (``sweeps.tracking.trial_run``); the previous values are put back after the block.
    """
    with environment(TRIAL_SETTINGS):
        yield


@contextlib.contextmanager
def environment(values: dict[str, str], *, removed: tuple[str, ...] = ()) -> Iterator[None]:
    """Set ``values`` and unset ``removed`` in ``os.environ`` for the block; every variable is put back after it."""
    previous = {name: os.environ.get(name) for name in (*values, *removed)}
    os.environ.update(values)
    for name in removed:
        os.environ.pop(name, None)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def write(sweep_dir: str, *, run_id: str, metrics: list[dict[str, Any]] | None = None, status: str = "",
          children_status: str = "") -> str:
    """Keep one run's unsent metric values and final status; ``children_status`` also ends every child of
    ``run_id`` still RUNNING then (a parent run closed while the server was down)."""
    record = {"run_id": run_id, "metrics": metrics or [], "status": status, "children_status": children_status,
              "written": time.time()}
    target = storage.join(storage.join(sweep_dir, FOLDER), f"{run_id}-{uuid.uuid4().hex[:8]}.json")
    return storage.write_bytes(target, json.dumps(record).encode())


def replay(tracking_uri: str, experiment_id: str, sweep_dir: str) -> int:
    """Send every kept record; returns how many files were applied (0 while the server is still down)."""
    from mlflow import entities

    from sweeps.tracking import mlflow_runs

    applied = 0
    for path in storage.list_files(storage.join(sweep_dir, FOLDER)):
        try:
            record = json.loads(storage.read_bytes(path))
            metrics = [entities.Metric(item["key"], item["value"], item["timestamp"], item["step"])
                       for item in record["metrics"]]
            if metrics:
                mlflow_runs.log_metric_values(tracking_uri, record["run_id"], metrics)
            if record.get("children_status"):
                for run in mlflow_runs.child_runs(tracking_uri, experiment_id, record["run_id"]):
                    if run.info.status == "RUNNING":
                        mlflow_runs.end_run(tracking_uri, run.info.run_id, record["children_status"])
            if record.get("status"):
                mlflow_runs.end_run(tracking_uri, record["run_id"], record["status"])
        except Exception as error:  # noqa: BLE001 - a record stays until it is accepted
            if unreachable(error):
                return applied
            logger.warning("MLflow outbox record %s could not be applied: %s", path, error)
            continue
        storage.remove_file(path)
        applied += 1
    if applied:
        print(f"glovesweep: applied {applied} MLflow record(s) kept while {tracking_uri} was unreachable", flush=True)
    return applied
