"""A search's stages after it (``sweeps.spec.stages``): ``confirm`` retrains its best configurations on fresh seeds,
``final`` retrains the confirmed one with the final settings (the Keras network on bydate: every training file,
scored on the official test set).

Each stage is one more Tune run of the same trial function in the sweep folder (``confirm-<time>``,
``final-<time>``), a grid over its trials, so retries, checkpoints and MLflow logging are the search's own. The
stages are drawn from MLflow, never from memory: the search's finished trials ranked by their objective (ties: the
smaller trial key), the confirm runs' means; every stage trial has a stable key (``Trial.stage`` is part of it)
and a child run tagged ``glovesweep.stage`` and ``glovesweep.config_id``. So ``resume`` after a killed driver
runs this again and trains only the stage trials whose runs did not finish. The stages start once every search
trial finished; the search's budget counts the search alone (the stages' cost is fixed by the file: ``top x
seeds + final seeds`` trials, which ``glovesweep plan`` counts).
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

from ray import tune

from sweeps import spec as spec_module
from sweeps.run import checkpoints
from sweeps.run import fitting
from sweeps.run import search_history
from sweeps.run import searcher as searcher_module
from sweeps.run import shared_data
from sweeps.run import state as state_module
from sweeps.run import trial as trial_module
from sweeps.spec import stages
from sweeps.tracking import mlflow_runs
from sweeps.tracking import names


def stages_text(spec: spec_module.SweepSpec) -> str:
    """``, then confirm the top 2 on 2 fresh seeds, final: validation=auto on 2 seeds`` (empty: no stages)."""
    parts = []
    if spec.confirm:
        parts.append(f"confirm the top {spec.confirm.top} on {len(spec.confirm.seeds)} fresh seeds")
    if spec.final:
        parts.append(f"final: {spec_module.cell_label(spec.final.settings)} on {len(spec.final.seeds)} seeds")
    return f", then {', '.join(parts)}" if parts else ""


def ranked(spec: spec_module.SweepSpec, past: list[search_history.PastTrial]) -> list[search_history.PastTrial]:
    """The search's finished trials with a value, best first by its objective (ties: the smaller trial key)."""
    done = [item for item in past if item.finished and item.value is not None and math.isfinite(item.value)]
    order = stages.best_first([item.value for item in done], [item.trial.key for item in done],
                              spec.objective["mode"])
    return [done[position] for position in order]


def stage_trial(spec: spec_module.SweepSpec, cell: dict[str, Any], seed: int, stage: str) -> spec_module.Trial:
    return spec_module.Trial(kind=spec.main_trainer.kind, cell=dict(cell), seed=seed, stage=stage)


def confirm_trials(spec: spec_module.SweepSpec, best: list[search_history.PastTrial]) -> list[spec_module.Trial]:
    """Each of the ``top`` best configurations at each fresh seed, seed-major (every configuration at the first
    seed before any at the second)."""
    chosen = best[:spec.confirm.top]
    return [stage_trial(spec, item.trial.cell, seed, stages.CONFIRM) for seed in spec.confirm.seeds for item in chosen]


def stage_values(spec: spec_module.SweepSpec, identity, stage: str) -> dict[str, list[float]]:
    """Configuration key -> the objective after the last epoch of each FINISHED child run of ``stage``: its summary
    ``<metric>_at_<E>`` (rounded as the report reads it, so both pick the same best), else its last value."""
    metric = spec.objective["metric"]
    values: dict[str, list[float]] = {}
    for run in mlflow_runs.child_runs(identity.tracking_uri, identity.experiment_id, identity.parent_run_id):
        tags = run.data.tags
        if tags.get(names.STAGE_TAG) == stage and run.info.status == "FINISHED":
            value = run.data.metrics.get(names.metric_at(metric, spec.max_epochs), run.data.metrics.get(metric))
            values.setdefault(tags.get(names.CONFIG_ID_TAG, ""), []).append(
                math.nan if value is None else float(value))
    return values


def chosen_cell(spec: spec_module.SweepSpec, identity, best: list[search_history.PastTrial]) -> dict[str, Any]:
    """The configuration the final stage retrains: the best confirmed mean (ties: the smaller configuration key),
    else (no confirm stage) the search's best trial."""
    if not spec.confirm:
        return best[0].trial.cell
    chosen = best[:spec.confirm.top]
    values = stage_values(spec, identity, stages.CONFIRM)
    means = [float(sum(found) / len(found)) if (found := values.get(item.trial.config_key)) else math.nan
             for item in chosen]
    order = stages.best_first(means, [item.trial.config_key for item in chosen], spec.objective["mode"])
    return chosen[order[0]].trial.cell


