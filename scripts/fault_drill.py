"""Fault drill: break a real sweep in every way the reliability issue names, and show what survives.

    python scripts/fault_drill.py --data-dir ../shared/data [--smoke] [--out docs/results/fault-drill]

Against a real local Ray and a real MLflow server on 127.0.0.1, each fault runs a small sweep of the blog
network on the real archives (a few documents per group, short sequences) through the ``glovesweep`` command,
injects the fault, and checks the MLflow record: every cell present exactly once, FINISHED, with every epoch's
metrics. "Survived" is defined per fault and printed with it. ``--smoke`` (CI runs it) runs only the faults no
test stages on its own (``SMOKE_FAULTS``).
Writes ``fault-drill.md`` (the table) and ``fault-drill.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
# What an outcome says in place of the drill's scratch folder: the results get committed (docs/results/fault-drill).
DRILL_FOLDER = "DRILL_FOLDER"
SWEEP = """\
name: {name}
factors:
  strip: [none, blank_line]
  epochs: [{epochs}]
fixed: {{dataset: "19997", documents_per_group: 5, architecture: global_max, max_sequence_length: 160}}
seeds: {seeds}
resources: {{cpu: 1, gpu: 0}}
max_concurrent_trials: 1
max_failures: 2
mlflow: {{tracking_uri: "{uri}", experiment: {name}}}
storage_path: {storage}
"""


@dataclasses.dataclass
class Row:
    fault: str
    survived_means: str
    outcome: str = ""
    cells_expected: int = 0
    cells_once: int = 0
    metrics_lost: int = 0
    survived: bool = False


class Drill:
    def __init__(self, workdir: pathlib.Path, data_dir: str, outage_seconds: float) -> None:
        self.workdir, self.data_dir, self.outage_seconds = workdir, data_dir, outage_seconds
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.server = None
        self.environment = dict(os.environ, GLOVESWEEP_CACHE=str(workdir / "cache"), PYTHONPATH=str(ROOT))
        self.environment.pop("RAY_ADDRESS", None)

    # ----------------------------------------------------------------------------------- the MLflow server
    def start_server(self) -> None:
        folder = self.workdir / "mlflow"
        folder.mkdir(exist_ok=True)
        environment = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
        self.server = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
             "--artifacts-destination", str(folder / "artifacts"), "--host", "127.0.0.1", "--port", str(self.port),
             "--workers", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    time.sleep(2)  # the port answers a moment before the app does
                    return
            except OSError:
                time.sleep(0.25)
        raise RuntimeError("the MLflow server did not start")

    def stop_server(self) -> None:
        if self.server is not None:
            os.killpg(self.server.pid, signal.SIGKILL)
            self.server.wait()
            self.server = None

    # ----------------------------------------------------------------------------------- sweeps and checks
    def sweep_file(self, name: str, *, epochs: int, seeds: int, storage: pathlib.Path | None = None) -> pathlib.Path:
        path = self.workdir / f"{name}.yaml"
        path.write_text(SWEEP.format(name=name, epochs=epochs, seeds=seeds, uri=self.uri,
                                     storage=storage or self.workdir / "results" / name))
        return path

    def glovesweep(self, *arguments: str, wait: bool = True, timeout: float = 600):
        command = [sys.executable, "-m", "sweeps.cli", *arguments]
        if not wait:
            return subprocess.Popen(command, cwd=self.workdir, env=self.environment, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True, start_new_session=True)
        return subprocess.run(command, cwd=self.workdir, env=self.environment, capture_output=True, text=True,
                              timeout=timeout)

    def run_args(self, path: pathlib.Path) -> list[str]:
        return ["run", str(path), "--data-dir", self.data_dir, "--no-download", "--num-cpus", "2", "--no-report"]

    def children(self, experiment: str) -> list:
        from mlflow import MlflowClient
        from mlflow.entities import ViewType

        client = MlflowClient(tracking_uri=self.uri)
        found = client.get_experiment_by_name(experiment)
        if found is None:
            return []
        runs = client.search_runs([found.experiment_id], run_view_type=ViewType.ALL)
        return [run for run in runs if "mlflow.parentRunId" in run.data.tags]

    def steps(self, run_id: str) -> list[int]:
        from mlflow import MlflowClient

        return sorted(metric.step for metric in MlflowClient(tracking_uri=self.uri).get_metric_history(run_id, "val_acc"))

    def wait_for(self, experiment: str, predicate, timeout: float = 300) -> list:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                children = self.children(experiment)
                if predicate(children):
                    return children
            except Exception:  # noqa: BLE001 - the server may be starting or the runs not there yet
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{experiment}: the awaited state never came")

    def check(self, row: Row, experiment: str, *, cells: int, epochs: int) -> Row:
        children = self.children(experiment)
        keys = [run.data.tags.get("glovesweep.trial_id") for run in children]
        row.cells_expected = cells
        row.cells_once = sum(1 for key in set(keys) if keys.count(key) == 1)
        finished = [run for run in children if run.info.status == "FINISHED"]
        row.metrics_lost = sum(epochs - len(set(self.steps(run.info.run_id))) for run in finished) + \
            epochs * (cells - len(finished))
        return row


def done_line(output: str) -> str:
    """The driver's "N/M trials done" line, without its prefix."""
    lines = [line for line in output.splitlines() if "trials done" in line]
    return lines[-1].replace("glovesweep: ", "")[:100] if lines else "(no summary line)"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --------------------------------------------------------------------------------------------------- faults
