"""`glovesweep resume` runs no code from the sweep folder: every file Tune would unpickle is planted with a
payload, and the newest checkpoint with a pickled object array; resume finishes the sweep, the payload never
runs, and the bad checkpoint costs one line and one epoch, not the trial."""

from __future__ import annotations

import io
import json
import pathlib
import pickle
import subprocess
import sys

import numpy as np
import pytest
from conftest import build_tiny_data_home
from test_sweep import client, history, runs_of, write_sweep

from sweeps.run import checkpoints
from sweeps.run import driver
from sweeps import spec as spec_module
from trainer import train as train_module


class Payload:
    """Unpickling this creates ``marker``: what an attacker with write access to shared storage would plant."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def plant(sweep_dir, marker) -> list[str]:
    """Overwrite every file Tune's restore would unpickle; returns what was planted."""
    payload = pickle.dumps(Payload(marker))
    planted = []
    # Ray 2.60 keeps the trainable inside tuner.pkl; older versions wrote trainable.pkl: plant both.
    (sweep_dir / "trainable.pkl").write_bytes(payload)
    for trial_folder in sweep_dir.glob("trial_*"):
        # error.pkl exists only after a failure: plant one in every trial folder.
        (trial_folder / "error.pkl").write_bytes(payload)
    for path in sorted(sweep_dir.rglob("*")):
        if path.suffix == ".pkl":
            path.write_bytes(payload)
        elif path.suffix == ".json" and "state-" in path.name:
            # Tune keeps each trial's runtime state (and the searcher's) as hex-encoded cloudpickle in JSON.
            path.write_text(json.dumps({"trial_data": [[payload.hex(), payload.hex()]],
                                        "runner_data": payload.hex()}))
        else:
            continue
        planted.append(path.name)
    return planted


@pytest.fixture(scope="module")
def tiny_home(tmp_path_factory):
    root = tmp_path_factory.mktemp("security-data")
    return {"data_home": str(build_tiny_data_home(root)), "cache_dir": str(root / "cache")}


def test_resume_never_unpickles_the_sweep_folder(mlflow_server, ray_local, tiny_home, tmp_path):
    path = write_sweep(tmp_path, name="planted", tracking_uri=mlflow_server, epochs=(3,), seeds=1, concurrent=1)
    path.write_text(path.read_text().replace('dataset: ["19997", "bydate"]', 'dataset: ["19997"]'))
    result = driver.run_sweep(spec_module.load_sweep(path), download_if_missing=False, **tiny_home)
    assert result.ok
    parent, (child,) = runs_of(mlflow_server, "planted")
    # As if the driver died before the trial finished: its child run is not FINISHED.
    client(mlflow_server).set_terminated(child.info.run_id, status="KILLED")
    client(mlflow_server).set_terminated(parent.info.run_id, status="KILLED")
    (sweep_dir,) = (tmp_path / "results").iterdir()
    marker = tmp_path / "pwned"
    planted = plant(sweep_dir, marker)
    assert {"tuner.pkl", "trainable.pkl", "error.pkl", "params.pkl"} <= set(planted)
    assert any(name.startswith("experiment_state") for name in planted)
    trial_folder = next(sweep_dir.glob("trial_*"))
    newest, older = (str(trial_folder / name) for name in ("checkpoint_000002", "checkpoint_000001"))
    assert checkpoints.find_checkpoints(str(sweep_dir)) == {spec_module.load_sweep(path).trials()[0].key: [newest]}
    # The newest checkpoint now holds a pickled object array in place of its weights.
    buffer = io.BytesIO()
    np.savez(buffer, model_0=np.array([Payload(marker)], dtype=object))
    (tmp_path / "bad.npz").write_bytes(buffer.getvalue())
    (tmp_path / "bad.npz").replace(f"{newest}/{train_module.CHECKPOINT_ARRAYS}")

    resumed = subprocess.run([sys.executable, "-m", "sweeps.cli", "resume", str(sweep_dir), "--num-cpus", "2"],
                             cwd=tmp_path, capture_output=True, text=True, timeout=300,
                             env={**__import__("os").environ, "GLOVESWEEP_CACHE": tiny_home["cache_dir"]})
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert not marker.exists(), "a planted payload ran"
    skipped = [line for line in resumed.stdout.splitlines() if "skipping checkpoint" in line]
    assert len(skipped) == 1 and newest in skipped[0] and "not a readable glovesweep checkpoint" in skipped[0]
    assert "1/1 trials done, 0 failed" in resumed.stdout
    parent, (child,) = runs_of(mlflow_server, "planted")
    assert parent.info.status == child.info.status == "FINISHED"
    assert int(child.data.tags["glovesweep.resumed_from_epoch"]) == json.loads(
        open(f"{older}/{train_module.CHECKPOINT_STATE}").read())["epoch"]
    assert [step for step, _ in history(mlflow_server, child.info.run_id, "val_acc")] == [1, 2, 3]


