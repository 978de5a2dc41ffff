"""``glovesweep run``: a sweep file becomes Ray Tune trials, each logged to MLflow.

Order of work, so that a mistake costs nothing:

1. the sweep file is validated and every trial's ``TrainerConfig`` is built (``sweeps.spec.build``);
2. the MLflow store is checked (unreachable, or a sqlite file or folder not writable: ``OSError`` before
   anything starts);
3. every dataset and GloVe source is resolved and read, unless it is the published archive byte for byte
   (missing, truncated, wrong groups: ``OSError``);
4. Ray starts (locally unless ``--address``/``RAY_ADDRESS`` names a cluster; a local one on 127.0.0.1 only,
   shut down when ``glovesweep run`` ends); storage and per-trial resources are checked against the nodes
   (``cluster_checks``); ``trainer.prepare.prepare``
   runs once per distinct data key (the trainer's content-hash cache key) as a Ray task, so the arrays land
   in the object store once and trials on every node read them from there;
5. the parent MLflow run is created, the sweep's state is written next to Tune's, and the Tuner runs.

The pieces live in their own modules: ``shared_data`` (sources, Ray, prepared arrays), ``state`` (the sweep's
typed state file), ``trial`` (the Tune trial function), ``progress`` (the console lines). ``glovesweep resume
<sweep dir>`` (``sweeps.run.driver_resume``) restores a sweep whose driver died, through the public functions here.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import errno
import logging
import os
import pathlib
import shutil
import sys
import time
from typing import Any, Callable

from ray import tune

from sweeps.checks import cluster_checks
from sweeps.run import identity as identity_module
from sweeps.run import merging
from sweeps.tracking import names
from sweeps.tracking import outbox
from sweeps.run import parent_run
from sweeps.checks import preflight
from sweeps.checks import resources_check
from sweeps.run import progress
from sweeps.run import shared_data
from sweeps import spec as spec_module
from sweeps import storage
from sweeps.run import state as state_module
from sweeps.tracking import mlflow_runs
from sweeps.run import searcher as searcher_module
from sweeps.run import seed_group
from sweeps.run import trial as trial_module

logger = logging.getLogger(__name__)

CHECKPOINTS_TO_KEEP = 2


@dataclasses.dataclass
class SweepResult:
    """What a finished (or interrupted) sweep left behind."""

    sweep_dir: str
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    total: int
    done: int
    failed: int
    seconds: float
    prepare_seconds: float = 0.0
    data_checksums: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.done == self.total


# --------------------------------------------------------------------------------------------- command line
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sweep_file", nargs="?", help="A sweep file, e.g. sweeps/quick.yaml.")
    parser.add_argument("--smoke-test", action="store_true",
                        help="Apply the file's 'smoke' overrides (tiny data, few epochs, one seed).")
    add_runtime_arguments(parser)
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow tracking URI overriding the file's mlflow.tracking_uri "
                             "(sqlite:///... or http://...).")
    parser.add_argument("--storage-path", default=None, help="Ray storage path overriding the file's storage_path.")
    parser.add_argument("--no-report", action="store_true",
                        help="Do not write the report (and the answer on the parent run) when the sweep ends.")
    # Set by 'glovesweep submit' for the sweep's Ray job (sweeps.run.job_entry); not for use by hand.
    parser.add_argument("--sweep-from-env", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--parent-run-id", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--experiment-name", default=None, help=argparse.SUPPRESS)


def add_runtime_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``run`` and ``resume``: where data lives and which Ray to use."""
    parser.add_argument("--data-dir", default=None,
                        help="Data home holding the archives (default: $GLOVESWEEP_DATA or ~/glovesweep_data).")
    parser.add_argument("--cache-dir", default=None,
                        help="Preprocessing cache (default: $GLOVESWEEP_CACHE or ~/.cache/glovesweep).")
    parser.add_argument("--no-download", action="store_true",
                        help="Never download; a missing archive or GloVe file is an error.")
    parser.add_argument("--address", default=None,
                        help="Ray cluster address (default: $RAY_ADDRESS, else start Ray on this machine).")
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray (default: all cores).")
    parser.add_argument("--dashboard", action="store_true", help="Start Ray's dashboard with a local Ray.")


def main(args: argparse.Namespace) -> int:
    if not args.sweep_file:
        raise ValueError("give a sweep file, e.g. glovesweep run sweeps/quick.yaml")
    spec = spec_module.load_sweep(args.sweep_file, smoke_test=args.smoke_test)
    overrides = {}
    if args.tracking_uri:
        overrides["tracking_uri"] = spec_module.resolve_tracking_uri(args.tracking_uri, pathlib.Path.cwd())
    if args.storage_path:
        overrides["storage_path"] = spec_module.resolve_storage_path(args.storage_path, pathlib.Path.cwd())
    spec = spec.replace(**overrides)
    with shared_data.ray_stopped_after():
        result = run_sweep(spec, **runtime_options(args))
        parent_run.conclude(spec, result, data_checksums=result.data_checksums, write_report=not args.no_report)
    return 0 if result.ok else 1


