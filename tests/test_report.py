"""``glovesweep report`` on runs read from a real MLflow server (synthetic runs in the documented schema, and a real
tiny sweep made by the driver on local Ray), and the round trip through the Parquet files it writes. The statistics
on hand-made frames are in test_stats.py."""

from __future__ import annotations

import itertools
import pathlib
import time

import numpy as np
import pandas as pd
import pytest
from pyarrow import parquet

from sweeps import cli
from sweeps import report
from sweeps.report import reader
from sweeps.tracking import search
from sweeps.report import stats
from trainer import config as config_module

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------- synthetic runs on a real MLflow server

def mlflow_client(uri: str):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=uri)


SCHEMA_SWEEP_FILE = """\
name: {name}
factors: {{dataset: ["19997", bydate], strip: [none, blank_line], epochs: {epochs}}}
seeds: {seeds}
answer:
  blog_cell: {{dataset: "19997", strip: none}}
  user_cell: {{dataset: bydate, strip: blank_line}}
claims:
  - {{source: "Keras PR #5585 (2017)", cell: {{dataset: "19997", strip: blank_line}}, epoch: 2, value: 0.47}}
"""


def log_schema_sweep(client, experiment: str, name: str, *, seeds=(0, 1), epochs=(2, 3)) -> dict:
    """Log a sweep in docs/DESIGN.md's schema: strip moves val_acc by 30 points, dataset by 2.

    Network trials: dataset x strip x seed, trained to max(epochs) with step metrics per epoch; one extra
    trial failed after epoch 2 (summary at 2 only); one failed before any epoch; TF-IDF baselines per cell
    and seed (``val_acc`` at step 0, as the driver logs them). Returns the ids and the logged values.
    """
    from mlflow import entities

    experiment_id = client.create_experiment(experiment)
    parent = client.create_run(experiment_id, run_name=name, tags={
        "glovesweep.role": "sweep", "glovesweep.sweep_name": name, "glovesweep.sweep_hash": "ab" * 8})
    parent_id = parent.info.run_id
    # The sweep file as the driver logs it: its answer block names the cells the report compares.
    client.log_text(parent_id, SCHEMA_SWEEP_FILE.format(name=name, seeds=list(seeds), epochs=list(epochs)),
                    "sweep.yaml")
    logged = {"parent": parent_id, "experiment_id": experiment_id, "keras": {}, "baseline": {}}

    def child(tags, params, metrics, status="FINISHED"):
        run = client.create_run(experiment_id, tags={"mlflow.parentRunId": parent_id, "glovesweep.role": "trial",
                                                     **tags})
        client.log_batch(run.info.run_id, params=[entities.Param(key, str(value)) for key, value in params.items()],
                         metrics=metrics)
        client.set_terminated(run.info.run_id, status=status)
        return run.info.run_id

    now = int(time.time() * 1000)
    trials = [(dataset, strip, seed, max(epochs)) for dataset, strip, seed in
              itertools.product(("19997", "bydate"), ("none", "blank_line"), seeds)]
    trials.append(("bydate", "none", max(seeds) + 1, 2))  # failed after epoch 2
    for dataset, strip, seed, finished in trials:
        config = config_module.TrainerConfig(dataset=dataset, strip=strip, seed=seed, epochs=max(epochs))
        params = {**config.to_dict(), "factors": "dataset,strip,epochs"}
        base = 0.92 - 0.30 * (strip == "blank_line") - 0.02 * (dataset == "bydate") + 0.003 * seed
        metrics = [entities.Metric("leakage", 0.04 if dataset == "19997" else 0.0, now, 0),
                   entities.Metric("glove_coverage", 0.93, now, 0), entities.Metric("out_of_range_ids", 0, now, 0)]
        values = {}
        for epoch in range(1, finished + 1):
            accuracy = base - 0.05 / epoch
            metrics += [entities.Metric(key, value, now, epoch) for key, value in (
                ("loss", 1 - accuracy), ("acc", accuracy + 0.05), ("val_loss", 1.2 - accuracy), ("val_acc", accuracy),
                ("epoch_seconds", 1.5))]
            if epoch in epochs:
                values[epoch] = accuracy
                metrics += [entities.Metric(f"val_acc_at_{epoch}", accuracy, now, 0),
                            entities.Metric(f"val_loss_at_{epoch}", 1.2 - accuracy, now, 0)]
        cell = f"dataset={dataset},strip={strip}"
        run_id = child({"glovesweep.trial_id": f"k-{dataset}-{strip}-{seed}", "glovesweep.cell": cell,
                        "trainer": "keras"}, params, metrics,
                       status="FINISHED" if finished == max(epochs) else "FAILED")
        logged["keras"][run_id] = {"dataset": dataset, "strip": strip, "seed": seed, "values": values,
                                   "epochs_run": finished}
    logged["empty"] = child({"glovesweep.trial_id": "k-dead", "glovesweep.cell": "dataset=19997,strip=none",
                             "trainer": "keras"},
                            {**config_module.TrainerConfig(seed=9).to_dict(), "factors": "dataset,strip,epochs"},
                            [], status="FAILED")
    for dataset, strip, seed in itertools.product(("19997", "bydate"), ("none", "blank_line"), seeds):
        config = config_module.TrainerConfig(dataset=dataset, strip=strip, seed=seed, epochs=max(epochs))
        accuracy = 0.85 - 0.15 * (strip == "blank_line") + 0.001 * seed
        run_id = child({"glovesweep.trial_id": f"b-{dataset}-{strip}-{seed}", "glovesweep.cell": f"{dataset},{strip}",
                        "trainer": "baseline"},
                       {**config.to_dict(), "factors": "dataset,strip,epochs", "baseline": "multinomial_nb"},
                       [entities.Metric("val_acc", accuracy, now, 0), entities.Metric("train_acc", 0.99, now, 0),
                        entities.Metric("leakage", 0.0, now, 0)])
        logged["baseline"][run_id] = {"dataset": dataset, "strip": strip, "seed": seed, "val_acc": accuracy}
    client.set_terminated(parent_id)
    return logged


