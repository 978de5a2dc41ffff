"""The sweep service under load: many sweeps submitted at once to one local Ray head, some cancelled and resumed.

    python scripts/service_load.py [--smoke] [--sweeps 10] [--out docs/results/service-load]

Starts a real Ray head (2 CPUs, no GPU, its job server on 127.0.0.1, as ``tests/test_service.py`` starts one) and
a real MLflow server, writes tiny 20 Newsgroups corpora (the tests' ``build_tiny_data_home``), and submits every
sweep at once with ``glovesweep submit``. While they run, some are cancelled with ``glovesweep cancel`` (as soon
as they have trained one epoch) and resubmitted with ``glovesweep submit --resume``, one is cancelled for good,
and a poller runs ``glovesweep status ID`` and ``glovesweep list`` back to back, timing each as a user waits for
it (a fresh process each time). A sampler reads the RSS of the head's processes every two seconds.

Checked at the end, from Ray's job table, MLflow and the process table (never from log text):

- every sweep ends in its right state: ``succeeded`` (plain, and cancelled then resumed) or ``stopped``
  (cancelled for good: its parent run KILLED, no run left RUNNING);
- every cell x seed of a succeeded sweep exactly once FINISHED, with each epoch's ``val_acc`` exactly once;
- ``status`` and ``list`` answer within 5 s at the 95th percentile, and none fails;
- the job server's memory stays bounded (its peak RSS under ``--job-server-limit-mb``) and no driver or job
  supervisor is left once every sweep has ended.

``--smoke`` (what CI runs, a few minutes) submits 4 sweeps: 2 plain, 1 cancelled and resumed, 1 cancelled.
Writes ``service-load.md`` and ``service-load.json`` into ``--out``; exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import os
import pathlib
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import importlib.util

import numpy

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def tests_helpers():
    """The tests' ``conftest.py``: one definition of starting a real head and MLflow server and of the tiny
    corpora (it imports pytest: the ``dev`` extra, as for the tests)."""
    spec = importlib.util.spec_from_file_location("glovesweep_tests_conftest", ROOT / "tests" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    return module


conftest = tests_helpers()

from sweeps.service import status_list  # noqa: E402
from sweeps.service import jobs  # noqa: E402
from sweeps.service import progress_read  # noqa: E402
from sweeps.tracking import mlflow_runs  # noqa: E402

# What the results say in place of this run's scratch folder: they get committed (docs/results/service-load).
SCRATCH = "SCRATCH"
SWEEP = """\
# Run: glovesweep submit {path}
name: {name}
factors:
  dataset: ["19997"]
  epochs: [{epochs}]
fixed:
  architecture: global_max
  max_sequence_length: 160
  sizing: num_words_plus_one
seeds: {seeds}
resources: {{cpu: 1, gpu: 0}}
max_concurrent_trials: 2
max_failures: 1
mlflow: {{tracking_uri: "{tracking_uri}", experiment: {name}}}
storage_path: {storage}
"""
# What each kind of sweep goes through, its epochs, and the state it must end in.
KINDS = {"plain": (2, "succeeded"), "cancel-resume": (60, "succeeded"), "cancel": (60, "stopped")}
SEEDS = 2
LATENCY_LIMIT_SECONDS = 5.0


@dataclasses.dataclass
class Sweep:
    """One submitted sweep: what it goes through, what happened to it, and what MLflow holds at the end."""

    name: str
    kind: str
    epochs: int
    expected_state: str
    sweep_id: str = ""
    parent_run_id: str = ""
    experiment_id: str = ""
    submit_seconds: float = 0.0
    submit_exit: int | None = None
    cancel_seconds: float | None = None
    cancel_exit: int | None = None
    resume_exit: int | None = None
    jobs: list[str] = dataclasses.field(default_factory=list)
    final_state: str = ""
    parent_status: str = ""
    cells_expected: int = SEEDS
    cells_once_finished: int = 0
    runs: int = 0
    runs_running: int = 0
    epochs_missing_or_twice: int = 0
    seconds_to_end: float | None = None
    ok: bool = False


@dataclasses.dataclass
class Call:
    """One timed ``glovesweep status``/``list`` call."""

    command: str
    at_seconds: float
    seconds: float
    exit_code: int
    cpu_seconds: float = 0.0  # the call's own user + system CPU time: what it costs apart from waiting for a core


@dataclasses.dataclass
class Sample:
    """The head's processes at one moment: RSS (MB) and count per role."""

    at_seconds: float
    rss_mb: dict[str, float]
    count: dict[str, int]
    available_mb: float
    load_average: float