def trial_sigkill(drill: Drill) -> Row:
    row = Row("trial worker SIGKILL mid-trial", "the trial continues from its last epoch checkpoint in the same "
              "child run; every cell once, every epoch logged once")
    path = drill.sweep_file("trial-kill", epochs=40, seeds=1)
    process = drill.glovesweep(*drill.run_args(path), wait=False)
    children = drill.wait_for("trial-kill", lambda runs: runs and len(drill.steps(runs[0].info.run_id)) >= 2)
    os.kill(int(children[0].data.tags["glovesweep.worker_pid"]), signal.SIGKILL)
    output, _ = process.communicate(timeout=600)
    drill.check(row, "trial-kill", cells=2, epochs=40)
    row.outcome = f"exit {process.returncode}; {done_line(output)}"
    row.survived = process.returncode == 0 and row.cells_once == 2 and row.metrics_lost == 0
    return row


def driver_sigkill(drill: Drill) -> Row:
    row = Row("driver SIGKILL (with its local Ray), then resume", "resume finishes only the missing trials: every "
              "cell x seed once, none run twice, every epoch logged")
    path = drill.sweep_file("driver-kill", epochs=8, seeds=2)
    process = drill.glovesweep(*drill.run_args(path), wait=False)
    drill.wait_for("driver-kill", lambda runs: any(r.info.status == "FINISHED" for r in runs)
                   and any(r.info.status == "RUNNING" for r in runs))
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    (sweep_dir,) = (drill.workdir / "results" / "driver-kill").iterdir()
    resumed = drill.glovesweep("resume", str(sweep_dir), "--num-cpus", "2", "--no-report")
    drill.check(row, "driver-kill", cells=4, epochs=8)
    row.outcome = f"resume exit {resumed.returncode}; {done_line(resumed.stdout)}"
    row.survived = resumed.returncode == 0 and row.cells_once == 4 and row.metrics_lost == 0
    return row


def mlflow_outage(drill: Drill) -> Row:
    row = Row(f"MLflow server stopped {drill.outage_seconds:.0f} s mid-sweep, then restarted",
              "training goes on; every epoch's metrics arrive; runs end FINISHED")
    path = drill.sweep_file("outage", epochs=30, seeds=1)
    process = drill.glovesweep(*drill.run_args(path), wait=False)
    drill.wait_for("outage", lambda runs: runs and drill.steps(runs[0].info.run_id))
    drill.stop_server()
    time.sleep(drill.outage_seconds)
    drill.start_server()
    output, _ = process.communicate(timeout=900)
    drill.check(row, "outage", cells=2, epochs=30)
    told = "is unreachable" in output and drill.uri in output
    row.outcome = f"exit {process.returncode}; console named {drill.uri}: {'yes' if told else 'no'}"
    row.survived = process.returncode == 0 and row.cells_once == 2 and row.metrics_lost == 0
    return row


