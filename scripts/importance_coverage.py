"""Do the search report's importance intervals cover the truth at the rate they claim? (issue 20's test list)

Each synthetic study draws ``--trials`` trials of four factors from a search's own distributions and gives each
the value of a known objective plus Gaussian noise (no training):

    value = amplitude * sin(2 pi width) + slope * u(rate) + offset[loss] + twist * (width - 1/2) (u - 1/2) + noise

with ``width`` uniform on [0, 1], ``rate`` log-uniform on [1e-4, 1e-1] (``u`` = its position on the log scale, in
[0, 1]), ``loss`` a choice among three, ``unused`` uniform on [0, 1] with no effect, ``noise`` normal. The report's
own ``sweeps.report.search_stats.importances`` (Optuna's fANOVA normalized to sum to 1, a 95% percentile bootstrap
over trials) then gives each factor a value and an interval.

**The truth.** Optuna's fANOVA gives each factor the variance of its own marginal (its main effect) over the
forest's total, then ``get_param_importances`` normalizes over the factors, so interaction variance and noise
drop out. The truth under that definition is each factor's main-effect variance, over the search's distributions
(what the report claims: the share of the objective's variance that the factor's marginal explains), normalized
over the factors: sin(2 pi x) has variance 1/2, u has 1/12, the offsets their variance over equally likely choices,
the centred twist none, ``unused`` none. The truth is without noise; that fANOVA's forest is fit on noisy values
is part of the method's bias, which this script measures. A pick-freeze Monte Carlo (``monte_carlo_variances``)
checks the analytic values.

**The method's own scale.** Optuna's fANOVA integrates each factor uniformly over its bounds on a linear scale
(``_SearchSpaceTransform(..., transform_log=False)`` in ``optuna/importance/_fanova/_evaluator.py``): a
log-uniform factor is weighed by its linear width, where the search spent its trials by their log width. So the
script also gives ``rate``'s share with its variance taken over a uniform linear [1e-4, 1e-1]
(``linear_scale_truth``) and the coverage against that.

    python scripts/importance_coverage.py --studies 100 --trials 40 --bootstrap 100 --seed 0 --out OUT
    python scripts/importance_coverage.py --smoke --out OUT      # 5 studies x 20 trials x 10 refits, seconds

Writes ``coverage.json`` and ``coverage.md`` to ``--out`` and prints the Markdown.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import pathlib
import platform
import sys
import time

import numpy as np
import pandas as pd
from scipy import integrate
from scipy import stats as scipy_stats

from sweeps.report import search_stats
from sweeps.spec import space as space_module

FACTORS = ("width", "rate", "loss", "unused")
RATE_LOW, RATE_HIGH = 1e-4, 1e-1
LOSSES = ("hinge", "log_loss", "huber")
SMOKE = {"studies": 5, "trials": 20, "bootstrap": 10}


@dataclasses.dataclass(frozen=True)
class SyntheticObjective:
    """The known objective of every study (see the module docstring); ``noise`` is the noise's standard deviation."""

    amplitude: float = 1.0
    slope: float = 1.5
    offsets: tuple[float, ...] = (0.0, 0.6, -0.6)
    twist: float = 2.0
    noise: float = 0.3

    def space(self) -> dict[str, space_module.Distribution]:
        """The search's distributions, as a sweep file's ``factors`` would give them."""
        return {"width": space_module.Distribution("uniform", low=0.0, high=1.0),
                "rate": space_module.Distribution("loguniform", low=RATE_LOW, high=RATE_HIGH, log=True),
                "loss": space_module.Distribution("choice", values=LOSSES),
                "unused": space_module.Distribution("uniform", low=0.0, high=1.0)}

    def draw(self, count: int, random: np.random.Generator) -> dict[str, np.ndarray]:
        """``count`` configurations drawn from the search's distributions (arrays of shape ``(count,)``)."""
        return {"width": random.uniform(0.0, 1.0, count),
                "rate": 10 ** random.uniform(math.log10(RATE_LOW), math.log10(RATE_HIGH), count),
                "loss": np.asarray(LOSSES, dtype=object)[random.integers(0, len(LOSSES), count)],
                "unused": random.uniform(0.0, 1.0, count)}

    def value(self, configurations: dict[str, np.ndarray]) -> np.ndarray:
        """The objective without noise, shape ``(count,)``."""
        position = log_position(configurations["rate"])
        offset = np.array([self.offsets[LOSSES.index(loss)] for loss in configurations["loss"]])
        return (self.amplitude * np.sin(2 * math.pi * configurations["width"]) + self.slope * position + offset
                + self.twist * (configurations["width"] - 0.5) * (position - 0.5))

    def main_effect_variances(self) -> dict[str, float]:
        """Each factor's main-effect variance over the search's distributions, analytic (units: value squared)."""
        offsets = np.asarray(self.offsets)
        return {"width": self.amplitude ** 2 / 2, "rate": self.slope ** 2 / 12,
                "loss": float(np.mean((offsets - offsets.mean()) ** 2)), "unused": 0.0}

    def truth(self) -> dict[str, float]:
        """The true importances: main-effect variances normalized over the factors (they sum to 1)."""
        return normalized(self.main_effect_variances())

    def linear_scale_truth(self) -> dict[str, float]:
        """The importances with ``rate`` integrated uniformly on its linear scale, as Optuna's fANOVA does."""
        width = RATE_HIGH - RATE_LOW
        moments = [integrate.quad(lambda rate, power=power: log_position(rate) ** power / width, RATE_LOW,
                                  RATE_HIGH, points=[10 * RATE_LOW, 100 * RATE_LOW])[0] for power in (1, 2)]
        # Under a linear measure the twist's rate-side factor no longer centres: it adds to width's main effect.
        shift = moments[0] - 0.5
        variances = self.main_effect_variances()
        variances["rate"] = self.slope ** 2 * (moments[1] - moments[0] ** 2)
        variances["width"] = float(integrate.quad(
            lambda width_value: (self.amplitude * math.sin(2 * math.pi * width_value)
                                 + self.twist * (width_value - 0.5) * shift) ** 2, 0.0, 1.0)[0])
        return normalized(variances)


