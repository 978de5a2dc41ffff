"""MLflow writes that could not be sent while the tracking server was down, kept until it answers.

A trial that ends while the server is unreachable, or a driver that must close runs then, writes what it could
not send (metric values and final run statuses) as one JSON file into ``<sweep dir>/mlflow-outbox/``. The
driver replays the folder at the end of the sweep and ``glovesweep resume`` at its start; a file is removed
only once everything in it was accepted. Nothing is lost, and no run stays RUNNING once its process is gone.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from typing import Any

from sweeps import storage

logger = logging.getLogger(__name__)

FOLDER = "mlflow-outbox"
# An MLflow error whose text says the server could not be reached (the client wraps requests' errors).
UNREACHABLE_WORDS = ("Max retries exceeded", "Connection refused", "Failed to establish", "timed out",
                     "Connection reset", "Connection aborted", "Read timed out", "error code 502", "error code 503",
                    "error code 504")


def unreachable(error: BaseException) -> bool:
    """Whether ``error`` means the tracking server did not answer (rather than refused a request)."""
    if isinstance(error, (ConnectionError, TimeoutError)):
        return True
    return any(word in str(error) for word in UNREACHABLE_WORDS)


def quick_client_settings() -> None:
    """MLflow's HTTP client fails fast (it would retry for minutes); glovesweep buffers and retries instead."""
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = "10"


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