def corrupted_checkpoint(drill: Drill) -> Row:
    row = Row("newest checkpoint corrupted, then resume", "one line names the skipped checkpoint; the trial "
              "continues from the one before it")
    path = drill.sweep_file("bad-checkpoint", epochs=4, seeds=1)
    first = drill.glovesweep(*drill.run_args(path))
    for run in drill.children("bad-checkpoint"):
        from mlflow import MlflowClient

        MlflowClient(tracking_uri=drill.uri).set_terminated(run.info.run_id, status="KILLED")
    (sweep_dir,) = (drill.workdir / "results" / "bad-checkpoint").iterdir()
    for trial in sweep_dir.glob("trial_*"):
        newest = sorted(trial.glob("checkpoint_*"))[-1]
        (newest / "checkpoint.npz").write_bytes(b"not an archive")
    resumed = drill.glovesweep("resume", str(sweep_dir), "--num-cpus", "2", "--no-report")
    drill.check(row, "bad-checkpoint", cells=2, epochs=4)
    skipped = [line for line in resumed.stdout.splitlines() if "skipping checkpoint" in line]
    row.outcome = f"first exit {first.returncode}, resume exit {resumed.returncode}; {len(skipped)} skip line(s)"
    row.survived = resumed.returncode == 0 and len(skipped) == 2 and row.cells_once == 2 and row.metrics_lost == 0
    return row


def crafted_state(drill: Drill) -> Row:
    row = Row("pickled payloads planted in tuner.pkl, params.pkl, error.pkl, experiment_state, then resume",
              "no payload runs; the sweep finishes")
    import pickle

    class Payload:
        def __reduce__(self):
            return (exec, (f"open({str(drill.workdir / 'pwned')!r}, 'w').write('x')",))

    path = drill.sweep_file("crafted", epochs=2, seeds=1)
    drill.glovesweep(*drill.run_args(path))
    from mlflow import MlflowClient

    for run in drill.children("crafted"):
        MlflowClient(tracking_uri=drill.uri).set_terminated(run.info.run_id, status="KILLED")
    (sweep_dir,) = (drill.workdir / "results" / "crafted").iterdir()
    payload = pickle.dumps(Payload())
    (sweep_dir / "trainable.pkl").write_bytes(payload)
    for item in sweep_dir.rglob("*"):
        if item.suffix == ".pkl" or (item.suffix == ".json" and "state-" in item.name):
            item.write_bytes(payload if item.suffix == ".pkl" else json.dumps({"trial_data": [[payload.hex()]]}).encode())
    resumed = drill.glovesweep("resume", str(sweep_dir), "--num-cpus", "2", "--no-report")
    drill.check(row, "crafted", cells=2, epochs=2)
    ran = (drill.workdir / "pwned").exists()
    row.outcome = f"resume exit {resumed.returncode}; payload ran: {'YES' if ran else 'no'}"
    row.survived = not ran and resumed.returncode == 0 and row.cells_once == 2 and row.metrics_lost == 0
    return row


def corrupted_cache(drill: Drill) -> Row:
    row = Row("prepared-data cache entry corrupted", "the entry is rebuilt, never trusted; the sweep finishes")
    path = drill.sweep_file("bad-cache", epochs=2, seeds=1)
    drill.glovesweep(*drill.run_args(path))
    damaged = 0
    for array in (drill.workdir / "cache" / "prepared").glob("*/x_train.npy"):
        array.write_bytes(array.read_bytes()[:-64] + b"\0" * 64)
        damaged += 1
    path = drill.sweep_file("bad-cache-again", epochs=2, seeds=1)
    again = drill.glovesweep(*drill.run_args(path))
    drill.check(row, "bad-cache-again", cells=2, epochs=2)
    row.outcome = f"{damaged} entries damaged; rerun exit {again.returncode}"
    row.survived = damaged > 0 and again.returncode == 0 and row.cells_once == 2 and row.metrics_lost == 0
    return row


def truncated_archive(drill: Drill) -> Row:
    row = Row("truncated dataset archive", "one line on stderr names the archive and the fix; no traceback; "
              "nothing half-written")
    home = drill.workdir / "truncated-home"
    home.mkdir()
    source = pathlib.Path(drill.data_dir) / "20news-19997.tar.gz"
    (home / source.name).write_bytes(source.read_bytes()[:200_000])
    path = drill.sweep_file("truncated", epochs=1, seeds=1)
    result = drill.glovesweep("run", str(path), "--data-dir", str(home), "--no-download", "--no-report")
    lines = result.stderr.strip().splitlines()
    row.cells_expected = 2
    row.outcome = f"exit {result.returncode}: {lines[-1][:140] if lines else '(no message)'}"
    row.survived = (result.returncode != 0 and len(lines) == 1 and "Traceback" not in result.stderr
                    and source.name in lines[0] and not drill.children("truncated"))
    return row


