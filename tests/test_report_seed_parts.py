"""The report pools the seed's parts: a sweep that crosses split_seed, init_seed and order_seed repeats each cell,
so its runs are the cell's replicates, never factors of it (the committed seed-noise study, 64 runs per cell).
And epoch counts that miss a cell for one reason share one answer sentence."""

from __future__ import annotations

import json
import pathlib
import re

import numpy as np
import pytest

from sweeps import report
from sweeps.report import answer as answer_module
from sweeps.report import reader
from sweeps.report import stats

SEED_NOISE = pathlib.Path(__file__).resolve().parents[1] / "docs" / "results" / "seed-noise" / "seed-noise"
PARTS = ("split_seed", "init_seed", "order_seed")


@pytest.fixture(scope="module")
def swept():
    return reader.read_folder(SEED_NOISE)


def test_the_seed_parts_are_replicates_not_factors_of_a_cell(swept):
    # The runs' factors param names the parts (the sweep file crossed them); neither path to the factors keeps them.
    named = set(swept.runs["factors"].iloc[0].split(","))
    assert set(PARTS) <= named
    assert swept.factors == ["dataset", "strip"]
    assert reader.cell_factors(swept.runs, swept.params) == ["dataset", "strip"]
    assert set(PARTS) <= set(swept.params), "the parts stay columns of the frame"


def test_a_cell_is_every_run_of_its_settings_across_the_parts(swept):
    records = {(record["dataset"], record["strip"], record["epochs"]): record
               for record in stats.cell_table(swept.runs, swept.factors)}
    runs = swept.runs
    chosen = runs[(runs["dataset"] == "19997") & (runs["strip"] == "none") & (runs["epochs"] == 10)]
    blog = records[("19997", "none", 10)]
    assert blog["n"] == len(chosen) == 64
    assert blog["mean"] == pytest.approx(float(np.mean(chosen["value"].astype(float))))
    assert blog["std"] == pytest.approx(float(np.std(chosen["value"].astype(float), ddof=1)))
    assert blog["seeds"] == "split_seed 0 1 2 3 x init_seed 0 1 2 3 x order_seed 0 1 2 3"
    # The user's cell stopped at 37 runs here: split_seed 3 never ran.
    assert records[("bydate", "sklearn_all", 10)]["seeds"].startswith("split_seed 0 1 2 x init_seed")


def test_seeds_text_lists_plain_seeds_as_before():
    members = [{"seed": seed, "split_seed": "None", "init_seed": None} for seed in (2, 0, 1)]
    assert stats.seeds_text(members) == "0 1 2"
    members = [{"seed": seed, "init_seed": str(part)} for seed in (0, 1) for part in (4, 5)]
    assert stats.seeds_text(members) == "seed 0 1 x init_seed 4 5"


def test_the_report_of_the_crossed_sweep_answers_from_every_run(tmp_path):
    made = report.make_report(SEED_NOISE, out_dir=tmp_path / "report", bootstrap_samples=50, log_artifacts=False)
    answer = json.loads((tmp_path / "report" / "answer.json").read_text())
    by_epochs = {item["epochs"]: item for item in answer["by_epochs"]}
    assert by_epochs[10]["blog"]["n"] == 64 and by_epochs[10]["user"]["n"] == 37
    assert by_epochs[2]["blog"]["n"] == 64
    # With 64 runs in the blog's cell the gap's interval is narrow: under 2 points wide at 10 epochs.
    gap = by_epochs[10]["gap"]
    assert 0 < gap["high"] - gap["low"] < 2 and gap["low"] < gap["points"] < gap["high"]
    assert "split_seed" not in (tmp_path / "report" / "cells.csv").read_text().splitlines()[0]
    # The intervals treat the runs as independent draws, which a crossed design's are not: the report says so.
    assert "The runs cross the seed's parts (split_seed, init_seed, order_seed)" in made.files["markdown"].read_text()
    assert stats.crossed_seed_parts(made.sweep.runs) == list(PARTS)
    assert stats.crossed_seed_parts(reader.read_folder(SEED_NOISE.parents[1] / "study-cpu").runs) == []
    assert made.answer.sentences[0].startswith("At 2 epochs the blog's cell (dataset=19997, strip=none) reaches")
    # The seed-noise README's table is this report's answer (rounded as printed).
    rows = re.findall(r"^\| (\d+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \[([\d.]+), ([\d.]+)\] \| ([\d.]+) "
                      r"\[([\d.]+), ([\d.]+)\] \((\d+)%\) \| ([\d.]+) \[([\d.]+), ([\d.]+)\] \|$",
                      (SEED_NOISE.parent / "README.md").read_text(), flags=re.MULTILINE)
    assert [int(row[0]) for row in rows] == [2, 10]
    for epochs, *numbers in rows:
        item, written = by_epochs[int(epochs)], [float(number) for number in numbers]
        points = [item[name][key] for name in ("gap", "leak_effect", "remainder") for key in ("points", "low", "high")]
        assert written[:2] == pytest.approx([item["blog"]["mean"], item["user"]["mean"]], abs=0.0006)
        assert written[2:8] + written[9:] == pytest.approx(points, abs=0.051), epochs
        assert written[8] == pytest.approx(100 * item["leak_share"], abs=0.51)


def missing_answer(epochs: int, missing: str) -> answer_module.EpochAnswer:
    return answer_module.EpochAnswer(epochs=epochs, mechanism="", sentence=f"one sentence at {epochs}",
                                     missing=missing)


def test_epoch_counts_missing_a_cell_for_one_reason_share_one_sentence():
    reason, other = "no runs with dataset=19997 (the runs have bydate)", "no runs with strip=none"
    answer = answer_module.Answer(blog_cell={"dataset": "19997"}, user_cell={"dataset": "bydate"}, cells_from="",
                                  by_epochs=[missing_answer(1, reason), missing_answer(2, reason),
                                             missing_answer(10, reason)])
    assert answer.sentences == [f"At 1, 2 and 10 epochs the gap cannot be measured: {reason}."]
    answer = answer_module.Answer(blog_cell={}, user_cell={}, cells_from="",
                                  by_epochs=[missing_answer(1, reason), missing_answer(2, other),
                                             answer_module.EpochAnswer(epochs=10, mechanism="", sentence="measured")])
    assert answer.sentences == [f"At 1 epoch the gap cannot be measured: {reason}.",
                                f"At 2 epochs the gap cannot be measured: {other}.", "measured"]
