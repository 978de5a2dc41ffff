"""``glovesweep run``: a sweep file becomes Ray Tune trials, each logged to MLflow.

Order of work, so that a mistake costs nothing:

1. the sweep file is validated and every trial's ``TrainerConfig`` is built (``sweeps.spec``);
2. the MLflow store is checked (unreachable: ``OSError`` before anything starts);
3. every dataset and GloVe source is resolved (missing: ``OSError``, nothing started);
4. Ray starts (locally unless ``--address``/``RAY_ADDRESS`` names a cluster); ``trainer.prepare.prepare``
   runs once per distinct data key (the trainer's content-hash cache key) as a Ray task, so the arrays land
   in the object store once and trials on every node read them from there;
5. the parent MLflow run is created, the sweep's state is written next to Tune's, and the Tuner runs.

The pieces live in their own modules: ``shared_data`` (sources, Ray, prepared arrays), ``state`` (the sweep's
typed state file), ``trial`` (the Tune trial function), ``progress`` (the console lines). ``glovesweep resume
<sweep dir>`` (``sweeps.driver_resume``) restores a sweep whose driver died, through the public functions here.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import logging
import os
import pathlib
import sys
import time
from typing import Any, Callable

from ray import tune

from sweeps import cluster_checks
from sweeps import progress
from sweeps import shared_data
from sweeps import spec as spec_module
from sweeps import state as state_module
from sweeps import tracking
from sweeps import trial as trial_module

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
    # Set by 'glovesweep submit' for the sweep's Ray job (sweeps.job_entry); not for use by hand.
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
    if args.sweep_from_env:
        from sweeps import job_entry

        return job_entry.run_submitted(args)
    if not args.sweep_file:
        raise ValueError("give a sweep file, e.g. glovesweep run sweeps/quick.yaml")
    spec = spec_module.load_sweep(args.sweep_file, smoke_test=args.smoke_test)
    overrides = {}
    if args.tracking_uri:
        overrides["tracking_uri"] = spec_module.resolve_tracking_uri(args.tracking_uri, pathlib.Path.cwd())
    if args.storage_path:
        overrides["storage_path"] = spec_module.resolve_storage_path(args.storage_path, pathlib.Path.cwd())
    spec = spec.replace(**overrides)
    result = run_sweep(spec, **runtime_options(args))
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
) -> SweepResult:
    """Run a validated sweep to the end; every trial is logged to MLflow under one parent run.

    Parameters
    ----------
    spec : SweepSpec
        From ``sweeps.spec.load_sweep``.
    data_home, cache_dir : str, optional
        Absolute folders; default ``$GLOVESWEEP_DATA`` / ``$GLOVESWEEP_CACHE`` (``trainer.paths``).
    address : str, optional
        A Ray cluster; default ``$RAY_ADDRESS``, else a Ray started on this machine (or the one this
        process already joined).
    experiment_name : str, optional
        Folder name under ``spec.storage_path``; default ``<name>-<UTC timestamp>``.
    parent_run_id : str, optional
        A parent run created before (``glovesweep submit``); default: a new one.

    Raises
    ------
    ValueError, OSError
        Before any trial starts: bad sweep, unreachable MLflow, missing data or GloVe.
    """
    started = time.perf_counter()
    tracking.check_reachable(spec.tracking_uri)
    sources = shared_data.resolve_sources(spec, data_home=data_home, cache_dir=cache_dir,
                                          download_if_missing=download_if_missing)
    experiment_id = tracking.ensure_experiment(spec.tracking_uri, spec.experiment)
    commit, dirty = tracking.git_commit()
    shared_data.start_ray(address=address, num_cpus=num_cpus, include_dashboard=include_dashboard)
    # On several nodes, Tune's storage must be shared: refuse a local folder before any trial starts.
    cluster_checks.check_cluster_storage(spec.storage_path)
    shared = shared_data.prepare_shared_data(spec, sources, data_home=data_home, cache_dir=cache_dir,
                                             download_if_missing=download_if_missing)

    name = experiment_name or f"{spec.name}{'-smoke' if spec.smoke_test else ''}-" \
                              f"{datetime.datetime.now(datetime.timezone.utc):%Y%m%d-%H%M%S}"
    sweep_dir = state_module.join(spec.storage_path, name)
    tags = {"git_commit": commit, "git_dirty": str(dirty).lower(), "versions": tracking.package_versions(),
            "glovesweep.sweep_dir": sweep_dir, "glovesweep.sweep_file": spec.source_path}
    if parent_run_id:
        tracking.set_run_tags(spec.tracking_uri, parent_run_id, tags)
    else:
        parent_run_id = tracking.start_parent_run(spec.tracking_uri, experiment_id, spec=spec, tags=tags)
    state = state_module.SweepState(
        sweep_text=spec.source_text, source_path=spec.source_path, smoke_test=spec.smoke_test,
        base_dir=str(pathlib.Path.cwd()), tracking_uri=spec.tracking_uri, storage_path=spec.storage_path,
        experiment_id=experiment_id, parent_run_id=parent_run_id, git_commit=commit, data_home=data_home,
        cache_dir=cache_dir, download_if_missing=download_if_missing, experiment_name=name)
    total = spec.total_trials
    networks = len(spec.cells()) * len(spec.seeds)
    print(f"glovesweep: sweep {spec.name!r}: {total} trials ({len(spec.cells())} cells x {len(spec.seeds)} seeds"
          f"{f' + {total - networks} baselines' if spec.baselines else ''}, epochs {spec.epochs}) -> {sweep_dir}",
          flush=True)
    print(f"glovesweep: MLflow {spec.tracking_uri} experiment {spec.experiment!r}, parent run {parent_run_id}",
          flush=True)

    def make_tuner() -> tune.Tuner:
        state_module.write_state(state)
        tune_config, param_space = tune_config_and_space(spec)
        run_config = tune.RunConfig(
            name=name,
            storage_path=spec.storage_path,
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=CHECKPOINTS_TO_KEEP),
            callbacks=[progress.SweepCallback(spec.tracking_uri, experiment_id, parent_run_id)],
            verbose=0,
        )
        quiet_tune_output()
        trainable = trial_module.make_trainable(trial_context(spec, state, shared))
        return tune.Tuner(trainable, param_space=param_space, tune_config=tune_config, run_config=run_config)

    result = fit_and_finish(make_tuner, state, started=started, total=total)
    return dataclasses.replace(result, prepare_seconds=shared.seconds)


def trial_context(spec: spec_module.SweepSpec, state: state_module.SweepState,
                  shared: shared_data.SharedData) -> trial_module.TrialContext:
    """What every trial of the sweep shares: the spec, the prepared data and the MLflow ids."""
    return trial_module.TrialContext(
        spec=spec, data=shared.data, data_keys=shared.keys, tracking_uri=state.tracking_uri,
        experiment_id=state.experiment_id, parent_run_id=state.parent_run_id, git_commit=state.git_commit,
        data_home=state.data_home, cache_dir=state.cache_dir, download_if_missing=state.download_if_missing)


def quiet_tune_output() -> None:
    """Tune's own tables and hints off: ``SweepCallback`` prints one line per event instead."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Keeping 2 checkpoints per trial forces a state snapshot every few epochs; that is cheap, not a warning.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")


