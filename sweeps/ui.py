"""``glovesweep ui``: open the MLflow UI on a sweep's tracking store.

For a sqlite (or file) store this starts ``mlflow ui`` on 127.0.0.1; an ``http://`` tracking server
already serves the UI, so its address is printed. ``--smoke-test`` starts the UI, waits for ``/health``
and stops it (what the test suite runs).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

from sweeps import spec as spec_module
from sweeps.run import state as state_module

HEALTH_TIMEOUT_SECONDS = 90


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", nargs="?", default=None,
                        help="A sweep file or sweep folder whose tracking URI to open (default: sqlite:///mlflow.db).")
    parser.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (wins over TARGET).")
    parser.add_argument("--host", default="127.0.0.1",
                        help="Interface to bind (default 127.0.0.1: this machine only; any other needs --allow-remote).")
    parser.add_argument("--allow-remote", action="store_true",
                        help="Accept a --host other than loopback: everyone who reaches it can read and change every "
                             "run (MLflow's UI has no login).")
    parser.add_argument("--port", type=int, default=5000, help="Port of the UI (default 5000).")
    parser.add_argument("--smoke-test", action="store_true", help="Start the UI, check /health, stop it.")


def tracking_uri_for(target: str | None, tracking_uri: str | None) -> str:
    """The tracking URI from ``--tracking-uri``, a sweep file, a sweep folder, or the default sqlite file."""
    if tracking_uri:
        return spec_module.resolve_tracking_uri(tracking_uri, pathlib.Path.cwd())
    if target is None:
        return spec_module.resolve_tracking_uri(spec_module.DEFAULT_TRACKING_URI, pathlib.Path.cwd())
    path = pathlib.Path(target)
    if path.is_dir() or "://" in target:
        return state_module.read_state(target).tracking_uri
    return spec_module.load_sweep(path).tracking_uri


def main(args: argparse.Namespace) -> int:
    uri = tracking_uri_for(args.target, args.tracking_uri)
    if uri.startswith(("http://", "https://")):
        print(f"glovesweep ui: {uri} is a tracking server and serves the UI itself: open {uri} in a browser")
        return 0
    if uri.startswith("sqlite:///") and not pathlib.Path(uri[len("sqlite:///"):]).exists():
        raise OSError(f"no MLflow store at {uri}: run a sweep first (glovesweep run sweeps/quick.yaml) or pass "
                      f"--tracking-uri")
    check_host(args.host, allow_remote=args.allow_remote)
    check_port_free(args.host, args.port)
    # MLflow 3 also starts job-runner processes by default; the UI over a sweep's runs never needs them.
    environment = dict(os.environ)
    environment.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", args.host,
               "--port", str(args.port), "--workers", "1"]
    address = f"http://{'[' + args.host + ']' if ':' in args.host else args.host}:{args.port}"
    # The server's output goes to a file, never a pipe nobody reads (a full pipe would stall it).
    log = tempfile.TemporaryFile()
    # The server runs in its own session, out of reach of the terminal's signals: a `kill` or a closed
    # terminal must stop it through the cleanup below, as Ctrl-C does, never leave it serving alone.
    previous_handlers = stop_on_signals()
    process = subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL if args.smoke_test else None,
                               stderr=log, start_new_session=True)
    try:
        # Only a live process of ours makes /health count: another server may answer on that port.
        if not wait_for_health(address, process=process) or process.poll() is not None:
            log.seek(0)
            error = " ".join(log.read().decode(errors="replace").split())[-500:] if process.poll() is not None else ""
            raise OSError(f"the MLflow UI did not start at {address} within {HEALTH_TIMEOUT_SECONDS} s (choose "
                          f"another port with --port){': ' + error if error else ''}")
        print(f"glovesweep ui: MLflow UI for {uri} at {address} (Ctrl-C stops it)", flush=True)
        if args.smoke_test:
            print(f"glovesweep ui: {address}/health answered OK", flush=True)
            return 0
        return process.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        log.close()
        # The UI runs its workers in its own session; stop them all.
        for sent in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(process.pid, sent)
                process.wait(timeout=20)
                break
            except (ProcessLookupError, subprocess.TimeoutExpired):
                continue
        for sent, handler in previous_handlers.items():
            signal.signal(sent, handler)


def stop_on_signals() -> dict:
    """SIGTERM and SIGHUP end ``glovesweep ui`` like Ctrl-C: through its cleanup, which stops the server.

    Returns the handlers they replace, for the cleanup to put back (``main`` may run inside a longer process).
    """
    def stop(signum, _frame):
        raise SystemExit(128 + signum)

    return {sent: signal.signal(sent, stop) for sent in (signal.SIGTERM, signal.SIGHUP)}


def check_host(host: str, *, allow_remote: bool) -> None:
    """Refuse a non-loopback ``host`` unless ``allow_remote``; with it, warn on stderr (the UI has no login)."""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if loopback:
        return
    if not allow_remote:
        raise ValueError(f"--host {host} would serve the MLflow UI, which has no login, beyond this machine; keep "
                         f"the default 127.0.0.1 (reach it through an SSH tunnel), or add --allow-remote")
    print(f"glovesweep ui: warning: serving on {host}: everyone who reaches this machine can read and change "
          f"every run", file=sys.stderr, flush=True)


def check_port_free(host: str, port: int) -> None:
    """Refuse a port something already listens on (the URL printed would be another server's)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As the UI's own server does: a closed connection's TIME_WAIT must not count as "in use".
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise OSError(f"port {port} on {host} is not free ({error.strerror or error}): another server listens "
                          f"there; choose another port with --port") from None


def wait_for_health(address: str, *, process: subprocess.Popen | None = None,
                    timeout: float = HEALTH_TIMEOUT_SECONDS) -> bool:
    """Poll ``<address>/health`` until it answers 200 (True), the process exits or the timeout passes (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"{address}/health", timeout=2) as response:  # noqa: S310 - local UI
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.25)
    return False
