"""scripts/seed_noise.py: variance components of a crossed split x init x order design, checked against statsmodels
on synthetic designs with known components (seeded)."""

from __future__ import annotations

import importlib.util
import json
import math
import pathlib
import re
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from sweeps.report import reader

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("seed_noise", ROOT / "scripts" / "seed_noise.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def truth(script, values=(4.0, 2.0, 1.5, 0.5, 0.5, 0.5, 1.0)):
    return dict(zip(script.TERMS, values))


def long_frame(table: np.ndarray) -> pd.DataFrame:
    split, init, order = np.indices(table.shape)
    return pd.DataFrame({"y": table.ravel(), "s": split.ravel(), "i": init.ravel(), "o": order.ravel(), "g": 1})


def test_mean_squares_equal_statsmodels_anova_lm(script):
    import statsmodels.api as sm
    import statsmodels.formula.api as smf

    table = script.simulate(truth(script), (4, 3, 5), 1, np.random.default_rng(3))[0]
    fitted = smf.ols("y ~ C(s) + C(i) + C(o) + C(s):C(i) + C(s):C(o) + C(i):C(o)", data=long_frame(table)).fit()
    anova = sm.stats.anova_lm(fitted, typ=1)
    ours = script.mean_squares(table)
    rows = ["C(s)", "C(i)", "C(o)", "C(s):C(i)", "C(s):C(o)", "C(i):C(o)", "Residual"]
    for term, row in zip(script.TERMS, rows):
        assert ours[term] == pytest.approx(anova.loc[row, "mean_sq"], rel=1e-9), row
        assert script.degrees_of_freedom((4, 3, 5))[script.TERMS.index(term)] == anova.loc[row, "df"]


def test_components_equal_mixedlm_reml_where_every_estimate_is_positive(script):
    import statsmodels.api as sm

    # Seed 1 of this design gives seven positive ANOVA estimates, where REML and ANOVA agree exactly.
    table = script.simulate(truth(script), (5, 5, 5), 1, np.random.default_rng(1))[0]
    ours = script.components(table)
    assert min(float(value) for value in ours.values()) > 0
    formulas = {"s": "0 + C(s)", "i": "0 + C(i)", "o": "0 + C(o)", "si": "0 + C(s):C(i)", "so": "0 + C(s):C(o)",
                "io": "0 + C(i):C(o)"}
    model = sm.MixedLM.from_formula("y ~ 1", groups="g", vc_formula=formulas, re_formula="0", data=long_frame(table))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted = model.fit(reml=True)
    reml = dict(zip(model.exog_vc.names, fitted.vcomp))
    names = dict(zip(script.TERMS, ("s", "i", "o", "si", "so", "io")))
    for term, name in names.items():
        assert float(ours[term]) == pytest.approx(reml[name], rel=0.02, abs=0.005), name
    assert float(ours[script.PARTS]) == pytest.approx(fitted.scale, rel=0.02)


def test_estimates_are_unbiased_and_the_total_interval_covers(script):
    known = truth(script)
    tables = script.simulate(known, (4, 4, 4), 4000, np.random.default_rng(0))
    estimates = script.components(tables)
    for term, value in known.items():
        spread = float(estimates[term].std()) / math.sqrt(len(tables))
        assert abs(float(estimates[term].mean()) - value) < 4 * spread, term
    dfs, weights = script.degrees_of_freedom((4, 4, 4)), script.coefficients((4, 4, 4))
    squares = script.mean_squares(tables[:400])
    covered = 0
    for index in range(400):
        mean_square = np.array([squares[term][index] for term in script.TERMS])
        low, high = script.satterthwaite(weights.sum(axis=0), mean_square, dfs)
        covered += low <= sum(known.values()) <= high
    assert 0.9 <= covered / 400 <= 0.99


def test_seeds_needed_is_the_smallest_n_whose_t_interval_fits(script):
    for sd, half_width in ((2.3, 1.0), (5.0, 2.0), (1.0, 5.0)):
        n = script.seeds_needed(sd, half_width)
        assert scipy_stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n) <= half_width
        if n > 2:
            assert scipy_stats.t.ppf(0.975, n - 2) * sd / math.sqrt(n - 1) > half_width
    assert script.seeds_needed(2.0, 1.0) == 18  # t(0.975, 17) = 2.110: 2.110 * 2 / sqrt(18) = 0.995


def write_folder(folder: pathlib.Path, frame: pd.DataFrame) -> pathlib.Path:
    folder.mkdir(parents=True)
    frame.to_parquet(folder / reader.RUNS_FILE)
    return folder


