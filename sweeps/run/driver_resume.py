"""``glovesweep resume <sweep dir>``: continue a sweep whose driver died, finishing only what is missing.

The sweep folder (``<storage_path>/<name>-<timestamp>``, printed by ``glovesweep run``) holds the typed
``glovesweep_sweep.json`` (the sweep file's text, the MLflow parent run, the data options). Resume never lets
Ray unpickle anything from the folder (``sweeps.run.checkpoints`` says why): it recomputes the trial list from
the sweep file, reads which trials finished from their MLflow child runs, and starts a fresh Tune run (a
``resume-<time>`` folder inside the sweep folder) of the rest, each handed its own earlier checkpoints
(JSON and a NumPy archive read with ``allow_pickle=False``) and continuing its own child run (found by its
trial key).
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import time
from typing import Any

from ray import tune

from sweeps.run import checkpoints
from sweeps.run import confirm
from sweeps.run import driver
from sweeps.run import fitting
from sweeps.run import merging
from sweeps.tracking import outbox
from sweeps.run import parent_run
from sweeps.checks import preflight
from sweeps.run import shared_data
from sweeps.run import state as state_module
from sweeps.tracking import mlflow_runs
from sweeps.run import search_history
from sweeps.run import searcher as searcher_module
from sweeps.run import seed_group


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sweep_dir", help="The sweep folder 'glovesweep run' printed (<storage_path>/<name>-<time>).")
    driver.add_runtime_arguments(parser)
    parser.add_argument("--no-report", action="store_true", help="Do not write the report when the sweep ends.")


def main(args: argparse.Namespace) -> int:
    options = driver.runtime_options(args)
    if not args.no_download:
        options.pop("download_if_missing")  # Keep what the original run chose.
    for key in ("data_home", "cache_dir"):
        if options[key] is None:
            options.pop(key)  # Keep the original run's folders unless given again.
    with shared_data.ray_stopped_after():
        result = resume_sweep(args.sweep_dir, **options)
        spec = state_module.read_state(args.sweep_dir if "://" in args.sweep_dir
                                       else str(pathlib.Path(args.sweep_dir).expanduser().resolve())).spec()
        parent_run.conclude(spec, result, data_checksums=result.data_checksums, write_report=not args.no_report)
    return 0 if result.ok else 1


def resume_sweep(sweep_dir: str, *, address: str | None = None, num_cpus: int | None = None,
                 include_dashboard: bool = False, **overrides: Any) -> fitting.SweepResult:
    """Finish a sweep: its trials (``resume_trials``), then the stages of a search that it still lacks
    (``sweeps.run.confirm``); ``overrides`` may replace ``data_home``, ``cache_dir``, ``download_if_missing``.

    Raises
    ------
    OSError
        ``sweep_dir`` is not a sweep folder, or MLflow / data sources are unreachable; the parent run's
        status is left as it was.
    """
    started = time.perf_counter()
    runtime = {"address": address, "num_cpus": num_cpus, "include_dashboard": include_dashboard}
    result = resume_trials(sweep_dir, **runtime, **overrides)
    state = resumed_state(result.sweep_dir, overrides)
    return confirm.run_stages(state.spec(), state, result, started=started, **runtime)


def resumed_state(sweep_dir: str, overrides: dict[str, Any]) -> state_module.SweepState:
    """The sweep's state, its folder where it is now (even when moved since the original run), with the data
    options given again."""
    state = state_module.read_state(sweep_dir)
    return state.replace(identity=state.identity.moved_to(sweep_dir),
                         **{key: value for key, value in overrides.items()
                            if key in ("data_home", "cache_dir", "download_if_missing")})


def resume_trials(sweep_dir: str, *, address: str | None = None, num_cpus: int | None = None,
                  include_dashboard: bool = False, **overrides: Any) -> fitting.SweepResult:
    """Finish a sweep's trials (a grid's, or a search's up to its budget); see ``resume_sweep``."""
    started = time.perf_counter()
    if "://" not in sweep_dir:
        sweep_dir = str(pathlib.Path(sweep_dir).expanduser().resolve())
    state = resumed_state(sweep_dir, overrides)
    # A full results disk is named before anything is written there (Tune's folder, checkpoints, the outbox).
    full = fitting.full_disk_message(sweep_dir)
    if full:
        raise OSError(full.replace("glovesweep: error: ", "").replace("trials could not save their checkpoints",
                                                                        "the resumed trials could not save theirs"))
    spec = state.spec()
    identity = state.identity
    preflight.check_store_writable(spec.tracking_uri)
    outbox.driver_client_settings()
    mlflow_runs.check_reachable(spec.tracking_uri)
    # Statuses and metric values kept while the server was down land first.
    outbox.replay(spec.tracking_uri, identity.experiment_id, sweep_dir)
    trials = spec.trials()
    statuses = mlflow_runs.trial_statuses(spec.tracking_uri, identity.experiment_id, identity.parent_run_id)
    missing = [trial for trial in trials if statuses.get(trial.key) != "FINISHED"]
    previous_status = mlflow_runs.run_status(spec.tracking_uri, identity.parent_run_id)
    searcher = None
    if spec.searched:
        # A search: a fresh searcher told what ran before (MLflow), its unfinished trials re-created first.
        past = search_history.past_trials(spec, spec.tracking_uri, identity.experiment_id, identity.parent_run_id)
        trials = [item.trial for item in past]
        missing = [item.trial for item in past if not item.finished]
    # Only the unfinished trials' checkpoints are read.
    earlier = checkpoints.find_checkpoints(sweep_dir, keys={trial.key for trial in missing})
    if spec.searched:
        searcher = searcher_module.TrialSearcher(spec, past, resume_from=earlier)
        if not missing and (searcher.remaining == 0 or searcher.budget_spent()):
            searcher = None
    if not missing and searcher is None:
        print(f"glovesweep: every trial of sweep {spec.name!r} already finished ({len(trials)}/{len(trials)}); "
              f"nothing to resume", flush=True)
        if previous_status != "FINISHED":
            mlflow_runs.end_run(spec.tracking_uri, identity.parent_run_id, "FINISHED")
        return fitting.SweepResult(sweep_dir=sweep_dir, tracking_uri=spec.tracking_uri,
                                  experiment_id=identity.experiment_id, parent_run_id=identity.parent_run_id,
                                  total=len(trials), done=len(trials), failed=0,
                                  seconds=time.perf_counter() - started)
    options = {"data_home": state.data_home, "cache_dir": state.cache_dir,
               "download_if_missing": state.download_if_missing}
    sources, shared = shared_data.start_and_prepare(
        spec, lambda: shared_data.resolve_sources(spec, **options),
        ray_options={"address": address, "num_cpus": num_cpus, "include_dashboard": include_dashboard}, **options)
    plan = merging.plan_trials(spec, shared.digests)
    to_train = [trial for trial in plan.train if trial in missing] if searcher is None else missing
    if searcher is not None:
        print(f"glovesweep: resuming search {spec.name!r}: {len(trials) - len(missing)} trials finished, "
              f"{len(missing)} re-created ({sum(1 for trial in missing if trial.key in earlier)} from a checkpoint), "
              f"up to {searcher.remaining - len(missing)} new in {sweep_dir}", flush=True)
    else:
        print(f"glovesweep: resuming sweep {spec.name!r}: {len(missing)} of {len(trials)} trials to finish, "
              f"{len(to_train)} to train ({sum(1 for trial in to_train if trial.key in earlier)} from a checkpoint) "
              f"in {sweep_dir}", flush=True)

    if not to_train and searcher is None:
        # Every missing trial shares a finished one's result: record them, nothing to train.
        if not driver.record_shared(spec, state, plan):
            raise OSError(f"{sweep_dir}: {len(missing)} trial(s) share results that MLflow does not hold; run the "
                          f"sweep again with: glovesweep run {state.source.source_path}")
        return resume_trials(sweep_dir, address=address, num_cpus=num_cpus, include_dashboard=include_dashboard,
                             **overrides)

    def make_tuner() -> tune.Tuner:
        mlflow_runs.reopen_run(spec.tracking_uri, identity.parent_run_id)
        tune_config, param_space = searcher_module.tune_config_and_space(spec, resume_from=earlier, trials=to_train,
                                                                        searcher=searcher)
        run_config = fitting.run_config(spec, state, name=f"resume-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}",
                                       storage_path=sweep_dir)
        trainable = seed_group.make_trainable(fitting.trial_context(spec, state, shared))
        return tune.Tuner(trainable, param_space=param_space, tune_config=tune_config, run_config=run_config)

    result = fitting.fit_and_finish(make_tuner, state, started=started,
                                   trial_keys=None if spec.searched else [trial.key for trial in trials],
                                   status_if_not_started=previous_status,
                                   after_fit=lambda: driver.record_shared(spec, state, plan))
    return dataclasses.replace(result, prepare_seconds=shared.seconds, data_checksums=sources.checksums())
