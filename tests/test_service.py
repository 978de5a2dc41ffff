"""The sweep service for real: a Ray head with its job server on 127.0.0.1, a real MLflow server, tiny data.

``glovesweep submit`` sends a sweep to the head as a Ray job; ``status``/``list`` follow it from MLflow; ``logs``
streams it; ``cancel`` stops it (runs end KILLED, no process of the job left) and ``submit --resume`` finishes
it; two sweeps run side by side; a sweep no node can hold is refused; and a head started by the on-prem
cluster file's own start command serves a sweep. The fast tests need no cluster.
"""

from __future__ import annotations

import base64
import copy
import glob
import json
import os
import pathlib
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time

import pytest
import yaml
from conftest import build_tiny_data_home, free_port, head_start_flags, ray_environment, start_ray_head

from sweeps import cli
from sweeps.run import identity
from sweeps.run import job_entry
from sweeps.service import progress_read
from sweeps.service import status_list
from sweeps.service import jobs
from sweeps.checks import resources_check
from sweeps import spec as spec_module
from sweeps.tracking import mlflow_runs

ROOT = pathlib.Path(__file__).resolve().parents[1]

SWEEP = """\
# Run: glovesweep submit {path}
name: {name}
factors:
  dataset: ["19997"]
  epochs: [{epochs}]
fixed:
  architecture: global_max
  max_sequence_length: 160
  sizing: num_words_plus_one
seeds: {seeds}
resources: {{cpu: 1, gpu: {gpu}}}
max_concurrent_trials: 2
max_failures: 1
mlflow: {{tracking_uri: "{tracking_uri}", experiment: {name}}}
storage_path: {storage}
"""


def write_sweep(folder: pathlib.Path, *, name: str, tracking_uri: str, epochs: int = 2, seeds: int = 2,
                gpu: float = 0) -> pathlib.Path:
    path = folder / f"{name}.yaml"
    path.write_text(SWEEP.format(path=path, name=name, epochs=epochs, seeds=seeds, gpu=gpu,
                                 tracking_uri=tracking_uri, storage=folder / "results"))
    return path


@pytest.fixture(scope="module")
def tiny_home(tmp_path_factory):
    root = tmp_path_factory.mktemp("service-data")
    return {"data_home": str(build_tiny_data_home(root, versions=("19997",))), "cache_dir": str(root / "cache")}


@pytest.fixture
def service(ray_head, monkeypatch):
    """Run service commands in this process against the test head (its token, as a user's machine holds it)."""
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", ray_head.environment["RAY_AUTH_TOKEN_PATH"])
    for name in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "GLOVESWEEP_CLUSTER"):
        monkeypatch.delenv(name, raising=False)

    def run(*arguments: str) -> int:
        return cli.main([*arguments, "--address", ray_head.url])

    return run


def submit(service, capsys, path, tiny_home, *extra) -> str:
    code = service("submit", str(path), "--data-dir", tiny_home["data_home"], "--cache-dir", tiny_home["cache_dir"],
                   "--no-download", "--json", *extra)
    captured = capsys.readouterr()
    assert code == 0, captured.out + captured.err
    return json.loads(captured.out.strip().splitlines()[-1])["sweep_id"]


def status(service, capsys, sweep_id: str) -> tuple[int, dict]:
    code = service("status", sweep_id, "--json")
    return code, json.loads(capsys.readouterr().out)


def wait_for_state(service, capsys, sweep_id: str, states, *, timeout: float = 400, predicate=None) -> dict:
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        _, entry = status(service, capsys, sweep_id)
        seen.append(entry["state"])
        if entry["state"] in states and (predicate is None or predicate(entry)):
            entry["seen"] = seen
            return entry
        time.sleep(1)
    raise AssertionError(f"sweep {sweep_id} never reached {states}: {seen[-5:]}")


def runs_of(uri: str, experiment: str) -> tuple[object, list]:
    from mlflow import tracking as mlflow_tracking
    from mlflow.entities import ViewType

    client = mlflow_tracking.MlflowClient(tracking_uri=uri)
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    runs = client.search_runs([experiment_id], run_view_type=ViewType.ACTIVE_ONLY)
    (parent,) = [run for run in runs if run.data.tags.get(mlflow_runs.ROLE_TAG) == "sweep"]
    children = [run for run in runs if run.data.tags.get(mlflow_runs.PARENT_TAG) == parent.info.run_id]
    assert len(children) + 1 == len(runs)
    return parent, children


