"""``glovesweep run``: a sweep file becomes Ray Tune trials, each logged to MLflow.

Order of work, so that a mistake costs nothing:

1. the sweep file is validated and every trial's ``TrainerConfig`` is built (``sweeps.spec.build``);
2. Ray starts (locally unless ``--address``/``RAY_ADDRESS`` names a cluster; a local one on 127.0.0.1 only,
   shut down when ``glovesweep run`` ends) while a thread checks the MLflow store (unreachable, or a sqlite file or
   folder not writable: ``OSError``) and resolves every dataset and GloVe source (missing: ``OSError``);
3. storage and per-trial resources are checked against the nodes (``cluster_checks``, ``resources_check``);
4. ``trainer.prepare.prepare`` runs once per distinct data key (the trainer's content-hash cache key) as a Ray
   task, which also refuses a truncated archive, wrong groups or binary posts, so the arrays land in the object
   store once and trials on every node read them from there (``shared_data.start_and_prepare``; Ray's start-up
   lines are held until 2-4 passed, so a refused sweep prints one line);
5. the parent MLflow run is created, the sweep's state is written next to Tune's, and the Tuner runs;
6. a search's stages run after it, each a Tune run of its own (``sweeps.run.confirm``).

The pieces live in their own modules: ``shared_data`` (sources, Ray, prepared arrays), ``state`` (the sweep's
typed state file), ``trial`` (the Tune trial function), ``fitting`` (one Tune run to the runs' final status),
``progress`` (the console lines). ``glovesweep resume
<sweep dir>`` (``sweeps.run.driver_resume``) restores a sweep whose driver died, through the public functions here.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import logging
import pathlib
import time
from typing import Any

from ray import tune

from sweeps.run import confirm
from sweeps.run import fitting
from sweeps.run import identity as identity_module
from sweeps.run import merging
from sweeps.tracking import names
from sweeps.tracking import outbox
from sweeps.run import parent_run
from sweeps.checks import preflight
from sweeps.run import shared_data
from sweeps import spec as spec_module
from sweeps import storage
from sweeps.run import state as state_module
from sweeps.tracking import mlflow_runs
from sweeps.run import searcher as searcher_module
from sweeps.run import seed_group
from sweeps.run import trial as trial_module

logger = logging.getLogger(__name__)


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
) -> fitting.SweepResult:
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

    def check_inputs() -> shared_data.Sources:
        mlflow_runs.check_reachable(spec.tracking_uri)
        return shared_data.resolve_sources(spec, data_home=data_home, cache_dir=cache_dir,
                                           download_if_missing=download_if_missing)

    sources, shared = shared_data.start_and_prepare(
        spec, check_inputs, check_resources=check_resources, data_home=data_home, cache_dir=cache_dir,
        download_if_missing=download_if_missing,
        ray_options={"address": address, "num_cpus": num_cpus, "include_dashboard": include_dashboard})
    # Only a sweep that passed every check gets an experiment: a refused one leaves MLflow as it was.
    experiment_id = mlflow_runs.ensure_experiment(spec.tracking_uri, spec.experiment)
    commit, dirty = mlflow_runs.git_commit()

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
              f"{spec.epochs}{confirm.stages_text(spec)} -> {sweep_dir}", flush=True)
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
        trainable = seed_group.make_trainable(fitting.trial_context(spec, state, shared))
        return tune.Tuner(trainable, param_space=param_space, tune_config=tune_config,
                          run_config=fitting.run_config(spec, state, name=name, storage_path=spec.storage_path))

    result = fitting.fit_and_finish(make_tuner, state, started=started,
                            trial_keys=None if spec.searched else [trial.key for trial in spec.trials()],
                            after_fit=lambda: record_shared(spec, state, plan))
    result = confirm.run_stages(spec, state, result, started=started, sources=sources)
    return dataclasses.replace(result, prepare_seconds=shared.seconds, data_checksums=sources.checksums())


def record_shared(spec: spec_module.SweepSpec, state: state_module.SweepState, plan: merging.Plan) -> int:
    """MLflow runs for the trials that shared another's result (after that one finished)."""
    identity = state.identity
    return merging.record_shared(identity.tracking_uri, identity.experiment_id, identity.parent_run_id, spec, plan,
                                 trial_params=trial_module.trial_params)

