"""A local sweep's Ray serves this machine only, and a failed run leaves no Ray process behind
(issue 12, items 9 and 10). Each test starts its own Ray in a subprocess: the session's Ray must not count."""

from __future__ import annotations

import json
import os
import pathlib
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest
from conftest import build_tiny_data_home

ROOT = pathlib.Path(__file__).resolve().parents[1]

# The driver's process tree (raylet, gcs_server, workers), its LISTEN sockets, and what is still alive.
TREE = """
import json, time
import ray  # noqa: F401 - puts the psutil that Ray ships on the path
import psutil
def tree():
    me = psutil.Process()
    return [me, *me.children(recursive=True)]
def listening():
    found = []
    for process in tree():
        try:
            for connection in process.net_connections(kind="inet"):
                if connection.status == psutil.CONN_LISTEN:
                    found.append([process.name(), connection.laddr.ip, connection.laddr.port])
        except psutil.Error:
            pass
    return found
def left_after(seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        alive = [process.name() for process in tree()[1:] if process.is_running()
                 and process.status() != psutil.STATUS_ZOMBIE]
        if not alive:
            break
        time.sleep(0.5)
    return alive
"""


def run_script(body: str, **environment: str) -> dict:
    # Unix socket paths are limited to 107 bytes: Ray's session folder must sit under a short path.
    temporary = tempfile.mkdtemp(prefix="gs-", dir="/tmp")
    env = dict(os.environ, RAY_TMPDIR=temporary, RAY_USAGE_STATS_ENABLED="0", **environment)
    env.pop("RAY_ADDRESS", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    completed = subprocess.run([sys.executable, "-c", TREE + textwrap.dedent(body)], env=env, cwd=temporary,
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def is_loopback(address: str) -> bool:
    ip = ipaddress_of(address)
    return ip.is_loopback or (ip.version == 6 and ip.ipv4_mapped is not None and ip.ipv4_mapped.is_loopback)


def ipaddress_of(address: str):
    import ipaddress

    return ipaddress.ip_address(address)


def test_a_local_ray_listens_on_loopback_only():
    result = run_script("""
        import os, ray
        from sweeps.run import shared_data
        shared_data.start_ray(num_cpus=1)
        @ray.remote
        def pid():
            return os.getpid()
        ray.get(pid.remote())
        # The switch was only for the start: a later `ray start` from this process may join a cluster.
        from ray._private import ray_constants
        assert shared_data.LOOPBACK_SWITCH not in os.environ and ray_constants.ENABLE_RAY_CLUSTER
        print(json.dumps({"listening": listening()}))
        ray.shutdown()
    """)
    names = {name for name, _, _ in result["listening"]}
    assert {"gcs_server", "raylet"} <= names, result
    exposed = [entry for entry in result["listening"] if not is_loopback(entry[1])]
    assert exposed == [], f"listening beyond this machine: {exposed}"


def test_a_failed_run_shuts_down_the_ray_it_started(tmp_path):
    home = build_tiny_data_home(tmp_path / "data", versions=("19997",))
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(textwrap.dedent(f"""\
        name: leftover
        factors: {{dataset: ["19997"], epochs: [1]}}
        fixed: {{architecture: global_max, max_sequence_length: 160, embedding: random}}
        seeds: 1
        mlflow: {{tracking_uri: "sqlite:///{tmp_path / 'mlflow.db'}", experiment: leftover}}
        storage_path: {tmp_path / 'results'}
        """))
    # GLOVESWEEP_CLUSTER=1 with a local storage_path fails the storage check after Ray has started.
    result = run_script(f"""
        import ray
        from sweeps import cli
        code = cli.main(["run", {str(sweep)!r}, "--no-download", "--data-dir", {str(home)!r}, "--num-cpus", "1"])
        print(json.dumps({{"code": code, "initialized": ray.is_initialized(), "left": left_after(20)}}))
    """, GLOVESWEEP_CLUSTER="1")
    assert result == {"code": 2, "initialized": False, "left": []}


# What a stop must not print: Ray's C++ failure handler ("*** SIGTERM received at ...", "PC: @ ...", frames) and
# stack traces of Ray's processes.
STACK_DUMP = re.compile(r"^\s*(PC: )?@ |\*\*\* SIG\w+ received|Stack trace|ray::|logging\.cc:\d+: ", re.MULTILINE)


def run_statuses(store: pathlib.Path) -> list[str]:
    with sqlite3.connect(store) as connection:
        return sorted(status for (status,) in connection.execute("select status from runs"))


def logged_epochs(store: pathlib.Path) -> int:
    try:
        with sqlite3.connect(store) as connection:
            return connection.execute("select count(*) from metrics where key = 'val_acc'").fetchone()[0]
    except sqlite3.Error:  # the store's tables do not exist yet
        return 0


@pytest.mark.parametrize("sent", ["SIGINT", "SIGTERM"])
def test_a_stopped_run_ends_its_runs_killed_without_a_stack_dump(sent, tmp_path):
    """Ctrl-C (SIGINT to the terminal's process group) or ``kill`` (SIGTERM to the driver) while trials train."""
    home = build_tiny_data_home(tmp_path / "data", versions=("19997",))
    store = tmp_path / "mlflow.db"
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(textwrap.dedent(f"""\
        name: stopped
        factors: {{dataset: ["19997"], epochs: [400]}}
        fixed: {{architecture: global_max, max_sequence_length: 160, embedding: random}}
        seeds: 1
        mlflow: {{tracking_uri: "sqlite:///{store}", experiment: stopped}}
        storage_path: {tmp_path / 'results'}
        """))
    temporary = tempfile.mkdtemp(prefix="gs-", dir="/tmp")  # Ray's socket paths must stay short
    env = dict(os.environ, RAY_TMPDIR=temporary, RAY_USAGE_STATS_ENABLED="0")
    env.pop("RAY_ADDRESS", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    process = subprocess.Popen([sys.executable, "-m", "sweeps.cli", "run", str(sweep), "--no-download", "--data-dir",
                                str(home), "--cache-dir", str(tmp_path / "cache"), "--num-cpus", "2"],
                               cwd=temporary, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while process.poll() is None and logged_epochs(store) < 1 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert process.poll() is None, process.communicate()[1][-3000:]
        if sent == "SIGINT":
            os.killpg(process.pid, signal.SIGINT)
        else:
            process.send_signal(signal.SIGTERM)
        output, errors = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert STACK_DUMP.findall(errors) == [], errors
    assert process.returncode == 1, errors[-3000:]
    assert "glovesweep resume" in output, output
    assert run_statuses(store) == ["KILLED", "KILLED"], errors[-3000:]
