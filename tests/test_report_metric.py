"""The report on a user trainer's runs (sweeps.report with any objective): a lower-is-better metric without an upper
bound (``rmse:min:0:``), its own params as columns, and a NaN value flagged and left out of every mean. Hand-made
runs written as a report folder (no MLflow), and one run read the way ``read_mlflow`` reads a child run."""

from __future__ import annotations

import itertools
import json
import math
import types

import numpy as np
import pytest

from sweeps import report
from sweeps.report import claims as claims_module
from sweeps.report import objective as objective_module
from sweeps.report import plots
from sweeps.report import reader
from sweeps.report import stats
from sweeps.run import parent_run
from sweeps.tracking import names
from sweeps.trainers import api

RMSE = api.Metric("rmse", "min", low=0.0, help="validation RMSE")
PARAMS = ["optimizer", "width", "dropout"]
FACTORS = ["optimizer", "width"]
# The blog's setting (adam, 64) reaches the lowest error; the user's (sgd, 16) the highest, near 1 and noisy, so
# its interval reaches past 1, which bounds an accuracy and not an error. optimizer explains most of the gap.
MEANS = {("adam", "64"): 0.30, ("adam", "16"): 0.40, ("sgd", "64"): 0.80, ("sgd", "16"): 0.95}
NOISE = {("sgd", "16"): 0.08}
BLOG, USER = {"optimizer": "adam", "width": "64"}, {"optimizer": "sgd", "width": "16"}


def user_rows(*, nan_at: tuple[str, str, int, int] | None = None, seeds=(0, 1, 2), epochs=(1, 3)) -> list[dict]:
    """Rows of a ``regressor`` trainer's runs: cell x seed x epoch count (later epochs 0.05 better).

    ``nan_at`` = (optimizer, width, seed, epochs): that run's value came out NaN there (tagged as the session does).
    """
    random = np.random.default_rng(0)
    rows = []
    for (optimizer, width), seed in itertools.product(MEANS, seeds):
        run_id = f"{optimizer}-{width}-{seed}"
        bad = nan_at is not None and nan_at[:3] == (optimizer, width, seed)
        for count in epochs:
            value = MEANS[(optimizer, width)] + 0.05 * (max(epochs) - count) \
                + random.normal(0, NOISE.get((optimizer, width), 0.01))
            rows.append({"run_id": run_id, "trainer": "regressor", "model": "regressor", "seed": seed,
                         "epochs": count, "max_epochs": max(epochs), "optimizer": optimizer, "width": width,
                         "dropout": "0.1", "factors": "optimizer,width,epochs",
                         "cell": f"optimizer={optimizer},width={width}",
                         "value": math.nan if bad and count == nan_at[3] else value,
                         "non_finite": f"rmse@{nan_at[3]}" if bad else None})
    return rows


def write_sweep(folder, rows) -> reader.SweepFrame:
    history = [dict(row, epoch=row["epochs"]) for row in rows]
    swept = reader.SweepFrame(runs=reader.runs_frame(rows, PARAMS), history=reader.history_frame(history, PARAMS),
                              sweep_name="regression", parent_run_id="1" * 32, factors=FACTORS, source=str(folder),
                              objective=RMSE, params=PARAMS)
    reader.write_frames(swept, folder)
    return swept


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    folder = tmp_path_factory.mktemp("regression")
    write_sweep(folder / "in", user_rows())
    return report.make_report(folder / "in", out_dir=folder / "out", blog_cell=BLOG, user_cell=USER,
                              bootstrap_samples=50)


def test_the_folder_keeps_the_objective_and_the_trainers_own_params(made, tmp_path):
    again = reader.read_runs(made.out_dir)
    assert again.objective == RMSE and again.params == PARAMS and again.factors == FACTORS
    assert "dataset" not in again.runs and list(again.runs["dropout"].unique()) == ["0.1"]
    assert again.runs["value"].tolist() == pytest.approx(made.sweep.runs["value"].tolist())


def test_the_cell_table_is_in_rmse_and_not_clipped_to_one(made):
    cells = {(cell["optimizer"], cell["width"], cell["epochs"]): cell for cell in made.tables.cells}
    assert cells[("adam", "64", 3)]["mean"] == pytest.approx(0.30, abs=0.02)
    assert cells[("adam", "64", 1)]["mean"] == pytest.approx(0.40, abs=0.02)
    noisy = cells[("sgd", "16", 3)]
    # An error has no upper bound: the interval of a noisy cell near 1 passes 1; it stays at or above 0.
    assert noisy["ci_high"] > 1.0 and noisy["ci_low"] >= 0.0
    markdown = made.files["markdown"].read_text()
    assert "## Validation RMSE by cell" in markdown and "clipped to [0, inf)" in markdown
    assert f"{noisy['ci_high']:.4g}]" in markdown