@pytest.fixture(scope="module")
def schema_sweep(mlflow_server, tmp_path_factory):
    client = mlflow_client(mlflow_server)
    logged = log_schema_sweep(client, "report-schema", "schema-sweep")
    out_dir = tmp_path_factory.mktemp("schema-report")
    started = time.perf_counter()
    result = report.make_report("schema-sweep", tracking_uri=mlflow_server, out_dir=out_dir, bootstrap_samples=200)
    return {"client": client, "logged": logged, "report": result, "seconds": time.perf_counter() - started}


def test_table_has_one_row_per_trial_and_requested_epoch_count(schema_sweep):
    logged, result = schema_sweep["logged"], schema_sweep["report"]
    table = parquet.read_table(result.files["runs"]).to_pylist()
    keras_rows = [row for row in table if row["trainer"] == "keras"]
    expected = {(run_id, epoch) for run_id, info in logged["keras"].items() for epoch in info["values"]}
    assert len(expected) == 8 * 2 + 1  # 8 finished trials x {2, 3} + the trial that died after epoch 2
    assert {(row["run_id"], row["epochs"]) for row in keras_rows} == expected
    assert len(keras_rows) == len(expected)
    for row in keras_rows:
        info = logged["keras"][row["run_id"]]
        assert row["value"] == pytest.approx(info["values"][row["epochs"]])
        assert row["val_loss"] == pytest.approx(1.2 - info["values"][row["epochs"]])
        assert (row["dataset"], row["strip"], row["seed"]) == (info["dataset"], info["strip"], info["seed"])
        assert row["leakage"] == pytest.approx(0.04 if info["dataset"] == "19997" else 0.0)
        assert row["glove_coverage"] == pytest.approx(0.93) and row["max_epochs"] == 3
        assert row["factors"] == "dataset,strip,epochs" and row["sweep_name"] == "schema-sweep"
    baseline_rows = [row for row in table if row["trainer"] == "baseline"]
    assert {row["run_id"]: row["value"] for row in baseline_rows} == pytest.approx(
        {run_id: info["val_acc"] for run_id, info in logged["baseline"].items()})
    assert {row["model"] for row in baseline_rows} == {"multinomial_nb"}
    assert all(row["epochs"] is None for row in baseline_rows)
    # The run that died before its first epoch is left out, and said so.
    assert result.sweep.skipped == [logged["empty"]]
    assert logged["empty"] in result.files["markdown"].read_text()
    # Per-epoch history: every finished epoch of every network trial.
    history = parquet.read_table(result.files["history"]).to_pylist()
    assert len(history) == 8 * 3 + 2


