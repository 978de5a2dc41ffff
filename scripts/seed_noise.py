"""Seed noise, decomposed: the split, init and order parts of one cell's run-to-run spread (issue 21 item 5).

Reads a sweep that crosses ``split_seed`` x ``init_seed`` x ``order_seed`` (``sweeps/seed-noise.yaml``): a report
folder's ``runs.parquet`` or the sweep in MLflow (``sweeps.report.reader.read_runs``). For one cell at one epoch
count it fits the balanced three-way crossed random-effects model with one run per combination,

    y_ijk = mu + S_i + I_j + O_k + SI_ij + SO_ik + IO_jk + e_ijk,

every term an independent normal with its own variance; ``e`` is the three-way interaction (a deterministic
trainer repeats a run bit for bit, so there is no other error). The estimates are the balanced-ANOVA ones
(expected mean squares, Searle, Casella & McCulloch, "Variance Components", 1992, ch. 4), which REML equals when
none is negative. Each estimate is a linear combination L = sum(c_i MS_i) of mean squares; its 95% interval is
Satterthwaite's (1946): nu = L^2 / sum((c_i MS_i)^2 / df_i), [nu L / chi2(0.975, nu), nu L / chi2(0.025, nu)],
none where L <= 0. On 1,000 simulated 4 x 4 x 4 designs the total's interval covered 95.1%, each component's
86-95% (a design whose estimate is <= 0 counts as a miss). A percentile bootstrap from the fitted model was tried
first: with 3 degrees of freedom a component's percentile interval leans the wrong way and missed a known split
variance.
``tests/test_seed_noise.py`` checks the mean squares against statsmodels' ``anova_lm`` and the components
against ``MixedLM`` (REML, variance components) on synthetic designs with known components.

A run's total seed variance is the sum of the seven components: what a fresh ``seed`` (new split, init and
order at once) varies. A claim "the cell's mean is m +- h" from n seeds needs t(0.975, n - 1) * sd / sqrt(n) <= h,
i.e. n = (t * sd / h)^2 solved with t at n - 1 degrees of freedom; the script prints n for several h, at the
estimated sd and at its interval's upper end, and for seeds that keep one split (bydate's official test set).

    python scripts/seed_noise.py docs/results/seed-noise --cell dataset=19997,strip=none --epochs 10 --out OUT
    python scripts/seed_noise.py --smoke --out OUT     # a synthetic sweep with known components, in seconds

Writes ``seed-noise.md`` and ``seed-noise.json`` to ``--out`` and prints the Markdown.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from sweeps.report import make as make_module
from sweeps.report import objective as objective_module
from sweeps.report import reader

PARTS = ("split_seed", "init_seed", "order_seed")
SHORT = {"split_seed": "split", "init_seed": "init", "order_seed": "order"}
# The seven components: each seed part, each pair's interaction, and the three-way term (the residual).
TERMS = (("split_seed",), ("init_seed",), ("order_seed",), ("split_seed", "init_seed"), ("split_seed", "order_seed"),
         ("init_seed", "order_seed"), PARTS)
# Half-widths of a claim's 95% interval, in points of a metric on [0, 1] (in its units otherwise).
HALF_WIDTHS = (0.5, 1.0, 2.0, 5.0)
CONFIDENCE = 0.95


def term_name(term: tuple[str, ...]) -> str:
    return " x ".join(SHORT[name] for name in term) if len(term) < 3 else "split x init x order (residual)"


def table_of(runs: pd.DataFrame) -> np.ndarray:
    """The runs' values as a (splits, inits, orders) array; a missing or repeated combination is a ValueError."""
    levels = [sorted(runs[name].unique(), key=_level_key) for name in PARTS]
    counts = runs.groupby(list(PARTS)).size()
    repeated = counts[counts > 1]
    if len(repeated):
        raise ValueError(f"{len(repeated)} combinations of {', '.join(PARTS)} hold more than one run (e.g. "
                         f"{dict(zip(PARTS, repeated.index[0]))}); the design needs exactly one per combination")
    expected = math.prod(len(values) for values in levels)
    if len(counts) != expected:
        raise ValueError(f"{len(counts)} of the {expected} combinations of {', '.join(PARTS)} "
                         f"({' x '.join(str(len(values)) for values in levels)} levels) have a run; the balanced "
                         f"design needs all of them")
    if min(len(values) for values in levels) < 2:
        raise ValueError(f"every seed part needs at least 2 levels; got {dict(zip(PARTS, map(len, levels)))}")
    table = np.empty([len(values) for values in levels])
    index = [{value: position for position, value in enumerate(values)} for values in levels]
    for row in runs.itertuples(index=False):
        table[tuple(index[axis][getattr(row, name)] for axis, name in enumerate(PARTS))] = row.value
    return table


