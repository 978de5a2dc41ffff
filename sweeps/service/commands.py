"""The sweep service: ``glovesweep submit``, ``logs`` and ``cancel`` on Ray's job server (``status`` and ``list``:
``status_list``).

A sweep runs as one Ray job whose driver is ``glovesweep run`` (``sweeps.run.job_entry``); Ray keeps it alive,
queues its trials by resources next to other sweeps', keeps its output and stops it. The sweep id is the
job's submission id and names the sweep's Tune folder. ``submit`` validates the sweep file here (a bad file
never becomes a job), creates the sweep's MLflow parent run, hands the validated text and the run's id to the
job, and waits until the job has checked that the cluster can ever hold one trial (``sweeps.checks.resources_check``).

Exit codes, for scripts: 0 success (``status ID``: pending, running or succeeded); 1 the sweep failed or was
stopped (``status ID``, ``logs --follow``, ``submit --wait``); 2 a bad sweep file or option, or a sweep the
cluster can never run; 3 no job server at the address, or no such sweep.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import secrets
import shlex
import sys
import time
import types

from sweeps.run import identity
from sweeps.run import job_entry
from sweeps.service import jobs
from sweeps.service import progress_read
from sweeps.checks import resources_check
from sweeps import spec as spec_module
from sweeps.tracking import mlflow_runs
from sweeps.tracking import outbox
from sweeps.trainers import registry

# How Ray's job supervisor stops a sweep's job on 'glovesweep cancel': Ctrl-C's signal (SIGINT), so Tune stops its
# trials gracefully and the driver ends the MLflow runs KILLED, then SIGKILL if it is still running after the grace.
STOP_GRACE_SECONDS = 60
STOP_ENVIRONMENT = {"RAY_JOB_STOP_SIGNAL": "SIGINT", "RAY_JOB_STOP_WAIT_TIME_S": str(STOP_GRACE_SECONDS)}
TERMINAL = jobs.TERMINAL


# -------------------------------------------------------------------------------------------------- submit
def submit_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sweep_file", nargs="?", help="A sweep file, e.g. sweeps/quick.yaml.")
    parser.add_argument("--smoke-test", action="store_true", help="Apply the file's 'smoke' overrides.")
    jobs.add_address(parser)
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow as this machine reaches it (default: the file's mlflow.tracking_uri); on a cloud "
                             "cluster the tunnel to the head's server, http://localhost:5000.")
    parser.add_argument("--job-tracking-uri", default=None,
                        help="MLflow as the job reaches it (default: the cluster's $MLFLOW_TRACKING_URI on a cluster "
                             "from cluster/*.yaml, else --tracking-uri).")
    parser.add_argument("--storage-path", default=None,
                        help="Tune's storage for the job (default: the cluster's $GLOVESWEEP_STORAGE_PATH, else the "
                             "file's storage_path).")
    parser.add_argument("--data-dir", default=None, help="Data home on the cluster (default: its $GLOVESWEEP_DATA).")
    parser.add_argument("--cache-dir", default=None, help="Cache on the cluster (default: its $GLOVESWEEP_CACHE).")
    parser.add_argument("--no-download", action="store_true", help="The job never downloads data.")
    parser.add_argument("--upload-code", action="store_true",
                        help="Ship this checkout with the job (Ray's working_dir) instead of the cluster's install.")
    parser.add_argument("--resume", metavar="SWEEP_ID", default=None,
                        help="Instead of a file: finish a stopped or failed sweep; only missing trials and epochs run.")
    parser.add_argument("--wait", action="store_true", help="Stream the driver's output until the sweep ends.")
    parser.add_argument("--json", action="store_true", help="Print the sweep id, run and URLs as JSON.")


def entry_options(args: argparse.Namespace) -> list[str]:
    """Data options the job's ``glovesweep run``/``resume`` receives (folders made absolute here)."""
    options = []
    for flag, value in (("--data-dir", args.data_dir), ("--cache-dir", args.cache_dir)):
        if value:
            options += [flag, str(pathlib.Path(value).expanduser().resolve())]
    return options + (["--no-download"] if args.no_download else [])


