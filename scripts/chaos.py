"""Chaos run: a multi-node sweep under a seeded schedule of random, overlapping faults, then checks of what held.

    python scripts/chaos.py --data-dir ../shared/data --faults 100 --trials 50 --seed 0 --out docs/results/chaos
    python scripts/chaos.py --smoke --out /tmp/chaos-smoke          # 10 faults, holds halved, a few minutes (CI)

What runs, all on this machine and all real: a Ray head (``ray start --head --num-cpus 1``: the driver's data
preparation runs there, and one trial at a time) and two worker nodes (``ray start --address ... --num-cpus 1`` each, on loopback), an MLflow tracking
server (sqlite store) on 127.0.0.1, and ``glovesweep run`` of a sweep of ``--trials`` trials of the blog network on
the real 19997 archive (5 documents per group, short sequences), its results on a small tmpfs declared shared
(``GLOVESWEEP_SHARED_STORAGE``; every node is on this machine). While it runs, faults are drawn from
``random.Random(--seed)`` at ``--rate`` faults per minute (exponential gaps) and injected without waiting for
the previous one to be recovered from (a fault that holds, such as a freeze, runs in its own thread):

- ``trial_kill``: SIGKILL of a trial worker;
- ``trial_freeze``: SIGSTOP of a trial worker, SIGCONT after the hold;
- ``raylet_kill``: SIGKILL of a worker node's raylet (the node is lost; the rest of its processes are killed as
  a dead machine's would be, and a replacement node is started after the hold);
- ``driver_kill``: SIGKILL of the sweep's driver; the supervisor below runs ``glovesweep resume``;
- ``mlflow_restart``: the MLflow server killed, and started again on the same port after the hold;
- ``mlflow_freeze``: the MLflow server SIGSTOPped for tens of seconds, then SIGCONT;
- ``checkpoint_corrupt``: a trial's newest checkpoint cut short as a write interrupted by a crash leaves it,
  and the trial's worker killed, so that its retry has to read it;
- ``disk_full``: the results tmpfs filled to its last byte, freed after the hold.

The supervisor does what an operator following glovesweep's own messages would: whenever the driver is gone
without having finished (killed, or exited with "resume"), it runs ``glovesweep resume <sweep dir>``.
Loss of the head node (GCS, job server) is out of scope: Ray itself cannot survive it without an external GCS
store, and neither does this run.

Afterwards the run is checked from MLflow, the results folder and the process table, never from log text:
every cell x seed FINISHED exactly once; every epoch's step metrics present exactly once per run; no run left
RUNNING; the parent run FINISHED with its answer (its description); no driver or trial worker left once the
sweep ended, and no process of this run left after the cluster is stopped; the report regenerated from the runs
(``glovesweep report``) equal to the one the sweep wrote, numbers within tests/tolerance.py's tolerance.
Writes ``schedule.json``, ``chaos.json`` and ``chaos.md`` into ``--out``; exit 0 only when everything held.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import math
import os
import pathlib
import platform
import random
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid

ROOT = pathlib.Path(__file__).resolve().parents[1]
BIN = pathlib.Path(sys.executable).parent
# Every process this run starts carries this variable (Ray workers inherit it from their raylet): the process
# table check counts this run's processes only, not another sweep's on the same machine.
MARKER = "GLOVESWEEP_CHAOS_RUN"
KINDS = ("trial_kill", "trial_freeze", "raylet_kill", "driver_kill", "mlflow_restart", "mlflow_freeze",
         "checkpoint_corrupt", "disk_full")
# What a driver's exit reason says in place of the run's scratch folder.
CHAOS_FOLDER = "CHAOS_FOLDER"
# Seconds a fault holds (freeze, outage, node down, disk full), drawn uniformly in this range.
HOLDS = {"trial_freeze": (10, 30), "raylet_kill": (5, 20), "mlflow_restart": (5, 30), "mlflow_freeze": (20, 45),
         "disk_full": (10, 30)}
# How long a fault waits for its target (a running trial, a live node, a driver) before it is skipped.
TARGET_WAIT_SECONDS = 90
STEP_METRICS = ("loss", "acc", "val_loss", "val_acc")
SWEEP = """\
# Run by scripts/chaos.py (a chaos run): glovesweep run {path} --address {address}
name: chaos
factors:
  strip: [none, blank_line]
  epochs: [{epochs}]