def runtime_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "data_home": str(pathlib.Path(args.data_dir).resolve()) if args.data_dir else None,
        "cache_dir": str(pathlib.Path(args.cache_dir).resolve()) if args.cache_dir else None,
        "download_if_missing": not args.no_download,
        "address": args.address,
        "num_cpus": args.num_cpus,
        "include_dashboard": args.dashboard,
    }


# --------------------------------------------------------------------------------------------- the sweep
def run_sweep(
    spec: spec_module.SweepSpec,
    *,
    data_home: str | None = None,
    cache_dir: str | None = None,
    download_if_missing: bool = True,
    address: str | None = None,
    num_cpus: int | None = None,
    include_dashboard: bool = False,
    experiment_name: str | None = None,
    parent_run_id: str | None = None,
    check_resources: bool = True,
) -> SweepResult:
    """Run a validated sweep to the end; every trial is logged to MLflow under one parent run.

    Parameters
    ----------
    spec : SweepSpec
        From ``sweeps.spec.build.load_sweep``.
    data_home, cache_dir : str, optional
        Absolute folders; default ``$GLOVESWEEP_DATA`` / ``$GLOVESWEEP_CACHE`` (``trainer.paths``).
    address : str, optional
        A Ray cluster; default ``$RAY_ADDRESS``, else a Ray started on this machine (or the one this
        process already joined).
    experiment_name : str, optional
        Folder name under ``spec.storage_path``; default ``<name>-<UTC timestamp>``.
    parent_run_id : str, optional
        A parent run created before (``glovesweep submit``); default: a new one.
    check_resources : bool
        Whether to check that some node or node type holds one trial; a submitted sweep's job checked already.

    Raises
    ------
    ValueError, OSError
        Before any trial starts: bad sweep, unreachable MLflow, missing data or GloVe.
    """
    started = time.perf_counter()
    preflight.check_store_writable(spec.tracking_uri)
    preflight.check_storage_path(spec.storage_path)
    outbox.driver_client_settings()
    mlflow_runs.check_reachable(spec.tracking_uri)
    sources = shared_data.resolve_sources(spec, data_home=data_home, cache_dir=cache_dir,
                                          download_if_missing=download_if_missing)
    shared_data.start_ray(address=address, num_cpus=num_cpus, include_dashboard=include_dashboard)
    # On several nodes, Tune's storage must be shared: refuse a local folder before any trial starts.
    cluster_checks.check_cluster_storage(spec.storage_path)
    if check_resources:
        resources_check.check_trial_resources(spec)
    # Only a sweep that passed every check gets an experiment: a refused one leaves MLflow as it was.
    experiment_id = mlflow_runs.ensure_experiment(spec.tracking_uri, spec.experiment)
    commit, dirty = mlflow_runs.git_commit()
    shared = shared_data.prepare_shared_data(spec, sources, data_home=data_home, cache_dir=cache_dir,
                                             download_if_missing=download_if_missing)

    name = experiment_name or f"{spec.name}{'-smoke' if spec.smoke_test else ''}-" \
                              f"{datetime.datetime.now(datetime.timezone.utc):%Y%m%d-%H%M%S}"
    sweep_dir = storage.join(spec.storage_path, name)
    tags = {names.GIT_COMMIT_TAG: commit, names.GIT_DIRTY_TAG: str(dirty).lower(),
            names.VERSIONS_TAG: mlflow_runs.package_versions(), names.SWEEP_DIR_TAG: sweep_dir,
            names.SWEEP_FILE_TAG: spec.source_path}
    if parent_run_id:
        # 'glovesweep submit' created the parent run before the job started.
        mlflow_runs.set_run_tags(spec.tracking_uri, parent_run_id, tags)
        mlflow_runs.log_to_run(spec.tracking_uri, parent_run_id, params=parent_run.parent_params(spec))
    else:
        parent_run_id = mlflow_runs.start_parent_run(spec.tracking_uri, experiment_id, spec=spec, tags=tags,
                                                  params=parent_run.parent_params(spec))
    state = state_module.SweepState(
        source=identity_module.SweepSource(sweep_text=spec.source_text, source_path=spec.source_path,
                                           base_dir=str(pathlib.Path.cwd()), smoke_test=spec.smoke_test),
        identity=identity_module.SweepIdentity(tracking_uri=spec.tracking_uri, experiment_id=experiment_id,
                                               parent_run_id=parent_run_id, storage_path=spec.storage_path,
                                               experiment_name=name),
        git_commit=commit, data_home=data_home, cache_dir=cache_dir, download_if_missing=download_if_missing)
    total = spec.total_trials
    networks = len(spec.cells()) * len(spec.seeds)
    if spec.searched:
        side_by_side = f" of {spec.seeds_side_by_side} seeds each" if spec.seeds_side_by_side > 1 else ""
        print(f"glovesweep: search {spec.name!r}: {spec.search['mode']} over {', '.join(spec.space)}, up to {total} "
              f"trials{side_by_side}{searcher_module.budget_text(spec)}, {spec.objective['metric']} "
              f"({spec.objective['mode']}{', the mean over the seeds' if side_by_side else ''}), epochs "
              f"{spec.epochs} -> {sweep_dir}", flush=True)
    else:
        print(f"glovesweep: sweep {spec.name!r}: {total} trials ({len(spec.cells())} cells x {len(spec.seeds)} seeds"
              f"{f' + {total - networks} baselines' if spec.baselines else ''}, epochs {spec.epochs}) -> {sweep_dir}",
              flush=True)
    print(f"glovesweep: MLflow {spec.tracking_uri} experiment {spec.experiment!r}, parent run {parent_run_id}",
          flush=True)

    plan = merging.plan_trials(spec, shared.digests)
    if plan.shares:
        print(f"glovesweep: {len(plan.shares)} trial(s) would train identically to another and share its result: "
              + "; ".join(f"{member.label} seed={member.seed} = {primary.label}" for member, primary in plan.merged),
              flush=True)

    def make_tuner() -> tune.Tuner:
        state_module.write_state(state)
        tune_config, param_space = searcher_module.tune_config_and_space(spec, trials=plan.train)
        trainable = seed_group.make_trainable(trial_context(spec, state, shared))
        return tune.Tuner(trainable, param_space=param_space, tune_config=tune_config,
                          run_config=run_config(spec, state, name=name, storage_path=spec.storage_path))

    result = fit_and_finish(make_tuner, state, started=started,
                            trial_keys=None if spec.searched else [trial.key for trial in spec.trials()],
                            after_fit=lambda: record_shared(spec, state, plan))
    return dataclasses.replace(result, prepare_seconds=shared.seconds, data_checksums=sources.checksums())


