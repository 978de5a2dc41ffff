"""The fault drill's smoke mode, as a maintainer runs it: real Ray, a real MLflow server, the real archives."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_drills_smoke_mode_survives_every_fault(shared_data, tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "fault_drill.py"), "--smoke", "--data-dir",
                             str(shared_data), "--out", str(tmp_path)], capture_output=True, text=True, timeout=1200)
    rows = json.loads((tmp_path / "fault-drill.json").read_text())
    assert [row["fault"] for row in rows if not row["survived"]] == [], result.stdout[-3000:]
    assert result.returncode == 0 and len(rows) == 2 and rows[0]["fault"].startswith("pickled payloads planted")
    assert all(row["metrics_lost"] == 0 for row in rows)
    assert "| fault | survived means |" in (tmp_path / "fault-drill.md").read_text()