def _level_key(value):
    text = str(value)
    return (0, int(text), text) if text.lstrip("-").isdigit() else (1, 0, text)


def mean_squares(tables: np.ndarray) -> dict[tuple[str, ...], np.ndarray]:
    """Mean square of every term for one (a, b, c) table or a stack of them (..., a, b, c)."""
    a, b, c = tables.shape[-3:]
    grand = tables.mean(axis=(-3, -2, -1), keepdims=True)
    split = tables.mean(axis=(-2, -1), keepdims=True) - grand
    init = tables.mean(axis=(-3, -1), keepdims=True) - grand
    order = tables.mean(axis=(-3, -2), keepdims=True) - grand
    split_init = tables.mean(axis=-1, keepdims=True) - grand - split - init
    split_order = tables.mean(axis=-2, keepdims=True) - grand - split - order
    init_order = tables.mean(axis=-3, keepdims=True) - grand - init - order
    residual = tables - grand - split - init - order - split_init - split_order - init_order
    effects = (split, init, order, split_init, split_order, init_order, residual)
    dfs = (a - 1, b - 1, c - 1, (a - 1) * (b - 1), (a - 1) * (c - 1), (b - 1) * (c - 1),
           (a - 1) * (b - 1) * (c - 1))
    result = {}
    for term, effect, df in zip(TERMS, effects, dfs):
        sum_of_squares = (np.broadcast_to(effect, tables.shape) ** 2).sum(axis=(-3, -2, -1))
        result[term] = sum_of_squares / df
    return result


def degrees_of_freedom(shape: tuple[int, int, int]) -> np.ndarray:
    """Degrees of freedom of the seven terms, in ``TERMS`` order."""
    a, b, c = shape
    return np.array([a - 1, b - 1, c - 1, (a - 1) * (b - 1), (a - 1) * (c - 1), (b - 1) * (c - 1),
                     (a - 1) * (b - 1) * (c - 1)])


def coefficients(shape: tuple[int, int, int]) -> np.ndarray:
    """(component, mean square) matrix: each ANOVA estimate as a combination of the mean squares, ``TERMS`` order.

    From the expected mean squares with one run per combination, e.g. E[MS_split] = e + c SI + b SO + bc S.
    """
    a, b, c = shape
    return np.array([
        [1, 0, 0, -1, -1, 0, 1], [0, 1, 0, -1, 0, -1, 1], [0, 0, 1, 0, -1, -1, 1],
        [0, 0, 0, 1, 0, 0, -1], [0, 0, 0, 0, 1, 0, -1], [0, 0, 0, 0, 0, 1, -1], [0, 0, 0, 0, 0, 0, 1],
    ], dtype=float) / np.array([b * c, a * c, a * b, c, b, a, 1])[:, None]


def components(tables: np.ndarray) -> dict[tuple[str, ...], np.ndarray]:
    """ANOVA (expected mean squares) estimates of the seven variance components; may be negative."""
    ms = mean_squares(tables)
    stacked = np.stack([ms[term] for term in TERMS], axis=-1)
    estimates = stacked @ coefficients(tables.shape[-3:]).T
    return {term: estimates[..., index] for index, term in enumerate(TERMS)}


def satterthwaite(weights: np.ndarray, mean_square: np.ndarray, dfs: np.ndarray,
                  confidence: float = CONFIDENCE) -> list[float]:
    """Satterthwaite's interval of L = weights . mean_square (NaNs where L <= 0)."""
    estimate = float(weights @ mean_square)
    if estimate <= 0:
        return [math.nan, math.nan]
    nu = estimate ** 2 / float(np.sum((weights * mean_square) ** 2 / dfs))
    low_quantile, high_quantile = scipy_stats.chi2.ppf([0.5 - confidence / 2, 0.5 + confidence / 2], nu)
    # With almost no degrees of freedom the quantiles underflow to 0: the interval is then [0, inf).
    return [nu * estimate / high_quantile if high_quantile > 0 else 0.0,
            nu * estimate / low_quantile if low_quantile > 0 else math.inf]


def simulate(variances: dict[tuple[str, ...], float], shape: tuple[int, int, int], samples: int,
             rng: np.random.Generator) -> np.ndarray:
    """``samples`` tables (samples, a, b, c) drawn from the crossed model with these component variances."""
    tables = np.zeros((samples, *shape))
    for term in TERMS:
        axes = [PARTS.index(name) for name in term]
        size = [shape[axis] if axis in axes else 1 for axis in range(3)]
        tables += math.sqrt(max(variances[term], 0.0)) * rng.standard_normal((samples, *size))
    return tables