def assert_every_cell_once(uri: str, experiment: str, *, seeds: int, epochs: int, sweep_id: str):
    parent, children = runs_of(uri, experiment)
    assert parent.info.status == "FINISHED" and parent.data.tags[mlflow_runs.SWEEP_ID_TAG] == sweep_id
    assert parent.data.tags[mlflow_runs.SWEEP_DIR_TAG].endswith("/" + sweep_id)
    assert len({run.data.tags[mlflow_runs.TRIAL_ID_TAG] for run in children}) == len(children) == seeds
    assert sorted(run.data.params["seed"] for run in children) == [str(seed) for seed in range(seeds)]
    for run in children:
        assert run.info.status == "FINISHED"
        assert mlflow_runs.metric_steps(uri, run.info.run_id, "val_acc") == list(range(1, epochs + 1))
    return parent, children


# ----------------------------------------------------------------------------------- fast: no cluster needed
def test_no_cluster_at_the_address_is_one_line_with_the_command_that_starts_one(tmp_path, capsys):
    path = write_sweep(tmp_path, name="nowhere", tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    address = f"http://127.0.0.1:{free_port()}"
    for arguments in (["submit", str(path)], ["status"], ["logs", "x"], ["cancel", "x"]):
        assert cli.main([*arguments, "--address", address]) == 3
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and f"no Ray cluster answers at {address}" in error
        assert "ray start --head --dashboard-host 127.0.0.1" in error
    # Nothing was created: the parent run comes after the cluster answered.
    assert not (tmp_path / "mlflow.db").exists()


def test_a_bad_sweep_file_never_becomes_a_job(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\nfactors: {strip: [none, headers]}\n")
    # The file is refused before any cluster is asked (the address answers nothing).
    assert cli.main(["submit", str(path), "--address", f"http://127.0.0.1:{free_port()}"]) == 2
    assert "factors.strip value 'headers'" in capsys.readouterr().err


def test_the_submitted_sweep_round_trips_and_takes_the_clusters_store(tmp_path):
    path = write_sweep(tmp_path, name="travel", tracking_uri="http://localhost:5000")
    spec = spec_module.load_sweep(path, smoke_test=False)
    source = identity.SweepSource(sweep_text=spec.source_text, source_path=spec.source_path, base_dir=str(tmp_path),
                                  smoke_test=False)
    submitted = job_entry.SubmittedSweep(source=source, tracking_uri=spec.tracking_uri,
                                         file_storage_path=spec.storage_path)
    decoded = job_entry.SubmittedSweep.decode(submitted.encode())
    assert decoded == submitted and decoded.encode().isascii()
    # A submission encoded before the source was a nested record (its fields flat) still decodes.
    flat = {**source.model_dump(), "tracking_uri": spec.tracking_uri, "file_storage_path": spec.storage_path,
            "job_tracking_uri": None, "storage_path": None}
    assert job_entry.SubmittedSweep.decode(base64.b64encode(json.dumps(flat).encode()).decode()) == submitted
    assert decoded.job_spec({}).trials() == spec.trials()
    assert decoded.job_spec({}).tracking_uri == "http://localhost:5000"
    cluster = {"GLOVESWEEP_CLUSTER": "1", "MLFLOW_TRACKING_URI": "http://10.0.0.10:5000",
               "GLOVESWEEP_STORAGE_PATH": "s3://bucket/glovesweep"}
    on_cluster = decoded.job_spec(cluster)
    assert (on_cluster.tracking_uri, on_cluster.storage_path) == ("http://10.0.0.10:5000", "s3://bucket/glovesweep")
    # Only a head marked as a cluster's: a stray MLFLOW_TRACKING_URI on a laptop's head changes nothing.
    assert decoded.job_spec({"MLFLOW_TRACKING_URI": "http://elsewhere:5000"}).tracking_uri == "http://localhost:5000"


def test_the_resource_verdict_round_trips_through_its_tag():
    refused = job_entry.Verdict("refused", "every trial asks resources {cpu: 64, gpu: 0}, but none of the 1 node(s)")
    assert refused.tag_value() == "refused: every trial asks resources {cpu: 64, gpu: 0}, but none of the 1 node(s)"
    assert job_entry.Verdict.from_tag(refused.tag_value()) == refused and not refused.ok
    assert job_entry.Verdict.from_tag("ok") == job_entry.Verdict("ok") and job_entry.Verdict("ok").tag_value() == "ok"
    assert job_entry.Verdict.from_tag("something else").kind == "waiting"


def test_a_sweep_status_gives_the_json_keys_scripts_read():
    progress = progress_read.Progress(total=4, done=1, running=2, pending=1, failed=0, killed=0, epochs_done=5,
                                      epochs_total=8, best_cell="dataset=19997", best_val_acc=0.5, best_runs=1,
                                      first_start=1.0)
    status = progress_read.SweepStatus(sweep_id="s-1", name="s", state="running", job="s-1", parent_run_id="abc",
                                       mlflow_url="http://127.0.0.1:5000/#/experiments/1/runs/abc",
                                       elapsed_seconds=12.5, seconds_left=3.0, progress=progress)
    entry = json.loads(json.dumps(status.to_json()))
    assert list(entry) == ["sweep_id", "name", "state", "job", "parent_run_id", "mlflow_url", "elapsed_seconds",
                           "seconds_left", "progress", "message"]
    assert entry["progress"]["pending"] == 1 and entry["progress"]["best_cell"] == "dataset=19997"
    assert (entry["sweep_id"], entry["elapsed_seconds"], entry["seconds_left"], entry["message"]) == ("s-1", 12.5,
                                                                                                      3.0, None)
    assert status_list.one_line(status) == ("s-1  running    1/4 done, 2 running, 1 pending, 0 failed; epochs 5/8; best "
                                         "dataset=19997 val_acc 0.500  (12s, ~3s left)")
    unread = progress_read.SweepStatus(sweep_id="s-1", name="s", state="failed", job="s-1-resume-1",
                                       parent_run_id="abc", mlflow_url="u", elapsed_seconds=1.0, message="boom\nmore",
                                       progress_error="MLflow http://x: unreachable")
    entry = unread.to_json()
    assert entry["progress"] is None and entry["progress_error"] == "MLflow http://x: unreachable"
    assert list(entry)[-1] == "progress_error"
    text = status_list.details(unread)
    assert "progress unavailable: MLflow http://x: unreachable" in text and "  boom" in text
    assert "finish it with: glovesweep submit --resume s-1" in text


def stop_postgres(folder: pathlib.Path) -> None:
    """Stop a server cluster/setup_postgres.sh started in ``folder`` (as ``postgres`` under root)."""
    pg_ctl = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if pg_ctl and (folder / "data").is_dir():
        prefix = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []
        subprocess.run([*prefix, pg_ctl[-1], "-D", str(folder / "data"), "stop", "-m", "fast"], capture_output=True,
                       timeout=120)


def prepared_config(name: str) -> dict:
    from ray.autoscaler._private import util as autoscaler_util

    config = yaml.safe_load((ROOT / "cluster" / name).read_text())
    return autoscaler_util.prepare_config(copy.deepcopy(config))


def test_feasibility_counts_nodes_and_the_autoscalers_node_types():
    cpu_head = [{"CPU": 2.0, "memory": 1e9}]
    gpu_trial, cpu_trial = {"cpu": 2.0, "gpu": 0.5}, {"cpu": 1.0, "gpu": 0.0}
    aws_types = resources_check.node_types(prepared_config("aws-gpu.yaml"))
    assert set(aws_types) == {"ray.head.cpu", "ray.worker.gpu", "ray.worker.gpu_spot"}
    # GPU workers that scale from 0 count; the CPU head alone does not hold a GPU trial.
    resources_check.check_fits(gpu_trial, cpu_head, aws_types)
    resources_check.check_fits(cpu_trial, cpu_head, None)
    with pytest.raises(ValueError, match="no autoscaler config") as refused:
        resources_check.check_fits(gpu_trial, cpu_head, None)
    assert "CPU=2, GPU=0.5" in str(refused.value) and "GPU=0)" in str(refused.value)
    with pytest.raises(ValueError, match="no node type the autoscaler may launch offers it"):
        resources_check.check_fits({"cpu": 8.0, "gpu": 1.0}, cpu_head, aws_types)
    # A node type that may never launch (max_workers 0) offers nothing.
    config = prepared_config("aws-gpu.yaml")
    for name in ("ray.worker.gpu", "ray.worker.gpu_spot"):
        config["available_node_types"][name]["max_workers"] = 0
    with pytest.raises(ValueError):
        resources_check.check_fits(gpu_trial, cpu_head, resources_check.node_types(config))


# -------------------------------------------------------------------------------------- a real Ray head
@pytest.mark.slow
def test_submit_follow_status_to_the_end_and_every_cell_once(service, capsys, mlflow_server, tiny_home, tmp_path):
    path = write_sweep(tmp_path, name="service-smoke", tracking_uri=mlflow_server)
    started = time.monotonic()
    sweep_id = submit(service, capsys, path, tiny_home)
    assert sweep_id.startswith("service-smoke-")
    entry = wait_for_state(service, capsys, sweep_id, jobs.TERMINAL)
    assert entry["state"] == "succeeded", entry
    assert "running" in entry["seen"]
    progress = entry["progress"]
    assert (progress["done"], progress["total"], progress["running"], progress["pending"]) == (2, 2, 0, 0)
    assert (progress["epochs_done"], progress["epochs_total"]) == (4, 4)
    assert progress["best_cell"] == "dataset=19997" and 0 <= progress["best_val_acc"] <= 1
    parent, _ = assert_every_cell_once(mlflow_server, "service-smoke", seeds=2, epochs=2, sweep_id=sweep_id)
    assert entry["mlflow_url"].endswith(f"/runs/{parent.info.run_id}")
    # The Tune folder is named after the sweep id, under the file's storage path.
    assert (tmp_path / "results" / sweep_id / "glovesweep_sweep.json").is_file()
    assert service("logs", sweep_id) == 0
    assert "2/2 trials done, 0 failed" in capsys.readouterr().out
    assert service("list") == 0
    (line,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith(sweep_id)]
    assert "succeeded" in line and "2/2 done" in line
    assert service("status", sweep_id) == 0
    text = capsys.readouterr().out
    assert "trials: 2 done, 0 running, 0 pending, 0 failed" in text and "MLflow: http://" in text
    print(f"submitted sweep to the end: {time.monotonic() - started:.0f} s")


def alive(pid: int) -> bool:
    try:
        return pathlib.Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.mark.slow
def test_cancel_kills_the_runs_and_every_process_then_resume_finishes_each_cell_once(
        service, capsys, ray_head, mlflow_server, tiny_home, tmp_path):
    # Enough epochs that the trials still train when the cancel lands, even on a fast machine.
    epochs = 40
    path = write_sweep(tmp_path, name="service-cancel", tracking_uri=mlflow_server, epochs=epochs)
    sweep_id = submit(service, capsys, path, tiny_home)
    wait_for_state(service, capsys, sweep_id, ("running",), timeout=300,
                   predicate=lambda entry: (entry["progress"] or {}).get("epochs_done", 0) >= 1)
    client = jobs.connect(ray_head.url)
    job = client.get_job_info(sweep_id)
    driver_pid = job.driver_info.pid
    # Ray's job supervisor stops the job with Ctrl-C's signal: no hand-made SIGTERM translation in glovesweep.
    assert job.runtime_env["env_vars"]["RAY_JOB_STOP_SIGNAL"] == "SIGINT"
    _, children = runs_of(mlflow_server, "service-cancel")
    pids = {int(driver_pid)} | {int(run.data.tags["glovesweep.worker_pid"]) for run in children}
    started = time.monotonic()
    assert service("cancel", sweep_id) == 0
    assert f"submit --resume {sweep_id}" in capsys.readouterr().out
    cancel_seconds = time.monotonic() - started
    code, entry = status(service, capsys, sweep_id)
    assert code == 1 and entry["state"] == "stopped"
    parent, children = runs_of(mlflow_server, "service-cancel")
    assert parent.info.status == "KILLED"
    assert "KILLED" in {run.info.status for run in children} and "RUNNING" not in {run.info.status for run in children}
    # The driver got Ctrl-C's signal (RAY_JOB_STOP_SIGNAL=SIGINT): Tune stopped its trials, the driver counted them
    # and said how to go on, and nothing printed a stack dump.
    assert service("logs", sweep_id) == 0
    driver_output = capsys.readouterr().out
    assert "Stop signal received" in driver_output and "trials done" in driver_output, driver_output[-3000:]
    assert not re.findall(r"^\s*(PC: )?@ |\*\*\* SIG\w+ received|Stack trace", driver_output, re.MULTILINE), driver_output
    deadline = time.monotonic() + 30
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not [pid for pid in pids if alive(pid)], "a process of the cancelled sweep is still alive"
    assert alive(ray_head.process_group) or client.get_version()  # the head stays up

    code = service("submit", "--resume", sweep_id, "--wait")
    output = capsys.readouterr()
    assert code == 0, output.out[-3000:] + output.err[-2000:]
    _, entry = status(service, capsys, sweep_id)
    assert entry["state"] == "succeeded" and entry["job"] == f"{sweep_id}-resume-1"
    assert_every_cell_once(mlflow_server, "service-cancel", seeds=2, epochs=epochs, sweep_id=sweep_id)
    print(f"cancel took {cancel_seconds:.1f} s")


@pytest.mark.slow
def test_two_sweeps_submitted_together_both_finish_and_queue_by_resources(service, capsys, mlflow_server,
                                                                          tiny_home, tmp_path):
    # Names unique to this call: the test repeats in one session (pytest-repeat's --count) on one MLflow server.
    names = [f"service-pair-{letter}-{secrets.token_hex(2)}" for letter in "ab"]
    ids = [submit(service, capsys, write_sweep(tmp_path / name, name=name, tracking_uri=mlflow_server), tiny_home)
           for name in names if (tmp_path / name).mkdir() is None]
    for sweep_id in ids:
        entry = wait_for_state(service, capsys, sweep_id, jobs.TERMINAL)
        assert entry["state"] == "succeeded", entry
    intervals = []
    for name, sweep_id in zip(names, ids):
        _, children = assert_every_cell_once(mlflow_server, name, seeds=2, epochs=2, sweep_id=sweep_id)
        intervals += [(run.info.start_time, run.info.end_time) for run in children]
    # The head has 2 CPUs and every trial asks 1: never more than 2 trials of the 4 at once.
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = most = 0
    for _, change in events:
        running += change
        most = max(most, running)
    assert 1 <= most <= 2


@pytest.mark.slow
def test_a_sweep_no_node_can_ever_hold_is_refused_at_submit(service, capsys, ray_head, mlflow_server, tiny_home,
                                                            tmp_path):
    path = write_sweep(tmp_path, name="service-gpu", tracking_uri=mlflow_server, gpu=1)
    assert service("submit", str(path), "--data-dir", tiny_home["data_home"], "--no-download") == 2
    error = capsys.readouterr().err
    assert error.startswith("glovesweep submit: refused: ") and error.count("\n") == 1
    assert "CPU=1, GPU=1" in error and "GPU=0" in error and "no autoscaler config" in error
    # Not left pending: no job, no parent run.
    assert not [job for job in jobs.connect(ray_head.url).list_jobs()
                if (job.metadata or {}).get(jobs.SWEEP_NAME) == "service-gpu"]
    from mlflow import tracking as mlflow_tracking

    experiment = mlflow_tracking.MlflowClient(mlflow_server).get_experiment_by_name("service-gpu")
    assert not mlflow_tracking.MlflowClient(mlflow_server).search_runs([experiment.experiment_id])


@pytest.mark.slow
def test_a_head_started_by_the_onprem_files_start_command_serves_a_sweep(tmp_path, tiny_home, capsys, monkeypatch):
    """The on-prem YAML's head start command, as `ray up` runs it on the head (less its `ray stop`): free ports,
    a temporary home holding the synced checkout, the token and the bootstrap config `ray up` writes."""
    config = yaml.safe_load((ROOT / "cluster" / "onprem.yaml").read_text())
    home, shared = tmp_path / "home", tmp_path / "nfs"
    (shared / "data").mkdir(parents=True)
    shutil.copy(pathlib.Path(tiny_home["data_home"]) / "20news-19997.tar.gz", shared / "data")
    home.mkdir()
    (home / "glovesweep").symlink_to(ROOT)
    bootstrap = prepared_config("onprem.yaml")
    bootstrap["provider"]["worker_ips"] = []  # No machine to reach over SSH here.
    (home / "ray_bootstrap_config.yaml").write_text(yaml.safe_dump(bootstrap))
    # PostgreSQL may run as `postgres` (under root), which must reach its folder: not inside pytest's 0700 tmp.
    postgres = pathlib.Path(tempfile.mkdtemp(prefix="gs-onprem-pg-", dir="/tmp"))
    postgres.chmod(0o755)
    environment = ray_environment(tmp_path, HOME=str(home), GLOVESWEEP_POSTGRES_FOLDER=str(postgres / "pg"),
                                  GLOVESWEEP_POSTGRES_PORT=str(free_port()))
    (home / ".ray").mkdir()
    shutil.copy(environment.pop("RAY_AUTH_TOKEN_PATH"), home / ".ray" / "auth_token")
    mlflow_port, dashboard_port = free_port(), free_port()
    # Unix socket paths are limited to 107 bytes: Ray's session folder must sit under a short path.
    temp_dir = pathlib.Path(tempfile.mkdtemp(prefix="gs-onprem-", dir="/tmp"))
    commands = [command for command in config["head_start_ray_commands"] if command.strip() != "ray stop"]
    command = " ; ".join(commands)
    command = (command.replace("--host auto --port 5000", f"--host 127.0.0.1 --port {mlflow_port}")
               .replace("--port=6379", f"--port={free_port()}").replace("/mnt/glovesweep", str(shared))
               + " " + " ".join(head_start_flags(temp_dir, dashboard_port)))
    assert "ray start --head" in command and "--dashboard-host=127.0.0.1" in command
    head = start_ray_head(command, environment=environment, cwd=tmp_path, temp_dir=temp_dir,
                          dashboard_port=dashboard_port, log=tmp_path / "head.log")
    try:
        tracking_uri = f"http://127.0.0.1:{mlflow_port}"
        # The head's MLflow server requires its login (cluster/start_mlflow.py wrote it, mode 0600): without it 401.
        credentials = home / "glovesweep-mlflow" / "credentials.env"
        assert oct(credentials.stat().st_mode & 0o777) == "0o600"
        for line in credentials.read_text().splitlines():
            name, _, value = line.partition("=")
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(home / ".ray" / "auth_token"))
        monkeypatch.delenv("RAY_ADDRESS", raising=False)
        path = write_sweep(tmp_path, name="service-onprem", tracking_uri="sqlite:///unused-on-the-cluster.db",
                           seeds=1)
        # No --data-dir, --storage-path or job MLflow: the head's recorded cluster environment provides them.
        code = cli.main(["submit", str(path), "--address", head.url, "--tracking-uri", tracking_uri, "--json"])
        captured = capsys.readouterr()
        assert code == 0, captured.out + captured.err
        sweep_id = json.loads(captured.out.strip().splitlines()[-1])["sweep_id"]
        code = cli.main(["logs", sweep_id, "--follow", "--address", head.url])
        output = capsys.readouterr().out
        assert code == 0, output[-3000:]
        assert_every_cell_once(tracking_uri, "service-onprem", seeds=1, epochs=2, sweep_id=sweep_id)
        assert (shared / "ray_results" / sweep_id / "glovesweep_sweep.json").is_file()
        # The head's MLflow server keeps its runs in the PostgreSQL the start command set up.
        import psycopg2

        (entry,) = (home / ".pgpass").read_text().splitlines()
        host, port, database, user, password = entry.split(":")
        with psycopg2.connect(host=host, port=port, dbname=database, user=user, password=password) as connection:
            with connection.cursor() as cursor:
                cursor.execute("SELECT count(*) FROM runs")
                assert cursor.fetchone()[0] == 2  # the parent run and its one trial
    finally:
        head.stop()
        subprocess.run([sys.executable, str(ROOT / "cluster" / "start_mlflow.py"), "--stop", "--store",
                        str(home / "glovesweep-mlflow")], timeout=60)
        stop_postgres(postgres / "pg")
        shutil.rmtree(postgres, ignore_errors=True)


@pytest.mark.slow
def test_a_job_that_cannot_reach_mlflow_ends_failed_and_so_does_its_parent_run(service, capsys, mlflow_server,
                                                                              tiny_home, tmp_path):
    path = write_sweep(tmp_path, name="service-lost", tracking_uri=mlflow_server, seeds=1)
    code = service("submit", str(path), "--data-dir", tiny_home["data_home"], "--no-download",
                   "--job-tracking-uri", f"http://127.0.0.1:{free_port()}")
    captured = capsys.readouterr()
    assert code == 1, captured.out + captured.err
    assert "the sweep's job ended failed before its first trial: see glovesweep logs" in captured.err
    sweep_id = captured.out.split("submitted sweep ")[1].split()[0]
    assert service("logs", sweep_id) == 0
    assert "is unreachable" in capsys.readouterr().out
    parent, children = runs_of(mlflow_server, "service-lost")
    assert parent.info.status == "FAILED" and not children
    code, entry = status(service, capsys, sweep_id)
    assert code == 1 and entry["state"] == "failed"
