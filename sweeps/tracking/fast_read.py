"""A sweep's child runs and their metric steps, read without importing ``mlflow`` where the store allows it.

``glovesweep status`` and ``list`` answer from these reads; importing the ``mlflow`` package costs about 1 CPU
second per call, most of what those commands cost on a busy head. An ``http(s)://`` tracking server is read
through MLflow's REST API (``POST /api/2.0/mlflow/runs/search``, ``GET /api/2.0/mlflow/metrics/get-history``),
sending the login MLflow's own client sends (``MLFLOW_TRACKING_USERNAME``/``_PASSWORD``, else
``MLFLOW_TRACKING_TOKEN``) and honouring its TLS settings (``MLFLOW_TRACKING_INSECURE_TLS``,
``MLFLOW_TRACKING_SERVER_CERT_PATH``). Any other store (``sqlite:///``, a folder, Databricks), or a setting this
reader does not speak (a client certificate, an auth plugin, AWS SigV4, a login inside the URI), is read through
the ``mlflow`` package as before (``mlflow_runs``).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import ssl
import time
import urllib.parse
from typing import Any

from sweeps import rest
from sweeps.tracking import mlflow_runs
from sweeps.tracking import names

API = "/api/2.0/mlflow"
# Settings of MLflow's client that this reader does not speak: with any of them set, the mlflow package reads.
UNSPOKEN_SETTINGS = ("MLFLOW_TRACKING_CLIENT_CERT_PATH", "MLFLOW_TRACKING_AUTH", "MLFLOW_TRACKING_AWS_SIGV4")
# The most runs, and metric values, one page may hold (MLflow's SEARCH_MAX_RESULTS_THRESHOLD and
# GET_METRIC_HISTORY_MAX_RESULTS).
RUNS_PAGE = 50_000
HISTORY_PAGE = 25_000
# A request that gets no answer, or a 429/5xx, is tried again after these pauses (seconds); then it fails.
RETRY_PAUSES = (0.5, 1.0)
TIMEOUT_SECONDS = 30.0


@dataclasses.dataclass(frozen=True)
class RunSummary:
    """What the service reads of a run.

    Attributes
    ----------
    run_id, status : str
        ``status`` is MLflow's: RUNNING, SCHEDULED, FINISHED, FAILED or KILLED.
    start_time : int or None
        Milliseconds since the epoch.
    tags : dict
        Tag name -> value.
    metrics : dict
        Metric name -> its latest value (MLflow's: the highest step's).
    """

    run_id: str
    status: str
    start_time: int | None
    tags: dict[str, str]
    metrics: dict[str, float]

    @classmethod
    def from_json(cls, run: dict[str, Any]) -> "RunSummary":
        """From a run of the REST API's answer (``info`` and ``data``; empty lists are left out there)."""
        info, data = run["info"], run.get("data", {})
        start = info.get("start_time")
        return cls(run_id=info["run_id"], status=info["status"], start_time=int(start) if start is not None else None,
                   tags={tag["key"]: tag.get("value", "") for tag in data.get("tags", [])},
                   metrics={metric["key"]: float(metric["value"]) for metric in data.get("metrics", [])})

    @classmethod
    def from_run(cls, run) -> "RunSummary":
        """From an ``mlflow.entities.Run``."""
        return cls(run_id=run.info.run_id, status=run.info.status, start_time=run.info.start_time,
                   tags=dict(run.data.tags), metrics=dict(run.data.metrics))


def speaks(tracking_uri: str) -> bool:
    """Whether this reader reads ``tracking_uri`` itself (an ``http(s)://`` server, no unspoken setting)."""
    parts = urllib.parse.urlsplit(tracking_uri)
    return (parts.scheme in ("http", "https") and "@" not in parts.netloc
            and not any(os.environ.get(name) for name in UNSPOKEN_SETTINGS))


