"""The service under load, smoke-sized, as a maintainer runs it: ``scripts/service_load.py --smoke`` on a real Ray
head with its job server and a real MLflow server (4 sweeps at once: 2 run to the end, 1 cancelled then resumed,
1 cancelled for good)."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_load_smoke_ends_every_sweep_right_and_status_stays_fast(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "service_load.py"), "--smoke", "--out",
                             str(tmp_path)], capture_output=True, text=True, timeout=1800)
    output = result.stdout[-4000:] + result.stderr[-3000:]
    load = json.loads((tmp_path / "service-load.json").read_text())
    sweeps = {sweep["kind"]: sweep for sweep in load["sweeps"]}
    assert [sweep["name"] for sweep in load["sweeps"] if not sweep["ok"]] == [], output
    # Each kind ended as it must: run to the end; stopped then finished by its resume job; stopped for good.
    assert sweeps["plain"]["jobs"] == ["succeeded"] and sweeps["plain"]["cells_once_finished"] == 2
    assert sweeps["cancel-resume"]["jobs"] == ["stopped", "succeeded"]
    assert sweeps["cancel-resume"]["cells_once_finished"] == 2 and sweeps["cancel-resume"]["runs"] == 2
    assert sweeps["cancel"]["jobs"] == ["stopped"] and sweeps["cancel"]["parent_status"] == "KILLED"
    assert all(sweep["runs_running"] == 0 and sweep["epochs_missing_or_twice"] == 0 for sweep in load["sweeps"])
    # status and list were polled throughout and none failed; each call's own CPU stays under the 5 s bound (on a
    # free core it answers within it). The wall-clock p95 is held to 5 s where the machine had a core to give: on
    # a shared machine whose load average exceeded twice its CPUs the wall clock measures the neighbours.
    latency = load["latency"]
    assert latency["status"]["calls"] >= 3 and latency["list"]["calls"] >= 3
    assert latency["all"]["failed"] == 0 and latency["all"]["cpu_p95_s"] <= 5.0, latency
    assert load["checks"]["status_list_p95_within_limit"] == all(latency[name]["p95_s"] <= 5.0
                                                                 for name in ("status", "list"))
    if load["load_average_1min_max"] <= 2 * load["machine"]["cpus"]:
        assert latency["all"]["p95_s"] <= 5.0, latency
    memory = load["memory"]
    assert memory["drivers_at_once_max"] >= 1 and memory["job_server_first_mb"] > 0
    assert memory["job_server_peak_mb"] - memory["job_server_first_mb"] <= 256, memory
    assert load["left_behind"] == {"drivers": 0, "job_supervisors": 0}
    assert (result.returncode == 0) == load["passed"]
    assert all(passed for name, passed in load["checks"].items() if name != "status_list_p95_within_limit"), output
    assert "| sweep | kind | jobs |" in (tmp_path / "service-load.md").read_text()
