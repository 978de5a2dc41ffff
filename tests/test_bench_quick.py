"""The README-command-1 benchmark's smoke mode, as CI runs it: the three commands for real, on tiny settings."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_benchmark_times_both_reference_epochs_and_the_first_command(shared_data, tmp_path):
    out = tmp_path / "quick.json"
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_quick.py"), "--smoke", "--data-dir",
                             str(shared_data), "--out", str(out)], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(out.read_text())
    [row] = figures["rounds"]
    assert figures["smoke"] is True and figures["cpu"]["model_name"]
    # The first command printed its answer before it returned, and its own sweep clock fits inside both.
    assert 0 < row["answer_seconds"] <= row["seconds"] and row["sweep_seconds"] <= row["answer_seconds"]
    assert row["fast_epoch_seconds"] >= 0 and row["keras_epoch_seconds"] >= 0
    assert figures["median"]["seconds"] == row["seconds"]
    # Its steps were seen in the order they happen, and the machine was busy for some of the command's time.
    timeline = row["timeline"]
    order = ["data_prepared", "first_epoch", "first_trial_done", "trials_done", "answer"]
    assert list(timeline) == order, timeline
    times = [timeline[step] for step in order]
    assert times == sorted(times) and times[-1] <= row["seconds"]
    assert 0 < row["busy_cpu_seconds"] and 0 < row["busy_cores"] <= figures["cpu"]["cpus"] + 0.5