def run_config(spec: spec_module.SweepSpec, state: state_module.SweepState, *, name: str,
               storage_path: str) -> tune.RunConfig:
    """Tune's run settings: where it writes, retries from the last epoch, kept checkpoints, our progress lines."""
    quiet_tune_output()
    return tune.RunConfig(
        name=name,
        storage_path=storage_path,
        failure_config=tune.FailureConfig(max_failures=spec.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=CHECKPOINTS_TO_KEEP),
        callbacks=[progress.SweepCallback(state.identity.tracking_uri, state.identity.experiment_id,
                                          state.identity.parent_run_id,
                                          objective=spec.main_trainer.objective.name)],
        verbose=0,
    )


def record_shared(spec: spec_module.SweepSpec, state: state_module.SweepState, plan: merging.Plan) -> int:
    """MLflow runs for the trials that shared another's result (after that one finished)."""
    identity = state.identity
    return merging.record_shared(identity.tracking_uri, identity.experiment_id, identity.parent_run_id, spec, plan,
                                 trial_params=trial_module.trial_params)


def trial_context(spec: spec_module.SweepSpec, state: state_module.SweepState,
                  shared: shared_data.SharedData) -> trial_module.TrialContext:
    """What every trial of the sweep shares: the spec, the prepared data and the sweep's state."""
    return trial_module.TrialContext(spec=spec, data=shared.data, data_keys=shared.keys, state=state)