def seeds_needed(sd: float, half_width: float, *, confidence: float = CONFIDENCE, most: int = 100_000) -> int:
    """Fewest runs n >= 2 whose mean's Student-t interval half-width t(n - 1) * sd / sqrt(n) is <= half_width."""
    if sd <= 0:
        return 2
    z = scipy_stats.norm.ppf(0.5 + confidence / 2)
    n = max(2, math.ceil((z * sd / half_width) ** 2))
    while n < most and scipy_stats.t.ppf(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n) > half_width:
        n += 1
    return n


def analyse(table: np.ndarray, *, scale: float = 1.0, half_widths=HALF_WIDTHS) -> dict:
    """The decomposition of one (splits, inits, orders) table, in the table's units times ``scale``."""
    scaled = np.asarray(table, dtype=float) * scale
    shape = scaled.shape
    ms_by_term = mean_squares(scaled)
    ms = np.array([float(ms_by_term[term]) for term in TERMS])
    dfs = degrees_of_freedom(shape)
    weights = coefficients(shape)
    estimate = weights @ ms
    truncated = np.maximum(estimate, 0.0)
    total = float(truncated.sum())
    rows = [{"term": term_name(term), "factors": list(term), "estimate": float(estimate[index]),
             "interval": satterthwaite(weights[index], ms, dfs), "sd": math.sqrt(truncated[index]),
             "share": float(truncated[index] / total) if total > 0 else math.nan}
            for index, term in enumerate(TERMS)]
    # A run's seed variance: every component (a fresh seed), or all but the split's own (one split held).
    fixed_split = np.array([term != ("split_seed",) for term in TERMS])
    total_interval = satterthwaite(weights.sum(axis=0), ms, dfs)
    one_split_interval = satterthwaite(weights[fixed_split].sum(axis=0), ms, dfs)
    sd = math.sqrt(total)
    sd_interval = [math.sqrt(value) for value in total_interval]
    one_split = math.sqrt(float(truncated[fixed_split].sum()))
    needed = [{"half_width": width, "seeds": seeds_needed(sd, width),
               "seeds_at_upper_sd": seeds_needed(sd_interval[1], width) if math.isfinite(sd_interval[1]) else None,
               "seeds_one_split": seeds_needed(one_split, width)} for width in half_widths]
    return {"levels": dict(zip(PARTS, shape)), "runs": int(scaled.size), "mean": float(scaled.mean()),
            "components": rows, "total_variance": total, "total_variance_interval": total_interval, "sd": sd,
            "sd_interval": sd_interval, "sd_one_split": one_split,
            "sd_one_split_interval": [math.sqrt(value) for value in one_split_interval],
            "mean_squares": {term_name(term): float(value) for term, value in zip(TERMS, ms)},
            "degrees_of_freedom": {term_name(term): int(df) for term, df in zip(TERMS, dfs)},
            "seeds_needed": needed}


def cell_runs(swept: reader.SweepFrame, cell: dict[str, str], epochs: int) -> pd.DataFrame:
    """The trainer's runs of ``cell`` at ``epochs`` with a finite value."""
    runs = swept.runs
    missing = [name for name in PARTS if name not in runs.columns]
    if missing:
        raise ValueError(f"the runs carry no {', '.join(missing)} column: not a sweep of the seed parts "
                         f"(sweeps/seed-noise.yaml)")
    chosen = runs[~runs["trainer"].isin(reader.REFERENCE_KINDS) & (runs["epochs"] == epochs)]
    for key, value in cell.items():
        chosen = chosen[chosen[key].astype(str) == value]
    chosen = chosen[np.isfinite(chosen["value"].astype(float))]
    if chosen.empty:
        counts = sorted({int(value) for value in runs["epochs"].dropna()})
        raise ValueError(f"no runs of cell {cell} at {epochs} epochs; epoch counts read: {counts}")
    return chosen


def markdown(result: dict, *, title: str, unit: str) -> str:
    """The decomposition as Markdown: the components table, the total, and seeds per claim width."""
    lines = [f"# {title}", "",
             f"{result['runs']} runs ({' x '.join(f'{count} {SHORT[name]}' for name, count in result['levels'].items())}"
             f" seeds), mean {result['mean']:.2f} {unit}. Variance components by balanced ANOVA (expected mean "
             f"squares) with Satterthwaite's 95% intervals (none where the estimate is <= 0); a negative estimate "
             f"counts as 0 in the sd and the shares.", "",
             f"| component | variance ({unit}^2) [95%] | sd ({unit}) | share |", "|---|---|---|---|"]
    for row in result["components"]:
        lines.append(f"| {row['term']} | {row['estimate']:.3f} {interval_text(row['interval'], 3)} | "
                     f"{row['sd']:.2f} | {row['share']:.0%} |")
    lines += ["", f"Seed sd of one run (a fresh seed: new split, init and order): {result['sd']:.2f} {unit} "
                  f"{interval_text(result['sd_interval'], 2)}; with one split held (new init and order only): "
                  f"{result['sd_one_split']:.2f} {interval_text(result['sd_one_split_interval'], 2)}.", "",
              f"Seeds a claim needs: n with t(0.975, n - 1) x sd / sqrt(n) <= the half-width, i.e. n = (t x sd / "
              f"half-width)^2.", "",
              f"| 95% half-width ({unit}) | seeds | at the sd's upper end | one split held |", "|---|---|---|---|"]
    for row in result["seeds_needed"]:
        lines.append(f"| {row['half_width']:g} | {row['seeds']} | {row['seeds_at_upper_sd'] or '-'} | "
                     f"{row['seeds_one_split']} |")
    return "\n".join(lines) + "\n"