def test_cell_table_csv_and_markdown_give_seed_means(schema_sweep):
    logged, result = schema_sweep["logged"], schema_sweep["report"]
    cells = {(cell["model"], cell["dataset"], cell["strip"], cell["epochs"]): cell for cell in result.tables.cells}
    for (dataset, strip, count) in itertools.product(("19997", "bydate"), ("none", "blank_line"), (2, 3)):
        values = [info["values"][count] for info in logged["keras"].values()
                  if (info["dataset"], info["strip"]) == (dataset, strip) and count in info["values"]]
        cell = cells[("keras", dataset, strip, count)]
        assert cell["n"] == len(values) and cell["mean"] == pytest.approx(np.mean(values))
        assert (cell["ci_low"], cell["ci_high"]) == pytest.approx(stats.t_interval(values, bounds=(0, 1))[1:])
    # The extra seed died after epoch 2: three seeds at 2 epochs, two at 3.
    assert cells[("keras", "bydate", "none", 2)]["n"] == 3 and cells[("keras", "bydate", "none", 3)]["n"] == 2
    assert cells[("multinomial_nb", "19997", "blank_line", None)]["mean"] == pytest.approx(0.7005)
    csv_text = result.files["cells"].read_text()
    assert csv_text.splitlines()[0] == "model,dataset,strip,epochs,n,mean,std,ci_low,ci_high,leakage,seeds"
    assert len(csv_text.splitlines()) == 1 + 8 + 4
    markdown = result.files["markdown"].read_text()
    assert "| dataset | strip | keras @2 | keras @3 | multinomial_nb (TF-IDF) | leakage |" in markdown


def test_answer_names_the_planted_factor_and_its_points(schema_sweep):
    result = schema_sweep["report"]
    assert [record.term for record in result.tables.effects if record.rank == 1] == ["strip", "strip"]
    gap_at_3 = next(gap for gap in result.tables.gaps if gap.epochs == 3)
    top = gap_at_3.contributions[0]
    assert top.factor == "strip" and top.points == pytest.approx(30.0, abs=0.01)
    assert gap_at_3.contributions[1].points == pytest.approx(2.0, abs=0.01)
    assert any("a gap of 32.0 points; strip (none -> blank_line) explains 30.0 of them" in sentence
               for sentence in result.answers), result.answers
    assert "## Answer" in result.files["markdown"].read_text()
    # The cells came from the parent run's sweep.yaml; the runs predate the leak fractions.
    assert result.answer.cells_from == "the sweep file's answer block"
    assert [item.mechanism for item in result.answer.by_epochs] == ["strip", "strip"]
    assert all("the label leak is not measured" in sentence for sentence in result.answers)
    (verdict,) = result.verdicts
    # Planted: 0.92 - 0.30 - 0.05 / 2 + 0.003 * seed for seeds 0, 1: mean 0.5965, far from the claimed 0.47.
    assert verdict.mean == pytest.approx(0.5965) and verdict.n == 2 and verdict.inside is False


