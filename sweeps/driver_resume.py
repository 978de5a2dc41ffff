"""``glovesweep resume <sweep dir>``: continue a sweep whose driver died, finishing only what is missing.

The sweep folder (``<storage_path>/<name>-<timestamp>``, printed by ``glovesweep run``) holds Tune's
experiment state and ``glovesweep_sweep.json`` (the sweep file's text, the MLflow parent run, the data
options). Resume rebuilds the same trial function with freshly prepared shared data and calls
``Tuner.restore(..., resume_errored=True)``: finished trials stay finished, unfinished and errored ones
continue from their last epoch checkpoint, and each continues its own MLflow child run (found by trial id).
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import time
from typing import Any

from ray import tune

from sweeps import cluster_checks
from sweeps import driver
from sweeps import shared_data
from sweeps import state as state_module
from sweeps import tracking
from sweeps import trial as trial_module


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sweep_dir", help="The sweep folder 'glovesweep run' printed (<storage_path>/<name>-<time>).")
    driver.add_runtime_arguments(parser)


def main(args: argparse.Namespace) -> int:
    options = driver.runtime_options(args)
    if not args.no_download:
        options.pop("download_if_missing")  # Keep what the original run chose.
    for key in ("data_home", "cache_dir"):
        if options[key] is None:
            options.pop(key)  # Keep the original run's folders unless given again.
    result = resume_sweep(args.sweep_dir, **options)
    return 0 if result.ok else 1


def resume_sweep(sweep_dir: str, *, address: str | None = None, num_cpus: int | None = None,
                 include_dashboard: bool = False, **overrides: Any) -> driver.SweepResult:
    """Restore and finish a sweep; ``overrides`` may replace ``data_home``, ``cache_dir``, ``download_if_missing``.

    Raises
    ------
    OSError
        ``sweep_dir`` is not a sweep folder, or MLflow / data sources are unreachable.
    """
    started = time.perf_counter()
    if "://" not in sweep_dir:
        sweep_dir = str(pathlib.Path(sweep_dir).expanduser().resolve())
    state = state_module.read_state(sweep_dir)
    # Tune's state lives where the folder is now, even when it was moved since the original run.
    storage_path, experiment_name = sweep_dir.rstrip("/").rsplit("/", 1)
    state = state.replace(storage_path=storage_path, experiment_name=experiment_name,
                          **{key: value for key, value in overrides.items()
                             if key in ("data_home", "cache_dir", "download_if_missing")})
    if not tune.Tuner.can_restore(sweep_dir):
        raise OSError(f"{sweep_dir} has no Ray Tune experiment state to restore (the driver died before the first "
                      f"trial started?); run the sweep again with: glovesweep run {state.source_path}")
    spec = state.spec()

    tracking.check_reachable(spec.tracking_uri)
    sources = shared_data.resolve_sources(spec, data_home=state.data_home, cache_dir=state.cache_dir,
                                          download_if_missing=state.download_if_missing)
    shared_data.start_ray(address=address, num_cpus=num_cpus, include_dashboard=include_dashboard)
    cluster_checks.check_cluster_storage(spec.storage_path)
    shared = shared_data.prepare_shared_data(spec, sources, data_home=state.data_home, cache_dir=state.cache_dir,
                                             download_if_missing=state.download_if_missing)
    tracking.reopen_run(spec.tracking_uri, state.parent_run_id)
    total = spec.total_trials
    print(f"glovesweep: resuming sweep {spec.name!r} ({total} trials) from {sweep_dir}", flush=True)

    def make_tuner() -> tune.Tuner:
        driver.quiet_tune_output()
        trainable = trial_module.make_trainable(driver.trial_context(spec, state, shared))
        # Finished trials stay finished; unfinished and errored ones continue from their last checkpoint.
        return tune.Tuner.restore(sweep_dir, trainable=trainable, resume_unfinished=True, resume_errored=True)

    result = driver.fit_and_finish(make_tuner, state, started=started, total=total)
    return dataclasses.replace(result, prepare_seconds=shared.seconds)
