"""``glovesweep ui`` never prints another server's URL and never serves beyond this machine unasked
(issue 12, items 3 and 9)."""

from __future__ import annotations

import http.server
import socket
import subprocess
import sys
import threading

import pytest
from conftest import free_port

from sweeps import cli
from sweeps.tracking import mlflow_runs
from sweeps import ui


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    uri = f"sqlite:///{tmp_path_factory.mktemp('ui-store') / 'mlflow.db'}"
    mlflow_runs.ensure_experiment(uri, "ui-safety")
    return uri


class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's name
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"OK")

    def log_message(self, *args):
        pass


@pytest.fixture
def other_server():
    """Another HTTP server that answers /health with 200 on a port of 127.0.0.1."""
    server = http.server.HTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_a_port_in_use_is_refused_before_anything_starts(store, other_server, capsys):
    assert cli.main(["ui", "--tracking-uri", store, "--port", str(other_server)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # No URL printed: it would be the other server's.
    lines = captured.err.splitlines()
    assert len(lines) == 1 and f"port {other_server} on 127.0.0.1 is not free" in lines[0] and "--port" in lines[0]


def test_health_from_another_server_does_not_count_once_our_process_died(other_server):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert ui.wait_for_health(f"http://127.0.0.1:{other_server}", process=dead, timeout=5) is False
    assert ui.wait_for_health(f"http://127.0.0.1:{other_server}", timeout=5) is True


def test_a_free_port_passes_the_check():
    port = free_port()
    ui.check_port_free("127.0.0.1", port)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", port))
        listener.listen()
        with pytest.raises(OSError, match=f"port {port} on 127.0.0.1 is not free"):
            ui.check_port_free("127.0.0.1", port)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.7", "::"])
def test_a_non_loopback_host_needs_allow_remote(store, capsys, host):
    assert cli.main(["ui", "--tracking-uri", store, "--host", host, "--port", str(free_port())]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and f"--host {host}" in lines[0] and "--allow-remote" in lines[0], lines


def test_allow_remote_warns_and_loopback_is_silent(capsys):
    ui.check_host("0.0.0.0", allow_remote=True)
    assert "warning: serving on 0.0.0.0" in capsys.readouterr().err
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        ui.check_host(host, allow_remote=False)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("sent", ["SIGTERM", "SIGHUP"])
def test_killing_the_command_stops_the_server_it_started(store, sent):
    """The MLflow server runs in its own session; `kill` of `glovesweep ui` (or a closed terminal) stops it."""
    import os
    import signal
    import time
    import urllib.request

    port = free_port()
    command = subprocess.Popen([sys.executable, "-m", "sweeps.cli", "ui", "--tracking-uri", store, "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # The server shares the command's stdout: read up to the command's own ready line.
        assert any("MLflow UI for" in line for line, _ in zip(command.stdout, range(50)))
        urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10).read()
        command.send_signal(getattr(signal, sent))
        assert command.wait(timeout=60) == 128 + getattr(signal, sent)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) != 0:
                    break
            time.sleep(0.5)
        else:
            pytest.fail(f"the MLflow server still listens on {port} after {sent} to glovesweep ui")
    finally:
        if command.poll() is None:
            os.kill(command.pid, signal.SIGKILL)


def test_the_command_run_in_process_gives_back_the_signal_handlers_it_replaced(store, capsys):
    import signal

    before = {sent: signal.getsignal(sent) for sent in (signal.SIGTERM, signal.SIGHUP)}
    assert cli.main(["ui", "--tracking-uri", store, "--port", str(free_port()), "--smoke-test"]) == 0
    assert "answered OK" in capsys.readouterr().out
    assert {sent: signal.getsignal(sent) for sent in before} == before