fixed: {{dataset: "19997", documents_per_group: 5, architecture: global_max, max_sequence_length: 160}}
seeds: {seeds}
resources: {{cpu: 1, gpu: 0}}
max_concurrent_trials: 0
max_failures: {max_failures}
mlflow: {{tracking_uri: "{uri}", experiment: chaos}}
storage_path: {storage}
"""


# --------------------------------------------------------------------------------------------- the schedule
@dataclasses.dataclass
class Fault:
    """One scheduled fault: when (seconds after the first trial reported), what, how long it holds, and a
    number in [0, 1) that picks its target among those alive then."""

    index: int
    at: float
    kind: str
    hold: float
    pick: float


def draw_schedule(*, faults: int, rate: float, seed: int, kinds: tuple[str, ...] = KINDS,
                  hold_scale: float = 1.0) -> list[Fault]:
    """``faults`` faults at ``rate`` per minute (exponential gaps), kinds drawn uniformly, from ``seed``; each
    hold drawn from ``HOLDS`` times ``hold_scale`` (``--smoke``: half as long).

    The first ``len(kinds)`` faults are a shuffled round of every kind, so that a short run (``--smoke``) still
    injects each kind once.
    """
    generator = random.Random(seed)
    first_round = list(kinds)
    generator.shuffle(first_round)
    schedule, at = [], 0.0
    for index in range(faults):
        at += generator.expovariate(rate / 60.0)
        kind = first_round[index] if index < len(first_round) else generator.choice(kinds)
        low, high = HOLDS.get(kind, (0, 0))
        schedule.append(Fault(index=index, at=round(at, 2), kind=kind,
                              hold=round(hold_scale * generator.uniform(low, high), 1),
                              pick=round(generator.random(), 4)))
    return schedule


@dataclasses.dataclass
class Outcome:
    """What happened to one fault."""

    index: int
    kind: str
    injected: bool = False
    injected_at: float | None = None
    target: str = ""
    skipped: str = ""
    overlapped: bool = False  # another fault was still held or unrecovered when this one was injected
    trials: list[str] = dataclasses.field(default_factory=list)  # trial folders running at injection
    recovered_seconds: float | None = None
    cells_once: int = 0
    cells_affected: int = 0
    metrics_lost: int = 0
    survived: bool = False


# --------------------------------------------------------------------------------------------- processes
@dataclasses.dataclass
class Process:
    pid: int
    ppid: int
    state: str
    command: str
    cwd: str


def processes(marker: str) -> list[Process]:
    """This run's live processes (those whose environment holds ``MARKER=marker``)."""
    found = []
    needle = f"{MARKER}={marker}".encode()
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle not in (entry / "environ").read_bytes():
                continue
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            try:
                cwd = os.readlink(entry / "cwd")
            except OSError:
                cwd = ""
        except OSError:
            continue
        if fields[0] == "Z":
            continue
        found.append(Process(pid=int(entry.name), ppid=int(fields[1]), state=fields[0], command=command, cwd=cwd))
    return found


def is_trial_worker(process: Process) -> bool:
    return process.command.startswith("ray::") and ("ImplicitFunc" in process.command or "run_trial" in process.command)


def is_driver(process: Process) -> bool:
    return "sweeps.cli" in process.command