def quiet_tune_output() -> None:
    """Tune's own tables and hints off: ``SweepCallback`` prints one line per event instead."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # One progress line per failed trial says why (progress.error_summary); Tune's traceback per attempt
    # (68-136 lines with colour codes, once per retry) stays in the trial's error file.
    os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")
    # Keeping 2 checkpoints per trial forces a state snapshot every few epochs; that is cheap, not a warning.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")


def fit_and_finish(make_tuner: Callable[[], tune.Tuner], state: state_module.SweepState, *, started: float,
                   trial_keys: list[str] | None, status_if_not_started: str = "FAILED",
                   after_fit: Callable[[], Any] | None = None) -> SweepResult:
    """Build and run the Tuner; end the parent run FINISHED / FAILED / KILLED, no child run left RUNNING.

    Trials are counted from their MLflow child runs (one per trial key; ``trial_keys`` None: a search's, every
    child run), the record every reader uses.
    ``status_if_not_started`` is the parent's status when the Tuner cannot even be built (a resume keeps the
    parent's earlier status then). ``after_fit`` runs before the count (it records merged trials).
    """
    identity = state.identity
    tracking_uri, experiment_id, parent_run_id = identity.tracking_uri, identity.experiment_id, identity.parent_run_id
    sweep_dir = identity.sweep_dir
    try:
        tuner = make_tuner()
    except BaseException:
        close_runs(tracking_uri, experiment_id, parent_run_id, status_if_not_started, sweep_dir=sweep_dir)
        raise
    try:
        results = tuner.fit()
    except BaseException as error:
        close_runs(tracking_uri, experiment_id, parent_run_id, "KILLED", sweep_dir=sweep_dir)
        # A full disk also truncates Tune's own error files, which it then fails to read back (EOFError).
        full = full_disk_message(sweep_dir)
        if full or (isinstance(error, OSError) and error.errno == errno.ENOSPC):
            raise OSError(full.replace("glovesweep: error: ", "") or
                          f"the results folder {sweep_dir} is full ({' '.join(str(error).split())[:120]}); free "
                          f"space there, then: glovesweep resume {sweep_dir}") from None
        print(f"glovesweep: interrupted; continue with: glovesweep resume {sweep_dir}", file=sys.stderr, flush=True)
        raise
    total = len(trial_keys) if trial_keys is not None else len(results)
    try:
        outbox.replay(tracking_uri, experiment_id, sweep_dir)
        if after_fit is not None:
            after_fit()
        statuses = mlflow_runs.trial_statuses(tracking_uri, experiment_id, parent_run_id)
        if trial_keys is None:
            trial_keys = list(statuses)
            total = len(trial_keys)
        done = sum(1 for key in trial_keys if statuses.get(key) == "FINISHED")
        failed = sum(1 for key in trial_keys if statuses.get(key) == "FAILED")
    except Exception as error:  # noqa: BLE001 - the server may be down right now: count from Tune
        if not outbox.unreachable(error):
            raise
        failed = results.num_errors
        done = len(results) - failed - (total - len(results))
    # Tune returns early (unfinished trials) when the sweep was interrupted with Ctrl-C.
    status = "FAILED" if failed else ("FINISHED" if done == total else "KILLED")
    close_runs(tracking_uri, experiment_id, parent_run_id, status, sweep_dir=sweep_dir)
    seconds = time.perf_counter() - started
    print(f"glovesweep: {done}/{total} trials done, {failed} failed in {seconds:.0f} s", flush=True)
    print(f"glovesweep: results in {sweep_dir}", flush=True)
    if status != "FINISHED":
        full = full_disk_message(sweep_dir)
        if full:
            print(full, file=sys.stderr, flush=True)
        print(f"glovesweep: {'retry the failed' if failed else 'finish the missing'} trials with: "
              f"glovesweep resume {sweep_dir}", flush=True)
    return SweepResult(sweep_dir=sweep_dir, tracking_uri=tracking_uri, experiment_id=experiment_id,
                       parent_run_id=parent_run_id, total=total, done=done, failed=failed, seconds=seconds)


def full_disk_message(sweep_dir: str, *, minimum_free: int = 16 << 20) -> str:
    """One line when a local sweep folder's disk has less than ``minimum_free`` bytes left (checkpoints fail)."""
    if "://" in sweep_dir or not os.path.isdir(sweep_dir):
        return ""
    free = shutil.disk_usage(sweep_dir).free
    if free >= minimum_free:
        return ""
    return (f"glovesweep: error: the results folder {sweep_dir} is full ({free // 1024} KB free): trials could not "
            f"save their checkpoints; free space there, then: glovesweep resume {sweep_dir}")


def close_runs(tracking_uri: str, experiment_id: str, parent_run_id: str, parent_status: str, *,
               sweep_dir: str = "") -> None:
    """After the Tuner: a child still RUNNING has no live worker; it ends FAILED (KILLED when interrupted).

    With the tracking server down, the statuses go to the sweep's outbox, applied when it answers again (at
    the end of this sweep or at the next ``resume``), so no run stays RUNNING for good.
    """
    child_status = "KILLED" if parent_status == "KILLED" else "FAILED"
    try:
        for run in mlflow_runs.child_runs(tracking_uri, experiment_id, parent_run_id):
            if run.info.status == "RUNNING":
                mlflow_runs.end_run(tracking_uri, run.info.run_id, child_status)
        mlflow_runs.end_run(tracking_uri, parent_run_id, parent_status)
    except Exception as error:  # noqa: BLE001 - closing runs must not hide the sweep's own outcome
        if sweep_dir and outbox.unreachable(error):
            path = outbox.write(sweep_dir, run_id=parent_run_id, status=parent_status, children_status=child_status)
            print(f"glovesweep: MLflow at {tracking_uri} is unreachable; the runs' final status ({parent_status}) "
                  f"is kept in {path} and applied when it answers (or by: glovesweep resume {sweep_dir})",
                  file=sys.stderr, flush=True)
        else:
            logger.warning("could not close MLflow runs of parent %s: %s", parent_run_id, error)