def test_the_gap_and_effects_point_the_way_lower_is_better(made):
    (_, at_three) = made.tables.gaps
    # The user's cell has the higher error: the gap is positive, in rmse, and optimizer explains most of it.
    assert at_three.gap_points == pytest.approx(at_three.user - at_three.blog) and at_three.gap_points > 0.5
    top = max(at_three.contributions, key=lambda item: item.points)
    assert top.factor == "optimizer" and top.points == pytest.approx(0.55, abs=0.05)
    assert sum(item.points for item in at_three.contributions) == pytest.approx(at_three.gap_points)
    mains = {item.term: item for item in made.tables.effects if item.epochs == 3 and item.kind == "main"}
    # The best level is the lowest error: adam, and width 64.
    assert mains["optimizer"].levels == "adam vs sgd" and mains["optimizer"].effect_points > 0.4
    assert mains["width"].levels == "64 vs 16"


def test_the_answer_names_the_factor_in_rmse_with_no_newsgroups_words(made):
    sentence = made.answers[-1]
    assert "reaches 0.3" in sentence and "rmse (lower is better); optimizer (adam -> sgd) explains" in sentence
    assert made.answer.by_epochs[-1].mechanism == "optimizer"
    markdown = made.files["markdown"].read_text()
    for word in ("Newsgroups", "GloVe", "TF-IDF", "header", "leakage", "accuracy points", "points"):
        assert word not in markdown, word
    assert "Trainer regressor, objective rmse (validation RMSE; lower is better; range [0, inf))" in markdown
    assert "12 runs of regressor" in markdown
    metrics = parent_run.summary_metrics(made)
    assert metrics["mean_rmse_at_3/adam/64"] == pytest.approx(0.30, abs=0.02)
    assert metrics["gap_points_at_3"] > 0.5


def test_a_claim_of_an_error_is_judged_in_its_direction_and_range(made):
    verdicts = claims_module.judge_claims(made.sweep.runs, [
        {"source": "paper", "cell": BLOG, "epoch": 3, "value": 0.31},
        {"source": "too good", "cell": BLOG, "epoch": 3, "value": 0.05},
        {"source": "near one", "cell": USER, "epoch": 3, "value": 1.05}], objective=RMSE)
    consistent, too_good, near_one = verdicts
    assert consistent.inside and consistent.verdict.startswith("consistent")
    assert not too_good.inside and too_good.verdict.startswith("not reproduced: 0.2")
    assert too_good.verdict.endswith("rmse below the measured mean")
    # Above 1 is a possible error: the prediction interval is not cut at 1, and 1.05 is inside it.
    assert near_one.prediction_high > 1.05 and near_one.inside
    assert claims_module.prediction_interval([0.01, 0.02, 0.5], objective=RMSE)[0] == 0.0


def test_the_epoch_plot_speaks_rmse_and_colours_the_lowest_cell_best(made, tmp_path):
    assert made.files["epoch_plot"].name == "rmse_by_epoch.png"
    figure = plots.plot_epoch_curves(tmp_path / "rmse.png", made.sweep.history, made.sweep.runs, FACTORS,
                                     blog_cell=BLOG, user_cell=USER, objective=RMSE)
    axes = {axis.get_title(): axis for axis in figure.axes if axis.get_title()}
    blog_axis = axes["optimizer=adam, width=64 (blog's cell)"]
    assert axes["optimizer=adam, width=16"].get_ylabel() == "validation RMSE"
    low, high = blog_axis.get_ylim()
    assert low >= 0.0 and high > 1.0  # shared axis: the noisy cell's band passes 1, nothing is cut at 1
    assert blog_axis.get_lines()[0].get_color() == plots.BEST
    assert axes["optimizer=sgd, width=16 (user's cell)"].get_lines()[0].get_color() == plots.WORST
    title = figure.texts[0].get_text() if figure.texts else figure._suptitle.get_text()
    assert "Validation RMSE vs epoch" in title and "lower is better" in title and "[0, inf)" in title
    effects = plots.plot_effects(tmp_path / "effects.png", made.tables.effects, objective=RMSE)
    assert effects.axes[0].get_xlabel() == "effect on validation RMSE, rmse (best level lower by)"
    gap = plots.plot_gap(tmp_path / "gap.png", made.tables.gaps, BLOG, USER, objective=RMSE)
    assert gap.axes[0].get_xlabel() == "rmse added, blog's cell -> user's cell"


def test_a_nan_value_is_flagged_and_never_averaged(tmp_path):
    rows = user_rows(nan_at=("adam", "64", 1, 3))
    write_sweep(tmp_path / "in", rows)
    result = report.make_report(tmp_path / "in", out_dir=tmp_path / "out", blog_cell=BLOG, user_cell=USER,
                                bootstrap_samples=20)
    cells = {(cell["optimizer"], cell["width"], cell["epochs"]): cell for cell in result.tables.cells}
    finite = [row["value"] for row in rows if (row["optimizer"], row["width"], row["epochs"]) == ("adam", "64", 3)
              and not math.isnan(row["value"])]
    blog = cells[("adam", "64", 3)]
    assert (blog["n"], blog["non_finite"], blog["seeds"]) == (2, 1, "0 2")
    assert blog["mean"] == pytest.approx(np.mean(finite)) and math.isfinite(blog["ci_high"])
    assert cells[("adam", "64", 1)]["n"] == 3  # the run's epoch 1 was finite
    assert math.isfinite(result.tables.gaps[-1].gap_points)
    markdown = result.files["markdown"].read_text()
    assert "1 non-finite left out" in markdown
    assert "- run `adam-64-1` (optimizer=adam,width=64, seed 1): rmse@3" in markdown
    header = result.files["cells"].read_text().splitlines()[0]
    assert header.endswith(",non_finite")
    assert json.loads(result.files["answer"].read_text())["by_epochs"][-1]["blog"]["n"] == 2


