"""The chaos run (scripts/chaos.py): its seeded schedule (fast), and its smoke mode on a real cluster (slow)."""

from __future__ import annotations

import importlib.util
import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load_chaos():
    spec = importlib.util.spec_from_file_location("chaos", ROOT / "scripts" / "chaos.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["chaos"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_the_schedule_is_seeded_covers_every_kind_and_keeps_its_rate():
    chaos = load_chaos()
    schedule = chaos.draw_schedule(faults=100, rate=3.0, seed=0)
    assert schedule == chaos.draw_schedule(faults=100, rate=3.0, seed=0)
    assert schedule != chaos.draw_schedule(faults=100, rate=3.0, seed=1)
    # The first round holds every kind once, so a 10-fault smoke run injects each of them.
    assert sorted(fault.kind for fault in schedule[:len(chaos.KINDS)]) == sorted(chaos.KINDS)
    gaps = [later.at - earlier.at for earlier, later in zip(schedule, schedule[1:])]
    assert all(gap > 0 for gap in gaps)
    assert 12 < sum(gaps) / len(gaps) < 30  # 3 a minute: 20 s apart on average
    for fault in schedule:
        low, high = chaos.HOLDS.get(fault.kind, (0, 0))
        assert low <= fault.hold <= high and 0 <= fault.pick < 1


@pytest.mark.slow
def test_the_chaos_smoke_run_holds(shared_data, tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "chaos.py"), "--smoke", "--data-dir",
                             str(shared_data), "--out", str(tmp_path)], capture_output=True, text=True, timeout=1800)
    summary = json.loads((tmp_path / "chaos.json").read_text())
    checks = summary["checks"]
    assert summary["held"] and result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert summary["totals"]["faults_injected"] == 10
    assert checks["cells_once"] == checks["cells_expected"] == 6
    assert checks["metrics_lost"] == checks["metrics_duplicated"] == checks["runs_left_running"] == 0
    assert {row["kind"] for row in summary["per_kind"] if row["injected"]} == set(load_chaos().KINDS)
    assert json.loads((tmp_path / "schedule.json").read_text())["seed"] == 0
    # Its results get committed: an exit reason that named the scratch folder names a placeholder instead.
    assert "glovesweep-chaos-" not in (tmp_path / "chaos.md").read_text()


# ----------------------------------------------------------- defects the chaos run found, one test each
# Found by `python scripts/chaos.py --smoke --seed 0` (its fault 7, checkpoint_corrupt): a trial whose newest
# checkpoint was cut short while written failed on every retry and every resume, until its retries ran out.
def write_checkpoint(folder: pathlib.Path, epoch: int) -> pathlib.Path:
    """A checkpoint as the trainer writes one: state.json and a NumPy archive of the weights."""
    import numpy as np

    folder.mkdir(parents=True)
    (folder / "state.json").write_text(json.dumps({"epoch": epoch, "config": {}}))
    np.savez(folder / "checkpoint.npz", weights=np.arange(4096, dtype=np.float32) * epoch)
    return folder


def cut_short(archive: pathlib.Path) -> None:
    """The archive's first half, as a worker killed while writing it leaves it (the chaos run's corruption)."""
    with open(archive, "r+b") as stream:
        stream.truncate(archive.stat().st_size // 2)


def test_a_checkpoint_cut_short_while_written_is_an_unreadable_checkpoint_not_a_crash(tmp_path):
    from trainer import checkpoint_files

    folder = write_checkpoint(tmp_path / "checkpoint_000003", epoch=4)
    cut_short(folder / "checkpoint.npz")
    # Before the fix: zipfile.BadZipFile, which no caller expected, so the trial failed instead of skipping it.
    with pytest.raises(OSError, match="not a readable glovesweep checkpoint"):
        checkpoint_files.read_checkpoint(folder)


def test_a_retry_whose_newest_checkpoint_was_cut_short_continues_from_the_one_before(tmp_path, capsys):
    from sweeps.run import builtin
    from trainer import checkpoint_files

    trial_folder = tmp_path / "trial_abc_00001"
    write_checkpoint(trial_folder / "checkpoint_000001", epoch=2)
    write_checkpoint(trial_folder / "checkpoint_000002", epoch=3)
    newest = write_checkpoint(trial_folder / "checkpoint_000003", epoch=4)
    cut_short(newest / "checkpoint.npz")
    # Tune hands a retry its newest checkpoint only; the trial adds the older ones it kept, newest first.
    older = builtin.older_checkpoints(str(newest))
    assert older == [str(trial_folder / "checkpoint_000002"), str(trial_folder / "checkpoint_000001")]
    assert builtin.older_checkpoints("s3://bucket/sweep/trial_abc_00001/checkpoint_000003") == []
    directory = builtin.usable_checkpoint([str(newest), *older])
    assert directory is not None
    assert checkpoint_files.read_checkpoint(directory)[0]["epoch"] == 3
    assert f"skipping checkpoint {newest}" in capsys.readouterr().out


def test_a_fault_that_hit_a_trial_before_it_wrote_anything_survives_only_if_every_cell_ran_once():
    """Found by the smoke run on a loaded machine: the driver was killed while a worker of a just-started trial was
    still importing, so its folder had neither params.json nor an MLflow run, and no cell to check."""
    import types

    chaos = load_chaos()
    per_trial = {"a": {"runs": 1, "finished": 1, "metrics_lost": 0}, "b": {"runs": 1, "finished": 1, "metrics_lost": 0}}
    for cells_once, survived in ((2, True), (1, False)):
        checks = chaos.Checks(cells_expected=2, cells_once=cells_once, parent_status="FINISHED",
                              parent_has_answer=True, per_trial=per_trial)
        outcome = chaos.Outcome(index=0, kind="driver_kill", injected=True, trials=["trial_1", "trial_2"])
        chaos.score(types.SimpleNamespace(outcomes=[outcome]), checks, {"trial_1": "a"})
        assert (outcome.cells_affected, outcome.cells_once, outcome.survived) == (1, 1, survived)