def signal_quietly(pid: int, sent: int, *, group: bool = False) -> None:
    try:
        (os.killpg if group else os.kill)(pid, sent)
    except (ProcessLookupError, PermissionError):
        pass


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(predicate, *, timeout: float, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return None


# --------------------------------------------------------------------------------------------- the cluster
class Cluster:
    """The head, the worker nodes, the MLflow server, the results tmpfs and the sweep's driver."""

    def __init__(self, workdir: pathlib.Path, data_dir: str, *, trials: int, epochs: int, max_failures: int,
                 results_megabytes: int) -> None:
        self.workdir, self.data_dir = workdir, data_dir
        self.marker = uuid.uuid4().hex
        self.results = workdir / "results"
        self.results.mkdir()
        self.mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={results_megabytes}m", "tmpfs",
                                       str(self.results)], capture_output=True).returncode == 0
        self.mlflow_port, self.head_port = free_port(), free_port()
        self.uri = f"http://127.0.0.1:{self.mlflow_port}"
        self.address = f"127.0.0.1:{self.head_port}"
        self.ray_temp = pathlib.Path(tempfile.mkdtemp(prefix="gs-chaos-", dir="/tmp"))
        self.environment = dict(os.environ, PYTHONPATH=str(ROOT), RAY_USAGE_STATS_ENABLED="0",
                                PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
                                GLOVESWEEP_CACHE=str(workdir / "cache"), GLOVESWEEP_SHARED_STORAGE=str(self.results),
                                MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false", **{MARKER: self.marker},
                                # The cluster's own token (a ~/.ray/auth_token left by someone else is not ours).
                                RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
        for name in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI", "GLOVESWEEP_CLUSTER", "RAY_AUTH_TOKEN_PATH"):
            self.environment.pop(name, None)
        self.sweep_file = workdir / "chaos.yaml"
        self.sweep_file.write_text(SWEEP.format(path=self.sweep_file, address=self.address, epochs=epochs,
                                                seeds=math.ceil(trials / 2), max_failures=max_failures, uri=self.uri,
                                                storage=self.results))
        self.epochs = epochs
        self.mlflow: subprocess.Popen | None = None
        self.head: subprocess.Popen | None = None
        self.nodes: dict[str, subprocess.Popen | None] = {"worker-1": None, "worker-2": None}
        self.driver: subprocess.Popen | None = None
        self.lock = threading.Lock()
        self.logs = workdir / "logs"
        self.logs.mkdir()

    # ------------------------------------------------------------------ MLflow
    def start_mlflow(self) -> None:
        folder = self.workdir / "mlflow"
        folder.mkdir(exist_ok=True)
        with open(self.logs / "mlflow.log", "ab") as log:
            self.mlflow = subprocess.Popen(
                [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
                 "--artifacts-destination", str(folder / "artifacts"), "--host", "127.0.0.1",
                 "--port", str(self.mlflow_port), "--workers", "1"],
                env=self.environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        if not wait_until(self.mlflow_healthy, timeout=180):
            raise RuntimeError("the MLflow server did not start")

    def mlflow_healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def kill_mlflow(self) -> None:
        if self.mlflow is not None:
            signal_quietly(self.mlflow.pid, signal.SIGKILL, group=True)
            self.mlflow.wait()
            self.mlflow = None

    # ------------------------------------------------------------------ Ray
    def ray_start(self, name: str, arguments: list[str]) -> subprocess.Popen:
        log = self.logs / f"{name}.log"
        with open(log, "ab") as stream:
            stream.write(f"\n--- start {time.strftime('%H:%M:%S')}\n".encode())
            return subprocess.Popen(
                [str(BIN / "ray"), "start", "--block", *arguments, "--dashboard-agent-listen-port", str(free_port()),
                 "--min-worker-port", "0", "--max-worker-port", "0", "--node-ip-address", "127.0.0.1",
                 "--disable-usage-stats"], env=self.environment, cwd=self.workdir, stdout=stream,
                stderr=subprocess.STDOUT, start_new_session=True)

    def start_head(self) -> None:
        self.head = self.ray_start("head", ["--head", "--port", str(self.head_port), "--num-cpus", "1", "--num-gpus",
                                            "0", "--temp-dir", str(self.ray_temp), "--include-dashboard", "false",
                                            "--ray-client-server-port", str(free_port())])
        if not wait_until(lambda: "Ray runtime started" in (self.logs / "head.log").read_text(), timeout=180):
            raise RuntimeError("the Ray head did not start")

    def start_node(self, name: str) -> None:
        log = self.logs / f"{name}.log"
        before = log.read_text().count("Ray runtime started") if log.exists() else 0
        self.nodes[name] = self.ray_start(name, ["--address", self.address, "--num-cpus", "1", "--num-gpus", "0"])
        if not wait_until(lambda: log.read_text().count("Ray runtime started") > before, timeout=180):
            raise RuntimeError(f"Ray node {name} did not start: {log.read_text()[-500:]}")

    def node_pids(self, name: str) -> set[int]:
        """The node's ``ray start`` process and every descendant of it (raylet, workers)."""
        node = self.nodes.get(name)
        if node is None:
            return set()
        table = processes(self.marker)
        pids, grew = {node.pid}, True
        while grew:
            grew = False
            for process in table:
                if process.ppid in pids and process.pid not in pids:
                    pids.add(process.pid)
                    grew = True
        return pids

    def raylet(self, name: str) -> int | None:
        pids = self.node_pids(name)
        return next((process.pid for process in processes(self.marker)
                     if process.pid in pids and "/raylet" in process.command.split(" ")[0]), None)

    def kill_node(self, name: str) -> None:
        """What is left of a node whose raylet died: killed as a lost machine's processes are."""
        node = self.nodes.get(name)
        if node is None:
            return
        for pid in self.node_pids(name):
            signal_quietly(pid, signal.SIGKILL)
        signal_quietly(node.pid, signal.SIGKILL, group=True)
        node.wait()
        self.nodes[name] = None

    # ------------------------------------------------------------------ the driver
    def sweep_dir(self) -> pathlib.Path | None:
        found = [path.parent for path in self.results.glob("*/glovesweep_sweep.json")]
        return found[0] if len(found) == 1 else None

    def start_driver(self) -> subprocess.Popen:
        sweep_dir = self.sweep_dir()
        arguments = (["resume", str(sweep_dir)] if sweep_dir else
                     ["run", str(self.sweep_file), "--data-dir", self.data_dir, "--no-download"])
        with open(self.logs / "driver.log", "ab") as log:
            log.write(f"\n--- {' '.join(arguments[:1])} {time.strftime('%H:%M:%S')}\n".encode())
            log.flush()
            self.driver = subprocess.Popen([sys.executable, "-m", "sweeps.cli", *arguments, "--address", self.address],
                                           cwd=self.workdir, env=self.environment, stdout=log, stderr=subprocess.STDOUT,
                                           start_new_session=True)
        return self.driver

    def trial_workers(self) -> list[Process]:
        return [process for process in processes(self.marker) if is_trial_worker(process)]

    def checkpoints(self, trial_folder: str = "") -> list[pathlib.Path]:
        sweep_dir = self.sweep_dir()
        if sweep_dir is None:
            return []
        pattern = f"**/{trial_folder or 'trial_*'}/checkpoint_*/checkpoint.npz"
        found = []
        try:
            for path in sweep_dir.glob(pattern):
                try:
                    found.append((path.stat().st_mtime, path))
                except OSError:
                    continue
        except OSError:
            # Tune deleted an old checkpoint folder while the walk was inside it (keep-last pruning): look again.
            return self.checkpoints(trial_folder)
        return [path for _, path in sorted(found)]

    def stop_everything(self) -> list[str]:
        """Stop the cluster as an operator does (SIGTERM: ``ray start --block`` stops its node), then return what
        of this run is still alive 30 s later, and kill that."""
        if self.driver is not None and self.driver.poll() is None:
            signal_quietly(self.driver.pid, signal.SIGKILL, group=True)
        for process in processes(self.marker):  # nothing stays frozen
            signal_quietly(process.pid, signal.SIGCONT)
        for node in [*self.nodes.values(), self.head]:
            if node is not None:
                signal_quietly(node.pid, signal.SIGTERM)
        if self.mlflow is not None:
            signal_quietly(self.mlflow.pid, signal.SIGTERM, group=True)
        wait_until(lambda: not processes(self.marker), timeout=30)
        left = [f"{process.pid} {process.command[:80]}" for process in processes(self.marker)]
        for process in processes(self.marker):
            signal_quietly(process.pid, signal.SIGKILL)
        for node in [*self.nodes.values(), self.head, self.mlflow]:
            if node is not None:
                signal_quietly(node.pid, signal.SIGKILL, group=True)
                node.wait()
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.results)], capture_output=True)
        shutil.rmtree(self.ray_temp, ignore_errors=True)
        return left