def test_a_child_run_read_from_mlflow_takes_the_objective_and_its_non_finite_tag():
    metrics = {"rmse_at_1": 0.5, "rmse_at_3": math.nan, "rmse_at_5": 1.7976931348623157e308, "rmse": 0.4,
               "val_acc_at_3": 0.9}
    run = types.SimpleNamespace(
        info=types.SimpleNamespace(run_id="r1", status="FINISHED"),
        data=types.SimpleNamespace(params={"optimizer": "adam", "width": "64", "dropout": "0.1", "epochs": "5",
                                           "seed": "2", "factors": "optimizer,width,epochs"}, metrics=metrics,
                                   tags={names.TRAINER_TAG: "regressor", names.NON_FINITE_TAG: "rmse@3,rmse@5"}))
    assert reader.sweep_params([run]) == ["optimizer", "width", "dropout"]
    rows = reader.run_rows(run, sweep_name="s", parent_run_id="p", objective=RMSE, params=PARAMS)
    assert [row["epochs"] for row in rows] == [1, 3, 5] and rows[0]["value"] == 0.5
    assert all(math.isnan(row["value"]) for row in rows[1:]) and rows[0]["non_finite"] == "rmse@3,rmse@5"
    frame = reader.runs_frame(rows, PARAMS)
    assert len(stats.network_runs(frame)) == 1 and len(stats.non_finite_runs(frame)) == 3


def test_the_objective_tag_reads_back_and_defaults_to_accuracy():
    assert objective_module.from_text(RMSE.as_text()) == api.Metric("rmse", "min", 0.0, None)
    assert objective_module.from_text("val_acc:max:0.0:1.0") is objective_module.DEFAULT
    assert objective_module.from_text(None) is objective_module.DEFAULT
    assert objective_module.range_text(RMSE) == "[0, inf)" and objective_module.unit(RMSE) == "rmse"
    assert objective_module.unit(objective_module.DEFAULT) == "points"


@pytest.mark.parametrize("over_rest", [True, False], ids=["rest", "sqlite"])
def test_progress_finds_the_best_cell_in_the_objectives_direction(over_rest, request, tmp_path):
    from mlflow import tracking as mlflow_tracking

    from sweeps.service import progress_read
    from sweeps.service import status_list

    uri = request.getfixturevalue("mlflow_server") if over_rest else f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow_tracking.MlflowClient(tracking_uri=uri)
    experiment_id = client.create_experiment(f"progress-rmse-{over_rest}")
    parent = client.create_run(experiment_id, tags={names.ROLE_TAG: names.ROLE_SWEEP,
                                                    names.OBJECTIVE_TAG: RMSE.as_text()})
    for cell, values in (("optimizer=adam", (0.6, 0.3)), ("optimizer=sgd", (0.9, 0.8)), ("optimizer=rmsprop",
                                                                                       (0.5, math.nan))):
        child = client.create_run(experiment_id, tags={names.PARENT_TAG: parent.info.run_id, "trainer": "regressor",
                                                       names.CELL_TAG: cell})
        for step, value in enumerate(values, start=1):
            client.log_metric(child.info.run_id, "rmse", value, step=step)
    progress = progress_read.read_progress(uri, experiment_id, parent.info.run_id, total=3, network_trials=3,
                                           max_epochs=2)
    # The lowest error is best; a NaN latest value scores no cell (rmsprop's earlier 0.5 does not count).
    assert (progress.best_cell, progress.best_value, progress.objective) == ("optimizer=adam", 0.3, "rmse")
    assert progress.best_val_acc is None and progress.epochs_done == 6
    status = progress_read.SweepStatus(sweep_id="s", name="s", state="running", job="s", parent_run_id="p",
                                       mlflow_url="", elapsed_seconds=1.0, progress=progress)
    assert "best optimizer=adam rmse 0.300" in status_list.one_line(status)


def test_an_amount_that_rounds_to_zero_prints_without_a_sign():
    """An exactly-zero effect comes out as -1e-14 on one CPU and +1e-14 on another: both print 0.0."""
    from sweeps.report import objective as objective_module

    metric = objective_module.DEFAULT
    assert [objective_module.amount_text(metric, value) for value in (-3e-14, 5e-14, -0.04, -0.06, 2.1)] == [
        "0.0", "0.0", "0.0", "-0.1", "2.1"]
