"""The computed answer (sweeps/answer.py), the claims' verdicts (sweeps/claims.py), and what the report writes from
them: answer.json, claims.json, report.html, and no plot without data. Hand-made frames; no MLflow."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math

import numpy as np
import pytest

from sweeps.report import answer as answer_module
from sweeps.report import claims as claims_module
from sweeps.report import gap as gap_module
from sweeps.report import html_report
from sweeps.tracking import names
from sweeps import report
from sweeps.report import reader
from sweeps.report import wording
from sweeps.run import parent_run

BLOG = {"dataset": "19997", "strip": "none"}
USER = {"dataset": "bydate", "strip": "sklearn_all"}
FACTORS = ["dataset", "strip"]
STRIPS = ("none", "blank_line", "sklearn_all")


def study_rows(means: dict[tuple[str, str], float], leaks: dict[tuple[str, str], float] | None, *, seeds=(0, 1, 2),
               noise=0.005, random_seed=0, epochs=(2,)) -> list[dict]:
    """Network rows of a dataset x strip study with the given cell means; leak fractions NaN when ``leaks`` is None."""
    random = np.random.default_rng(random_seed)
    rows = []
    for (dataset, strip), seed, count in itertools.product(means, seeds, epochs):
        leak = math.nan if leaks is None else leaks.get((dataset, strip), 0.0)
        rows.append({"dataset": dataset, "strip": strip, "trainer": "keras", "model": "keras", "seed": seed,
                     "run_id": f"{dataset}-{strip}-{seed}", "epochs": count, "glove_dim": "50", "leakage": 0.0,
                     "val_acc": means[(dataset, strip)] + random.normal(0, noise),
                     names.LEAK_FRACTION_TRAIN: leak, names.LEAK_FRACTION_VAL: leak})
    return rows


# The planted label leak: 19997 with headers kept reads the label (0.92); cutting the headers on the same data drops
# it to 0.47 (45 points), and bydate with the same stripping is 14 points lower again (gap 59 points).
LEAK_MEANS = {("19997", "none"): 0.92, ("19997", "blank_line"): 0.50, ("19997", "sklearn_all"): 0.47,
              ("bydate", "none"): 0.38, ("bydate", "blank_line"): 0.40, ("bydate", "sklearn_all"): 0.33}
# No leak: the dataset alone moves accuracy by 50 points, stripping by nothing.
DATASET_MEANS = {(dataset, strip): 0.90 if dataset == "19997" else 0.40
                 for dataset, strip in itertools.product(("19997", "bydate"), STRIPS)}


def test_a_planted_label_leak_is_named_with_its_computed_share():
    frame = reader.runs_frame(study_rows(LEAK_MEANS, {("19997", "none"): 0.99}))
    (found,) = answer_module.compute_answer(frame, FACTORS, BLOG, USER).by_epochs
    assert found.mechanism == "label_leak" and found.leak_measured
    assert found.headers_cut.cell == {"dataset": "19997", "strip": "sklearn_all"}
    assert "user's strip mode" in found.headers_cut_choice
    assert found.leak_effect.points == pytest.approx(45.0, abs=1.0)
    assert found.remainder.points == pytest.approx(14.0, abs=1.0)
    assert found.gap.points == pytest.approx(found.leak_effect.points + found.remainder.points)
    assert found.leak_share == pytest.approx(45 / 59, abs=0.02)
    assert 0 < found.leak_effect.low < 45 < found.leak_effect.high
    # The gap's interval is the gap split's: the same pooled-seed-noise t contrast.
    (gap,) = gap_module.decompose_gap(frame, FACTORS, BLOG, USER)
    assert (found.gap.low, found.gap.high) == pytest.approx((gap.gap_low, gap.gap_high), rel=1e-12)
    assert found.blog.leak_fraction_val == pytest.approx(0.99) and found.headers_cut.leak_fraction_train == 0.0
    assert "label leak through the Newsgroups: header" in found.sentence
    assert f"costs {found.leak_effect.points:.1f} points" in found.sentence
    # Blank-line cut on the same data is reported beside the chosen one.
    assert [item.cell["strip"] for item in found.alternatives] == ["sklearn_all", "blank_line"]


def test_no_leak_names_the_dataset_and_says_why_not_the_leak():
    frame = reader.runs_frame(study_rows(DATASET_MEANS, {}))
    (found,) = answer_module.compute_answer(frame, FACTORS, BLOG, USER).by_epochs
    assert found.mechanism == "dataset" and found.leak_measured
    assert found.leak_effect.points == pytest.approx(0.0, abs=1.5)
    assert found.remainder.points == pytest.approx(50.0, abs=1.5)
    assert "The label leak does not explain it" in found.sentence
    assert "dataset (19997 -> bydate) explains" in found.sentence


def test_a_high_leak_that_costs_little_is_not_called_the_cause():
    # The headers carry the label, but cutting them costs 5 points of a 55-point gap: the dataset is the cause.
    means = {**DATASET_MEANS, ("19997", "none"): 0.95}
    frame = reader.runs_frame(study_rows(means, {("19997", "none"): 0.99}))
    (found,) = answer_module.compute_answer(frame, FACTORS, BLOG, USER).by_epochs
    assert found.mechanism == "dataset" and "no more than the other" in found.sentence


def test_without_leak_fractions_the_leak_is_not_measured_and_the_shapley_wording_stays():
    means = {key: value for key, value in LEAK_MEANS.items() if key != ("19997", "sklearn_all")}
    frame = reader.runs_frame(study_rows(means, None))
    (found,) = answer_module.compute_answer(frame, FACTORS, BLOG, USER).by_epochs
    assert not found.leak_measured and found.mechanism in ("dataset", "strip")
    assert "the label leak is not measured" in found.sentence and "explains" in found.sentence
    # The user's strip mode is not run on 19997: the headers-cut cell is the first stripped level, and says so.
    assert found.headers_cut.cell == {"dataset": "19997", "strip": "blank_line"}
    assert "first stripped level" in found.headers_cut_choice
    assert found.leak_effect.points == pytest.approx(42.0, abs=1.0)


def test_one_seed_names_the_leak_on_point_values_and_says_there_is_no_interval():
    frame = reader.runs_frame(study_rows(LEAK_MEANS, {("19997", "none"): 0.99}, seeds=(0,)))
    (found,) = answer_module.compute_answer(frame, FACTORS, BLOG, USER).by_epochs
    assert math.isnan(found.leak_effect.low) and found.mechanism == "label_leak"
    assert "One seed per cell: no interval bounds these points" in found.sentence
    assert f"costs {found.leak_effect.points:.1f} points (" in found.sentence  # a number, no interval
    # Without the leak fractions' support, one seed names no leak.
    unmarked = reader.runs_frame(study_rows(LEAK_MEANS, {}, seeds=(0,)))
    (plain,) = answer_module.compute_answer(unmarked, FACTORS, BLOG, USER).by_epochs
    assert plain.mechanism != "label_leak"


@pytest.mark.parametrize("user_mean, gap_text", [(0.60, "a gap of 0.0 points"), (0.63, "a gap of -3.0 points")])
def test_without_a_positive_gap_no_mechanism_is_named_and_no_nan_is_printed(user_mean, gap_text):
    # A smoke sweep's case: the user's cell scores as well as the blog's (or better), while cutting the headers on
    # the blog's data costs 5 points. There is no gap for the leak or a factor to explain, and no share of it.
    means = {("19997", "none"): 0.60, ("19997", "sklearn_all"): 0.55, ("bydate", "sklearn_all"): user_mean}
    frame = reader.runs_frame(study_rows(means, {("19997", "none"): 0.99}, noise=0.0))
    answer = answer_module.compute_answer(frame, FACTORS, BLOG, USER)
    (found,) = answer.by_epochs
    assert found.mechanism == "no_gap" and math.isnan(found.leak_share)
    assert found.leak_effect.points == pytest.approx(5.0) and found.gap.points == pytest.approx(100 * (0.60 - user_mean))
    sentence = found.sentence
    assert gap_text in sentence and "there is no gap for a factor to explain" in sentence, sentence
    assert "nan" not in sentence.lower() and "cause" not in sentence and "explains" not in sentence, sentence
    assert "% of the gap" not in sentence and "costs 5.0 points [5.0, 5.0]; the other" in sentence, sentence
    assert json.dumps(answer.to_dict(), allow_nan=False)
    # The gap split's own sentence names no factor either.
    (split,) = gap_module.decompose_gap(frame, FACTORS, BLOG, USER)
    (plain,) = wording.answer_sentences([split], BLOG, USER)
    assert "explains" not in plain and "nan" not in plain.lower(), plain


def test_a_factor_is_named_only_for_its_positive_part_of_a_positive_gap():
    # A 2-point gap of three parts: dataset 6 and strip 4 for the blog, embedding 8 for the user. The largest part
    # (embedding, -8) does not explain the gap; dataset, the largest positive part, does.
    rows = []
    for dataset, strip, embedding, seed in itertools.product(("19997", "bydate"), ("none", "sklearn_all"),
                                                             ("frozen", "trainable"), (0, 1)):
        accuracy = (0.60 - 0.06 * (dataset == "bydate") - 0.04 * (strip == "sklearn_all")
                    + 0.08 * (embedding == "trainable"))
        rows.append({"dataset": dataset, "strip": strip, "embedding": embedding, "trainer": "keras", "model": "keras",
                     "seed": seed, "run_id": f"{dataset}-{strip}-{embedding}-{seed}", "epochs": 2, "val_acc": accuracy,
                     "leakage": 0.0})
    frame = reader.runs_frame(rows)
    factors, blog = ["dataset", "strip", "embedding"], dict(BLOG, embedding="frozen")
    user = dict(USER, embedding="trainable")
    (split,) = gap_module.decompose_gap(frame, factors, blog, user)
    assert [item.factor for item in split.contributions] == ["embedding", "dataset", "strip"]
    (found,) = answer_module.compute_answer(frame, factors, blog, user).by_epochs
    assert found.mechanism == "dataset"
    assert "a gap of 2.0 points; dataset (19997 -> bydate) explains 6.0 of them" in found.sentence, found.sentence
    assert "embedding -8.0; strip 4.0." in found.sentence and "nan" not in found.sentence.lower()


def test_prediction_interval_and_verdicts():
    rows = study_rows({("19997", "none"): 0.0}, {}, noise=0.0)
    for row, value in zip(rows, (0.70, 0.74, 0.78)):
        row["val_acc"] = value
    rows += study_rows({("bydate", "none"): 0.6}, {}, seeds=(0,))
    frame = reader.runs_frame(rows)
    # mean 0.74, s 0.04, t(0.975, 2) = 4.302653: half width 4.302653 * 0.04 * sqrt(4 / 3) = 0.198731.
    assert claims_module.prediction_interval([0.70, 0.74, 0.78]) == pytest.approx((0.541269, 0.938731), abs=1e-6)
    claims = [{"source": "a", "cell": BLOG, "epoch": 2, "value": 0.95}, {"source": "b", "cell": BLOG, "epoch": 2,
                                                                        "value": 0.60},
              {"source": "c", "cell": {"dataset": "bydate", "strip": "none"}, "epoch": 2, "value": 0.6},
              {"source": "d", "cell": BLOG, "epoch": 10, "value": 0.7}]
    above, inside, single, absent = claims_module.judge_claims(frame, claims)
    assert above.inside is False and above.verdict.startswith("not reproduced: 21.0 points above")
    assert inside.inside is True and inside.mean == pytest.approx(0.74) and inside.n == 3
    assert single.inside is None and single.n == 1 and math.isnan(single.prediction_low)
    assert absent.n == 0 and absent.verdict.startswith("not run")
    assert json.dumps(absent.to_dict())  # NaN written as null, so the JSON is strict


def write_folder(tmp_path, rows, sweep_text: str | None):
    frame = reader.runs_frame(rows)
    swept = reader.SweepFrame(runs=frame, history=reader.history_frame([]), sweep_name="planted", parent_run_id="0" * 32,
                            factors=FACTORS, source=str(tmp_path))
    reader.write_frames(swept, tmp_path)
    if sweep_text:
        (tmp_path / "sweep.yaml").write_text(sweep_text)
    return tmp_path


PLANTED_SWEEP = """\
name: planted
factors: {dataset: ["19997", bydate], strip: [none, blank_line, sklearn_all], epochs: [2]}
seeds: 3
answer:
  blog_cell: {dataset: "19997", strip: none}
  user_cell: {dataset: bydate, strip: sklearn_all}
