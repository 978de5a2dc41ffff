"""The report of a search (sweeps.report.search_report): synthetic searches with a known important factor, written
as report folders (no MLflow) and once through MLflow the way a search logs them."""

from __future__ import annotations

import json
import math

import mlflow
import numpy as np
import optuna
import pytest
from mlflow import entities as mlflow_entities

from sweeps import report
from sweeps.report import reader
from sweeps.report import search_report
from sweeps.report import search_stats
from sweeps.run import parent_run
from sweeps.spec import space as space_module
from sweeps.tracking import names
from sweeps.trainers import api

SPACE = {"lr": space_module.Distribution("loguniform", low=1e-5, high=1e-1, log=True),
         "optimizer": space_module.Distribution("choice", values=("adam", "sgd")),
         "noise": space_module.Distribution("uniform", low=0.0, high=1.0)}
PARAMS = ["lr", "optimizer", "noise"]
ACCURACY = api.Metric("val_acc", "max", low=0.0, high=1.0, help="validation accuracy")
LOSS = api.Metric("val_loss", "min", low=0.0, help="validation loss")
TRIALS = 30


def accuracy(lr: float, optimizer: str) -> float:
    """lr matters most (a peak at 1e-3 on a log scale), the optimizer a little, ``noise`` not at all."""
    return 0.9 - 0.08 * (math.log10(lr) + 3) ** 2 - 0.02 * (optimizer == "sgd")


def search_rows(*, metric=ACCURACY, trials: int = TRIALS, seed: int = 0) -> list[dict]:
    """One row per trial at 3 epochs, in start order; trial 4 stopped early at epoch 1 (its last value), trial 6
    FAILED. A ``min`` metric gets the value's negation plus 1 (the same order, reversed)."""
    random = np.random.default_rng(seed)
    rows = []
    for number in range(trials):
        lr = float(f"{10 ** random.uniform(-5, -1):.6g}")
        optimizer, noise = str(random.choice(["adam", "sgd"])), float(f"{random.uniform(0, 1):.6g}")
        value = accuracy(lr, optimizer) + random.normal(0, 0.003)
        value = value if metric.mode == "max" else 1.0 - value
        rows.append({"run_id": f"run{number:02d}", "trial_id": f"trial{number:02d}", "trainer": "mine", "model": "mine",
                     "status": "FAILED" if number == 6 else "FINISHED", "seed": 0, "max_epochs": 3,
                     "epochs": 1 if number == 4 else 3, "factors": ",".join(PARAMS), "value": value,
                     "lr": str(lr), "optimizer": optimizer, "noise": str(noise)})
    return rows


def write_search(folder, rows, metric=ACCURACY) -> reader.SweepFrame:
    history = [dict(row, epoch=row["epochs"]) for row in rows]
    swept = reader.SweepFrame(runs=reader.runs_frame(rows, PARAMS), history=reader.history_frame(history, PARAMS),
                              sweep_name="search", parent_run_id="2" * 32, factors=PARAMS, source=str(folder),
                              objective=metric, params=PARAMS, space=dict(SPACE))
    reader.write_frames(swept, folder)
    return swept


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    folder = tmp_path_factory.mktemp("search")
    write_search(folder / "in", search_rows())
    (folder / "out").mkdir()
    (folder / "out" / "gap.png").write_bytes(b"a grid's plot from before")
    return report.make_report(folder / "in", out_dir=folder / "out", bootstrap_samples=40, seed=3)


def test_the_best_configuration_is_the_best_finished_trial(made):
    rows = [row for row in search_rows() if row["status"] == "FINISHED"]
    best = max(rows, key=lambda row: row["value"])
    assert isinstance(made, search_report.SearchReport)
    assert made.best_configuration == {"lr": float(best["lr"]), "optimizer": best["optimizer"],
                                       "noise": float(best["noise"])}
    top = made.search.top
    assert top["run_id"].tolist() == [row["run_id"] for row in sorted(rows, key=lambda row: -row["value"])[:5]]
    markdown = made.files["markdown"].read_text()
    assert f"run {best['run_id']}" in markdown and "# Search report: search" in markdown
    assert "Blog cell" not in markdown and "## Answer" not in markdown


