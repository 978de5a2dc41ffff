"""``glovesweep status`` and ``list``: each submitted sweep's state (Ray's job server) and progress (MLflow).

Both must answer within seconds on a busy head, so this module imports neither ``ray`` nor ``mlflow`` for a job
server's ``http(s)://`` URL and an ``http(s)://`` tracking server: the job list comes over Ray's REST API
(``jobs.job_list``), the runs over MLflow's (``sweeps.tracking.fast_read``). Exit codes as ``commands`` says:
``status ID`` 0 for pending, running or succeeded, 1 for failed or stopped; 3 no job server or no such sweep.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
import types

from sweeps.service import jobs
from sweeps.service import progress_read


def status_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sweep_id", nargs="?", help="A sweep id (submit printed it); without one, every sweep.")
    jobs.add_address(parser)
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow as this machine reaches it (default: the URI submit used).")
    parser.add_argument("--json", action="store_true", help="Machine-readable output.")


def list_arguments(parser: argparse.ArgumentParser) -> None:
    jobs.add_address(parser)
    parser.add_argument("--tracking-uri", default=None, help="MLflow as this machine reaches it.")
    parser.add_argument("--json", action="store_true", help="Machine-readable output: one JSON list.")


def describe(history: list, tracking_uri: str | None = None) -> progress_read.SweepStatus:
    """One sweep's state and progress (its newest job decides the state)."""
    first, latest = history[0], history[-1]
    metadata = first.metadata
    uri = tracking_uri or metadata[jobs.TRACKING_URI]
    now = time.time()
    started = (first.start_time or now * 1000) / 1000
    ended = latest.end_time / 1000 if latest.end_time else None
    status = progress_read.SweepStatus(
        sweep_id=metadata[jobs.SWEEP_ID], name=metadata[jobs.SWEEP_NAME], state=jobs.state(latest),
        job=latest.submission_id, parent_run_id=metadata[jobs.PARENT_RUN_ID],
        mlflow_url=progress_read.run_url(uri, metadata[jobs.EXPERIMENT_ID], metadata[jobs.PARENT_RUN_ID]),
        elapsed_seconds=round((ended or now) - started, 1),
        message=latest.message if jobs.state(latest) == "failed" else None)
    try:
        progress = progress_read.read_progress(
            uri, metadata[jobs.EXPERIMENT_ID], metadata[jobs.PARENT_RUN_ID], total=int(metadata[jobs.TOTAL_TRIALS]),
            network_trials=int(metadata[jobs.NETWORK_TRIALS]), max_epochs=int(metadata[jobs.MAX_EPOCHS]))
    except Exception as error:  # noqa: BLE001 - the job's state is still worth showing
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        return dataclasses.replace(status, progress_error=f"MLflow {uri}: {reason}")
    left = progress.seconds_left(now) if status.state == "running" else None
    return dataclasses.replace(status, progress=progress, seconds_left=round(left, 1) if left is not None else None)


def one_line(status: progress_read.SweepStatus) -> str:
    progress = status.progress
    if progress is None:
        counts = status.progress_error or "progress unknown"
    else:
        counts = (f"{progress.done}/{progress.total} done, {progress.running} running, {progress.pending} pending, "
                  f"{progress.failed} failed; epochs {progress.epochs_done}/{progress.epochs_total}")
        if progress.best_cell:
            counts += f"; best {progress.best_cell} {progress.objective} {progress.best_value:.3f}"
    left = f", ~{progress_read.duration(status.seconds_left)} left" if status.seconds_left is not None else ""
    return f"{status.sweep_id}  {status.state:<9}  {counts}  ({progress_read.duration(status.elapsed_seconds)}{left})"


def details(status: progress_read.SweepStatus) -> str:
    lines = [f"sweep {status.sweep_id} ({status.name}): {status.state} (job {status.job})"]
    progress = status.progress
    if progress is None:
        lines.append(f"  progress unavailable: {status.progress_error}")
    else:
        lines.append(f"  trials: {progress.done} done, {progress.running} running, {progress.pending} pending, "
                     f"{progress.failed} failed, {progress.killed} killed, of {progress.total}")
        lines.append(f"  epochs: {progress.epochs_done} of {progress.epochs_total}")
        if progress.best_cell:
            lines.append(f"  best cell so far: {progress.best_cell}: {progress.objective} {progress.best_value:.4f} "
                         f"(mean of {progress.best_runs} run(s))")
    left = f", about {progress_read.duration(status.seconds_left)} left" if status.seconds_left is not None else ""
    lines.append(f"  elapsed {progress_read.duration(status.elapsed_seconds)}{left}")
    lines.append(f"  MLflow: {status.mlflow_url}")
    if status.message:
        lines.append(f"  {status.message.strip().splitlines()[0]}")
    if status.state in ("failed", "stopped"):
        lines.append(f"  finish it with: glovesweep submit --resume {status.sweep_id}")
    return "\n".join(lines)


def status_main(args: argparse.Namespace) -> int:
    client = jobs.job_list(args.address)
    if not getattr(args, "sweep_id", None):
        statuses = [describe(history, args.tracking_uri) for history in jobs.sweep_jobs(client).values()]
        if args.json:
            print(json.dumps([status.to_json() for status in statuses], indent=1))
        else:
            print("\n".join(one_line(status) for status in statuses) or "no sweeps on this cluster")
        return 0
    status = describe(jobs.jobs_of(client, args.sweep_id), args.tracking_uri)
    print(json.dumps(status.to_json(), indent=1) if args.json else details(status))
    return 1 if status.state in ("failed", "stopped") else 0


STATUS = types.SimpleNamespace(add_arguments=status_arguments, main=jobs.guarded(status_main))
LIST = types.SimpleNamespace(add_arguments=list_arguments, main=jobs.guarded(status_main))
