"""`glovesweep plan`: the trial count, the merges of identical cells, epochs to train, a cached calibration."""

from __future__ import annotations

import json

from conftest import build_tiny_data_home
from test_merging import SWEEP

from sweeps import cli


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