def test_a_failed_trial_is_plotted_but_never_best_and_a_stopped_one_counts_its_last_value(made):
    trials = made.search.trials
    assert trials["number"].tolist() == list(range(TRIALS))
    assert trials.loc[4, "epochs"] == 1 and trials.loc[4, "status"] == "FINISHED"
    assert trials.loc[6, "status"] == "FAILED" and "run06" not in made.search.top["run_id"].tolist()


@pytest.mark.parametrize("metric", [ACCURACY, LOSS], ids=["max", "min"])
def test_the_best_so_far_follows_the_metrics_direction(metric, tmp_path):
    rows = search_rows(metric=metric)
    rows[6]["value"] = 5.0 if metric.mode == "max" else -5.0  # the FAILED trial's value: never the best
    trials = search_stats.trials_frame(write_search(tmp_path, rows, metric))
    values = [row["value"] if row["status"] == "FINISHED" else (-math.inf if metric.mode == "max" else math.inf)
              for row in rows]
    expected = np.maximum.accumulate(values) if metric.mode == "max" else np.minimum.accumulate(values)
    assert trials["best_so_far"].to_numpy() == pytest.approx(expected)
    top = search_stats.top_trials(trials, metric.mode)
    assert top.iloc[0]["value"] == (max if metric.mode == "max" else min)(
        row["value"] for row in rows if row["status"] == "FINISHED")


def test_importance_ranks_the_planted_factor_first_and_its_interval_holds_optunas_own_value(made):
    found = {item.factor: item for item in made.search.importances}
    assert [item.factor for item in made.search.importances][0] == "lr"
    assert found["lr"].value > 0.6 and found["noise"].value < 0.2
    # Optuna's own evaluator on a study built here from the trials that ran to the last epoch count: trial 4, stopped
    # at epoch 1, is a pruned trial to Optuna, left out of its importances.
    assert (made.search.importance_trials, made.search.importance_epochs, made.search.stopped) == (TRIALS - 2, 3, 1)
    study = optuna.create_study(direction="maximize")
    distributions = {"lr": optuna.distributions.FloatDistribution(1e-5, 1e-1, log=True),
                     "optimizer": optuna.distributions.CategoricalDistribution(["adam", "sgd"]),
                     "noise": optuna.distributions.FloatDistribution(0.0, 1.0)}
    for row in search_rows():
        if row["status"] == "FINISHED" and row["epochs"] == 3:
            study.add_trial(optuna.trial.create_trial(
                params={"lr": float(row["lr"]), "optimizer": row["optimizer"], "noise": float(row["noise"])},
                distributions=distributions, value=row["value"]))
    own = optuna.importance.get_param_importances(
        study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=3), normalize=True)
    for name, value in own.items():
        assert found[name].value == pytest.approx(value, abs=1e-9)
        assert found[name].low <= value <= found[name].high
        assert found[name].resamples == 40 and found[name].high - found[name].low > 0
    assert float(made.files["importances"].read_text().splitlines()[1].split(",")[1]) == \
        pytest.approx(found["lr"].value)