def test_resume_of_a_finished_sweep_changes_nothing(mlflow_server, ray_local, tiny_home, tmp_path):
    path = write_sweep(tmp_path, name="finished", tracking_uri=mlflow_server, epochs=(1,), seeds=1)
    path.write_text(path.read_text().replace('dataset: ["19997", "bydate"]', 'dataset: ["19997"]'))
    assert driver.run_sweep(spec_module.load_sweep(path), download_if_missing=False, **tiny_home).ok
    (sweep_dir,) = (tmp_path / "results").iterdir()
    resumed = subprocess.run([sys.executable, "-m", "sweeps.cli", "resume", str(sweep_dir), "--data-dir",
                              str(tmp_path / "no-such-folder"), "--no-download"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0 and "nothing to resume" in resumed.stdout, resumed.stderr[-2000:]
    parent, _ = runs_of(mlflow_server, "finished")
    assert parent.info.status == "FINISHED"


def test_a_failed_resume_leaves_the_parent_status_alone(mlflow_server, ray_local, tiny_home, tmp_path):
    path = write_sweep(tmp_path, name="failing-resume", tracking_uri=mlflow_server, epochs=(1,), seeds=1)
    path.write_text(path.read_text().replace('dataset: ["19997", "bydate"]', 'dataset: ["19997"]'))
    assert driver.run_sweep(spec_module.load_sweep(path), download_if_missing=False, **tiny_home).ok
    parent, (child,) = runs_of(mlflow_server, "failing-resume")
    client(mlflow_server).set_terminated(child.info.run_id, status="KILLED")
    (sweep_dir,) = (tmp_path / "results").iterdir()
    # The data the resume needs is gone: a one-line error, and the parent keeps its status.
    resumed = subprocess.run([sys.executable, "-m", "sweeps.cli", "resume", str(sweep_dir), "--data-dir",
                              str(tmp_path / "no-such-folder"), "--no-download"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 2 and len(resumed.stderr.strip().splitlines()) == 1, resumed.stderr[-2000:]
    parent, _ = runs_of(mlflow_server, "failing-resume")
    assert parent.info.status == "FINISHED"




def test_find_checkpoints_reads_each_layout_and_only_the_trials_asked_for(tmp_path, capsys):
    """The three layouts a trial folder's checkpoints take: the built-in network's (state.json, checked here), a
    trainer of one's own's (glovesweep's epoch note only: its trainer reads the rest), a configuration's one part
    per seed (at its oldest part's epoch); a trial outside ``keys`` is not read (no notice for its damage)."""
    from sweeps.run import session as session_module
    from sweeps.run import trial as trial_module

    def trial_folder(name: str, key_seed: int) -> tuple[pathlib.Path, str]:
        trial = spec_module.Trial(kind="user", cell={"rate": 0.5}, seed=key_seed)
        folder = tmp_path / "sweep" / f"trial_{name}"
        folder.mkdir(parents=True)
        (folder / "params.json").write_text(json.dumps(
            {trial_module.TASK_KEY: trial_module.TrialTask(trial=trial).as_param()}))
        return folder, trial.key

    user, user_key = trial_folder("user", 0)
    for epoch in (1, 2):
        (user / f"checkpoint_00000{epoch}").mkdir()
        (user / f"checkpoint_00000{epoch}" / session_module.EPOCH_FILE).write_text(json.dumps({"epoch": epoch}))
        (user / f"checkpoint_00000{epoch}" / "model.bin").write_bytes(b"the user's own format")
    group, group_key = trial_folder("group", 1)
    for epoch, parts in ((3, (3, 3, 3)), (4, (4, 5, 4))):
        for seed, part_epoch in enumerate(parts):
            part = group / f"checkpoint_00000{epoch}" / f"seed_{seed}"
            part.mkdir(parents=True)
            (part / session_module.EPOCH_FILE).write_text(json.dumps({"epoch": part_epoch}))
    # The newest group checkpoint lost a part: the one before it is used.
    (group / "checkpoint_000004" / "seed_2" / session_module.EPOCH_FILE).unlink()
    damaged, damaged_key = trial_folder("damaged", 2)
    (damaged / "checkpoint_000001").mkdir()
    (damaged / "checkpoint_000001" / "state.json").write_text("{cut short")
    found = checkpoints.find_checkpoints(str(tmp_path / "sweep"), keys={user_key, group_key})
    assert found == {user_key: [str(user / "checkpoint_000002")], group_key: [str(group / "checkpoint_000003")]}
    assert "damaged" not in capsys.readouterr().out
    assert damaged_key not in checkpoints.find_checkpoints(str(tmp_path / "sweep"))
    assert "skipping checkpoint" in capsys.readouterr().out
