"""The example of a user's own trainer (examples/digits), as a user runs it: from an empty folder, killed and
resumed, and submitted as a job. Real local Ray, real MLflow (a sqlite store or the test server), real Ray head.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest
from conftest import kill_mid_sweep

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "digits"


def glovesweep(arguments, folder, timeout=600):
    environment = dict(os.environ)
    environment.pop("RAY_ADDRESS", None)
    return subprocess.run([sys.executable, "-m", "sweeps.cli", *arguments], cwd=folder, env=environment,
                          capture_output=True, text=True, timeout=timeout)


def children_of(uri: str, experiment: str):
    import mlflow

    client = mlflow.MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id], max_results=500)
    return client, [run for run in runs if run.data.tags.get("glovesweep.role") == "trial"]


def test_the_example_runs_from_an_empty_folder_and_reports_in_its_own_metric(tmp_path):
    result = glovesweep(["run", str(EXAMPLE / "digits.yaml"), "--smoke-test", "--num-cpus", "2"], tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "8/8 trials done, 0 failed" in result.stdout
    report_dir = tmp_path / "reports" / "digits-sgd"  # also logged to the parent run as artifacts
    report = (report_dir / "report.md").read_text()
    # The study's sections, in the trainer's own metric and cells (loss x alpha), with intervals.
    for heading in ("## Answer", "## Published claims against this sweep", "by cell", "## What moves",
                    "## The gap between", "## Plots"):
        assert heading in report, heading
    assert "log_loss" in report and "0.0001" in report and "n=2" in report
    assert "Newsgroups" not in report and "TF-IDF" not in report  # no wording of the 20 Newsgroups study
    assert sorted(path.name for path in report_dir.glob("*.png"))
    answer = json.loads((report_dir / "answer.json").read_text())
    assert answer, "the answer on the two cells of the file"


def test_the_example_resumes_after_a_killed_driver_and_runs_each_cell_once(tmp_path, mlflow_server):
    sweep = tmp_path / "digits.yaml"
    sweep.write_text((EXAMPLE / "digits.yaml").read_text().replace('"sqlite:///mlflow.db"', f'"{mlflow_server}"')
                     .replace("name: digits-sgd", "name: digits-killed"))
    (tmp_path / "digits_trainer.py").write_text((EXAMPLE / "digits_trainer.py").read_text())
    environment = dict(os.environ)
    environment.pop("RAY_ADDRESS", None)
    with open(tmp_path / "run.log", "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "sweeps.cli", "run", str(sweep), "--num-cpus", "2",
                                    "--no-report"], cwd=tmp_path, env=environment, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        finished_before = kill_mid_sweep(process, lambda: children_of(mlflow_server, "digits-killed")[1])
    assert finished_before, (tmp_path / "run.log").read_text()[-3000:]
    (sweep_dir,) = (tmp_path / "glovesweep_results").iterdir()
    resumed = glovesweep(["resume", str(sweep_dir), "--num-cpus", "2"], tmp_path)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "20/20 trials done, 0 failed" in resumed.stdout
    client, children = children_of(mlflow_server, "digits-killed")
    assert len(children) == 20 and len({run.data.tags["glovesweep.trial_id"] for run in children}) == 20
    for run in children:
        assert run.info.status == "FINISHED"
        assert [metric.step for metric in client.get_metric_history(run.info.run_id, "val_acc")] == list(range(1, 11))
        if run.data.tags["glovesweep.trial_id"] in finished_before:
            assert run.info.end_time == finished_before[run.data.tags["glovesweep.trial_id"]]


@pytest.mark.slow
def test_the_example_runs_as_a_submitted_job_with_its_module_shipped(ray_head, mlflow_server, tmp_path, monkeypatch):
    from sweeps import cli
    from sweeps.service import jobs

    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", ray_head.environment["RAY_AUTH_TOKEN_PATH"])
    for name in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "GLOVESWEEP_CLUSTER"):
        monkeypatch.delenv(name, raising=False)
    folder = tmp_path / "mine"  # outside the repository, as a user's project is
    folder.mkdir()
    (folder / "digits_trainer.py").write_text((EXAMPLE / "digits_trainer.py").read_text())
    sweep = folder / "digits.yaml"
    sweep.write_text((EXAMPLE / "digits.yaml").read_text().replace('"sqlite:///mlflow.db"', f'"{mlflow_server}"')
                     .replace("name: digits-sgd", "name: digits-job")
                     .replace("storage_path: glovesweep_results", f"storage_path: {tmp_path / 'results'}"))
    monkeypatch.chdir(tmp_path)
    assert cli.main(["submit", str(sweep), "--smoke-test", "--wait", "--json", "--address", ray_head.url]) == 0
    client = jobs.connect(ray_head.url)
    [job] = [job for job in client.list_jobs() if (job.metadata or {}).get("glovesweep.sweep_name") == "digits-job"]
    assert job.status == "SUCCEEDED", client.get_job_logs(job.submission_id)[-3000:]
    assert len(job.runtime_env["py_modules"]) == 1  # the trainer module, shipped (uploaded as a package URI)
    assert job.metadata["glovesweep.trainer_module"] == str(folder / "digits_trainer.py")
    _, children = children_of(mlflow_server, "digits-job")
    assert len(children) == 8 and all(run.info.status == "FINISHED" for run in children)