def role(command: str) -> str:
    """The role of one head process, from its command line (Ray retitles its workers ``ray::<name>``)."""
    if "JobSupervisor" in command:
        return "job_supervisors"
    if "dashboard/agent.py" in command or "DashboardAgent" in command:
        return "ray_system"
    if "dashboard" in command:
        return "job_server"  # Ray's dashboard head process (and its module processes) serves the job API.
    if command.startswith(("/bin/sh -c", "sh -c", "/bin/bash -c", "bash -c")):
        return "driver_shells"  # Ray's job supervisor starts the entrypoint through a shell.
    if "sweeps.cli" in command or "glovesweep" in command:
        return "drivers"
    if command.startswith("ray::"):
        return "workers"
    return "ray_system"


class Head:
    """The test head and MLflow server, and the ``glovesweep`` service commands run against them as a user would."""

    def __init__(self, workdir: pathlib.Path) -> None:
        self.workdir = workdir
        self.temp_dir = pathlib.Path(tempfile.mkdtemp(prefix="gs-load-", dir="/tmp"))
        cwd = workdir / "head"
        cwd.mkdir()
        dashboard_port = conftest.free_port()
        self.environment = conftest.ray_environment(cwd, GLOVESWEEP_CACHE=str(workdir / "cache"),
                                                    GLOVESWEEP_ALLOW_GROUP_SUBSET="1")
        command = " ".join([str(conftest.RAY_BIN / "ray"), "start", "--head", f"--port={conftest.free_port()}",
                            "--num-cpus=2", "--num-gpus=0", "--dashboard-host=127.0.0.1",
                            *conftest.head_start_flags(self.temp_dir, dashboard_port)])
        self.mlflow = conftest.start_mlflow_server(workdir / "mlflow", conftest.free_port())
        self.tracking_uri = f"http://127.0.0.1:{self.mlflow.args[self.mlflow.args.index('--port') + 1]}"
        self.ray = conftest.start_ray_head(command, environment=self.environment, cwd=cwd, temp_dir=self.temp_dir,
                                           dashboard_port=dashboard_port, log=cwd / "head.log")
        os.environ["RAY_AUTH_TOKEN_PATH"] = self.environment["RAY_AUTH_TOKEN_PATH"]
        self.client = jobs.connect(self.ray.url)

    def stop(self) -> None:
        self.ray.stop()
        conftest.stop_mlflow_server(self.mlflow)

    def glovesweep(self, *arguments: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "sweeps.cli", *arguments, "--address", self.ray.url],
                              cwd=self.workdir, env=self.environment, capture_output=True, text=True, timeout=timeout)

    def timed(self, *arguments: str, timeout: float = 120) -> tuple[int, str, float]:
        """Run a service command as a user would: (exit code, stdout, its own CPU seconds, from ``wait4``)."""
        with tempfile.TemporaryFile() as output:
            process = subprocess.Popen([sys.executable, "-m", "sweeps.cli", *arguments, "--address", self.ray.url],
                                       cwd=self.workdir, env=self.environment, stdout=output,
                                       stderr=subprocess.DEVNULL)
            timer = threading.Timer(timeout, process.kill)
            timer.start()
            _, status, usage = os.wait4(process.pid, 0)
            timer.cancel()
            process.returncode = os.waitstatus_to_exitcode(status)
            output.seek(0)
            return process.returncode, output.read().decode(errors="replace"), usage.ru_utime + usage.ru_stime

    def processes(self) -> list[tuple[str, float, int, float]]:
        """(role, RSS in MB, pid, CPU seconds) of every process of the head: its daemons and all their
        descendants."""
        parents, commands = {}, {}
        for entry in pathlib.Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                    commands[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                        errors="replace")
                except (OSError, ValueError, IndexError):
                    continue
        members = set(conftest.head_pids(self.temp_dir, self.ray.process_group))
        grew = True
        while grew:
            children = {pid for pid, parent in parents.items() if parent in members} - members
            members |= children
            grew = bool(children)
        found = []
        for pid in members:
            try:
                status = pathlib.Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            rss = [line for line in status.splitlines() if line.startswith("VmRSS:")]
            try:
                fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            # utime and stime (fields 14 and 15 of proc(5)), in clock ticks.
            cpu_seconds = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            if rss and pid != os.getpid():
                found.append((role(commands.get(pid, "")), int(rss[0].split()[1]) / 1024, pid, cpu_seconds))
        return found