def entrypoint(arguments: list[str], *, upload_code: bool) -> tuple[str, dict]:
    """The job's shell command and its runtime_env extras: the cluster's ``glovesweep``, or this checkout's."""
    if not upload_code:
        return shlex.join(["glovesweep", *arguments]), {}
    root = pathlib.Path(job_entry.__file__).resolve().parents[1]
    return shlex.join(["python", "-m", "sweeps.cli", *arguments]), {"working_dir": str(root)}


def new_sweep_id(spec: spec_module.SweepSpec) -> str:
    """``<name>[-smoke]-<UTC time>-<4 hex>``: unique even for two submissions in the same second."""
    now = datetime.datetime.now(datetime.timezone.utc)
    return f"{spec.name}{'-smoke' if spec.smoke_test else ''}-{now:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def submit_main(args: argparse.Namespace) -> int:
    if args.resume:
        return resume(args)
    if not args.sweep_file:
        raise ValueError("give a sweep file, or --resume SWEEP_ID")
    spec = spec_module.load_sweep(args.sweep_file, smoke_test=args.smoke_test)
    if args.tracking_uri:
        spec = spec.replace(tracking_uri=spec_module.resolve_tracking_uri(args.tracking_uri, pathlib.Path.cwd()))
    client = jobs.connect(args.address)
    outbox.driver_client_settings()
    mlflow_runs.check_reachable(spec.tracking_uri)
    experiment_id = mlflow_runs.ensure_experiment(spec.tracking_uri, spec.experiment)
    sweep_id = new_sweep_id(spec)
    commit, dirty = mlflow_runs.git_commit()
    parent_run_id = mlflow_runs.start_parent_run(spec.tracking_uri, experiment_id, spec=spec, tags={
        mlflow_runs.SWEEP_ID_TAG: sweep_id, "glovesweep.sweep_file": spec.source_path, "git_commit": commit,
        "git_dirty": str(dirty).lower()})
    source = identity.SweepSource(sweep_text=spec.source_text, source_path=spec.source_path,
                                  base_dir=str(pathlib.Path.cwd()), smoke_test=spec.smoke_test)
    submitted = job_entry.SubmittedSweep(
        source=source, tracking_uri=spec.tracking_uri, job_tracking_uri=args.job_tracking_uri,
        storage_path=args.storage_path and spec_module.resolve_storage_path(args.storage_path, pathlib.Path.cwd()),
        file_storage_path=spec.storage_path)
    command, extras = entrypoint(["run", "--sweep-from-env", "--parent-run-id", parent_run_id, "--experiment-name",
                                  sweep_id, *entry_options(args)], upload_code=args.upload_code)
    # The cluster has glovesweep installed, not the user's code: a trainer module beside the sweep file ships along.
    module = registry.shipped_module(spec.trainer, spec.trainer_folder)
    extras.update({"py_modules": [registry.job_package(module)]} if module else {})
    trials = spec.trials() if spec.search["mode"] == "grid" else []
    # Progress counts child runs: a search with seeds: k gives each configuration k of them, its stages (confirm,
    # final) one per trial.
    runs = spec.total_trials * spec.seeds_side_by_side + spec.stage_trials
    networks = sum(not spec.trainer_of(trial).reference for trial in trials) if trials else runs
    metadata = {jobs.SWEEP_ID: sweep_id, jobs.SWEEP_NAME: spec.name, jobs.PARENT_RUN_ID: parent_run_id,
                jobs.EXPERIMENT_ID: experiment_id, jobs.TRACKING_URI: spec.tracking_uri,
                jobs.TOTAL_TRIALS: str(runs), jobs.NETWORK_TRIALS: str(networks),
                jobs.MAX_EPOCHS: str(spec.max_epochs), **({jobs.TRAINER_MODULE: module} if module else {})}
    environment = {job_entry.SWEEP_ENV: submitted.encode(), job_entry.SWEEP_ID_ENV: sweep_id, **STOP_ENVIRONMENT}
    # The MLflow login (the cluster's server requires one) reaches the job's driver and every trial on every
    # node through the job's runtime environment; the job server holding it is token-protected and on loopback.
    environment.update({name: os.environ[name] for name in MLFLOW_LOGIN_VARIABLES if os.environ.get(name)})
    try:
        client.submit_job(entrypoint=command, submission_id=sweep_id, metadata=metadata,
                          runtime_env={"env_vars": environment, **extras})
    except BaseException:
        mlflow_runs.end_run(spec.tracking_uri, parent_run_id, "FAILED")
        raise
    verdict = wait_for_verdict(client, sweep_id, spec.tracking_uri, parent_run_id)
    if verdict.kind == "refused":
        forget(client, sweep_id)
        delete_run(spec.tracking_uri, parent_run_id)
        print(f"glovesweep submit: refused: {verdict.message}", file=sys.stderr)
        return 2
    if verdict.kind == "ended":
        # The job died before it could use the parent run (e.g. it reached another MLflow store).
        job_entry.end_if_running(spec.tracking_uri, parent_run_id, "FAILED")
    url = progress_read.run_url(spec.tracking_uri, experiment_id, parent_run_id)
    address = f" --address {args.address}" if args.address else ""
    if args.json:
        print(json.dumps({"sweep_id": sweep_id, "parent_run_id": parent_run_id, "experiment_id": experiment_id,
                          "tracking_uri": spec.tracking_uri, "mlflow_url": url, "started": verdict.ok}))
    else:
        print(f"glovesweep: submitted sweep {sweep_id} ({spec.name!r}: {spec.total_trials} trials, "
              f"resources {resources_check.describe(spec.resources)} each) to {jobs.resolve_address(args.address)}")
        print(f"glovesweep: MLflow parent run {parent_run_id}: {url}")
        if not verdict.ok:
            print(f"glovesweep: the sweep's job {verdict.message}", file=sys.stderr)
        print(f"next:\n  glovesweep status {sweep_id}{address}\n  glovesweep logs {sweep_id} --follow{address}\n"
              f"  glovesweep cancel {sweep_id}{address}")
    if args.wait:
        return follow_to_end(client, sweep_id)
    return 0 if verdict.ok else 1