def finite(value):
    """``value`` with every NaN or infinite float as None (JSON has neither)."""
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [finite(item) for item in value]
    return None if isinstance(value, float) and not math.isfinite(value) else value


def number_text(value: float, digits: int) -> str:
    """``value`` with ``digits`` decimals, or in e-notation from 10,000 up (a Satterthwaite upper end on one or two
    degrees of freedom reached 10^17 on the committed study)."""
    return f"{value:.{digits}f}" if abs(value) < 10_000 else f"{value:.1e}"


def interval_text(interval: list[float], digits: int) -> str:
    low, high = interval
    if not math.isfinite(low):
        return "(no interval)"
    high_text = number_text(high, digits) + "]" if math.isfinite(high) else "inf)"
    return f"[{number_text(low, digits)}, {high_text}"


def synthetic_runs(variances: dict[tuple[str, ...], float], *, levels: int = 4, mean: float = 0.5,
                   seed: int = 0) -> pd.DataFrame:
    """A runs frame of one cell at 10 epochs whose values follow the crossed model (variances in the value's units
    squared)."""
    table = mean + simulate(variances, (levels, levels, levels), 1, np.random.default_rng(seed))[0]
    rows = [dict(trainer="keras", model="keras", dataset="19997", strip="none", epochs=10, seed=0, value=float(value),
                 split_seed=str(i), init_seed=str(j), order_seed=str(k))
            for (i, j, k), value in np.ndenumerate(table)]
    return reader.runs_frame(rows)


# Known components for --smoke and the tests, in the value's units squared (sd 0.03 split, 0.02 init, 0.015 order).
SMOKE_VARIANCES = dict(zip(TERMS, (0.03 ** 2, 0.02 ** 2, 0.015 ** 2, 0.005 ** 2, 0.005 ** 2, 0.005 ** 2, 0.01 ** 2)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", nargs="?", help="A report folder holding runs.parquet, or a sweep name or parent "
                                                  "run id in MLflow.")
    parser.add_argument("--cell", default="dataset=19997,strip=none",
                        help="The cell, e.g. dataset=bydate,strip=sklearn_all (default: the blog's).")
    parser.add_argument("--epochs", type=int, default=10, help="Epoch count whose value is read (default 10).")
    parser.add_argument("--tracking-uri", default=None, help="MLflow store when SOURCE is a sweep name.")
    parser.add_argument("--out", required=True, help="Folder for seed-noise.md and seed-noise.json.")
    parser.add_argument("--smoke", action="store_true", help="A synthetic 4 x 4 x 4 sweep with known components.")
    args = parser.parse_args(argv)
    if args.smoke == bool(args.source):
        parser.error("give a SOURCE or --smoke (not both)")
    try:
        cell = make_module.parse_cell(args.cell)
        if args.smoke:
            swept = None
            runs = cell_runs(reader.SweepFrame(runs=synthetic_runs(SMOKE_VARIANCES), history=pd.DataFrame(),
                                               sweep_name="synthetic", parent_run_id="", factors=list(PARTS),
                                               source="synthetic"), cell, args.epochs)
        else:
            swept = reader.read_runs(args.source, tracking_uri=args.tracking_uri, with_history=False)
            runs = cell_runs(swept, cell, args.epochs)
        objective = swept.objective if swept is not None else objective_module.DEFAULT
        result = analyse(table_of(runs), scale=objective_module.scale(objective))
    except (ValueError, OSError) as error:
        print(f"seed_noise: {error}", file=sys.stderr)
        return 2
    unit = objective_module.unit(objective)
    described = ", ".join(f"{key}={value}" for key, value in cell.items())
    source = "a synthetic sweep (--smoke)" if swept is None else reader.shown_path(args.source) \
        if reader.is_folder(args.source) else swept.sweep_name
    title = f"Seed noise of {objective.name} in ({described}) after {args.epochs} epochs, from {source}"
    text = markdown(result, title=title, unit=unit)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "seed-noise.md").write_text(text)
    record = {"source": source, "cell": cell, "epochs": args.epochs, "metric": objective.name, "unit": unit, **result}
    (out / "seed-noise.json").write_text(json.dumps(finite(record), indent=2, allow_nan=False) + "\n")
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
