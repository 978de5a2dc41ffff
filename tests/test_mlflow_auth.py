"""The cluster's MLflow server requires a login: cluster/start_mlflow.py runs MLflow's basic-auth app with
credentials it creates with mode 0600 (issue 12, item 9). A real server on 127.0.0.1."""

from __future__ import annotations

import base64
import importlib.util
import os
import pathlib
import stat
import urllib.error
import urllib.request

import pytest
from conftest import free_port

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load_start_mlflow():
    spec = importlib.util.spec_from_file_location("start_mlflow", ROOT / "cluster" / "start_mlflow.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def status_of(url: str, credentials: tuple[str, str] | None = None) -> int:
    request = urllib.request.Request(url)
    if credentials:
        token = base64.b64encode(":".join(credentials).encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    start_mlflow = load_start_mlflow()
    store = tmp_path_factory.mktemp("mlflow-auth") / "store"
    url = start_mlflow.start(host="127.0.0.1", port=free_port(), store=store)
    try:
        yield url, store, start_mlflow
    finally:
        start_mlflow.stop_previous(store / "mlflow-server.pid")


def read_credentials(store: pathlib.Path) -> dict[str, str]:
    lines = (store / "credentials.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line)


def test_an_unauthenticated_request_is_refused_and_the_login_accepted(auth_server):
    url, store, _ = auth_server
    search = f"{url}/api/2.0/mlflow/experiments/search?max_results=1"
    credentials = read_credentials(store)
    login = (credentials["MLFLOW_TRACKING_USERNAME"], credentials["MLFLOW_TRACKING_PASSWORD"])
    assert status_of(search) == 401
    assert status_of(search, (login[0], login[1] + "x")) == 401
    assert status_of(search, login) == 200
    # Health checks (start_mlflow's own wait, load balancers) need no login.
    assert status_of(f"{url}/health") == 200


def test_credentials_files_are_the_owners_only_and_mlflow_clients_use_them(auth_server, monkeypatch):
    url, store, start_mlflow = auth_server
    for name in ("basic_auth.ini", "credentials.env", "flask_secret_key"):
        assert stat.S_IMODE(os.stat(store / name).st_mode) == 0o600, name
    assert stat.S_IMODE(os.stat(store).st_mode) == 0o700
    for key, value in read_credentials(store).items():
        monkeypatch.setenv(key, value)
    from mlflow import tracking as mlflow_tracking

    client = mlflow_tracking.MlflowClient(tracking_uri=url)
    experiment_id = client.create_experiment("auth-test")
    run = client.create_run(experiment_id)
    client.log_metric(run.info.run_id, "val_acc", 0.5)
    assert client.get_run(run.info.run_id).data.metrics == {"val_acc": 0.5}
    # A restart keeps the same login (the files are created once).
    before = (store / "credentials.env").read_text()
    start_mlflow.auth_environment(store)
    assert (store / "credentials.env").read_text() == before


def test_the_server_command_runs_the_basic_auth_app_unless_told_otherwise(tmp_path):
    start_mlflow = load_start_mlflow()
    options = dict(host="127.0.0.1", port=5000, store=tmp_path, artifacts_destination=str(tmp_path))
    command = start_mlflow.server_command(**options)
    assert command[command.index("--app-name") + 1] == "basic-auth"
    assert "--app-name" not in start_mlflow.server_command(**options, auth="none")


def test_the_service_reads_runs_over_rest_with_the_same_login(auth_server, monkeypatch):
    from mlflow import tracking as mlflow_tracking

    from sweeps.tracking import fast_read

    url, store, _ = auth_server
    for key, value in read_credentials(store).items():
        monkeypatch.setenv(key, value)
    client = mlflow_tracking.MlflowClient(tracking_uri=url)
    experiment_id = client.create_experiment("auth-rest-read")
    parent = client.create_run(experiment_id)
    child = client.create_run(experiment_id, tags={"mlflow.parentRunId": parent.info.run_id})
    client.log_metric(child.info.run_id, "val_acc", 0.5, step=1)
    assert fast_read.speaks(url)
    (summary,) = fast_read.child_runs(url, experiment_id, parent.info.run_id)
    assert summary == fast_read.RunSummary.from_run(client.get_run(child.info.run_id))
    assert fast_read.metric_steps(url, child.info.run_id, "val_acc") == [1]
    assert summary.metrics == {"val_acc": 0.5} and summary.tags["mlflow.parentRunId"] == parent.info.run_id
    # Without the login the server refuses, and the reader says so rather than reading nothing.
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD")
    with pytest.raises(OSError, match="401"):
        fast_read.child_runs(url, experiment_id, parent.info.run_id)