def available_mb() -> float:
    for line in pathlib.Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def sample_memory(head: Head, started: float, samples: list[Sample], cpu: dict[int, tuple[str, float]],
                  stop: threading.Event) -> None:
    """Every 2 s: RSS and count per role into ``samples``; each process's latest CPU seconds into ``cpu``."""
    while not stop.is_set():
        rss: dict[str, float] = {}
        count: dict[str, int] = {}
        for name, megabytes, pid, cpu_seconds in head.processes():
            rss[name] = round(rss.get(name, 0) + megabytes, 1)
            count[name] = count.get(name, 0) + 1
            cpu[pid] = (name, cpu_seconds)
        samples.append(Sample(round(time.monotonic() - started, 1), rss, count, round(available_mb()),
                              os.getloadavg()[0]))
        stop.wait(2)


def poll_service(head: Head, sweeps: list[Sweep], started: float, calls: list[Call], stop: threading.Event) -> None:
    """``status ID`` and ``list``, back to back, each timed as a user waits for it, until ``stop``; after each
    ``list``, the same answer computed in this process (``list_answer``: the job server and MLflow reads without
    a process start and its imports)."""
    turn = 0
    while not stop.is_set():
        known = [sweep.sweep_id for sweep in sweeps if sweep.sweep_id]
        if turn % 2 and known:
            arguments = ["status", known[(turn // 2) % len(known)], "--json"]
        else:
            arguments = ["list", "--json"]
        began = time.monotonic()
        code, output, cpu_seconds = head.timed(*arguments)
        seconds = time.monotonic() - began
        # status exits 1 for a stopped sweep (its documented code); anything else but 0 is a failure.
        code = 0 if code == 1 and '"state": "stopped"' in output else code
        calls.append(Call(arguments[0], round(began - started, 1), round(seconds, 3), code, round(cpu_seconds, 2)))
        if arguments[0] == "list":
            began = time.monotonic()
            try:
                for history in jobs.sweep_jobs(head.client).values():
                    status_list.describe(history)
                code = 0
            except Exception:  # noqa: BLE001 - counted as a failed call
                code = 1
            calls.append(Call("list_answer", round(began - started, 1), round(time.monotonic() - began, 3), code))
        turn += 1


def write_sweep(head: Head, sweep: Sweep) -> pathlib.Path:
    folder = head.workdir / sweep.name
    folder.mkdir()
    path = folder / f"{sweep.name}.yaml"
    path.write_text(SWEEP.format(path=path, name=sweep.name, epochs=sweep.epochs, seeds=SEEDS,
                                 tracking_uri=head.tracking_uri, storage=folder / "results"))
    return path


def submit(head: Head, sweep: Sweep, data_home: pathlib.Path) -> None:
    began = time.monotonic()
    result = head.glovesweep("submit", str(write_sweep(head, sweep)), "--data-dir", str(data_home), "--cache-dir",
                             str(head.workdir / "cache"), "--no-download", "--json")
    sweep.submit_seconds, sweep.submit_exit = round(time.monotonic() - began, 1), result.returncode
    if result.returncode == 0:
        entry = json.loads(result.stdout.strip().splitlines()[-1])
        sweep.sweep_id, sweep.parent_run_id = entry["sweep_id"], entry["parent_run_id"]
        sweep.experiment_id = entry["experiment_id"]
    else:
        print(f"submit {sweep.name} exited {result.returncode}: {result.stderr[-1000:]}", flush=True)


def cancel_and_resume(head: Head, sweep: Sweep, timeout: float) -> None:
    """Cancel once the sweep has trained an epoch (read from MLflow); resume it when its kind says so."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        progress = progress_read.read_progress(head.tracking_uri, sweep.experiment_id, sweep.parent_run_id,
                                               total=SEEDS, network_trials=SEEDS, max_epochs=sweep.epochs)
        if progress.epochs_done >= 1:
            break
        time.sleep(1)
    began = time.monotonic()
    result = head.glovesweep("cancel", sweep.sweep_id)
    sweep.cancel_seconds, sweep.cancel_exit = round(time.monotonic() - began, 1), result.returncode
    if sweep.kind == "cancel-resume":
        sweep.resume_exit = head.glovesweep("submit", "--resume", sweep.sweep_id).returncode


def check(head: Head, sweep: Sweep) -> None:
    """Fill in the sweep's end from Ray's job table and MLflow, and whether it is right."""
    from mlflow import tracking as mlflow_tracking
    from mlflow.entities import ViewType

    history = jobs.jobs_of(head.client, sweep.sweep_id)
    sweep.jobs = [jobs.state(job) for job in history]
    sweep.final_state = sweep.jobs[-1]
    client = mlflow_tracking.MlflowClient(tracking_uri=head.tracking_uri)
    runs = client.search_runs([sweep.experiment_id], run_view_type=ViewType.ALL)
    sweep.parent_status = client.get_run(sweep.parent_run_id).info.status
    children = [run for run in runs if run.data.tags.get(mlflow_runs.PARENT_TAG) == sweep.parent_run_id]
    trial_ids = [run.data.tags.get(mlflow_runs.TRIAL_ID_TAG) for run in children]
    sweep.runs, sweep.runs_running = len(children), sum(run.info.status == "RUNNING" for run in children)
    sweep.cells_once_finished = sum(1 for run in children if run.info.status == "FINISHED"
                                    and trial_ids.count(run.data.tags.get(mlflow_runs.TRIAL_ID_TAG)) == 1)
    wanted = list(range(1, sweep.epochs + 1))
    sweep.epochs_missing_or_twice = sum(
        len(set(wanted).symmetric_difference(steps)) + len(steps) - len(set(steps))
        for steps in (mlflow_runs.metric_steps(head.tracking_uri, run.info.run_id, "val_acc")
                      for run in children if run.info.status == "FINISHED"))
    ended = [job.end_time for job in history if job.end_time]
    if ended and history[0].start_time:
        sweep.seconds_to_end = round((max(ended) - history[0].start_time) / 1000, 1)
    if sweep.expected_state == "succeeded":
        right_end = (sweep.parent_status == "FINISHED" and sweep.cells_once_finished == sweep.cells_expected
                     and sweep.runs == sweep.cells_expected and sweep.epochs_missing_or_twice == 0)
    else:
        right_end = (sweep.parent_status == "KILLED" and len(set(trial_ids)) == len(trial_ids)
                     and sweep.epochs_missing_or_twice == 0)
    resumed = sweep.jobs[:-1] == ["stopped"] if sweep.kind == "cancel-resume" else len(sweep.jobs) == 1
    sweep.ok = (sweep.final_state == sweep.expected_state and right_end and resumed and sweep.runs_running == 0
                and sweep.submit_exit == 0 and sweep.cancel_exit in (None, 0) and sweep.resume_exit in (None, 0))


def latency(calls: list[Call], command: str | None = None) -> dict:
    """Wall seconds (as the caller waited) at p50, p95 and max, failed calls, and the calls' own CPU seconds."""
    chosen = [call for call in calls if command in (None, call.command)]
    if not chosen:
        return {"calls": 0}
    seconds = [call.seconds for call in chosen]
    entry = {"calls": len(chosen), "p50_s": round(float(numpy.percentile(seconds, 50)), 2),
             "p95_s": round(float(numpy.percentile(seconds, 95)), 2), "max_s": round(max(seconds), 2),
             "failed": sum(call.exit_code != 0 for call in chosen)}
    cpu = [call.cpu_seconds for call in chosen if call.command != "list_answer"]  # only a process has its own
    if cpu:
        entry.update(cpu_p50_s=round(float(numpy.percentile(cpu, 50)), 2),
                     cpu_p95_s=round(float(numpy.percentile(cpu, 95)), 2))
    return entry


def memory(samples: list[Sample]) -> dict:
    def series(name: str) -> list[float]:
        return [sample.rss_mb.get(name, 0.0) for sample in samples]

    job_server = series("job_server")
    return {"samples": len(samples), "job_server_first_mb": job_server[0] if job_server else None,
            "job_server_peak_mb": max(job_server, default=None), "job_server_last_mb": job_server[-1] if job_server else None,
            **{f"{name}_peak_mb": max(series(name), default=0.0) for name in ("drivers", "job_supervisors", "workers",
                                                                           "ray_system")},
            "drivers_at_once_max": max((sample.count.get("drivers", 0) for sample in samples), default=0),
            "head_total_peak_mb": round(max((sum(sample.rss_mb.values()) for sample in samples), default=0.0), 1),
            "machine_available_min_mb": min((sample.available_mb for sample in samples), default=None)}


def plan(count: int, smoke: bool) -> list[Sweep]:
    """``count`` sweeps: 3 in 10 cancelled and resumed, 1 cancelled for good, the rest run to the end."""
    if smoke:
        kinds = ["plain", "plain", "cancel-resume", "cancel"]
    else:
        kinds = (["cancel"] + ["cancel-resume"] * max(1, (3 * count) // 10) + ["plain"] * count)[:count]
    kinds.sort(key=list(KINDS).index)
    return [Sweep(name=f"load-{index:02d}-{kind}", kind=kind, epochs=KINDS[kind][0], expected_state=KINDS[kind][1])
            for index, kind in enumerate(kinds)]


def table(sweeps: list[Sweep]) -> str:
    lines = ["| sweep | kind | jobs | final state (expected) | parent run | cells once FINISHED | runs RUNNING | "
             "epochs missing/twice | submit s | cancel s | start to end s | right |", "|" + "---|" * 12]
    lines += [f"| {sweep.name} | {sweep.kind} | {' -> '.join(sweep.jobs)} | {sweep.final_state} "
              f"({sweep.expected_state}) | {sweep.parent_status} | {sweep.cells_once_finished}/{sweep.cells_expected} "
              f"| {sweep.runs_running} | {sweep.epochs_missing_or_twice} | {sweep.submit_seconds} | "
              f"{sweep.cancel_seconds if sweep.cancel_seconds is not None else '-'} | {sweep.seconds_to_end} | "
              f"{'yes' if sweep.ok else 'NO'} |" for sweep in sweeps]
    return "\n".join(lines)


def machine() -> dict:
    import mlflow
    import ray

    models = [line.split(":", 1)[1].strip() for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines()
              if line.startswith("model name")]
    return {"cpu_model": models[0] if models else platform.processor(), "cpus": os.cpu_count(),
            "memory_mb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20),
            "python": platform.python_version(), "ray": ray.__version__, "mlflow": mlflow.__version__}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="4 sweeps (2 plain, 1 cancelled and resumed, "
                                                             "1 cancelled): what CI runs.")
    parser.add_argument("--sweeps", type=int, default=10, help="Sweeps submitted at once (default %(default)s).")
    parser.add_argument("--timeout", type=float, default=1800, help="Seconds before the run counts as hung.")
    parser.add_argument("--job-server-growth-limit-mb", type=float, default=256,
                        help="Growth of the job server's RSS over its first sample that counts as unbounded "
                             "(default %(default)s).")
    parser.add_argument("--out", default=None, help="Folder for service-load.md and service-load.json.")
    args = parser.parse_args(argv)
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="gs-load-work-"))
    sweeps = plan(args.sweeps, args.smoke)
    data_home = conftest.build_tiny_data_home(workdir / "data", versions=("19997",))
    head = Head(workdir)
    calls: list[Call] = []
    samples: list[Sample] = []
    cpu: dict[int, tuple[str, float]] = {}
    failures: list[str] = []
    stop = threading.Event()
    started = time.monotonic()
    threads = [threading.Thread(target=sample_memory, args=(head, started, samples, cpu, stop), daemon=True),
               threading.Thread(target=poll_service, args=(head, sweeps, started, calls, stop), daemon=True)]
    try:
        for thread in threads:
            thread.start()
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(sweeps)) as pool:
            list(pool.map(lambda sweep: submit(head, sweep, data_home), sweeps))
        submitted_seconds = round(time.monotonic() - started, 1)
        print(f"{len(sweeps)} sweeps submitted in {submitted_seconds} s", flush=True)
        live = [sweep for sweep in sweeps if sweep.sweep_id]
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(sweeps)) as pool:
            list(pool.map(lambda sweep: cancel_and_resume(head, sweep, args.timeout),
                          [sweep for sweep in live if sweep.kind != "plain"]))
        deadline = started + args.timeout
        while time.monotonic() < deadline:
            latest = {sweep_id: jobs.state(history[-1]) for sweep_id, history in jobs.sweep_jobs(head.client).items()}
            if all(latest.get(sweep.sweep_id) in jobs.TERMINAL for sweep in live):
                break
            time.sleep(2)
        else:
            failures.append(f"not every sweep ended within {args.timeout:.0f} s")
        ended_seconds = round(time.monotonic() - started, 1)
        time.sleep(10)  # the drivers and job supervisors exit a moment after their jobs end
        stop.set()
        for thread in threads:
            thread.join(timeout=180)
        for sweep in live:
            check(head, sweep)
        left = {name: sum(1 for process in head.processes() if process[0] == name)
                for name in ("drivers", "job_supervisors")}
    finally:
        stop.set()
        head.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    users = [call for call in calls if call.command != "list_answer"]
    service = {"status": latency(calls, "status"), "list": latency(calls, "list"), "all": latency(users),
               "list_answer": latency(calls, "list_answer")}
    used = memory(samples)
    failures += [f"sweep {sweep.name} ended wrong" for sweep in sweeps if not sweep.ok]
    if service["all"].get("failed", 1):
        failures.append(f"status/list calls failed: {service['all']}")
    # Each command on its own: a fast status must not hide a slow list in the pooled figure.
    slow = [name for name in ("status", "list") if service[name].get("p95_s", float("inf")) > LATENCY_LIMIT_SECONDS]
    for name in slow:
        failures.append(f"{name} p95 {service[name].get('p95_s')} s > {LATENCY_LIMIT_SECONDS} s")
    if not samples or used["job_server_peak_mb"] - used["job_server_first_mb"] > args.job_server_growth_limit_mb:
        failures.append(f"the job server's RSS grew from {used.get('job_server_first_mb')} MB to "
                        f"{used.get('job_server_peak_mb')} MB")
    checks = {"sweeps_right": all(sweep.ok for sweep in sweeps),
              "status_list_never_failed": service["all"].get("failed") == 0,
              "status_list_p95_within_limit": not slow,
              "job_server_memory_bounded": not any("job server" in failure for failure in failures),
              "nothing_left_behind": not any(left.values())}
    cpu_seconds = {}
    for name, seconds in cpu.values():
        cpu_seconds[name] = round(cpu_seconds.get(name, 0.0) + seconds, 1)
    if any(left.values()):
        failures.append(f"left behind after every sweep ended: {left}")
    command = "python scripts/service_load.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    result = {"command": command.strip().replace(str(workdir), SCRATCH), "date": time.strftime("%Y-%m-%d"),
              "machine": machine(), "head": {"num_cpus": 2, "num_gpus": 0}, "sweeps_submitted": len(sweeps),
              "submitted_all_seconds": submitted_seconds, "ended_all_seconds": ended_seconds,
              "latency": service, "latency_limit_p95_s": LATENCY_LIMIT_SECONDS, "memory": used, "left_behind": left,
              "cpu_seconds_by_role": cpu_seconds,
              "load_average_1min_max": max((sample.load_average for sample in samples), default=None),
              "sweeps": [dataclasses.asdict(sweep) for sweep in sweeps], "checks": checks, "failures": failures,
              "passed": not failures, "calls": [dataclasses.asdict(call) for call in calls],
              "memory_samples": [dataclasses.asdict(sample) for sample in samples]}
    text = json.dumps(result, indent=1).replace(str(workdir), SCRATCH)
    print(table(sweeps))
    print(json.dumps({key: result[key] for key in ("latency", "memory", "cpu_seconds_by_role", "left_behind",
                                                   "failures")}, indent=1))
    if args.out:
        out = pathlib.Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "service-load.json").write_text(text + "\n")
        (out / "service-load.md").write_text(report(result, sweeps))
    return 0 if not failures else 1