def test_a_scheduler_s_stopped_trials_are_compared_at_one_epoch_count(tmp_path):
    """Trials stopped at epoch 1 would rank a factor by who was stopped: the importances compare the trials that ran
    to epoch 3, and every trial at epoch 1 (from the history), never one trial's epoch 1 beside another's epoch 3."""
    rows, history = [], []
    for row in search_rows():
        row["status"], stopped = "FINISHED", row["optimizer"] == "sgd"
        curve = [row["value"] - 0.3, row["value"] - 0.1, row["value"]]  # every trial learns over its 3 epochs
        if stopped:  # the scheduler stopped every sgd trial after epoch 1, whatever its learning rate
            row["epochs"], row["value"] = 1, curve[0]
        rows.append(row)
        history += [dict(row, epoch=epoch, value=value) for epoch, value in enumerate(curve[:row["epochs"]], start=1)]
    swept = reader.SweepFrame(runs=reader.runs_frame(rows, PARAMS), history=reader.history_frame(history, PARAMS),
                              sweep_name="search", parent_run_id="2" * 32, factors=PARAMS, source=str(tmp_path),
                              objective=ACCURACY, params=PARAMS, space=dict(SPACE))
    tables = search_stats.search_tables(swept, bootstrap_samples=20, seed=1)
    ran = [row for row in rows if row["epochs"] == 3]
    assert (tables.importance_epochs, tables.importance_trials, tables.stopped) == (3, len(ran), TRIALS - len(ran))
    # Mixed, the optimizer would explain the 0.3 its stopped trials lack; at one epoch count it explains its 0.02.
    mixed, _ = search_stats.importances(search_stats.trials_frame(swept), SPACE, "max", bootstrap_samples=0)
    assert {item.factor: item.value for item in mixed}["optimizer"] > 0.5
    for found in (tables.importances, tables.first_rung.importances):
        assert found[0].factor == "lr" and {item.factor: item.value for item in found}["optimizer"] < 0.2
    assert (tables.first_rung.epochs, tables.first_rung.trials) == (1, TRIALS)
    at_one = search_stats.trials_frame(swept, at_epoch=1)
    assert at_one["value"].tolist() == pytest.approx([row["value"] if row["epochs"] == 1 else row["value"] - 0.3
                                                      for row in rows])
    written = search_report.write_tables(tmp_path, tables)["importances"].read_text().splitlines()
    assert written[0] == "factor,value,low,high,resamples,epochs,trials"
    assert [line.split(",")[-2:] for line in written[1:]] == [["3", str(len(ran))]] * 3 + [["1", str(TRIALS)]] * 3


def test_the_plots_are_written_and_the_grids_files_are_gone(made):
    for name in ("history_plot", "parallel_plot", "importance_plot", "partial_plot"):
        path = made.files[name]
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
        assert f"]({path.name})" in made.files["markdown"].read_text()
    assert not (made.out_dir / "gap.png").exists() and not (made.out_dir / "cells.csv").exists()
    assert "data:image/png;base64," in made.files["html"].read_text()


def test_the_folder_keeps_the_space_and_gives_the_same_best(made, tmp_path):
    again = reader.read_runs(made.out_dir)
    assert again.space == SPACE
    remade = report.make_report(made.out_dir, out_dir=tmp_path, bootstrap_samples=2, seed=3)
    assert remade.best_configuration == made.best_configuration