MLFLOW_LOGIN_VARIABLES = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")


def wait_for_verdict(client, sweep_id: str, tracking_uri: str, parent_run_id: str,
                     timeout: float = 300) -> job_entry.Verdict:
    """The job's resource check (``ok`` or ``refused``); else why there is none (``ended``, ``waiting``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tag = mlflow_runs.get_run(tracking_uri, parent_run_id).data.tags.get(mlflow_runs.RESOURCES_TAG)
        if tag:
            return job_entry.Verdict.from_tag(tag)
        info = client.get_job_info(sweep_id)
        if jobs.state(info) in TERMINAL:
            # The check may have landed between the two reads.
            tag = mlflow_runs.get_run(tracking_uri, parent_run_id).data.tags.get(mlflow_runs.RESOURCES_TAG)
            return job_entry.Verdict.from_tag(tag) if tag else job_entry.Verdict(
                "ended", f"ended {jobs.state(info)} before its first trial: see glovesweep logs {sweep_id}")
        time.sleep(0.5)
    state = jobs.state(client.get_job_info(sweep_id))
    return job_entry.Verdict("waiting", f"is still {state} after {timeout:.0f} s: see glovesweep status {sweep_id}")


def forget(client, submission_id: str, timeout: float = 60) -> None:
    """Delete a refused sweep's job once it has ended (it exits right after its check), so none is left."""
    deadline = time.monotonic() + timeout
    while jobs.state(client.get_job_info(submission_id)) not in TERMINAL:
        if time.monotonic() > deadline:
            client.stop_job(submission_id)
            deadline = time.monotonic() + timeout
        time.sleep(0.25)
    client.delete_job(submission_id)


def delete_run(tracking_uri: str, run_id: str) -> None:
    from mlflow import tracking as mlflow_tracking

    mlflow_tracking.MlflowClient(tracking_uri=tracking_uri).delete_run(run_id)


