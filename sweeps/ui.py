"""``glovesweep ui``: open the MLflow UI on a sweep's tracking store.

For a sqlite (or file) store this starts ``mlflow ui`` on 127.0.0.1; an ``http://`` tracking server
already serves the UI, so its address is printed. ``--smoke-test`` starts the UI, waits for ``/health``
and stops it (what the test suite runs).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

from sweeps import spec as spec_module
from sweeps import state as state_module

HEALTH_TIMEOUT_SECONDS = 90


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", nargs="?", default=None,
                        help="A sweep file or sweep folder whose tracking URI to open (default: sqlite:///mlflow.db).")
    parser.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (wins over TARGET).")
    parser.add_argument("--host", default="127.0.0.1", help="Interface to bind (default 127.0.0.1: this machine only).")
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
    # MLflow 3 also starts job-runner processes by default; the UI over a sweep's runs never needs them.
    environment = dict(os.environ)
    environment.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", args.host,
               "--port", str(args.port), "--workers", "1"]
    address = f"http://{args.host}:{args.port}"
    print(f"glovesweep ui: MLflow UI for {uri} at {address} (Ctrl-C stops it)", flush=True)
    if not args.smoke_test:
        try:
            return subprocess.call(command, env=environment)
        except KeyboardInterrupt:
            return 0
    process = subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               start_new_session=True)
    try:
        if wait_for_health(address, process=process):
            print(f"glovesweep ui: {address}/health answered OK", flush=True)
            return 0
        error = process.stderr.read().decode(errors="replace")[-2000:] if process.poll() is not None else ""
        raise OSError(f"the MLflow UI did not answer at {address}/health within {HEALTH_TIMEOUT_SECONDS} s "
                      f"(port in use? try --port){': ' + error if error else ''}")
    finally:
        # The UI runs its workers in its own session; stop them all.
        for sent in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(process.pid, sent)
                process.wait(timeout=20)
                break
            except (ProcessLookupError, subprocess.TimeoutExpired):
                continue


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