def log_position(rate: np.ndarray) -> np.ndarray:
    """A rate's position on its log scale: 0 at 1e-4, 1 at 1e-1."""
    return (np.log10(rate) - math.log10(RATE_LOW)) / (math.log10(RATE_HIGH) - math.log10(RATE_LOW))


def normalized(variances: dict[str, float]) -> dict[str, float]:
    total = sum(variances.values())
    return {name: variance / total for name, variance in variances.items()}


def monte_carlo_variances(objective: SyntheticObjective, samples: int, seed: int) -> dict[str, float]:
    """Each factor's main-effect variance by pick-freeze Monte Carlo (Sobol's first-order estimator).

    Two independent draws A and B; for factor i, C_i is B with A's value of i. Then Cov(f(A), f(C_i)) is the
    variance of E[f | x_i] (Saltelli et al. 2010, "Variance based sensitivity analysis", eq. for V_i).
    """
    random = np.random.default_rng(seed)
    first, second = objective.draw(samples, random), objective.draw(samples, random)
    first_values = objective.value(first)
    found = {}
    for name in FACTORS:
        frozen = dict(second, **{name: first[name]})
        frozen_values = objective.value(frozen)
        found[name] = float(np.mean(first_values * frozen_values) - first_values.mean() * frozen_values.mean())
    return found


def synthetic_trials(objective: SyntheticObjective, count: int, random: np.random.Generator) -> pd.DataFrame:
    """One study's trials as ``search_stats.trials_frame`` gives them: ``number``, ``status``, ``value``, factors."""
    configurations = objective.draw(count, random)
    values = objective.value(configurations) + random.normal(0.0, objective.noise, count)
    frame = pd.DataFrame({"number": np.arange(count), "status": search_stats.FINISHED, "value": values})
    for name in FACTORS:
        frame[name] = configurations[name] if name == "loss" else configurations[name].astype(float)
    return frame


@dataclasses.dataclass(frozen=True)
class FactorResult:
    """One factor in one study: the report's value and interval against the truth."""

    study: int
    factor: str
    truth: float
    value: float
    low: float
    high: float
    resamples: int

    @property
    def covered(self) -> bool:
        return self.low <= self.truth <= self.high