def test_plots_are_written_and_logged_to_the_parent_run(schema_sweep):
    client, logged, result = schema_sweep["client"], schema_sweep["logged"], schema_sweep["report"]
    for name in ("epoch_plot", "effects_plot", "gap_plot"):
        data = result.files[name].read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 10_000, name
    # A plot of an empty canvas compresses to a few kB; drawn curves and bars make it larger.
    artifacts = {pathlib.PurePosixPath(item.path).name: item.file_size
                 for item in client.list_artifacts(logged["parent"], "report")}
    for filename in ("runs.parquet", "history.parquet", "cells.csv", "effects.csv", "gap.csv", "report.md",
                     "report.html", "answer.json", "claims.json", "sweep.yaml", "val_acc_by_epoch.png",
                     "factor_effects.png", "gap.png"):
        assert artifacts.get(filename) == (result.out_dir / filename).stat().st_size, filename


def test_sweep_is_found_by_run_id_and_unknown_names_list_the_known_sweeps(schema_sweep, mlflow_server):
    logged = schema_sweep["logged"]
    assert search.find_parent_run(logged["parent"], tracking_uri=mlflow_server).info.run_id == logged["parent"]
    with pytest.raises(ValueError, match=r"no sweep named 'nope' .*sweeps there: .*schema-sweep"):
        search.find_parent_run("nope", tracking_uri=mlflow_server)
    child_id = next(iter(logged["keras"]))
    with pytest.raises(ValueError, match=f"run {child_id} is not a sweep's parent run"):
        search.find_parent_run(child_id, tracking_uri=mlflow_server)


def test_parquet_files_read_back_into_the_identical_frames(schema_sweep, tmp_path):
    swept = schema_sweep["report"].sweep
    again = reader.read_runs(schema_sweep["report"].out_dir)
    pd.testing.assert_frame_equal(again.runs, swept.runs)
    pd.testing.assert_frame_equal(again.history, swept.history)
    assert (again.sweep_name, again.parent_run_id, again.factors, again.skipped) == (
        swept.sweep_name, swept.parent_run_id, swept.factors, swept.skipped)
    # The folder never names the store (a report folder gets committed): read back, the runs came from no store.
    assert swept.tracking_uri and again.tracking_uri == ""
    # Written again from the frames read back: the same files, so the round trip holds both ways.
    reader.write_frames(again, tmp_path)
    for name in (reader.RUNS_FILE, reader.HISTORY_FILE):
        assert parquet.read_table(tmp_path / name).equals(parquet.read_table(schema_sweep["report"].out_dir / name))
    # The statistics on the frames read back (no MLflow) are the report's.
    tables = schema_sweep["report"].tables
    pd.testing.assert_frame_equal(pd.DataFrame(stats.cell_table(again.runs, again.factors)), pd.DataFrame(tables.cells))
    pd.testing.assert_frame_equal(pd.DataFrame(stats.attribute(again.runs, again.factors, bootstrap_samples=200)),
                                  pd.DataFrame(tables.effects))


def test_report_command_on_a_tracking_server(schema_sweep, mlflow_server, tmp_path, capsys):
    code = cli.main(["report", "schema-sweep", "--tracking-uri", mlflow_server, "--experiment", "report-schema",
                     "--out", str(tmp_path / "out"), "--bootstrap", "50", "--no-log-artifacts",
                     "--user-cell", "strip=blank_line", "dataset=19997"])
    output = capsys.readouterr().out
    assert code == 0, output
    # Blog and user differ in strip alone here: strip explains the whole gap of 30 points.
    assert "a gap of 30.0 points; strip (none -> blank_line) explains 30.0 of them" in output
    assert (tmp_path / "out" / "runs.parquet").stat().st_size > 0


def test_report_command_errors_name_the_fix(tmp_path, capsys):
    missing = tmp_path / "absent.db"
    assert cli.main(["report", "x", "--tracking-uri", f"sqlite:///{missing}"]) == 2
    assert f"tracking store {missing} does not exist" in capsys.readouterr().err
    # Checked against the runs' own settings (any trainer's), once they are read.
    study = pathlib.Path(__file__).resolve().parents[1] / "docs" / "results" / "study-cpu"
    assert cli.main(["report", str(study), "--out", str(tmp_path / "out"), "--blog-cell", "colour=red"]) == 2
    assert "cell key 'colour' is not a trainer setting" in capsys.readouterr().err
    assert cli.main(["report", "x", "--blog-cell", "seed=1"]) == 2
    assert "cell key 'seed' is not a trainer setting" in capsys.readouterr().err


