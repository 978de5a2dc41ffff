"""The tracking server goes down: training goes on, nothing is lost, no run stays RUNNING, Ctrl-C is prompt.

Each test runs its own real MLflow server on 127.0.0.1 and stops and restarts it on the same port and store.
Time bounds here catch hangs (the issue: 4 minutes per call); they do not measure speed.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from conftest import build_tiny_data_home, free_port, start_mlflow_server, stop_mlflow_server
from test_sweep import client, history, runs_of, write_sweep

from sweeps.run import driver
from sweeps.run import fitting
from sweeps.tracking import mlflow_runs
from sweeps.tracking import names
from sweeps.tracking import outbox
from sweeps import spec as spec_module
from sweeps.tracking import trial_run

HANG = 45.0  # seconds: far above a healthy call, far below MLflow's own minutes of retries


@pytest.fixture
def server(tmp_path):
    """A restartable server: ``server["stop"]()`` and ``server["start"]()`` keep its port and store."""
    port = free_port()
    folder = tmp_path / "mlflow"
    state = {"process": start_mlflow_server(folder, port), "uri": f"http://127.0.0.1:{port}"}
    state["stop"] = lambda: stop_mlflow_server(state["process"])
    state["start"] = lambda: state.update(process=start_mlflow_server(folder, port))
    yield state
    stop_mlflow_server(state["process"])


@pytest.fixture
def driver_settings(monkeypatch):
    """This process's MLflow client as a driver's (``outbox.driver_client_settings``), put back afterwards."""
    for name in (*outbox.DRIVER_SETTINGS, *outbox.TRIAL_SETTINGS):
        monkeypatch.delenv(name, raising=False)
    outbox.driver_client_settings()


@pytest.fixture
def trial(server, monkeypatch, tmp_path, driver_settings):
    monkeypatch.setattr(trial_run, "END_WAIT_SECONDS", 3.0)
    experiment_id = client(server["uri"]).create_experiment("outage")
    parent = client(server["uri"]).create_run(experiment_id, run_name="parent").info.run_id
    run = trial_run.TrialRun(server["uri"], experiment_id, parent, "key-1", sweep_dir=str(tmp_path / "sweep"))
    run.start(run_name="19997 · none · s0", cell="dataset=19997", trainer="keras", params={"seed": 0}, tags={})
    return run


def epoch_metrics(epoch: int) -> dict[str, float]:
    return {"loss": 1.0 / epoch, "acc": 0.1 * epoch, "val_loss": 1.1 / epoch, "val_acc": 0.1 * epoch,
            "epoch_seconds": 0.5}


def test_training_goes_on_while_the_server_is_down_and_every_value_arrives(server, trial):
    trial.log_epoch(1, epoch_metrics(1), requested_epochs=[4])
    server["stop"]()
    for epoch in (2, 3):
        started = time.monotonic()
        trial.log_epoch(epoch, epoch_metrics(epoch), requested_epochs=[4])
        assert time.monotonic() - started < HANG, "a logging call hung while the server was down"
    assert trial.pending == 10 and trial.unreachable_since is not None
    server["start"]()
    trial.log_epoch(4, epoch_metrics(4), requested_epochs=[4])
    trial.end("FINISHED")
    assert trial.pending == 0
    assert [step for step, _ in history(server["uri"], trial.run_id, "val_acc")] == [1, 2, 3, 4]
    run = client(server["uri"]).get_run(trial.run_id)
    assert run.info.status == "FINISHED" and run.data.metrics["val_acc_at_4"] == pytest.approx(0.4)


def test_a_server_still_down_at_the_end_leaves_an_outbox_that_resume_applies(server, trial, tmp_path):
    trial.log_epoch(1, epoch_metrics(1), requested_epochs=[2])
    server["stop"]()
    trial.log_epoch(2, epoch_metrics(2), requested_epochs=[2])
    trial.end("FINISHED")  # waits END_WAIT_SECONDS (3 s here), then keeps what it could not send
    kept = list((tmp_path / "sweep" / outbox.FOLDER).iterdir())
    assert len(kept) == 1
    server["start"]()
    assert outbox.replay(server["uri"], trial.experiment_id, str(tmp_path / "sweep")) == 1
    assert not list((tmp_path / "sweep" / outbox.FOLDER).iterdir())
    assert [step for step, _ in history(server["uri"], trial.run_id, "val_acc")] == [1, 2]
    assert client(server["uri"]).get_run(trial.run_id).info.status == "FINISHED"


def test_closing_runs_while_the_server_is_down_keeps_their_status(server, trial, tmp_path):
    server["stop"]()
    started = time.monotonic()
    fitting.close_runs(server["uri"], trial.experiment_id, trial.parent_run_id, "KILLED",
                      sweep_dir=str(tmp_path / "sweep"))
    assert time.monotonic() - started < HANG
    server["start"]()
    outbox.replay(server["uri"], trial.experiment_id, str(tmp_path / "sweep"))
    assert client(server["uri"]).get_run(trial.run_id).info.status == "KILLED"
    assert client(server["uri"]).get_run(trial.parent_run_id).info.status == "KILLED"


def test_a_driver_call_waits_out_a_brief_outage_that_a_trial_call_does_not(server, driver_settings):
    experiment_id = client(server["uri"]).create_experiment("brief-outage")
    run_id = client(server["uri"]).create_run(experiment_id, run_name="parent").info.run_id
    server["stop"]()
    with outbox.trial_client_settings(), pytest.raises(Exception) as failed:
        mlflow_runs.end_run(server["uri"], run_id, "FINISHED")
    assert outbox.unreachable(failed.value)
    restart = threading.Timer(1.0, server["start"])
    restart.start()
    started = time.monotonic()
    mlflow_runs.end_run(server["uri"], run_id, "FINISHED")  # as the driver ends its parent run
    restart.join()
    assert time.monotonic() - started > 1.0  # it did meet the outage, and waited it out
    assert client(server["uri"]).get_run(run_id).info.status == "FINISHED"
    # Outside the block the driver's bounded settings are back.
    assert os.environ[outbox.RETRIES_VARIABLE] == outbox.DRIVER_SETTINGS[outbox.RETRIES_VARIABLE]


def test_an_outage_is_known_by_its_error_type_not_its_text(server, monkeypatch, driver_settings):
    from mlflow import exceptions as mlflow_exceptions

    # Refused: nothing listens on the port (requests' ConnectionError is the MlflowException's __context__).
    with outbox.trial_client_settings(), pytest.raises(mlflow_exceptions.MlflowException) as refused:
        client(f"http://127.0.0.1:{free_port()}").search_experiments(max_results=1)
    assert outbox.unreachable(refused.value)
    # Timed out: a socket that accepts but never answers.
    monkeypatch.setitem(outbox.TRIAL_SETTINGS, outbox.TIMEOUT_VARIABLE, "1")
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        with outbox.trial_client_settings(), pytest.raises(mlflow_exceptions.MlflowException) as timed_out:
            client(f"http://127.0.0.1:{silent.getsockname()[1]}").search_experiments(max_results=1)
    assert outbox.unreachable(timed_out.value)
    # Answered: a missing run (404) and a duplicate name (400) are refusals, even in an outage's words.
    with pytest.raises(mlflow_exceptions.MlflowException) as missing:
        client(server["uri"]).get_run("0" * 32)
    assert not outbox.unreachable(missing.value)
    name = "Connection refused: Max retries exceeded, Read timed out"
    client(server["uri"]).create_experiment(name)
    with pytest.raises(mlflow_exceptions.MlflowException) as duplicate:
        client(server["uri"]).create_experiment(name)
    assert "Connection refused" in str(duplicate.value) and not outbox.unreachable(duplicate.value)
    assert outbox.unreachable(ConnectionRefusedError()) and not outbox.unreachable(ValueError("timed out"))


@pytest.fixture(scope="module")
def tiny_home(tmp_path_factory):
    root = tmp_path_factory.mktemp("outage-data")
    return {"data_home": str(build_tiny_data_home(root)), "cache_dir": str(root / "cache")}


def test_a_sweep_survives_an_outage_with_every_epoch_logged(server, ray_local, tiny_home, tmp_path):
    path = write_sweep(tmp_path, name="outage-sweep", tracking_uri=server["uri"], epochs=(12,), seeds=1)
    path.write_text(path.read_text().replace('dataset: ["19997", "bydate"]', 'dataset: ["19997"]'))

    def outage_after_the_first_epoch():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                _, children = runs_of(server["uri"], "outage-sweep")
                if children and history(server["uri"], children[0].info.run_id, "val_acc"):
                    break
            except Exception:  # noqa: BLE001 - the sweep has not created its runs yet
                pass
            time.sleep(0.05)
        server["stop"]()
        time.sleep(15)
        server["start"]()

    outage = threading.Thread(target=outage_after_the_first_epoch, daemon=True)
    outage.start()
    result = driver.run_sweep(spec_module.load_sweep(path), download_if_missing=False, **tiny_home)
    outage.join(timeout=60)
    assert result.ok and result.done == 1
    parent, (child,) = runs_of(server["uri"], "outage-sweep")
    assert parent.info.status == child.info.status == "FINISHED"
    assert [step for step, _ in history(server["uri"], child.info.run_id, "val_acc")] == list(range(1, 13))


def test_ctrl_c_ends_the_sweep_promptly_and_its_runs_killed(server, tiny_home, tmp_path):
    path = write_sweep(tmp_path, name="interrupted", tracking_uri=server["uri"], epochs=(400,), seeds=1,
                       concurrent=1)
    path.write_text(path.read_text().replace('dataset: ["19997", "bydate"]', 'dataset: ["19997"]'))
    environment = dict(os.environ, GLOVESWEEP_CACHE=tiny_home["cache_dir"])
    environment.pop("RAY_ADDRESS", None)
    process = subprocess.Popen([sys.executable, "-m", "sweeps.cli", "run", str(path), "--data-dir",
                                tiny_home["data_home"], "--no-download", "--num-cpus", "2"], cwd=tmp_path,
                               env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and process.poll() is None:
        try:
            _, children = runs_of(server["uri"], "interrupted")
            if children and len(history(server["uri"], children[0].info.run_id, "val_acc")) >= 2:
                break
        except Exception:  # noqa: BLE001 - not started yet
            pass
        time.sleep(0.2)
    assert process.poll() is None, process.stdout.read()[-3000:]
    process.send_signal(signal.SIGINT)
    started = time.monotonic()
    try:
        output, _ = process.communicate(timeout=HANG)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail("Ctrl-C did not end the sweep")
    assert time.monotonic() - started < HANG and process.returncode != 0, output[-3000:]
    assert "glovesweep resume" in output
    parent, (child,) = runs_of(server["uri"], "interrupted")
    assert parent.info.status == "KILLED" and child.info.status == "KILLED"


def test_a_resumed_trial_sends_the_epochs_its_killed_attempt_held(server, trial):
    """Found by the chaos run (2,500 epoch values lost in 100 faults): a worker killed while its values waited
    for the server loses them, though its checkpoint's history holds them. The next attempt continues the same
    child run and sends exactly the missing epochs."""
    trial.log_epoch(1, epoch_metrics(1), requested_epochs=[4])
    server["stop"]()
    for epoch in (2, 3):
        trial.log_epoch(epoch, epoch_metrics(epoch), requested_epochs=[4])
    assert trial.pending  # the worker dies now, its buffer with it
    server["start"]()
    again = trial_run.TrialRun(trial.tracking_uri, trial.experiment_id, trial.parent_run_id, trial.trial_id,
                               sweep_dir=trial.sweep_dir)
    again.start(run_name="19997 · none · s0", cell="dataset=19997", trainer="keras", params={"seed": 0}, tags={},
                existing=again.find())
    history = {"epoch": [1, 2, 3], **{key: [epoch_metrics(epoch)[key] for epoch in (1, 2, 3)]
                                      for key in epoch_metrics(1)}}
    again.log_history(history, requested_epochs=[4])
    again.log_epoch(4, epoch_metrics(4), requested_epochs=[4])
    again.end("FINISHED")
    history_of = client(server["uri"]).get_metric_history
    for key in ("loss", "acc", "val_loss", "val_acc"):
        assert sorted(metric.step for metric in history_of(trial.run_id, key)) == [1, 2, 3, 4], key


def test_a_continued_run_lists_every_tune_trial_that_ran_it(server, trial):
    """Found by the chaos run: a folder ``trial_<Tune id>`` whose params.json a full disk kept from being written
    could not be traced to its cell. Each attempt adds its Tune id to the run's list; the latest stays on its own."""
    trial.set_tags(trial.record_tune_trial(None, "aaaaa_00001"))
    again = trial_run.TrialRun(trial.tracking_uri, trial.experiment_id, trial.parent_run_id, trial.trial_id,
                               sweep_dir=trial.sweep_dir)
    for tune_id in ("bbbbb_00004", "bbbbb_00004", "ccccc_00002"):
        existing = again.find()
        again.start(run_name="19997 · none · s0", cell="dataset=19997", trainer="keras", params={"seed": 0},
                    tags=again.record_tune_trial(existing, tune_id), existing=existing)
    tags = client(server["uri"]).get_run(trial.run_id).data.tags
    assert again.run_id == trial.run_id
    assert tags[names.TUNE_TRIAL_IDS_TAG] == "aaaaa_00001,bbbbb_00004,ccccc_00002"
    assert tags[names.TUNE_TRIAL_ID_TAG] == "ccccc_00002"