def run_study(objective: SyntheticObjective, study: int, trials: int, bootstrap: int, seed: int) -> list[FactorResult]:
    """One seeded study through the report's own ``importances``."""
    random = np.random.default_rng([seed, study])
    frame = synthetic_trials(objective, trials, random)
    found, left_out = search_stats.importances(frame, objective.space(), "max", bootstrap_samples=bootstrap,
                                               seed=seed * 100_003 + study)
    assert not left_out, left_out
    truth = objective.truth()
    return [FactorResult(study, item.factor, truth[item.factor], item.value, item.low, item.high, item.resamples)
            for item in found]


def proportion(hits: int, count: int) -> dict[str, float]:
    """A coverage with its exact (Clopper-Pearson) 95% interval."""
    interval = scipy_stats.binomtest(hits, count).proportion_ci(confidence_level=0.95, method="exact")
    return {"hits": hits, "count": count, "rate": hits / count, "low": float(interval.low),
            "high": float(interval.high)}


def summarize(results: list[FactorResult], linear_truth: dict[str, float]) -> dict:
    """Per factor and overall: coverage (against the truth, after removing the mean bias, against the linear-scale
    truth), the point estimate's mean bias with its standard error, the interval's mean width."""
    frame = pd.DataFrame([dataclasses.asdict(item) | {"covered": item.covered} for item in results])
    factors = {}
    for name in FACTORS:
        rows = frame[frame["factor"] == name]
        error = rows["value"] - rows["truth"]
        bias = float(error.mean())
        # Intervals moved by the mean bias: what coverage the width alone would give if the bias were known.
        shifted = ((rows["low"] - bias <= rows["truth"]) & (rows["truth"] <= rows["high"] - bias))
        linear = (rows["low"] <= linear_truth[name]) & (linear_truth[name] <= rows["high"])
        factors[name] = {
            "truth": float(rows["truth"].iloc[0]), "linear_scale_truth": linear_truth[name],
            "mean_value": float(rows["value"].mean()), "bias": bias,
            "bias_se": float(error.std(ddof=1) / math.sqrt(len(rows))) if len(rows) > 1 else math.nan,
            "rmse": float(math.sqrt((error ** 2).mean())), "mean_width": float((rows["high"] - rows["low"]).mean()),
            "coverage": proportion(int(rows["covered"].sum()), len(rows)),
            "coverage_bias_removed": proportion(int(shifted.sum()), len(rows)),
            "coverage_linear_scale": proportion(int(linear.sum()), len(rows))}
    effective = frame[frame["truth"] > 0]
    return {"factors": factors, "overall": proportion(int(frame["covered"].sum()), len(frame)),
            "overall_nonzero": proportion(int(effective["covered"].sum()), len(effective)),
            "min_resamples": int(frame["resamples"].min())}


def percent(item: dict) -> str:
    return f"{100 * item['rate']:.1f}% ({item['hits']}/{item['count']}; {100 * item['low']:.1f}-{100 * item['high']:.1f})"