def login_headers() -> dict[str, str]:
    """The ``Authorization`` header MLflow's client sends: basic from username and password, else the token."""
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if user and password:
        return {"Authorization": "Basic " + base64.standard_b64encode(f"{user}:{password}".encode()).decode()}
    if os.environ.get("MLFLOW_TRACKING_TOKEN"):
        return {"Authorization": f"Bearer {os.environ['MLFLOW_TRACKING_TOKEN']}"}
    return {}


def tls_context() -> ssl.SSLContext | None:
    if os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() == "true":
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # Asked for, as MLflow's client allows.
        return context
    if os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH"):
        return ssl.create_default_context(cafile=os.environ["MLFLOW_TRACKING_SERVER_CERT_PATH"])
    return None


def call(tracking_uri: str, method: str, endpoint: str, *, query: dict | None = None, body: Any = None) -> Any:
    """One REST call, tried again after a short pause when no answer came or the server said 429/5xx.

    Raises ``OSError`` with MLflow's own error text (``RESOURCE_DOES_NOT_EXIST: ...``) for an answered error.
    """
    url = f"{tracking_uri.rstrip('/')}{API}{endpoint}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
    for pause in (*RETRY_PAUSES, None):
        try:
            return rest.request_json(method, url, headers=login_headers(), body=body, timeout=TIMEOUT_SECONDS,
                                     context=tls_context())
        except rest.HttpError as error:
            if pause is None or not (error.status == 429 or error.status >= 500):
                raise OSError(mlflow_error(error)) from None
        except OSError as error:
            if pause is None:
                raise OSError(f"unreachable ({error})") from None
        time.sleep(pause)
    raise AssertionError("unreachable")


def mlflow_error(error: rest.HttpError) -> str:
    """``ERROR_CODE: message`` from MLflow's JSON error document, else the status and the body's first line."""
    try:
        document = json.loads(error.body)
        return f"{document['error_code']}: {document['message']}"
    except (ValueError, KeyError, TypeError):
        return str(error)


def search_runs(tracking_uri: str, filter_string: str, *, experiment_ids: list[str], order_by: list[str],
                deleted_too: bool = False) -> list[RunSummary]:
    """Every run matching ``filter_string`` in ``experiment_ids``, every page of them."""
    body = {"experiment_ids": [str(item) for item in experiment_ids], "filter": filter_string,
            "run_view_type": "ALL" if deleted_too else "ACTIVE_ONLY", "max_results": RUNS_PAGE, "order_by": order_by}
    runs: list[RunSummary] = []
    while True:
        page = call(tracking_uri, "POST", "/runs/search", body=body)
        runs.extend(RunSummary.from_json(run) for run in page.get("runs", []))
        if not page.get("next_page_token"):
            return runs
        body["page_token"] = page["next_page_token"]


def child_runs(tracking_uri: str, experiment_id: str, parent_run_id: str) -> list[RunSummary]:
    """Every child run of a sweep's parent run (any status, deleted ones too), oldest first: what
    ``mlflow_runs.child_runs`` returns, read over REST where ``speaks(tracking_uri)``."""
    if not speaks(tracking_uri):
        return [RunSummary.from_run(run) for run in mlflow_runs.child_runs(tracking_uri, experiment_id, parent_run_id)]
    return search_runs(tracking_uri, f"tags.`{names.PARENT_TAG}` = '{parent_run_id}'", experiment_ids=[experiment_id],
                       order_by=["attributes.start_time ASC"], deleted_too=True)


def metric_steps(tracking_uri: str, run_id: str, key: str) -> list[int]:
    """Steps at which ``key`` was logged in a run, sorted (``mlflow_runs.metric_steps``, over REST where it can)."""
    if not speaks(tracking_uri):
        return mlflow_runs.metric_steps(tracking_uri, run_id, key)
    query = {"run_id": run_id, "run_uuid": run_id, "metric_key": key, "max_results": HISTORY_PAGE}
    steps: list[int] = []
    while True:
        page = call(tracking_uri, "GET", "/metrics/get-history", query=query)
        steps.extend(int(metric.get("step", 0)) for metric in page.get("metrics", []))
        if not page.get("next_page_token"):
            return sorted(steps)
        query["page_token"] = page["next_page_token"]