def resume(args: argparse.Namespace) -> int:
    """Submit ``glovesweep resume <sweep dir>`` as the sweep's next job (``<id>-resume-<n>``)."""
    client = jobs.connect(args.address)
    history = jobs.jobs_of(client, args.resume)
    if jobs.state(history[-1]) not in TERMINAL:
        raise ValueError(f"sweep {args.resume} is {jobs.state(history[-1])}; cancel it first or let it finish")
    metadata = dict(history[0].metadata)
    tracking_uri = args.tracking_uri or metadata[jobs.TRACKING_URI]
    sweep_dir = mlflow_runs.get_run(tracking_uri, metadata[jobs.PARENT_RUN_ID]).data.tags.get(mlflow_runs.SWEEP_DIR_TAG)
    if not sweep_dir:
        raise ValueError(f"sweep {args.resume} stopped before its first trial; submit its file again")
    submission_id = f"{args.resume}-resume-{len(history)}"
    command, extras = entrypoint(["resume", sweep_dir, *entry_options(args)], upload_code=args.upload_code)
    # The user's trainer module is shipped again from where the first submission found it (the cluster has
    # glovesweep installed, not the user's code).
    module = metadata.get(jobs.TRAINER_MODULE)
    if module:
        if not pathlib.Path(module).exists():
            raise ValueError(f"sweep {args.resume} runs the trainer module {module}, which is gone; put it back to "
                             f"resume the sweep")
        extras["py_modules"] = [registry.job_package(module)]
    client.submit_job(entrypoint=command, submission_id=submission_id,
                      metadata={**metadata, jobs.RESUME_OF: args.resume},
                      runtime_env={"env_vars": {job_entry.SWEEP_ID_ENV: args.resume, **STOP_ENVIRONMENT}, **extras})
    print(f"glovesweep: resuming sweep {args.resume} from {sweep_dir} (job {submission_id}); follow it with: "
          f"glovesweep logs {args.resume} --follow")
    return follow_to_end(client, args.resume) if args.wait else 0


# ------------------------------------------------------------------------------------------- logs, cancel
def logs_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sweep_id", help="A sweep id (submit printed it).")
    jobs.add_address(parser)
    parser.add_argument("--follow", "-f", action="store_true", help="Keep streaming until the sweep ends.")


def follow_to_end(client, sweep_id: str) -> int:
    """Stream the newest job's output to its end; 0 when the sweep succeeded, else 1."""
    submission_id = jobs.jobs_of(client, sweep_id)[-1].submission_id
    jobs.follow_logs(client, submission_id)
    while jobs.state(client.get_job_info(submission_id)) not in TERMINAL:
        time.sleep(0.5)
    final = jobs.state(client.get_job_info(submission_id))
    print(f"glovesweep: sweep {sweep_id} {final}", file=sys.stderr)
    return 0 if final == "succeeded" else 1


def logs_main(args: argparse.Namespace) -> int:
    client = jobs.connect(args.address)
    history = jobs.jobs_of(client, args.sweep_id)
    if args.follow:
        return follow_to_end(client, args.sweep_id)
    for job in history:
        sys.stdout.write(client.get_job_logs(job.submission_id))
    return 0


def cancel_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sweep_id", help="A sweep id (submit printed it).")
    jobs.add_address(parser)
    parser.add_argument("--timeout", type=float, default=STOP_GRACE_SECONDS + 60,
                        help="Seconds to wait for the sweep to stop (default %(default)s).")


def cancel_main(args: argparse.Namespace) -> int:
    client = jobs.connect(args.address)
    latest = jobs.jobs_of(client, args.sweep_id)[-1]
    if jobs.state(latest) in TERMINAL:
        print(f"glovesweep: sweep {args.sweep_id} already {jobs.state(latest)}")
        return 0
    client.stop_job(latest.submission_id)
    deadline = time.monotonic() + args.timeout
    while jobs.state(client.get_job_info(latest.submission_id)) not in TERMINAL:
        if time.monotonic() > deadline:
            print(f"glovesweep cancel: sweep {args.sweep_id} still stopping after {args.timeout:.0f} s",
                  file=sys.stderr)
            return 1
        time.sleep(0.5)
    final = jobs.state(client.get_job_info(latest.submission_id))
    print(f"glovesweep: sweep {args.sweep_id} {final}; finish the missing trials with: "
          f"glovesweep submit --resume {args.sweep_id}")
    return 0


SUBMIT = types.SimpleNamespace(add_arguments=submit_arguments, main=jobs.guarded(submit_main))
LOGS = types.SimpleNamespace(add_arguments=logs_arguments, main=jobs.guarded(logs_main))
CANCEL = types.SimpleNamespace(add_arguments=cancel_arguments, main=jobs.guarded(cancel_main))