# --------------------------------------------------------------------------------------------- the faults
class Chaos:
    """Injects the schedule into a running cluster; each fault that holds runs in its own thread."""

    def __init__(self, cluster: Cluster, schedule: list[Fault]) -> None:
        self.cluster, self.schedule = cluster, schedule
        self.outcomes = [Outcome(index=fault.index, kind=fault.kind) for fault in schedule]
        self.active: set[int] = set()  # faults held or not yet recovered from
        self.finished = threading.Event()  # the sweep ended: no more faults
        self.mlflow_busy, self.disk_busy = threading.Lock(), threading.Lock()
        self.threads: list[threading.Thread] = []
        self.origin = 0.0
        self.driver_exits: list[int] = []
        self.driver_exit_reasons: list[str] = []  # each driver run's last error line, or what its exit code means

    def now(self) -> float:
        return round(time.monotonic() - self.origin, 2)

    # ------------------------------------------------------------------ targets
    def running_trial(self, fault: Fault) -> Process | None:
        workers = sorted((worker for worker in self.cluster.trial_workers() if worker.state != "T"
                          and os.path.basename(worker.cwd).startswith("trial_")), key=lambda worker: worker.pid)
        return workers[int(fault.pick * len(workers))] if workers else None

    def live_node(self, fault: Fault) -> str | None:
        names = [name for name in sorted(self.cluster.nodes) if self.cluster.raylet(name)]
        return names[int(fault.pick * len(names))] if names else None

    def target(self, fault: Fault):
        """What the fault hits, or None while there is nothing to hit (no trial running, every node down...)."""
        cluster = self.cluster
        if fault.kind in ("trial_kill", "trial_freeze"):
            return self.running_trial(fault)
        if fault.kind == "checkpoint_corrupt":
            worker = self.running_trial(fault)
            if worker is None or not cluster.checkpoints(os.path.basename(worker.cwd)):
                return None
            return worker
        if fault.kind == "raylet_kill":
            return self.live_node(fault)
        if fault.kind == "driver_kill":
            driver = cluster.driver
            return driver if driver is not None and driver.poll() is None and cluster.sweep_dir() else None
        if fault.kind.startswith("mlflow"):
            return "mlflow" if self.mlflow_busy.acquire(blocking=False) else None
        if fault.kind == "disk_full":
            return "results" if self.disk_busy.acquire(blocking=False) else None
        raise AssertionError(fault.kind)

    # ------------------------------------------------------------------ the schedule
    def run_schedule(self) -> None:
        # The clock starts when the first trial runs: faults before that would only test start-up.
        wait_until(lambda: self.cluster.trial_workers() or self.finished.is_set(), timeout=1800)
        self.origin = time.monotonic()
        for fault in self.schedule:
            while self.now() < fault.at and not self.finished.is_set():
                time.sleep(0.2)
            if self.finished.is_set():
                break
            outcome = self.outcomes[fault.index]
            target = wait_until(lambda: self.finished.is_set() or self.target(fault), timeout=TARGET_WAIT_SECONDS)
            if target is None or target is True:
                outcome.skipped = "no target" if target is None else "the sweep had finished"
                continue
            outcome.injected, outcome.injected_at = True, self.now()
            outcome.overlapped = bool(self.active)
            outcome.trials = sorted({os.path.basename(worker.cwd) for worker in self.cluster.trial_workers()
                                     if os.path.basename(worker.cwd).startswith("trial_")})
            self.active.add(fault.index)
            thread = threading.Thread(target=self.apply, args=(fault, outcome, target), daemon=True)
            thread.start()
            self.threads.append(thread)
            print(f"chaos: t={outcome.injected_at:6.0f} s fault {fault.index} {fault.kind} -> {outcome.target}"
                  f"{' (overlapping)' if outcome.overlapped else ''}", flush=True)

    def apply(self, fault: Fault, outcome: Outcome, target) -> None:
        try:
            ended = getattr(self, f"inject_{fault.kind}")(fault, outcome, target)
            recovered = self.recovery(fault, outcome, target, ended)
            outcome.recovered_seconds = None if recovered is None else round(recovered - ended, 1)
        except Exception as error:  # noqa: BLE001 - a broken injector is reported, the run goes on
            # Committed results name no machine path: the scratch folder is CHAOS_FOLDER.
            message = str(error).replace(str(self.cluster.workdir), "CHAOS_FOLDER")
            outcome.skipped = f"injector error: {type(error).__name__}: {message}"[:200]
        finally:
            self.active.discard(fault.index)

    # ------------------------------------------------------------------ injectors: each returns when its fault ended
    def inject_trial_kill(self, fault: Fault, outcome: Outcome, worker: Process) -> float:
        outcome.target = os.path.basename(worker.cwd)
        outcome.trials = [outcome.target]
        signal_quietly(worker.pid, signal.SIGKILL)
        return time.monotonic()

    def inject_trial_freeze(self, fault: Fault, outcome: Outcome, worker: Process) -> float:
        outcome.target = os.path.basename(worker.cwd)
        outcome.trials = [outcome.target]
        signal_quietly(worker.pid, signal.SIGSTOP)
        self.finished.wait(fault.hold)
        signal_quietly(worker.pid, signal.SIGCONT)
        return time.monotonic()

    def inject_checkpoint_corrupt(self, fault: Fault, outcome: Outcome, worker: Process) -> float:
        outcome.target = os.path.basename(worker.cwd)
        outcome.trials = [outcome.target]
        newest = self.cluster.checkpoints(outcome.target)[-1]
        # A write cut short: the archive's first half, as a crash between write() calls leaves it.
        with open(newest, "r+b") as stream:
            stream.truncate(max(1, newest.stat().st_size // 2))
        signal_quietly(worker.pid, signal.SIGKILL)
        return time.monotonic()

    def inject_raylet_kill(self, fault: Fault, outcome: Outcome, name: str) -> float:
        outcome.target = name
        pids = self.cluster.node_pids(name)
        outcome.trials = sorted({os.path.basename(worker.cwd) for worker in self.cluster.trial_workers()
                                 if worker.pid in pids and os.path.basename(worker.cwd).startswith("trial_")})
        raylet = self.cluster.raylet(name)
        if raylet is not None:
            signal_quietly(raylet, signal.SIGKILL)
        time.sleep(2)
        self.cluster.kill_node(name)
        self.finished.wait(fault.hold)
        self.cluster.start_node(name)
        return time.monotonic()

    def inject_driver_kill(self, fault: Fault, outcome: Outcome, driver: subprocess.Popen) -> float:
        outcome.target = f"driver {driver.pid}"
        signal_quietly(driver.pid, signal.SIGKILL, group=True)
        return time.monotonic()

    def inject_mlflow_restart(self, fault: Fault, outcome: Outcome, _) -> float:
        outcome.target = "MLflow server"
        try:
            self.cluster.kill_mlflow()
            self.finished.wait(fault.hold)
            self.cluster.start_mlflow()
        finally:
            self.mlflow_busy.release()
        return time.monotonic()

    def inject_mlflow_freeze(self, fault: Fault, outcome: Outcome, _) -> float:
        outcome.target = "MLflow server"
        try:
            server = self.cluster.mlflow
            signal_quietly(server.pid, signal.SIGSTOP, group=True)
            self.finished.wait(fault.hold)
            signal_quietly(server.pid, signal.SIGCONT, group=True)
        finally:
            self.mlflow_busy.release()
        return time.monotonic()

    def inject_disk_full(self, fault: Fault, outcome: Outcome, _) -> float:
        outcome.target = "results tmpfs"
        filler = self.cluster.results / ".chaos-filler"
        try:
            with open(filler, "wb") as stream:
                try:
                    os.posix_fallocate(stream.fileno(), 0, max(1, shutil.disk_usage(self.cluster.results).free))
                except OSError:
                    pass
                try:  # whatever fallocate left, to the last byte
                    while True:
                        stream.write(b"\0" * 65536)
                        stream.flush()
                except OSError:
                    pass
            self.finished.wait(fault.hold)
        finally:
            filler.unlink(missing_ok=True)
            self.disk_busy.release()
        return time.monotonic()

    # ------------------------------------------------------------------ recovery
    def recovery(self, fault: Fault, outcome: Outcome, target, ended: float) -> float | None:
        """When the system was whole again after the fault ended (monotonic time), None if not seen in 5 min.

        A trial fault: its trial wrote a newer checkpoint. A node: the replacement node runs a trial. The driver:
        a trial runs under the resumed driver. MLflow: /health answers. The disk: some trial wrote a checkpoint.
        """
        cluster, wall_ended = self.cluster, time.time()
        if fault.kind.startswith("mlflow"):
            return time.monotonic() if wait_until(cluster.mlflow_healthy, timeout=300, interval=0.2) else None

        def newer_checkpoint(folder: str = "") -> bool:
            return any(path.stat().st_mtime > wall_ended for path in cluster.checkpoints(folder)[-3:]
                       if path.exists())

        if fault.kind in ("trial_kill", "trial_freeze", "checkpoint_corrupt"):
            check = lambda: newer_checkpoint(outcome.target)  # noqa: E731
        elif fault.kind == "raylet_kill":
            check = lambda: any(worker.pid in cluster.node_pids(target) for worker in cluster.trial_workers())  # noqa: E731
        elif fault.kind == "driver_kill":
            before = {worker.pid for worker in cluster.trial_workers()}
            check = lambda: any(worker.pid not in before for worker in cluster.trial_workers())  # noqa: E731
        else:
            check = newer_checkpoint
        return time.monotonic() if wait_until(lambda: check() or self.finished.is_set(), timeout=300,
                                              interval=0.5) and not self.finished.is_set() else None

    # ------------------------------------------------------------------ the supervisor
    def supervise(self, *, max_drivers: int) -> bool:
        """Run the driver, and ``glovesweep resume`` whenever it is gone unfinished; True once one exits 0."""
        log = self.cluster.logs / "driver.log"
        for _ in range(max_drivers):
            offset = log.stat().st_size if log.exists() else 0
            driver = self.cluster.start_driver()
            code = driver.wait()
            self.driver_exits.append(code)
            # The results get committed (docs/results/chaos): a reason names the scratch folder by a placeholder.
            self.driver_exit_reasons.append(exit_reason(log, offset, code).replace(str(self.cluster.workdir),
                                                                                   CHAOS_FOLDER))
            print(f"chaos: driver exited with {code}: {self.driver_exit_reasons[-1]}", flush=True)
            if code == 0:
                return True
            time.sleep(2)
        return False


def exit_reason(log: pathlib.Path, offset: int, code: int) -> str:
    """Why a driver run ended: its last ``glovesweep ...: error`` line in ``log`` after ``offset``, else the code."""
    if code == 0:
        return "finished"
    if code < 0:
        return f"killed by signal {-code}"
    try:
        with open(log, "rb") as handle:
            handle.seek(offset)
            lines = handle.read().decode(errors="replace").splitlines()
    except OSError:
        lines = []
    errors = [line.strip() for line in lines if line.startswith("glovesweep ") and "error" in line]
    return errors[-1][:300] if errors else (lines[-1].strip()[:300] if lines else f"exit code {code}, no output")


# --------------------------------------------------------------------------------------------- the checks
@dataclasses.dataclass
class Checks:
    """What held, read from MLflow, the results folder and the process table."""

    cells_expected: int = 0
    cells_once: int = 0
    cells_lost: list[str] = dataclasses.field(default_factory=list)
    cells_duplicated: list[str] = dataclasses.field(default_factory=list)
    metrics_lost: int = 0
    metrics_duplicated: int = 0
    runs_left_running: int = 0
    parent_status: str = ""
    parent_has_answer: bool = False
    processes_after_sweep: list[str] = dataclasses.field(default_factory=list)
    processes_after_stop: list[str] = dataclasses.field(default_factory=list)
    report_equal: bool = False
    report_difference: str = ""
    per_trial: dict[str, dict] = dataclasses.field(default_factory=dict)  # trial key -> runs, finished, lost
    folders: dict[str, str] = dataclasses.field(default_factory=dict)  # trial_<Tune id> -> trial key, from the runs

    @property
    def held(self) -> bool:
        return (self.cells_once == self.cells_expected and not self.cells_lost and not self.cells_duplicated
                and self.metrics_lost == 0 and self.metrics_duplicated == 0 and self.runs_left_running == 0
                and self.parent_status == "FINISHED" and self.parent_has_answer and not self.processes_after_sweep
                and not self.processes_after_stop and self.report_equal)


def check_mlflow(cluster: Cluster, checks: Checks) -> None:
    from mlflow import tracking as mlflow_tracking
    from mlflow.entities import ViewType

    from sweeps.run import state as state_module
    from sweeps.tracking import names

    state = state_module.read_state(str(cluster.sweep_dir()))
    spec, identity = state.spec(), state.identity
    client = mlflow_tracking.MlflowClient(tracking_uri=cluster.uri)
    runs = client.search_runs([identity.experiment_id], run_view_type=ViewType.ALL, max_results=5000)
    checks.runs_left_running = sum(1 for run in runs if run.info.status == "RUNNING")
    children = [run for run in runs if run.data.tags.get("mlflow.parentRunId") == identity.parent_run_id]
    keys = [trial.key for trial in spec.trials()]
    checks.cells_expected = len(keys)
    epochs = spec.max_epochs
    for run in children:
        for tune_id in filter(None, run.data.tags.get(names.TUNE_TRIAL_IDS_TAG, "").split(",")):
            checks.folders[f"trial_{tune_id}"] = run.data.tags.get(names.TRIAL_ID_TAG, "")
    for key in keys:
        mine = [run for run in children if run.data.tags.get(names.TRIAL_ID_TAG) == key]
        finished = [run for run in mine if run.info.status == "FINISHED"]
        lost = duplicated = 0
        for run in finished:
            for metric in STEP_METRICS:
                steps = [point.step for point in client.get_metric_history(run.info.run_id, metric)]
                lost += len(set(range(1, epochs + 1)) - set(steps))
                duplicated += len(steps) - len(set(steps))
        if not finished:
            lost = epochs * len(STEP_METRICS)
        checks.per_trial[key] = {"runs": len(mine), "finished": len(finished), "metrics_lost": lost,
                                 "metrics_duplicated": duplicated}
        checks.metrics_lost += lost
        checks.metrics_duplicated += duplicated
        if len(mine) == 1 and len(finished) == 1:
            checks.cells_once += 1
        elif len(mine) > 1:
            checks.cells_duplicated.append(key)
        else:
            checks.cells_lost.append(key)
    parent = client.get_run(identity.parent_run_id)
    checks.parent_status = parent.info.status
    checks.parent_has_answer = bool(parent.data.tags.get("mlflow.note.content"))


def trial_keys_of_folders(cluster: Cluster, checks: Checks) -> dict[str, str]:
    """Tune trial folder name -> glovesweep trial key: each folder's params.json (what Tune wrote), else the
    Tune trial ids each MLflow child run records (a folder whose params.json a full disk kept from being written)."""
    from sweeps import spec as spec_module

    found = dict(checks.folders)
    for params in cluster.sweep_dir().glob("**/trial_*/params.json"):
        try:
            task = json.loads(params.read_text())["task"]
            found[params.parent.name] = spec_module.Trial.from_dict(task["trial"]).key
        except (OSError, ValueError, KeyError):
            continue
    return found


def check_report(cluster: Cluster, checks: Checks) -> None:
    """The report the sweep wrote against one regenerated from its MLflow runs, numbers within tolerance."""
    # The tests' tolerant comparison (tests/tolerance.py), loaded by path: tests/ is no package.
    loaded = importlib.util.spec_from_file_location("glovesweep_tests_tolerance", ROOT / "tests" / "tolerance.py")
    tolerance = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(tolerance)

    written = cluster.workdir / "reports" / "chaos"
    again = cluster.workdir / "regenerated"
    from sweeps.run import state as state_module

    parent = state_module.read_state(str(cluster.sweep_dir())).identity.parent_run_id
    result = subprocess.run([sys.executable, "-m", "sweeps.cli", "report", parent, "--tracking-uri", cluster.uri,
                             "--out", str(again), "--no-log-artifacts"], cwd=cluster.workdir, env=cluster.environment,
                            capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        checks.report_difference = f"glovesweep report exited {result.returncode}: {result.stderr[-300:]}"
        return
    compared = 0
    for path in sorted(written.glob("*")):
        if path.suffix not in (".md", ".csv", ".json") or not (again / path.name).exists():
            continue
        try:
            tolerance.assert_same_text((again / path.name).read_text(), path.read_text(), name=path.name)
            compared += 1
        except AssertionError as error:
            checks.report_difference = str(error)[:400]
            return
    checks.report_equal = compared > 0
    checks.report_difference = "" if compared else f"no report files in {written.name}"


def score(chaos: Chaos, checks: Checks, folders: dict[str, str]) -> None:
    """Each injected fault's trials: present once, FINISHED, every epoch's metrics there."""
    whole = checks.runs_left_running == 0 and checks.parent_status == "FINISHED" and checks.parent_has_answer
    for outcome in chaos.outcomes:
        if not outcome.injected:
            continue
        keys = {folders[folder] for folder in outcome.trials if folder in folders}
        outcome.cells_affected = len(keys)
        outcome.cells_once = sum(1 for key in keys if checks.per_trial.get(key, {}).get("finished") == 1
                                 and checks.per_trial[key]["runs"] == 1)
        outcome.metrics_lost = sum(checks.per_trial.get(key, {}).get("metrics_lost", 0) for key in keys)
        # A worker hit before its trial wrote anything (no params.json, no MLflow run: on a loaded machine a trial's
        # first seconds are its imports) names no cell; it survived if every cell of the sweep ran exactly once.
        unnamed = any(folder not in folders for folder in outcome.trials)
        outcome.survived = whole and outcome.cells_once == outcome.cells_affected and outcome.metrics_lost == 0 \
            and (not unnamed or checks.cells_once == checks.cells_expected)


# --------------------------------------------------------------------------------------------- the results
def per_kind(outcomes: list[Outcome]) -> list[dict]:
    rows = []
    for kind in KINDS:
        mine = [outcome for outcome in outcomes if outcome.kind == kind and outcome.injected]
        recovered = [outcome.recovered_seconds for outcome in mine if outcome.recovered_seconds is not None]
        rows.append({"kind": kind, "injected": len(mine), "overlapped": sum(o.overlapped for o in mine),
                     "survived": sum(o.survived for o in mine),
                     "cells_affected": sum(o.cells_affected for o in mine),
                     "cells_once": sum(o.cells_once for o in mine), "metrics_lost": sum(o.metrics_lost for o in mine),
                     "recovered": len(recovered),
                     "recover_median_s": round(statistics.median(recovered), 1) if recovered else None,
                     "recover_max_s": max(recovered) if recovered else None})
    return rows


DESCRIPTIONS = {
    "trial_kill": "SIGKILL of a trial worker",
    "trial_freeze": "trial worker SIGSTOP, SIGCONT after 10-30 s",
    "raylet_kill": "SIGKILL of a worker node's raylet; node replaced after 5-20 s",
    "driver_kill": "SIGKILL of the driver, then glovesweep resume",
    "mlflow_restart": "MLflow server killed, restarted on its port after 5-30 s",
    "mlflow_freeze": "MLflow server SIGSTOP for 20-45 s, then SIGCONT",
    "checkpoint_corrupt": "newest checkpoint cut in half, its trial's worker killed",
    "disk_full": "results disk filled to the last byte for 10-30 s, then freed",
}


def markdown(summary: dict) -> str:
    totals, checks = summary["totals"], summary["checks"]
    lines = [f"# Chaos run\n", f"`{summary['command']}` on {summary['machine']}, {summary['date']}: "
             f"{totals['faults_injected']} faults injected ({totals['overlapped']} while an earlier one was still "
             f"held or unrecovered, {totals['skipped']} skipped for want of a target) into a sweep of "
             f"{checks['cells_expected']} trials x {summary['epochs']} epochs on a head and two worker nodes, "
             f"in {totals['wall_seconds'] / 60:.0f} min; {totals['driver_runs']} driver runs (the first, then "
             f"`glovesweep resume`), exit codes {summary['driver_exits']}.\n",
             "| fault | what | injected | overlapping | survived | cells once | metrics lost | recovered "
             "(median, max s) |", "|---|---|---|---|---|---|---|---|"]
    for row in summary["per_kind"]:
        recover = (f"{row['recovered']}/{row['injected']} ({row['recover_median_s']}, {row['recover_max_s']})"
                   if row["recovered"] else "-")
        lines.append(f"| {row['kind']} | {DESCRIPTIONS[row['kind']]} | {row['injected']} | {row['overlapped']} | "
                     f"{row['survived']} | {row['cells_once']}/{row['cells_affected']} | {row['metrics_lost']} | "
                     f"{recover} |")
    lines += ["", "Time to recover: seconds from the fault's end (the kill, or the end of its hold) until the trial it "
              "hit wrote a newer checkpoint (trial faults), a trial ran on the replacement node (raylet), a trial ran "
              "under the resumed driver (driver), MLflow's /health answered (MLflow), some trial wrote a checkpoint "
              "(disk); not counted when the sweep moved the trial elsewhere first. Cells once: the trials running "
              "(or hit) at injection that end FINISHED in exactly one MLflow child run.", "",
              "| total | value |", "|---|---|"]
    for name, value in [("cells x seeds FINISHED exactly once", f"{checks['cells_once']}/{checks['cells_expected']}"),
                        ("cells lost", len(checks["cells_lost"])), ("cells duplicated", len(checks["cells_duplicated"])),
                        ("epoch metrics lost", checks["metrics_lost"]),
                        ("epoch metrics duplicated", checks["metrics_duplicated"]),
                        ("runs left RUNNING", checks["runs_left_running"]),
                        ("parent run", f"{checks['parent_status']}, answer "
                                       f"{'present' if checks['parent_has_answer'] else 'MISSING'}"),
                        ("processes left after the sweep", len(checks["processes_after_sweep"])),
                        ("processes left after the cluster stopped", len(checks["processes_after_stop"])),
                        ("regenerated report equals the sweep's", "yes" if checks["report_equal"] else
                         f"NO: {checks['report_difference']}"),
                        ("everything held", "yes" if summary["held"] else "NO")]:
        lines.append(f"| {name} | {value} |")
    reasons = summary.get("driver_exit_reasons") or []
    if reasons:
        lines += ["", "Why each driver run ended (its last error line; a resume follows every run but the last):", "",
                  "| driver runs | exit | reason |", "|---|---|---|"]
        counted: dict[tuple[int, str], int] = {}
        for code, reason in zip(summary["driver_exits"], reasons):
            counted[(code, reason)] = counted.get((code, reason), 0) + 1
        for (code, reason), count in sorted(counted.items(), key=lambda item: -item[1]):
            lines.append(f"| {count} | {code} | {reason.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faults", type=int, default=100, help="Faults to inject (default 100).")
    parser.add_argument("--trials", type=int, default=50, help="Trials of the sweep: 2 cells x ceil(N/2) seeds.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the fault schedule.")
    parser.add_argument("--rate", type=float, default=3.0,
                        help="Faults per minute (default 3: 20 s apart on average, time for a node restart and a "
                             "TensorFlow start).")
    parser.add_argument("--epochs", type=int, default=None, help="Epochs per trial (default: enough for the faults).")
    parser.add_argument("--max-failures", type=int, default=10, help="The sweep's max_failures per trial.")
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--out", default=None, help="Folder for schedule.json, chaos.json and chaos.md.")
    parser.add_argument("--smoke", action="store_true", help="10 faults, 6 trials, 12 faults a minute, holds half "
                                                             "as long (CI).")
    parser.add_argument("--keep", action="store_true", help="Keep the scratch folder (logs) and print its path.")
    args = parser.parse_args(argv)
    if args.smoke:
        # CI's minutes: faults twice as dense as the full run's smoke used to be, holds half as long.
        args.faults, args.trials, args.rate = min(args.faults, 10), min(args.trials, 6), max(args.rate, 12.0)
    # Enough epochs that the sweep outlasts the schedule: about 0.1 s per epoch of this small sweep on the fast path
    # (which covers its random embedding since 2026-12-05; 0.4 s on the Keras path), three trials at once.
    epochs = args.epochs or max(10, math.ceil(args.faults / args.rate * 60 * 3 / args.trials / 0.1))
    schedule = draw_schedule(faults=args.faults, rate=args.rate, seed=args.seed, hold_scale=0.5 if args.smoke else 1.0)
    # A SIGTERM (a CI timeout, kill) unwinds through the finally below, which stops the cluster it started.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="glovesweep-chaos-"))
    cluster = Cluster(workdir, str(pathlib.Path(args.data_dir).resolve()), trials=args.trials, epochs=epochs,
                      max_failures=args.max_failures, results_megabytes=1024)
    chaos = Chaos(cluster, schedule)
    checks = Checks()
    started = time.monotonic()
    ended = False
    try:
        cluster.start_mlflow()
        cluster.start_head()
        for name in cluster.nodes:
            cluster.start_node(name)
        scheduler = threading.Thread(target=chaos.run_schedule, daemon=True)
        scheduler.start()
        ended = chaos.supervise(max_drivers=max(10, args.faults))
        chaos.finished.set()
        scheduler.join(timeout=120)
        for thread in chaos.threads:
            thread.join(timeout=600)
        # The sweep is over: no driver, no trial worker may stay (Ray ends a finished job's workers).
        wait_until(lambda: not [p for p in processes(cluster.marker) if is_driver(p) or is_trial_worker(p)],
                   timeout=60)
        checks.processes_after_sweep = [f"{p.pid} {p.command[:80]}" for p in processes(cluster.marker)
                                        if is_driver(p) or is_trial_worker(p)]
        if cluster.mlflow is None or not cluster.mlflow_healthy():
            cluster.kill_mlflow()
            cluster.start_mlflow()
        if cluster.sweep_dir() is not None:
            check_mlflow(cluster, checks)
            check_report(cluster, checks)
            score(chaos, checks, trial_keys_of_folders(cluster, checks))
    finally:
        chaos.finished.set()
        checks.processes_after_stop = cluster.stop_everything()
        if args.keep:
            print(f"chaos: scratch folder kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    injected = [outcome for outcome in chaos.outcomes if outcome.injected]
    command = "python scripts/chaos.py " + " ".join(
        ["--smoke"] if args.smoke else [f"--faults {args.faults}", f"--trials {args.trials}"]) + \
        f" --seed {args.seed} --rate {args.rate:g}"
    cpu = next((line.split(":", 1)[1].strip() for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    summary = {
        "command": command, "machine": f"{cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d"), "seed": args.seed, "rate_per_minute": args.rate, "epochs": epochs,
        "max_failures": args.max_failures, "sweep_ended": ended, "driver_exits": chaos.driver_exits,
        "driver_exit_reasons": chaos.driver_exit_reasons,
        "totals": {"faults_scheduled": len(schedule), "faults_injected": len(injected),
                   "overlapped": sum(outcome.overlapped for outcome in injected),
                   "skipped": sum(1 for outcome in chaos.outcomes if outcome.skipped),
                   "survived": sum(outcome.survived for outcome in injected), "driver_runs": len(chaos.driver_exits),
                   "wall_seconds": round(time.monotonic() - started)},
        "per_kind": per_kind(chaos.outcomes), "checks": dataclasses.asdict(checks),
        "faults": [dataclasses.asdict(outcome) for outcome in chaos.outcomes],
    }
    summary["held"] = bool(ended and checks.held and len(injected) == len(schedule)
                           and summary["totals"]["survived"] == len(injected))
    summary["checks"].pop("per_trial")
    text = markdown(summary)
    print(text)
    if args.out:
        out = pathlib.Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "schedule.json").write_text(json.dumps({"seed": args.seed, "rate_per_minute": args.rate,
                                                       "faults": [dataclasses.asdict(f) for f in schedule]}, indent=1))
        (out / "chaos.json").write_text(json.dumps(summary, indent=1))
        (out / "chaos.md").write_text(text)
    return 0 if summary["held"] else 1


if __name__ == "__main__":
    sys.exit(main())