def test_a_search_read_from_mlflow_and_its_parent_runs_best_tags(tmp_path):
    """Child runs as a search logs them: summaries at the last epoch count, one trial its scheduler stopped after
    epoch 1 (no summary; its last value counts), the parent's glovesweep.space tag."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("search", artifact_location=(tmp_path / "artifacts").as_uri())
    parent = client.create_run(experiment, tags={
        names.ROLE_TAG: names.ROLE_SWEEP, names.SWEEP_NAME_TAG: "search", names.OBJECTIVE_TAG: "val_acc:max:0:1",
        names.SPACE_TAG: json.dumps(space_module.to_records(SPACE))}).info.run_id
    rows = search_rows(trials=8)
    for row in rows:
        run = client.create_run(experiment, tags={names.PARENT_TAG: parent, names.ROLE_TAG: names.ROLE_TRIAL,
                                                  names.TRIAL_ID_TAG: row["trial_id"], names.TRAINER_TAG: "mine"})
        metrics = [mlflow_entities.Metric("val_acc", row["value"] - 0.01 * (row["epochs"] - epoch), 0, epoch)
                   for epoch in range(1, row["epochs"] + 1)]
        if row["epochs"] == 3:
            metrics.append(mlflow_entities.Metric("val_acc_at_3", round(row["value"], 4), 0, 3))
        params = {name: row[name] for name in PARAMS} | {"epochs": "3", "seed": "0", "factors": ",".join(PARAMS)}
        client.log_batch(run.info.run_id, metrics=metrics,
                         params=[mlflow_entities.Param(key, value) for key, value in params.items()])
        client.set_terminated(run.info.run_id, status=row["status"])
    made = report.make_report(parent, tracking_uri=uri, out_dir=tmp_path / "out", bootstrap_samples=5)
    assert made.sweep.space == SPACE and made.sweep.skipped == []
    stopped = made.search.trials.set_index("trial_id").loc["trial04"]
    assert stopped["epochs"] == 1 and stopped["value"] == pytest.approx(rows[4]["value"])
    artifacts = {item.path for item in client.list_artifacts(parent, "report")}
    assert {"report/optimization_history.png", "report/parallel_coordinates.png", "report/report.md"} <= artifacts
    tags, metrics = parent_run.search_summary(made)
    best = made.search.best
    assert tags[names.BEST_TAG_PREFIX + "optimizer"] == best["optimizer"] and tags[names.BEST_RUN_TAG] == best["run_id"]
    assert float(tags[names.BEST_TAG_PREFIX + "lr"]) == best["lr"]
    assert metrics["best_val_acc"] == pytest.approx(best["value"], abs=1e-4) and metrics["trials_finished"] == 7


def test_a_searched_integer_read_back_as_a_float_prints_as_the_table_prints_it():
    """A choice of integers that a ``when`` leaves out of some trials comes back as a float column (500.0)."""
    import pandas as pd

    from sweeps.report import search_report

    trial = pd.Series({"max_sequence_length": 500.0, "dropout": 0.471874, "architecture": "global_max",
                       "filters": float("nan")})
    text = search_report.configuration_text(trial, ["architecture", "max_sequence_length", "filters", "dropout"])
    assert text == "architecture=global_max, max_sequence_length=500, dropout=0.471874"


def test_a_conditional_integer_choice_is_on_its_axis_and_a_trial_without_it_below_it(tmp_path):
    """The honest-best search's max_sequence_length: a choice of integers read back as floats, absent (NaN) where
    its ``when`` left it out. Each value sits at its choice's place; the plots of such a factor are drawn."""
    import pandas as pd

    from sweeps.report import search_plots

    length = space_module.Distribution("choice", values=(250, 500, 1000), when={"architecture": ("global_max",)})
    positions, ticks = search_plots.axis_position(length, [500.0, math.nan, 1000.0, 250.0])
    assert positions[[0, 2, 3]].tolist() == [0.5, 1.0, 0.0] and math.isnan(positions[1])
    assert [label for _, label in ticks] == ["250", "500", "1000"]
    assert [search_stats.choice_position(length, value) for value in (1000.0, 1000, math.nan, None, 750.0)] == \
        [2, 2, None, None, None]
    space = {"architecture": space_module.Distribution("choice", values=("blog_flatten", "global_max")),
             "max_sequence_length": length}
    trials = pd.DataFrame({"architecture": ["global_max", "blog_flatten", "global_max", "global_max"],
                           "max_sequence_length": [500.0, math.nan, 1000.0, 250.0], "value": [0.6, 0.5, 0.4, 0.55],
                           "status": [search_stats.FINISHED] * 4, "epochs": [15] * 4})
    search_plots.plot_parallel(tmp_path / "parallel.png", trials, space, ACCURACY)
    search_plots.plot_partial_dependence(tmp_path / "partial.png", trials, {"max_sequence_length": length}, ACCURACY)
    assert (tmp_path / "parallel.png").stat().st_size > 0 and (tmp_path / "partial.png").stat().st_size > 0


def test_the_committed_honest_best_report_is_what_the_code_makes_of_its_parquet_files(tmp_path, monkeypatch):
    """docs/results/honest-best (the README's honest best) regenerates from its own Parquet files on a fresh clone:
    the trials, the importances with their bootstrap intervals, the confirmed and final scores, the text. Numbers to
    1e-9 relative, printed ones to their last digit: the committed files were made on another CPU."""
    import pathlib

    import tolerance

    root = pathlib.Path(__file__).resolve().parents[1]
    study = root / "docs" / "results" / "honest-best"
    monkeypatch.chdir(root)
    made = report.make_report(study.relative_to(root), out_dir=tmp_path, log_artifacts=False)
    assert made.search.best is not None
    for name in ("trials.csv", "importances.csv", "confirmed.csv", "report.md"):
        tolerance.assert_same_text((tmp_path / name).read_text(), (study / name).read_text(), name=name)
