"""What a search ran before: its trials read back from their MLflow child runs, for a fresh searcher to be told.

``glovesweep resume`` of a search never unpickles a searcher (``OptunaSearch.save``/``restore`` pickle): each child
run's params give its configuration back (typed per factor, as ``SweepSpec.search_trial`` made it, so its trial key
is the same), its status says whether it finished, its last objective value is what the searcher was told, and its
start and end times give the CPU hours it held.

With ``seeds: k`` the unit is the configuration (``sweeps.run.seed_group``): its k seed runs read back as one
``PastTrial`` at the first seed, FINISHED when all k are, its value their mean.
"""

from __future__ import annotations

import dataclasses
import logging
import time

from sweeps import spec as spec_module
from sweeps.spec import space as space_module
from sweeps.spec import stages
from sweeps.tracking import mlflow_runs
from sweeps.tracking import names

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class PastTrial:
    """One trial an earlier driver of this search started, as its MLflow child run holds it.

    Attributes
    ----------
    trial : Trial
        Its configuration (the cell) and seed; ``trial.key`` equals the run's ``glovesweep.trial_id`` tag.
    status : str
        The run's status: ``FINISHED``, or ``RUNNING`` / ``KILLED`` / ``FAILED`` (re-created, not re-suggested).
    value : float or None
        The objective's last value (what the searcher is told), None where it never reported one.
    cpu_seconds : float
        Seconds the run lasted times the CPUs each trial holds (the budget's ``cpu_hours`` counts them).
    """

    trial: spec_module.Trial
    status: str
    value: float | None
    cpu_seconds: float

    @property
    def finished(self) -> bool:
        return self.status == "FINISHED"


def past_trials(spec: spec_module.SweepSpec, tracking_uri: str, experiment_id: str,
                parent_run_id: str) -> list[PastTrial]:
    """Every trial of the search that has a child run, oldest first (one per trial key; one per configuration
    when its seeds train side by side, ``configurations``; its confirm and final stages' runs left out)."""
    declared = spec.main_trainer.factors
    metric = spec.objective["metric"]
    found: dict[str, PastTrial] = {}
    for run in mlflow_runs.child_runs(tracking_uri, experiment_id, parent_run_id):
        key = run.data.tags.get(names.TRIAL_ID_TAG)
        if not key or key in found or run.info.lifecycle_stage == "deleted":
            continue
        if run.data.tags.get(names.STAGE_TAG, stages.SEARCH) != stages.SEARCH:
            continue  # A confirm or final trial: the stages' own, never told to the searcher nor in its budget.
        params = run.data.params
        cell: dict = {}
        for name, distribution in spec.space.items():
            if name in params and distribution.applies(cell):
                cell[name] = distribution.typed(declared[name], space_module.from_param(declared[name], params[name]))
        trial = spec_module.Trial(kind=spec.main_trainer.kind, cell=cell,
                                  seed=int(params.get("seed", spec.seeds[0])))
        if trial.key != key:
            logger.warning("run %s: its params give trial %s, not its tag's %s; left out of the search's history",
                           run.info.run_id, trial.key, key)
            continue
        value = run.data.metrics.get(metric)
        found[key] = PastTrial(trial=trial, status=run.info.status, value=value,
                               cpu_seconds=seconds_held(tracking_uri, run, metric) * spec.resources["cpu"])
    return configurations(spec, list(found.values())) if spec.seeds_side_by_side > 1 else list(found.values())


def configurations(spec: spec_module.SweepSpec, seed_runs: list[PastTrial]) -> list[PastTrial]:
    """The seed runs of a search with ``seeds: k`` as one ``PastTrial`` per configuration, oldest first: its trial
    at the first seed (the key its searcher knows it by); FINISHED when every seed's run is, else the first other
    status of its runs (RUNNING where a seed merely has none yet), and then it is re-created; its value the seeds'
    mean (None unless each has one); its CPU seconds the longest seed's (they shared one trial's CPUs)."""
    grouped: dict[str, list[PastTrial]] = {}
    for past in seed_runs:
        grouped.setdefault(past.trial.config_key, []).append(past)
    found = []
    for members in grouped.values():
        statuses = [past.status for past in members] + ["RUNNING"] * (len(spec.seeds) - len(members))
        status = next((item for item in statuses if item != "FINISHED"), "FINISHED")
        values = [past.value for past in members]
        value = sum(values) / len(values) if len(values) == len(spec.seeds) and None not in values else None
        found.append(PastTrial(trial=dataclasses.replace(members[0].trial, seed=spec.seeds[0]), status=status,
                               value=value, cpu_seconds=max(past.cpu_seconds for past in members)))
    return found


def seconds_held(tracking_uri: str, run, metric: str) -> float:
    """How long a run lasted: start to end, or to its last objective value where a killed driver left it open."""
    end = run.info.end_time
    if end is None:
        history = mlflow_runs.metric_history(tracking_uri, run.info.run_id, metric)
        end = max((item.timestamp for item in history), default=run.info.start_time or int(time.time() * 1000))
    return max(0.0, (end - (run.info.start_time or end)) / 1000.0)