def disk_full(drill: Drill) -> Row:
    row = Row("results folder full (a 3 MB tmpfs), then resume after space is freed",
              "a one-line error names the folder; resume completes every cell once")
    mount = drill.workdir / "small-disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True).returncode:
        row.outcome = "not run: no tmpfs mount here (needs root)"
        return row
    try:
        path = drill.sweep_file("disk-full", epochs=6, seeds=1, storage=mount)
        first = drill.glovesweep(*drill.run_args(path))
        lines = (first.stdout + first.stderr).splitlines()
        message = [line for line in lines if "is full" in line] or [line for line in lines if "No space left" in line]
        subprocess.run(["mount", "-o", "remount,size=200m", str(mount)], check=True)
        folders = [item for item in mount.iterdir() if item.is_dir()]
        if len(folders) != 1:
            row.outcome = f"first exit {first.returncode}, no sweep folder: {(first.stderr or first.stdout)[-200:]}"
            return row
        (sweep_dir,) = folders
        resumed = drill.glovesweep("resume", str(sweep_dir), "--num-cpus", "2", "--no-report")
        drill.check(row, "disk-full", cells=2, epochs=6)
        print((first.stdout + first.stderr)[-1500:]) if not message else None
        row.outcome = (f"first exit {first.returncode} ({message[0][:100] if message else 'no disk message'}); "
                       f"resume exit {resumed.returncode}")
        row.survived = bool(message) and str(mount) in message[0] and resumed.returncode == 0 and \
            row.cells_once == 2 and row.metrics_lost == 0
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)
    return row


FAULTS = (trial_sigkill, driver_sigkill, mlflow_outage, corrupted_checkpoint, crafted_state, corrupted_cache,
          truncated_archive, disk_full)
# What CI runs (a few minutes): the faults the test suite does not already stage one by one. The MLflow outage
# left it (2026-12-06, 40 of its 115 s): tests/test_mlflow_outage.py stages one and the chaos smoke two more.
SMOKE_FAULTS = (crafted_state, truncated_archive)


def table(rows: list[Row]) -> str:
    lines = ["| fault | survived means | outcome | cells expected | cells present once | metrics lost | survived |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {row.fault} | {row.survived_means} | {row.outcome} | {row.cells_expected} | {row.cells_once} | "
              f"{row.metrics_lost} | {'yes' if row.survived else 'NO'} |" for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--smoke", action="store_true",
                        help="Three faults and a 10 s outage instead of 60 s (what CI runs).")
    parser.add_argument("--only", nargs="*", default=None, help="Run only these faults (function names).")
    parser.add_argument("--out", default=None, help="Folder for fault-drill.md and fault-drill.json.")
    args = parser.parse_args(argv)
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="glovesweep-drill-"))
    drill = Drill(workdir, args.data_dir, outage_seconds=10.0 if args.smoke else 60.0)
    drill.start_server()
    rows = []
    try:
        for fault in SMOKE_FAULTS if args.smoke else FAULTS:
            if args.only and fault.__name__ not in args.only:
                continue
            started = time.perf_counter()
            try:
                row = fault(drill)
            except Exception as error:  # noqa: BLE001 - a drill reports, it does not stop at the first failure
                row = Row(fault.__name__, "", outcome=f"drill error: {type(error).__name__}: {error}"[:200])
            row.outcome = row.outcome.replace(str(workdir), DRILL_FOLDER)
            print(f"{row.fault}: {'survived' if row.survived else 'NOT survived'} ({row.outcome}) "
                  f"[{time.perf_counter() - started:.0f} s]", flush=True)
            rows.append(row)
    finally:
        drill.stop_server()
        shutil.rmtree(workdir, ignore_errors=True)
    print(table(rows))
    if args.out:
        out = pathlib.Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        machine = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
        (out / "fault-drill.md").write_text(f"# Fault drill\n\n`python scripts/fault_drill.py"
                                            f"{' --smoke' if args.smoke else ''}` on {machine}, "
                                            f"{time.strftime('%Y-%m-%d')}.\n\n{table(rows)}\n")
        (out / "fault-drill.json").write_text(json.dumps([dataclasses.asdict(row) for row in rows], indent=1))
    return 0 if all(row.survived for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
