"""Searching a tracking store (sweeps.tracking.search): every page, with a client of its own, no global state."""

from __future__ import annotations

import os

import mlflow
import pytest

from sweeps.tracking import names
from sweeps.tracking import search


@pytest.fixture()
def parent_with_children(mlflow_server, request):
    """A parent run with 7 children in an experiment of its own; yields (experiment id, parent id, child ids)."""
    client = mlflow.MlflowClient(tracking_uri=mlflow_server)
    experiment_id = client.create_experiment(f"search-{request.node.name}")
    sweep_name = f"pages-{request.node.name}"
    parent = client.create_run(experiment_id, tags={names.ROLE_TAG: names.ROLE_SWEEP, names.SWEEP_NAME_TAG: sweep_name})
    children = [client.create_run(experiment_id, tags={names.PARENT_TAG: parent.info.run_id}).info.run_id
                for _ in range(7)]
    return experiment_id, parent.info.run_id, children


def test_every_page_of_children_comes_back_in_order(mlflow_server, parent_with_children, monkeypatch):
    experiment_id, parent_id, children = parent_with_children
    monkeypatch.setattr(search, "PAGE_SIZE", 3)  # 7 runs: three pages, the last one short.
    found = search.child_runs(mlflow_server, parent_id, experiment_ids=[experiment_id])
    assert [run.info.run_id for run in found] == children


def test_a_search_leaves_the_process_wide_tracking_uri_alone(mlflow_server, parent_with_children, monkeypatch):
    experiment_id, parent_id, _ = parent_with_children
    sweep_name = "pages-test_a_search_leaves_the_process_wide_tracking_uri_alone"
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    mlflow.set_tracking_uri("sqlite:///elsewhere-that-must-stay.db")

    def swap(uri):
        raise AssertionError(f"a search pointed the whole process at {uri}")

    monkeypatch.setattr(mlflow, "set_tracking_uri", swap)
    try:
        assert search.find_parent_run(sweep_name, tracking_uri=mlflow_server).info.run_id == parent_id
        assert len(search.search_runs(mlflow_server, f"tags.`{names.PARENT_TAG}` = '{parent_id}'")) == 7
        assert mlflow.get_tracking_uri() == "sqlite:///elsewhere-that-must-stay.db"
        assert os.environ.get("MLFLOW_TRACKING_URI") in (None, "sqlite:///elsewhere-that-must-stay.db")
    finally:
        monkeypatch.undo()
        mlflow.set_tracking_uri(None)