def test_a_report_folder_gives_markdown_and_json_for_one_cell(script, tmp_path, capsys):
    blog = script.synthetic_runs(script.SMOKE_VARIANCES, seed=5)
    user = script.synthetic_runs(script.SMOKE_VARIANCES, mean=0.3, seed=6).assign(dataset="bydate", strip="sklearn_all")
    baseline = reader.runs_frame([dict(trainer="baseline", model="linear_svm", dataset="bydate", strip="sklearn_all",
                                       value=0.7)])
    folder = write_folder(tmp_path / "seed-noise", pd.concat([blog, user, baseline], ignore_index=True))
    code = script.main([str(folder), "--cell", "dataset=bydate,strip=sklearn_all", "--epochs", "10",
                        "--out", str(tmp_path / "out")])
    assert code == 0
    record = json.loads((tmp_path / "out" / "seed-noise.json").read_text())
    assert record["runs"] == 64 and record["unit"] == "points"
    assert record["mean"] == pytest.approx(100 * user["value"].mean())
    expected = script.components(100 * script.table_of(user))
    assert [row["estimate"] for row in record["components"]] == pytest.approx([float(value) for value in
                                                                               expected.values()])
    assert record["sd"] == pytest.approx(math.sqrt(sum(max(float(value), 0) for value in expected.values())))
    assert [row["half_width"] for row in record["seeds_needed"]] == list(script.HALF_WIDTHS)
    text = (tmp_path / "out" / "seed-noise.md").read_text()
    assert "| split x init x order (residual) |" in text and "dataset=bydate, strip=sklearn_all" in text
    assert text == capsys.readouterr().out


def test_a_missing_combination_is_one_line_and_exit_2(script, tmp_path, capsys):
    runs = script.synthetic_runs(script.SMOKE_VARIANCES).iloc[1:]
    folder = write_folder(tmp_path / "gap", runs)
    assert script.main([str(folder), "--out", str(tmp_path / "out")]) == 2
    assert "63 of the 64 combinations" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_smoke_mode_runs_in_seconds(script, tmp_path):
    assert script.main(["--smoke", "--out", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "seed-noise.json").read_text())
    assert record["levels"] == {"split_seed": 4, "init_seed": 4, "order_seed": 4}
    assert record["sd_interval"][0] < record["sd"] < record["sd_interval"][1]


# The committed study (docs/results/seed-noise): (runs folder, cell, epochs, output folder).
COMMITTED = [("seed-noise", "dataset=19997,strip=none", 10, "blog-cell-10"),
             ("seed-noise", "dataset=19997,strip=none", 2, "blog-cell-2"),
             ("seed-noise-user", "dataset=bydate,strip=sklearn_all", 10, "user-cell-10"),
             ("seed-noise-user", "dataset=bydate,strip=sklearn_all", 2, "user-cell-2"),
             ("seed-noise", "dataset=19997,strip=sklearn_all", 10, "corner-19997-sklearn_all-10"),
             ("seed-noise", "dataset=bydate,strip=none", 10, "corner-bydate-none-10")]


@pytest.mark.parametrize("runs, cell, epochs, out", COMMITTED, ids=[row[-1] for row in COMMITTED])
def test_the_committed_seed_noise_study_is_what_the_script_makes_of_its_runs(script, tmp_path, monkeypatch, runs,
                                                                             cell, epochs, out):
    """docs/results/seed-noise regenerates from its own runs.parquet files: every component, interval and seed count
    of the README's seed-noise paragraph. Numbers to 1e-9 relative, printed ones to their last digit (another CPU
    made them)."""
    import tolerance

    study = ROOT / "docs" / "results" / "seed-noise"
    monkeypatch.chdir(study)
    assert script.main([runs, "--cell", cell, "--epochs", str(epochs), "--out", str(tmp_path)]) == 0
    for name in ("seed-noise.md", "seed-noise.json"):
        made, committed = (tmp_path / name).read_text(), (study / out / name).read_text()
        tolerance.assert_same_text(made, committed, name=f"{out}/{name}")


def test_the_readmes_seed_noise_table_is_the_committed_studys():
    """README's table under "Seed noise, decomposed": each row's sd, interval and seed counts are its JSON's."""
    study = ROOT / "docs" / "results" / "seed-noise"
    readme = (ROOT / "README.md").read_text()
    pattern = r"^\| (blog's|user's)[^|]* \| (\d+) \| ([\d.]+) \[([\d.]+), ([\d.]+)\] \| (\d+) \| (\d+) \| (\d+) \|$"
    rows = re.findall(pattern, readme, flags=re.MULTILINE)
    assert len(rows) == 4, rows
    for cell, epochs, sd, low, high, *seeds in rows:
        record = json.loads((study / f"{cell[:-2]}-cell-{epochs}" / "seed-noise.json").read_text())
        assert float(sd) == pytest.approx(record["sd"], abs=0.005)
        assert [float(low), float(high)] == pytest.approx(record["sd_interval"], abs=0.005)
        counts = {row["half_width"]: row["seeds"] for row in record["seeds_needed"]}
        assert [int(value) for value in seeds] == [counts[1.0], counts[2.0], counts[5.0]]