def report(result: dict, sweeps: list[Sweep]) -> str:
    lines = [f"# The sweep service under load\n", f"`{result['command']}` on {result['machine']['cpu_model']}, "
             f"{result['machine']['cpus']} CPUs, {result['machine']['memory_mb']} MB, Python "
             f"{result['machine']['python']}, Ray {result['machine']['ray']}, MLflow {result['machine']['mlflow']}, "
             f"{result['date']}. One head with 2 CPUs; every trial asks 1 CPU; {result['sweeps_submitted']} sweeps "
             f"submitted at once, all submitted after {result['submitted_all_seconds']} s, all ended after "
             f"{result['ended_all_seconds']} s.\n", "## Sweeps\n", table(sweeps), "\n## `status` and `list` latency "
             "(a fresh process per call, as a user waits; `list_answer`: the same answer computed inside the script, "
             "without a process start)\n", "| command | calls | p50 s | p95 s | max s | failed | own CPU p50 s | "
             "own CPU p95 s |", "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {name} | {entry.get('calls')} | {entry.get('p50_s')} | {entry.get('p95_s')} | {entry.get('max_s')} | "
              f"{entry.get('failed')} | {entry.get('cpu_p50_s')} | {entry.get('cpu_p95_s')} |"
              for name, entry in result["latency"].items()]
    lines += ["\n## Memory (RSS of the head's processes, MB, sampled every 2 s)\n", "| measure | value |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in result["memory"].items()]
    lines += ["\n## CPU seconds by role (over the run, summed over the processes seen)\n", "| role | CPU s |",
              "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in sorted(result["cpu_seconds_by_role"].items())]
    lines += [f"\nHighest 1-minute load average of the machine during the run: {result['load_average_1min_max']} "
              f"(on {result['machine']['cpus']} CPUs; other work on the machine counts too).\n"]
    lines += [f"\nLeft behind after every sweep ended: {result['left_behind']}.\n",
              f"**{'Passed' if result['passed'] else 'FAILED: ' + '; '.join(result['failures'])}.**\n"]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
