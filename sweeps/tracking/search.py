"""Searching an MLflow tracking store for a sweep's runs, every page of them, with a client of its own.

Each call builds an ``mlflow.MlflowClient`` for its tracking URI and follows ``page_token`` until the last page,
so no process-wide MLflow state (``mlflow.set_tracking_uri``) is touched: threads and callers pointing at
different stores do not disturb each other.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Callable

from sweeps.tracking import names

logger = logging.getLogger(__name__)

RUN_ID = re.compile(r"[0-9a-f]{32}")
# The most runs MLflow's stores return in one page (SEARCH_MAX_RESULTS_THRESHOLD).
PAGE_SIZE = 50_000


def all_pages(fetch: Callable[[str | None], Any]) -> list:
    """Every item of a paged MLflow search: ``fetch(page_token)`` returns a ``PagedList``."""
    items, token = [], None
    while True:
        page = fetch(token)
        items.extend(page)
        token = page.token
        if not token:
            return items


def search_runs(tracking_uri: str | None, filter_string: str, *, experiment_ids: list[str] | None = None,
                order_by: list[str] | None = None, deleted_too: bool = False) -> list:
    """Every run matching ``filter_string`` (``mlflow.entities.Run``), every page of them.

    ``experiment_ids=None`` searches every active experiment; ``deleted_too`` includes deleted runs.
    """
    import mlflow
    from mlflow import entities

    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    if experiment_ids is None:
        experiment_ids = [experiment.experiment_id for experiment in all_pages(
            lambda token: client.search_experiments(view_type=entities.ViewType.ACTIVE_ONLY, page_token=token))]
    if not experiment_ids:
        return []
    view = entities.ViewType.ALL if deleted_too else entities.ViewType.ACTIVE_ONLY
    return all_pages(lambda token: client.search_runs(experiment_ids, filter_string, run_view_type=view,
                                                      max_results=PAGE_SIZE, order_by=order_by, page_token=token))


def quoted(value: str) -> str:
    """``value`` as a literal of MLflow's filter grammar, which has no escapes: the quote it does not contain."""
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise ValueError(f"sweep name {value!r} contains both quote characters; pass the parent run id instead")


def find_parent_run(sweep: str, *, tracking_uri: str | None = None, experiment: str | None = None):
    """The parent run of a sweep, given its run id or its ``glovesweep.sweep_name`` (the latest such run).

    Raises ``ValueError`` naming the sweeps that do exist when none matches.
    """
    import mlflow
    from mlflow import exceptions as mlflow_exceptions

    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    if RUN_ID.fullmatch(sweep):
        try:
            run = client.get_run(sweep)
        except mlflow_exceptions.MlflowException:
            run = None
        if run is not None:
            role = run.data.tags.get(names.ROLE_TAG)
            if role != names.ROLE_SWEEP:
                raise ValueError(f"run {sweep} is not a sweep's parent run ({names.ROLE_TAG}={role!r}); pass the "
                                 f"parent run id (tag {names.ROLE_TAG}={names.ROLE_SWEEP}) or the sweep name")
            return run
    experiment_ids = None
    if experiment:
        found = client.get_experiment_by_name(experiment)
        if found is None:
            known = sorted(item.name for item in client.search_experiments())
            raise ValueError(f"experiment {experiment!r} not found at {client.tracking_uri}; "
                             f"experiments there: {', '.join(known) or 'none'}")
        experiment_ids = [found.experiment_id]
    is_sweep = f"tags.`{names.ROLE_TAG}` = '{names.ROLE_SWEEP}'"
    runs = search_runs(tracking_uri, f"{is_sweep} AND tags.`{names.SWEEP_NAME_TAG}` = {quoted(sweep)}",
                       experiment_ids=experiment_ids, order_by=["attributes.start_time DESC"])
    if not runs:
        where = f"{client.tracking_uri}" + (f", experiment {experiment!r}" if experiment else "")
        known = sorted({run.data.tags.get(names.SWEEP_NAME_TAG, "?")
                        for run in search_runs(tracking_uri, is_sweep, experiment_ids=experiment_ids)})
        raise ValueError(f"no sweep named {sweep!r} at {where}; sweeps there: {', '.join(known) or 'none'}. "
                         f"Pass a sweep name or parent run id, and --tracking-uri / --experiment if needed")
    if len(runs) > 1:
        logger.warning("%d parent runs are named %r; reporting on the latest, %s (pass a run id for another: %s)",
                       len(runs), sweep, runs[0].info.run_id, ", ".join(run.info.run_id for run in runs[1:]))
    return runs[0]


def child_runs(tracking_uri: str | None, parent_run_id: str, *, experiment_ids: list[str] | None = None,
               deleted_too: bool = False) -> list:
    """Every child run of a parent run (tag ``mlflow.parentRunId``), oldest first."""
    return search_runs(tracking_uri, f"tags.`{names.PARENT_TAG}` = '{parent_run_id}'", experiment_ids=experiment_ids,
                       order_by=["attributes.start_time ASC"], deleted_too=deleted_too)
