"""scripts/importance_coverage.py: the true importances of its synthetic objective (against a Monte Carlo
estimate) and its smoke run's coverage records (issue 20)."""

from __future__ import annotations

import importlib.util
import json
import math
import pathlib
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("importance_coverage", ROOT / "scripts" / "importance_coverage.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their annotations through the module's entry
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def smoke(script, tmp_path_factory):
    out = tmp_path_factory.mktemp("coverage")
    script.main(["--smoke", "--out", str(out)])
    return out, json.loads((out / "coverage.json").read_text())


def test_truth_sums_to_one_and_matches_monte_carlo(script):
    objective = script.SyntheticObjective()
    truth = objective.truth()
    assert set(truth) == set(script.FACTORS)
    assert math.isclose(sum(truth.values()), 1.0, rel_tol=1e-12)
    assert truth["unused"] == 0.0
    assert truth["width"] > truth["loss"] > truth["rate"] > 0
    analytic = objective.main_effect_variances()
    estimated = script.monte_carlo_variances(objective, 200_000, seed=1)
    for name in script.FACTORS:
        assert estimated[name] == pytest.approx(analytic[name], abs=0.01), name


def test_linear_scale_truth_matches_monte_carlo_on_a_linear_rate(script):
    """Drawing rate uniformly on its linear scale, the pick-freeze estimate gives the linear-scale truth."""

    class LinearRate(script.SyntheticObjective):
        def draw(self, count, random):
            drawn = super().draw(count, random)
            drawn["rate"] = random.uniform(script.RATE_LOW, script.RATE_HIGH, count)
            return drawn

    objective = LinearRate()
    estimated = script.normalized(script.monte_carlo_variances(objective, 200_000, seed=2))
    linear = objective.linear_scale_truth()
    for name in script.FACTORS:
        assert estimated[name] == pytest.approx(linear[name], abs=0.01), name
    # Most of the linear width sits in the last decade: rate's share falls well below its log-scale truth.
    assert linear["rate"] < objective.truth()["rate"] / 2


def test_synthetic_trials_are_what_importances_reads(script):
    objective = script.SyntheticObjective()
    frame = script.synthetic_trials(objective, 500, np.random.default_rng(0))
    assert list(frame.columns) == ["number", "status", "value", *script.FACTORS]
    assert (frame["rate"] >= script.RATE_LOW).all() and (frame["rate"] <= script.RATE_HIGH).all()
    # Log-uniform: about a third of the trials in each decade.
    assert np.mean(frame["rate"] < 1e-3) == pytest.approx(1 / 3, abs=0.07)
    assert set(frame["loss"]) == set(script.LOSSES)
    residual = frame["value"] - objective.value({name: frame[name].to_numpy() for name in script.FACTORS})
    assert residual.std() == pytest.approx(objective.noise, rel=0.15)


def test_smoke_outputs(script, smoke):
    out, result = smoke
    settings = result["settings"]
    assert (settings["studies"], settings["trials"], settings["bootstrap"]) == (5, 20, 10)
    assert "--smoke" in settings["command"] and settings["machine"]
    assert (out / "coverage.md").read_text().startswith("# Importance interval coverage: 5 synthetic studies")
    records = result["results"]
    assert len(records) == 5 * len(script.FACTORS)
    for study in range(5):
        values = [item["value"] for item in records if item["study"] == study]
        assert math.isclose(sum(values), 1.0, rel_tol=1e-9)
    for item in records:
        assert 0.0 <= item["low"] <= item["high"] <= 1.0
        assert item["covered"] == (item["low"] <= item["truth"] <= item["high"])
        assert item["truth"] == pytest.approx(result["truth"][item["factor"]])
        assert 0 < item["resamples"] <= 10
    summary = result["summary"]
    for name, factor in summary["factors"].items():
        rows = [item for item in records if item["factor"] == name]
        coverage = factor["coverage"]
        assert coverage["hits"] == sum(item["covered"] for item in rows) and coverage["count"] == 5
        assert 0.0 <= coverage["low"] <= coverage["rate"] <= coverage["high"] <= 1.0
        assert factor["bias"] == pytest.approx(np.mean([item["value"] - item["truth"] for item in rows]))
    # A factor without an effect still gets a positive estimate (the forests split on its noise): bias > 0.
    assert summary["factors"]["unused"]["truth"] == 0.0
    assert summary["factors"]["unused"]["bias"] > 0
    assert summary["overall"]["count"] == 5 * len(script.FACTORS)
    assert summary["overall_nonzero"]["count"] == 5 * (len(script.FACTORS) - 1)