claims:
  - {source: "Keras blog 2016", cell: {dataset: "19997", strip: none}, epoch: 2, value: 0.95}
"""


def test_report_writes_the_answer_and_claims_as_json_and_html(tmp_path):
    folder = write_folder(tmp_path / "in", study_rows(LEAK_MEANS, {("19997", "none"): 0.99}), PLANTED_SWEEP)
    result = report.make_report(folder, out_dir=tmp_path / "out", bootstrap_samples=20)
    assert result.answer.cells_from == "the sweep file's answer block"
    written = json.loads(result.files["answer"].read_text())
    (at_two,) = written["by_epochs"]
    assert at_two["mechanism"] == "label_leak" and at_two["leak_effect"]["points"] == pytest.approx(45, abs=1)
    assert at_two["headers_cut"]["cell"] == {"dataset": "19997", "strip": "sklearn_all"}
    assert written["glove_dims"] == [50] and written["cells_from"] == "the sweep file's answer block"
    (claim,) = json.loads(result.files["claims"].read_text())["claims"]
    assert claim["source"] == "Keras blog 2016" and claim["inside"] is False and claim["n"] == 3
    page = result.files["html"].read_text()
    assert page.count('src="data:image/png;base64,') == 3 and "<table>" in page
    markdown = result.files["markdown"].read_text()
    assert "GloVe 6B 50d; the publications used 100d" in markdown and "Keras PR #5585 (2017): 0.47 @2" in markdown
    assert "| Keras blog 2016 | dataset=19997, strip=none | 2 | 0.95 |" in markdown
    # The parent run's metrics read the same typed records (sweeps.run.parent_run).
    metrics = parent_run.summary_metrics(result)
    assert metrics["gap_points_at_2"] == pytest.approx(59, abs=1.5)
    assert metrics["gap_points_at_2/dataset"] + metrics["gap_points_at_2/strip"] == pytest.approx(
        metrics["gap_points_at_2"], abs=2e-4)
    assert {"share_at_2/dataset", "share_at_2/strip", "answer_at_2/leak_share"} <= set(metrics)
    # Flags win over the sweep file.
    again = report.make_report(folder, out_dir=tmp_path / "flags", bootstrap_samples=20,
                               user_cell={"dataset": "bydate", "strip": "none"})
    assert again.answer.user_cell == {"dataset": "bydate", "strip": "none"}
    assert again.answer.cells_from.startswith("the --blog-cell")


def test_a_plot_without_data_is_not_drawn_and_the_report_says_why(tmp_path):
    rows = study_rows({("bydate", "sklearn_all"): 0.5}, None)
    folder = write_folder(tmp_path / "in", rows, None)
    result = report.make_report(folder, out_dir=tmp_path / "out", bootstrap_samples=20)
    assert "effects_plot" not in result.files and "gap_plot" not in result.files
    assert not (tmp_path / "out" / "factor_effects.png").exists()
    markdown = result.files["markdown"].read_text()
    assert "Not drawn: factor effects: no factor varies" in markdown and "Not drawn: the gap plot" in markdown
    assert result.answer.cells_from.startswith("the defaults")
    assert result.files["epoch_plot"].stat().st_size > 10_000


def test_html_converts_the_markdown_report_elements(tmp_path):
    page = html_report.to_html("# T\n\ntext with `code` & more\n\n- one\n- two\n\n| a | b |\n|---|---|\n| 1 | <2> |\n\n"
                               "![missing plot](absent.png)\n", tmp_path, title="T")
    assert "<h1>T</h1>" in page and "<code>code</code> &amp; more" in page
    assert "<ul>\n<li>one</li>\n<li>two</li>\n</ul>" in page
    assert "<tr>\n<th>a</th>\n<th>b</th>\n</tr>" in page and "<td>&lt;2&gt;</td>" in page
    assert "image absent.png not found" in page


def test_a_main_effect_that_differs_from_its_gap_share_is_explained():
    import pathlib

    from sweeps.report import stats

    # The first study (a frozen copy: tests/data/study-cpu-4e1f7cc), whose numbers the comments below quote.
    study = reader.read_runs(pathlib.Path(__file__).resolve().parents[1] / "tests" / "data" / "study-cpu-4e1f7cc")
    effects = stats.attribute(study.runs, study.factors, bootstrap_samples=1)
    gaps = gap_module.decompose_gap(study.runs, study.factors, BLOG, USER)
    note = answer_module.effects_note(effects, gaps[0])
    # At 2 epochs dataset is 23.6 points as a main effect and 30.9 in the gap split; strip is 28.1 in both.
    assert "(dataset 23.6 as a main effect, 30.9 in the gap)" in note and "dataset x strip: up to 15.1" in note
    assert "strip" not in note.split("differ (")[1].split(")")[0]
    # A factor whose two numbers agree gets no sentence.
    mains = {item.term: item.effect_points for item in effects if item.epochs == 2 and item.kind == "main"}
    same = dataclasses.replace(gaps[0], contributions=tuple(dataclasses.replace(item, points=mains[item.factor])
                                                            for item in gaps[0].contributions))
    assert answer_module.effects_note(effects, same) == ""