def markdown(result: dict) -> str:
    settings, summary = result["settings"], result["summary"]
    lines = [f"# Importance interval coverage: {settings['studies']} synthetic studies x {settings['trials']} trials",
             "", f"`{settings['command']}`", "",
             f"{settings['machine']}; {settings['date']}; {settings['seconds']:.0f} s. Each interval is the report's "
             f"{100 * search_stats.CONFIDENCE:.0f}% percentile bootstrap with {settings['bootstrap']} refits "
             f"(at least {summary['min_resamples']} succeeded). Coverage: hits/studies with its exact 95% "
             "(Clopper-Pearson) interval.", "",
             "| factor | truth | linear-scale truth | mean estimate | bias (se) | mean width | coverage | "
             "coverage, bias removed | coverage vs linear-scale truth |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, item in summary["factors"].items():
        lines.append(f"| {name} | {item['truth']:.3f} | {item['linear_scale_truth']:.3f} | {item['mean_value']:.3f} | "
                     f"{item['bias']:+.3f} ({item['bias_se']:.3f}) | {item['mean_width']:.3f} | "
                     f"{percent(item['coverage'])} | {percent(item['coverage_bias_removed'])} | "
                     f"{percent(item['coverage_linear_scale'])} |")
    lines += ["", f"Overall: {percent(summary['overall'])} of intervals cover the truth (nominal "
              f"{100 * search_stats.CONFIDENCE:.0f}%); factors with an effect: {percent(summary['overall_nonzero'])}.",
              "", "Objective: " + settings["objective"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--studies", type=int, default=100, help="synthetic studies (default 100)")
    parser.add_argument("--trials", type=int, default=40, help="finished trials per study (default 40)")
    parser.add_argument("--bootstrap", type=int, default=search_stats.DEFAULT_IMPORTANCE_SAMPLES,
                        help=f"bootstrap refits per study (default {search_stats.DEFAULT_IMPORTANCE_SAMPLES}, "
                             "the report's)")
    parser.add_argument("--seed", type=int, default=0, help="seeds every study's trials, noise and forests")
    parser.add_argument("--out", type=pathlib.Path, required=True, help="folder for coverage.json and coverage.md")
    parser.add_argument("--smoke", action="store_true",
                        help=f"{SMOKE['studies']} studies x {SMOKE['trials']} trials x {SMOKE['bootstrap']} refits")
    arguments = parser.parse_args(argv)
    if arguments.smoke:
        arguments.studies, arguments.trials, arguments.bootstrap = (SMOKE["studies"], SMOKE["trials"],
                                                                    SMOKE["bootstrap"])
    if arguments.studies < 2 or arguments.trials < search_stats.MIN_TRIALS or arguments.bootstrap < 2:
        raise ValueError(f"--studies must be >= 2, --trials >= {search_stats.MIN_TRIALS}, --bootstrap >= 2; got "
                         f"{arguments.studies}, {arguments.trials}, {arguments.bootstrap}")
    objective = SyntheticObjective()
    started = time.monotonic()
    results = []
    for study in range(arguments.studies):
        results += run_study(objective, study, arguments.trials, arguments.bootstrap, arguments.seed)
        print(f"study {study + 1}/{arguments.studies}: {time.monotonic() - started:.0f} s", file=sys.stderr)
    command = "python scripts/importance_coverage.py " + " ".join(
        ["--smoke"] if arguments.smoke else [f"--studies {arguments.studies}", f"--trials {arguments.trials}",
                                             f"--bootstrap {arguments.bootstrap}", f"--seed {arguments.seed}"])
    result = {
        "settings": {"studies": arguments.studies, "trials": arguments.trials, "bootstrap": arguments.bootstrap,
                     "seed": arguments.seed, "confidence": search_stats.CONFIDENCE, "command": command + " --out OUT",
                     "machine": machine(), "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
                     "seconds": time.monotonic() - started, "objective": describe(objective)},
        "truth": objective.truth(), "linear_scale_truth": objective.linear_scale_truth(),
        "main_effect_variances": objective.main_effect_variances(),
        "summary": summarize(results, objective.linear_scale_truth()),
        "results": [dataclasses.asdict(item) | {"covered": item.covered} for item in results]}
    arguments.out.mkdir(parents=True, exist_ok=True)
    (arguments.out / "coverage.json").write_text(json.dumps(result, indent=1) + "\n")
    (arguments.out / "coverage.md").write_text(markdown(result))
    print(markdown(result))
    return result


def describe(objective: SyntheticObjective) -> str:
    offsets = ", ".join(f"{loss} {offset:+g}" for loss, offset in zip(LOSSES, objective.offsets))
    return (f"{objective.amplitude:g} sin(2 pi width) + {objective.slope:g} u(rate) + offset[loss] ({offsets}) + "
            f"{objective.twist:g} (width - 1/2)(u - 1/2) + normal(0, {objective.noise:g}); width, unused ~ U[0, 1], "
            f"rate ~ logU[{RATE_LOW:g}, {RATE_HIGH:g}] with u its log-scale position in [0, 1], loss uniform over "
            f"{len(LOSSES)} choices.")


def machine() -> str:
    """The CPU model (``/proc/cpuinfo``) and core count."""
    try:
        model = next(line.split(":", 1)[1].strip() for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor() or platform.machine()
    return f"{model}, {os.cpu_count()} cores"


if __name__ == "__main__":
    main()
