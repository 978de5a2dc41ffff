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
