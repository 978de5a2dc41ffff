"""`glovesweep plan`: the trial count, the merges of identical cells, epochs to train, a cached calibration."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

from conftest import build_tiny_data_home
from test_merging import SWEEP

from sweeps import cli
from trainer import paths

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_plan_lists_merges_and_estimates_from_a_cached_calibration(tmp_path, capsys):
    home = build_tiny_data_home(tmp_path / "data")
    path = tmp_path / "merge.yaml"
    path.write_text(SWEEP.format(name="plan", uri=f"sqlite:///{tmp_path / 'mlflow.db'}", storage=tmp_path / "results"))
    arguments = ["plan", str(path), "--data-dir", str(home), "--cache-dir", str(tmp_path / "cache"), "--no-download",
                 "--json"]
    assert cli.main(arguments) == 0
    plan = json.loads(capsys.readouterr().out)
    assert (plan["trials"], plan["to_train"], plan["epochs_to_train"]) == (4, 2, 6)
    assert sorted(item["trial"] for item in plan["merged"]) == ["sizing=num_words_plus_one,strip=blank_line",
                                                                 "sizing=num_words_plus_one,strip=none"]
    assert plan["cpu_seconds"] > 0 and plan["calibration_cached"] is False
    assert cli.main(arguments) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["calibration_cached"] is True and again["cpu_seconds"] == plan["cpu_seconds"]
    # Nothing ran: no MLflow store, no results folder.
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "results").exists()


def test_a_plan_times_the_network_on_the_threads_of_one_trial(tmp_path):
    # In a process of its own, as a user runs it: TensorFlow starts there, on the trial's threads.
    home = build_tiny_data_home(tmp_path / "data")
    path = tmp_path / "merge.yaml"
    path.write_text(SWEEP.format(name="plan", uri=f"sqlite:///{tmp_path / 'mlflow.db'}", storage=tmp_path / "results"))
    result = subprocess.run([sys.executable, "-m", "sweeps.cli", "plan", str(path), "--data-dir", str(home),
                             "--cache-dir", str(tmp_path / "cache"), "--no-download", "--json"],
                            capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    memos = [json.loads(memo.read_text()) for memo in (tmp_path / "cache" / "calibration").glob("*.json")]
    # The sweep's trials take 1 CPU each (the default), so TensorFlow ran on 1 thread, not on every core.
    assert memos and {memo["threads"] for memo in memos} == {1}


def plan_offline(arguments: list[str], data_home: pathlib.Path, monkeypatch, capsys) -> tuple[dict, list[str]]:
    """``glovesweep plan`` with the network faked away (it fails the test if called): (JSON plan, text lines)."""
    calls = []

    def no_network(url, timeout):
        calls.append(url)
        raise OSError(f"no network in this test ({url})")

    monkeypatch.setattr(paths, "_open_url", no_network)
    monkeypatch.setenv("GLOVESWEEP_DATA", str(data_home))
    assert cli.main([*arguments, "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert cli.main(arguments) == 0
    lines = capsys.readouterr().out.splitlines()
    assert calls == [], "the plan tried to download"
    assert [line for line in lines if line.startswith("estimated ") and "CPU hours" in line], lines
    assert len([line for line in lines if line.startswith("merges not checked for")]) == 1, lines
    return plan, lines


def test_an_offline_plan_on_the_shared_archives_names_the_missing_glove(tmp_path, shared_data, monkeypatch, capsys):
    # The study's smoke variant, with the 100d vectors of the full study (50d ships in an offline package).
    text = (ROOT / "sweeps" / "blog-discrepancy.yaml").read_text().replace("  glove_dim: 50\n", "  glove_dim: 100\n")
    path = tmp_path / "blog-discrepancy.yaml"
    path.write_text(text)
    plan, _ = plan_offline(["plan", str(path), "--smoke-test", "--cache-dir", str(tmp_path / "cache")], shared_data,
                           monkeypatch, capsys)
    assert plan["missing"] == ["glove.6B.zip (100d)"] and plan["unchecked"] == plan["networks"] == 2
    assert plan["to_train"] == 2 and plan["epochs_to_train"] == 4 and plan["cpu_seconds"] > 0


@pytest.mark.slow
def test_the_study_plans_offline_with_an_empty_data_home(tmp_path, monkeypatch, capsys):
    (tmp_path / "empty").mkdir()
    plan, _ = plan_offline(["plan", str(ROOT / "sweeps" / "blog-discrepancy.yaml"), "--cache-dir",
                            str(tmp_path / "cache")], tmp_path / "empty", monkeypatch, capsys)
    assert plan["missing"] == ["20news-19997.tar.gz", "20news-bydate.tar.gz", "glove.6B.zip (100d)"]
    assert plan["networks"] == plan["unchecked"] == plan["to_train"] == 108
    assert plan["epochs_to_train"] == 108 * 20 and plan["cpu_seconds"] > 0  # epochs 2 and 10 are read on the way