def run_stages(spec: spec_module.SweepSpec, state: state_module.SweepState, result: fitting.SweepResult, *,
               started: float, sources: shared_data.Sources | None = None, address: str | None = None,
               num_cpus: int | None = None, include_dashboard: bool = False) -> fitting.SweepResult:
    """Run the stages a finished search still lacks; ``result`` (the search's) comes back counting every trial.

    A search with unfinished trials (failed, interrupted) runs no stage: ``resume`` finishes it first.
    """
    if not (spec.searched and (spec.confirm or spec.final)):
        return result
    identity = state.identity
    past = search_history.past_trials(spec, identity.tracking_uri, identity.experiment_id, identity.parent_run_id)
    best = ranked(spec, past)
    unfinished = [item for item in past if not item.finished]
    if unfinished or not best:
        print(f"glovesweep: the search's stages wait: {len(unfinished)} search trial(s) did not finish, "
              f"{len(best)} with a value; finish the search with: glovesweep resume {identity.sweep_dir}", flush=True)
        return result
    runtime = {"address": address, "num_cpus": num_cpus, "include_dashboard": include_dashboard}
    if spec.confirm:
        stage = run_stage(spec, state, stages.CONFIRM, confirm_trials(spec, best), sources=sources, **runtime)
        if stage is not None and not stage.ok:
            return counted(result, state, started)
    if spec.final:
        cell = chosen_cell(spec, identity, best)
        trials = [stage_trial(spec, cell, seed, stages.FINAL) for seed in spec.final.seeds]
        run_stage(spec, state, stages.FINAL, trials, sources=sources, **runtime)
    return counted(result, state, started)


def run_stage(spec: spec_module.SweepSpec, state: state_module.SweepState, stage: str,
              trials: list[spec_module.Trial], *, sources: shared_data.Sources | None,
              **runtime: Any) -> fitting.SweepResult | None:
    """One stage's Tune run of its trials whose child runs did not finish; None when every one finished."""
    identity = state.identity
    statuses = mlflow_runs.trial_statuses(identity.tracking_uri, identity.experiment_id, identity.parent_run_id)
    missing = [trial for trial in trials if statuses.get(trial.key) != "FINISHED"]
    if not missing:
        return None
    started = time.perf_counter()
    earlier = checkpoints.find_checkpoints(identity.sweep_dir, keys={trial.key for trial in missing})
    print(f"glovesweep: {stage} stage: {len(missing)} of {len(trials)} trials to train "
          f"({sum(1 for trial in missing if trial.key in earlier)} from a checkpoint): "
          + "; ".join(f"{trial.label} seed={trial.seed}" for trial in missing), flush=True)
    shared_data.start_ray(**runtime)
    options = {"data_home": state.data_home, "cache_dir": state.cache_dir,
               "download_if_missing": state.download_if_missing}
    # The search's sources are kept; only what its settings did not reach is found and read (a final stage's).
    sources = shared_data.resolve_sources(spec, trials=missing, known=sources, **options)
    shared = shared_data.prepare_shared_data(spec, sources, trials=missing, **options)
    tasks = [trial_module.TrialTask(trial=trial, resume_from=tuple(earlier.get(trial.key, ()))) for trial in missing]

    def make_tuner() -> tune.Tuner:
        mlflow_runs.reopen_run(spec.tracking_uri, identity.parent_run_id)
        # No scheduler: every stage trial trains to the last epoch, the value its stage compares.
        tune_config = tune.TuneConfig(num_samples=1, max_concurrent_trials=spec.max_concurrent_trials or None,
                                      trial_dirname_creator=searcher_module.trial_dirname, reuse_actors=True)
        run_config = fitting.run_config(spec, state, name=f"{stage}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}",
                                        storage_path=identity.sweep_dir)
        trainable = trial_module.make_trainable(fitting.trial_context(spec, state, shared))
        return tune.Tuner(trainable, param_space=trial_module.param_space(tasks), tune_config=tune_config,
                          run_config=run_config)

    return fitting.fit_and_finish(make_tuner, state, started=started, trial_keys=[trial.key for trial in trials],
                                  status_if_not_started=mlflow_runs.run_status(spec.tracking_uri,
                                                                               identity.parent_run_id))


def counted(result: fitting.SweepResult, state: state_module.SweepState, started: float) -> fitting.SweepResult:
    """``result`` counting every child run of the sweep, the search's and the stages'."""
    identity = state.identity
    statuses = mlflow_runs.trial_statuses(identity.tracking_uri, identity.experiment_id, identity.parent_run_id)
    return dataclasses.replace(result, total=len(statuses),
                               done=sum(1 for status in statuses.values() if status == "FINISHED"),
                               failed=sum(1 for status in statuses.values() if status == "FAILED"),
                               seconds=time.perf_counter() - started)
