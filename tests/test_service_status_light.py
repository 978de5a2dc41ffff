"""``glovesweep status`` and ``list`` read Ray's job server and MLflow over their REST APIs, importing neither
``ray`` nor ``mlflow`` (each import cost about 1 CPU second a call; docs/results/service-load/cpu-per-call.md), and
answer exactly what Ray's ``JobSubmissionClient`` and the ``mlflow`` package read. A real Ray head with token
authentication and a real MLflow server on 127.0.0.1; the jobs carry a sweep's metadata but run ``true``, so no
sweep trains."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from sweeps.service import jobs
from sweeps.service import status_list
from sweeps.tracking import fast_read
from sweeps.tracking import mlflow_runs
from sweeps.tracking import names

HEAVY = ("ray", "mlflow")


def seed_sweep(tracking_uri: str, ray_head, name: str) -> str:
    """A parent run with three child runs (finished, running, deleted; two train a network, with val_acc steps)
    and two jobs of its sweep (the first, then a resume) that end at once; returns the sweep id."""
    from mlflow import tracking as mlflow_tracking

    client = mlflow_tracking.MlflowClient(tracking_uri=tracking_uri)
    experiment_id = client.create_experiment(name)
    parent = client.create_run(experiment_id, tags={names.ROLE_TAG: names.ROLE_SWEEP})
    for index, (trainer, steps, end) in enumerate((("keras", 3, "FINISHED"), ("keras", 2, None), ("tfidf", 0, "KILLED"))):
        child = client.create_run(experiment_id, tags={names.PARENT_TAG: parent.info.run_id, "trainer": trainer,
                                                       names.CELL_TAG: f"dataset=19997,strip=s{index}"})
        for step in range(1, steps + 1):
            client.log_metric(child.info.run_id, "val_acc", 0.25 * index + 0.1 * step, step=step)
        if end:
            client.set_terminated(child.info.run_id, end)
        if trainer == "tfidf":
            client.delete_run(child.info.run_id)
    sweep_id = f"{name}-20260101-000000-abcd"
    metadata = {jobs.SWEEP_ID: sweep_id, jobs.SWEEP_NAME: name, jobs.PARENT_RUN_ID: parent.info.run_id,
                jobs.EXPERIMENT_ID: experiment_id, jobs.TRACKING_URI: tracking_uri, jobs.TOTAL_TRIALS: "4",
                jobs.NETWORK_TRIALS: "3", jobs.MAX_EPOCHS: "3"}
    ray_client = jobs.connect(ray_head.url)
    ray_client.submit_job(entrypoint="true", submission_id=sweep_id, metadata=metadata)
    wait_until_ended(ray_client, sweep_id)
    ray_client.submit_job(entrypoint="false", submission_id=f"{sweep_id}-resume-1",
                          metadata={**metadata, jobs.RESUME_OF: sweep_id})
    wait_until_ended(ray_client, f"{sweep_id}-resume-1")
    return sweep_id


def wait_until_ended(client, submission_id: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while jobs.state(client.get_job_info(submission_id)) not in jobs.TERMINAL:
        assert time.monotonic() < deadline, f"job {submission_id} did not end"
        time.sleep(0.5)


def imported_heavy(importtime: str) -> list[str]:
    """The modules of ``HEAVY`` packages named in ``python -X importtime`` output."""
    found = []
    for line in importtime.splitlines():
        if line.startswith("import time:") and "|" in line:
            module = line.rsplit("|", 1)[1].strip()
            if module.split(".")[0] in HEAVY:
                found.append(module)
    return found


def without_clock(entry: dict) -> dict:
    return {key: value for key, value in entry.items() if key not in ("elapsed_seconds", "seconds_left")}


@pytest.fixture
def user_environment(ray_head):
    """A user's shell: the head's token in a file, no RAY_AUTH_MODE (the token goes once the server asks)."""
    environment = dict(os.environ, RAY_AUTH_TOKEN_PATH=ray_head.environment["RAY_AUTH_TOKEN_PATH"])
    for name in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "MLFLOW_TRACKING_URI"):
        environment.pop(name, None)
    return environment


@pytest.mark.slow
def test_status_and_list_read_what_ray_and_mlflow_read_without_importing_them(ray_head, mlflow_server,
                                                                              user_environment, monkeypatch):
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", user_environment["RAY_AUTH_TOKEN_PATH"])
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    sweep_id = seed_sweep(mlflow_server, ray_head, "light-status")
    # The job list over REST is Ray's, field by field (the token sent once the server asked for it).
    listed = {job.submission_id: job for job in jobs.job_list(ray_head.url).list_jobs()}
    by_ray = {job.submission_id: job for job in jobs.connect(ray_head.url).list_jobs()}
    assert set(listed) == set(by_ray) >= {sweep_id, f"{sweep_id}-resume-1"}
    for submission_id, job in by_ray.items():
        if str(job.status.value) not in ("SUCCEEDED", "FAILED", "STOPPED"):
            continue  # still moving: the two reads may see it a moment apart
        record = listed[submission_id]
        # A job submitted without metadata (another test's) has None in Ray's record, {} in ours (typed: a dict).
        assert (record.status, record.message, record.start_time, record.end_time, record.metadata) == (
            str(job.status.value), job.message, job.start_time, job.end_time, job.metadata or {})
    # The runs over REST are the mlflow package's: deleted ones too, oldest first, latest metric values.
    metadata = listed[sweep_id].metadata
    experiment_id, parent_run_id = metadata[jobs.EXPERIMENT_ID], metadata[jobs.PARENT_RUN_ID]
    over_rest = fast_read.child_runs(mlflow_server, experiment_id, parent_run_id)
    by_mlflow = [fast_read.RunSummary.from_run(run)
                 for run in mlflow_runs.child_runs(mlflow_server, experiment_id, parent_run_id)]
    assert over_rest == by_mlflow and len(over_rest) == 3
    assert [fast_read.metric_steps(mlflow_server, run.run_id, "val_acc") for run in over_rest] == [
        mlflow_runs.metric_steps(mlflow_server, run.run_id, "val_acc") for run in over_rest] == [[1, 2, 3], [1, 2], []]

    # As a user runs them: a fresh process, no ray or mlflow import, the same answer.
    answers = {}
    for arguments in (["list", "--json"], ["status", sweep_id, "--json"], ["status", sweep_id]):
        result = subprocess.run([sys.executable, "-X", "importtime", "-m", "sweeps.cli", *arguments, "--address",
                                 ray_head.url], capture_output=True, text=True, env=user_environment, timeout=120)
        # status ID exits 1 for a failed sweep (its resume job ran 'false').
        assert result.returncode == (1 if arguments[0] == "status" else 0), result.stderr[-2000:]
        assert imported_heavy(result.stderr) == [], arguments
        answers[arguments[0], arguments[-1]] = result.stdout
    (entry,) = [entry for entry in json.loads(answers["list", "--json"]) if entry["sweep_id"] == sweep_id]
    assert without_clock(entry) == without_clock(json.loads(answers["status", "--json"]))
    expected = status_list.describe([by_ray[sweep_id], by_ray[f"{sweep_id}-resume-1"]], None)
    assert without_clock(entry) == without_clock(json.loads(json.dumps(expected.to_json())))
    assert entry["state"] == "failed" and entry["job"] == f"{sweep_id}-resume-1"
    assert {key: entry["progress"][key] for key in ("total", "done", "running", "pending", "killed", "epochs_done",
                                                    "best_cell")} == {
        "total": 4, "done": 1, "running": 1, "pending": 1, "killed": 1, "epochs_done": 5,
        "best_cell": "dataset=19997,strip=s1"}
    assert "trials: 1 done, 1 running, 1 pending, 0 failed, 1 killed, of 4" in answers["status", sweep_id]


@pytest.mark.slow
def test_a_wrong_ray_token_is_one_line_naming_the_fix(ray_head, user_environment, tmp_path):
    wrong = tmp_path / "auth_token"
    wrong.write_text("0" * 64)
    for mode in ("token", ""):
        environment = dict(user_environment, RAY_AUTH_TOKEN_PATH=str(wrong), RAY_AUTH_MODE=mode)
        result = subprocess.run([sys.executable, "-m", "sweeps.cli", "list", "--address", ray_head.url],
                                capture_output=True, text=True, env=environment, timeout=120)
        assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
        assert "refused this machine's Ray token" in result.stderr and "Authentication failed" in result.stderr