def fit_and_finish(make_tuner: Callable[[], tune.Tuner], state: state_module.SweepState, *, started: float,
                   total: int) -> SweepResult:
    """Build and run the Tuner; end the parent run FINISHED / FAILED / KILLED, no child run left RUNNING."""
    tracking_uri, experiment_id, parent_run_id = state.tracking_uri, state.experiment_id, state.parent_run_id
    sweep_dir = state.sweep_dir
    try:
        tuner = make_tuner()
    except BaseException:
        close_runs(tracking_uri, experiment_id, parent_run_id, "FAILED")
        raise
    try:
        results = tuner.fit()
    except BaseException:
        close_runs(tracking_uri, experiment_id, parent_run_id, "KILLED")
        print(f"glovesweep: interrupted; continue with: glovesweep resume {sweep_dir}", file=sys.stderr, flush=True)
        raise
    statuses = [trial.status for trial in tune.ExperimentAnalysis(results.experiment_path).trials]
    failed, done = statuses.count("ERROR"), statuses.count("TERMINATED")
    # Tune returns early (unfinished trials) when the sweep was interrupted with Ctrl-C.
    status = "FAILED" if failed else ("FINISHED" if done >= total else "KILLED")
    close_runs(tracking_uri, experiment_id, parent_run_id, status)
    seconds = time.perf_counter() - started
    print(f"glovesweep: {done}/{total} trials done, {failed} failed in {seconds:.0f} s", flush=True)
    print(f"glovesweep: results in {sweep_dir}", flush=True)
    print(f"glovesweep: open the MLflow UI with: glovesweep ui --tracking-uri {tracking_uri}", flush=True)
    if status != "FINISHED":
        print(f"glovesweep: {'retry the failed' if failed else 'finish the missing'} trials with: "
              f"glovesweep resume {sweep_dir}", flush=True)
    return SweepResult(sweep_dir=sweep_dir, tracking_uri=tracking_uri, experiment_id=experiment_id,
                       parent_run_id=parent_run_id, total=total, done=done, failed=failed, seconds=seconds)


def close_runs(tracking_uri: str, experiment_id: str, parent_run_id: str, parent_status: str) -> None:
    """After the Tuner: a child still RUNNING has no live worker; it ends FAILED (KILLED when interrupted)."""
    child_status = "KILLED" if parent_status == "KILLED" else "FAILED"
    try:
        for run in tracking.child_runs(tracking_uri, experiment_id, parent_run_id):
            if run.info.status == "RUNNING":
                tracking.end_run(tracking_uri, run.info.run_id, child_status)
        tracking.end_run(tracking_uri, parent_run_id, parent_status)
    except Exception as error:  # noqa: BLE001 - closing runs must not hide the sweep's own outcome
        logger.warning("could not close MLflow runs of parent %s: %s", parent_run_id, error)


def tune_config_and_space(spec: spec_module.SweepSpec) -> tuple[tune.TuneConfig, dict[str, Any]]:
    # Reused workers keep TensorFlow imported and initialised: a trial starts in about a second, not ten.
    common = {"max_concurrent_trials": spec.max_concurrent_trials or None,
              "trial_dirname_creator": trial_dirname, "reuse_actors": True}
    mode = spec.search["mode"]
    if mode == "grid":
        space = {"trial": tune.grid_search([trial.as_dict() for trial in spec.trials()])}
        return tune.TuneConfig(num_samples=1, **common), space
    space = {"cell": {name: tune.choice(values) for name, values in spec.factors.items()},
             "seed": tune.choice(spec.seeds)}
    if mode == "random":
        return tune.TuneConfig(num_samples=spec.search["num_samples"], **common), space
    from ray.tune import schedulers

    scheduler = schedulers.ASHAScheduler(time_attr="training_iteration", max_t=spec.max_epochs,
                                         grace_period=spec.search["grace_period"])
    return tune.TuneConfig(num_samples=spec.search["num_samples"], scheduler=scheduler, metric="val_acc",
                           mode="max", **common), space


def trial_dirname(trial) -> str:
    """Short, filesystem-safe trial folder names (Tune's default embeds the whole config)."""
    return f"trial_{trial.trial_id}"
