"""README command 1 tells the truth: `sweeps/quick.yaml`, run for real on the real archives, computes the answer.

The study (README, "The answer") found that the blog's 95% comes from the ``Newsgroups:``/``Xref:`` header
lines of the 19997 archive, which name the label. The quick sweep must show that in its own computed fields:
the leak named (``leak_fraction_val`` about 1 on the blog's cell, about 0 elsewhere) and the blog's cell well
above the same data with headers cut and above the user's cell, at the sweep's last epoch.
"""

from __future__ import annotations

import dataclasses
import pathlib
import time

import pytest

from sweeps.run import driver
from sweeps import spec as spec_module
from sweeps.tracking import mlflow_runs

ROOT = pathlib.Path(__file__).resolve().parents[1]
BLOG_CELL = {"dataset": "19997", "strip": "none"}
HEADERS_CUT_CELL = {"dataset": "19997", "strip": "sklearn_all"}
USER_CELL = {"dataset": "bydate", "strip": "sklearn_all"}


def trial_runs(tracking_uri: str, experiment: str) -> list:
    """The child (trial) runs of the one sweep logged into ``experiment``."""
    from mlflow import tracking as mlflow_tracking

    client = mlflow_tracking.MlflowClient(tracking_uri=tracking_uri)
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    runs = client.search_runs([experiment_id], filter_string=f"tags.`{mlflow_runs.ROLE_TAG}` = 'trial'")
    return list(runs)


def run_of_cell(runs: list, cell: dict) -> object:
    matching = [run for run in runs if all(run.data.params[name] == value for name, value in cell.items())]
    assert len(matching) == 1, (cell, [run.data.params for run in runs])
    return matching[0]


@pytest.mark.slow
def test_quick_sweep_names_the_leak_and_reproduces_the_studys_answer(shared_data, mlflow_server, ray_local,
                                                                      tmp_path):
    spec = spec_module.load_sweep(ROOT / "sweeps" / "quick.yaml")
    # The shipped file's design, not a test's own: the blog's network, both datasets, headers kept and cut.
    assert spec.fixed["architecture"] == "blog_flatten" and spec.fixed["max_sequence_length"] == 1000
    assert (spec.factors["dataset"], spec.factors["strip"]) == (["19997", "bydate"], ["none", "sklearn_all"])
    spec = dataclasses.replace(spec, tracking_uri=mlflow_server, experiment="quick-answer",
                               storage_path=str(tmp_path / "results"))
    started = time.perf_counter()
    # A cold cache of its own: the sweep pays what a first run pays.
    driver.run_sweep(spec, data_home=str(shared_data), cache_dir=str(tmp_path / "cache"),
                     download_if_missing=False)
    seconds = time.perf_counter() - started
    runs = trial_runs(mlflow_server, "quick-answer")
    assert len(runs) == len(spec.trials()) == 4
    assert {run.info.status for run in runs} == {"FINISHED"}

    last = f"val_acc_at_{spec.max_epochs}"
    blog, headers_cut, user = (run_of_cell(runs, cell).data.metrics for cell in (BLOG_CELL, HEADERS_CUT_CELL,
                                                                                  USER_CELL))
    # The leak, named by the computed fields: only the blog's cell still carries the label in a header line.
    for run in runs:
        cell = {name: run.data.params[name] for name in ("dataset", "strip")}
        for key in ("leak_fraction_train", "leak_fraction_val"):
            if cell == BLOG_CELL:
                assert run.data.metrics[key] > 0.9, (cell, key)
            else:
                assert run.data.metrics[key] < 0.1, (cell, key)
    # The answer: the blog's cell well above the same data with headers cut, and above the user's cell.
    assert blog[last] >= headers_cut[last] + 0.20, (blog[last], headers_cut[last])
    assert blog[last] >= user[last], (blog[last], user[last])
    print(f"quick sweep: {seconds:.1f} s; {last}: blog {blog[last]:.3f}, headers cut {headers_cut[last]:.3f}, "
          f"user {user[last]:.3f}")