def test_smoke_mode(tmp_path, capsys, monkeypatch):
    working = tmp_path / "working"
    working.mkdir()
    monkeypatch.chdir(working)
    assert cli.main(["report", "--smoke-test", "--out", str(tmp_path / "smoke"), "--bootstrap", "50"]) == 0
    output = capsys.readouterr().out
    assert "Smoke test passed: 24 rows" in output and "the same cells from MLflow and from" in output
    # The synthetic sweep plants the label leak (19997 with headers kept) and names its cells in its sweep.yaml.
    assert "The cause is the label leak through the Newsgroups: header" in output
    assert "Claim Keras blog 2016 (dataset=19997, strip=none, 2 epochs, 0.95)" in output
    assert (tmp_path / "smoke" / "val_acc_by_epoch.png").read_bytes().startswith(PNG_SIGNATURE)
    # The temporary store keeps its artifacts too: nothing lands in the working directory (no ./mlruns).
    assert list(working.iterdir()) == []


# ------------------------------------------------------------------ a real tiny sweep: driver, Ray, MLflow

TINY_SWEEP = """\
# Run: glovesweep run {path}
name: report-tiny
factors:
  dataset: ["19997", "bydate"]
  strip: [none, blank_line]
  epochs: [1, 2]
fixed:
  architecture: global_max
  max_sequence_length: 160
  sizing: num_words_plus_one
seeds: 2
baselines: [multinomial_nb]
answer:
  blog_cell: {{dataset: "19997", strip: none}}
  user_cell: {{dataset: bydate, strip: blank_line}}
resources: {{cpu: 1, gpu: 0}}
max_concurrent_trials: 2
max_failures: 1
mlflow: {{tracking_uri: "{tracking_uri}", experiment: report-tiny}}
storage_path: {storage}
"""


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory, mlflow_server, ray_local):
    """A real sweep (driver -> local Ray -> the trainer -> MLflow server) on tiny archives, and its report."""
    from conftest import build_tiny_data_home

    from sweeps.run import driver
    from sweeps import spec as spec_module

    root = tmp_path_factory.mktemp("report-tiny-sweep")
    home = build_tiny_data_home(root)
    path = root / "report-tiny.yaml"
    path.write_text(TINY_SWEEP.format(path=path, tracking_uri=mlflow_server, storage=root / "results"))
    started = time.perf_counter()
    driver.run_sweep(spec_module.load_sweep(path), download_if_missing=False, data_home=str(home),
                     cache_dir=str(root / "cache"))
    sweep_seconds = time.perf_counter() - started
    client = mlflow_client(mlflow_server)
    started = time.perf_counter()
    result = report.make_report("report-tiny", tracking_uri=mlflow_server, out_dir=root / "report",
                                bootstrap_samples=100)
    return {"client": client, "report": result, "sweep_seconds": sweep_seconds,
            "report_seconds": time.perf_counter() - started}


def test_real_sweep_table_matches_its_mlflow_runs(tiny_sweep):
    client, result = tiny_sweep["client"], tiny_sweep["report"]
    parent_id = result.sweep.parent_run_id
    children = client.search_runs([result.sweep.experiment_id], f"tags.`mlflow.parentRunId` = '{parent_id}'")
    keras_runs = [run for run in children if run.data.tags["trainer"] == "keras"]
    baseline_runs = [run for run in children if run.data.tags["trainer"] == "baseline"]
    assert len(keras_runs) == 2 * 2 * 2 and baseline_runs, "cells x seeds network trials, and baselines"
    table = parquet.read_table(result.files["runs"]).to_pylist()
    keras_rows = [row for row in table if row["trainer"] == "keras"]
    assert len(keras_rows) == len(keras_runs) * 2  # one row per trial x requested epoch count {1, 2}
    by_run = {run.info.run_id: run for run in keras_runs}
    for row in keras_rows:
        run = by_run[row["run_id"]]
        assert row["value"] == pytest.approx(run.data.metrics[f"val_acc_at_{row['epochs']}"])
        assert (row["dataset"], row["strip"], row["seed"]) == (
            run.data.params["dataset"], run.data.params["strip"], int(run.data.params["seed"]))
    # The summary at E equals the step metric of epoch E in the history table.
    history = {(row["run_id"], row["epoch"]): row["value"]
               for row in parquet.read_table(result.files["history"]).to_pylist()}
    # val_acc_at_<E> is the epoch's value rounded to 4 digits.
    assert all(history[(row["run_id"], row["epochs"])] == pytest.approx(row["value"], abs=5e-5) for row in keras_rows)
    assert len([row for row in table if row["trainer"] == "baseline"]) == len(baseline_runs)
    cells = [cell for cell in result.tables.cells if cell["model"] == "keras"]
    assert len(cells) == 4 * 2 and all(cell["n"] == 2 for cell in cells)
    assert {cell["model"] for cell in result.tables.cells} == {"keras", "multinomial_nb"}


def test_real_sweep_report_plots_and_artifacts(tiny_sweep):
    client, result = tiny_sweep["client"], tiny_sweep["report"]
    for name in ("epoch_plot", "effects_plot", "gap_plot"):
        data = result.files[name].read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 10_000, name
    logged = {pathlib.PurePosixPath(item.path).name for item in client.list_artifacts(result.sweep.parent_run_id,
                                                                                       "report")}
    assert {"runs.parquet", "report.md", "val_acc_by_epoch.png", "factor_effects.png", "gap.png"} <= logged
    # Both factors vary, so both are ranked at each epoch count; the answer covers both epoch counts.
    ranked = {(record.epochs, record.term) for record in result.tables.effects if record.kind == "main"}
    assert ranked == {(count, term) for count in (1, 2) for term in ("dataset", "strip")}
    assert len(result.answers) == 2 and all("the blog's cell (dataset=19997, strip=none)" in sentence
                                            for sentence in result.answers)


def test_new_metric_names_are_logged_when_present_and_read_as_missing_when_absent(tmp_path):
    from sweeps.tracking import names
    from sweeps.tracking import trial_run

    chosen = trial_run.stats_metrics({names.LEAK_FRACTION_VAL: 0.25, names.LEAKAGE: 0.5, "cache_key": "ab",
                                     "cache_hit": True})
    assert chosen == {names.LEAK_FRACTION_VAL: 0.25, names.LEAKAGE: 0.5}
    # The committed study carries the leak fractions (scripts/add_leak_fractions.py); an older folder without
    # the columns reads them as missing.
    folder = pathlib.Path(__file__).resolve().parents[1] / "docs" / "results" / "study-cpu"
    study = reader.read_runs(folder)
    assert study.runs[[names.LEAK_FRACTION_TRAIN, names.LEAK_FRACTION_VAL]].notna().all().all()
    assert study.runs["value"].notna().all()
    assert len(study.runs) == parquet.read_metadata(folder / reader.RUNS_FILE).num_rows
    # A folder written before the new columns and the metadata existed (as the study was at 4e1f7cc).
    older = study.runs.drop(columns=[names.LEAK_FRACTION_TRAIN, names.LEAK_FRACTION_VAL])
    older.to_parquet(tmp_path / reader.RUNS_FILE, index=False)
    again = reader.read_runs(tmp_path)
    assert again.runs[[names.LEAK_FRACTION_TRAIN, names.LEAK_FRACTION_VAL]].isna().all().all()
    pd.testing.assert_frame_equal(again.runs.drop(columns=[names.LEAK_FRACTION_TRAIN, names.LEAK_FRACTION_VAL]),
                                  study.runs.drop(columns=[names.LEAK_FRACTION_TRAIN, names.LEAK_FRACTION_VAL]))
    assert (again.factors, again.parent_run_id, again.sweep_name, len(again.history)) == (
        study.factors, study.parent_run_id, study.sweep_name, 0)
