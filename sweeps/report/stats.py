"""Statistics on a sweep's runs frame (``sweeps.report.reader``): cell means, the variance decomposition, effects.

Intervals (docs/DESIGN.md, "report"):

- a cell's mean over seeds: Student-t interval of the mean, clipped to [0, 1]; none from one seed;
- an effect in points, a gap and its Shapley parts: each is a linear contrast of the runs' accuracies, so its
  interval is the Student-t interval of that contrast with the seed noise pooled within cells (the OLS
  interval of a cell-means model, ``N - cells`` degrees of freedom). With three seeds per cell a percentile
  bootstrap of seeds within cells covers only about 81% for a nominal 95% (tests/test_stats.py measures it),
  because resampling three values shrinks their variance by 2/3; the t-interval covers 95%;
- a share of variance: a seeded residual bootstrap within cells (residuals inflated by sqrt(k / (k - 1)) so that
  resampling keeps the seed noise's variance), percentile interval; still narrow with 3 seeds (about 88% on a
  gap), so the report calls it a rough guide.

The variance decomposition is Type II sums of squares of the model with every main effect and every two-way
interaction: a term's sum of squares is what it adds to the model of every term that does not contain it (a main
effect is conditioned on the other main effects and on the interactions among them, not on its own interactions).
tests/test_stats.py checks it against statsmodels' ``anova_lm(typ=2)`` on an unbalanced three-factor design and on
the committed study.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from sweeps.report import objective as objective_module
from sweeps.report import reader
from sweeps.tracking import names
from trainer import baselines
from trainer import config as config_module

CONFIDENCE = 0.95
DEFAULT_BOOTSTRAP_SAMPLES = 1000
# An interaction is listed when it explains at least this share of the variance of validation accuracy.
INTERACTION_MIN_SHARE = 0.02
CHOICES = {name: config_module.choices(name) for name in config_module.FACTORS if config_module.choices(name)}


@dataclasses.dataclass(frozen=True)
class Effect:
    """One term of ``attribute`` at one epoch count: its share of the variance and its effect in points.

    ``kind``: ``main``, ``interaction`` or ``residual`` (seed noise within cells, no rank and no effect);
    ``levels``: best vs worst level of a main effect; shares are fractions of the variance of validation
    accuracy (bootstrap interval), effects are points of accuracy, 100 x fraction (t-interval); NaN where
    there is no interval (one seed per cell).
    """

    epochs: int
    rank: int | None
    term: str
    kind: str
    levels: str
    share: float
    share_low: float
    share_high: float
    effect_points: float
    effect_low: float
    effect_high: float
    cells: int
    runs: int
    single_seed: bool

    def to_dict(self) -> dict[str, Any]:
        """The record as a dict: the columns of effects.csv."""
        return dataclasses.asdict(self)


def t_interval(values: Iterable[float], confidence: float = CONFIDENCE, *,
               bounds: tuple[float, float] | None = None) -> tuple[float, float, float]:
    """Mean and two-sided Student-t confidence interval of the mean, optionally clipped to ``bounds``.

    Returns ``(mean, low, high)``; with one value the interval is ``(nan, nan)`` (no spread to estimate).
    """
    values = np.asarray(list(values), dtype=float)
    if values.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(values.mean())
    if values.size < 2:
        return mean, math.nan, math.nan
    half_width = t_quantile(confidence, values.size - 1) * values.std(ddof=1) / math.sqrt(values.size)
    low, high = mean - half_width, mean + half_width
    if bounds is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return mean, float(low), float(high)


def t_quantile(confidence: float, degrees_of_freedom: int) -> float:
    """The two-sided Student-t critical value, e.g. 4.303 for 95% and 2 degrees of freedom."""
    return float(scipy_stats.t.ppf(0.5 + confidence / 2, degrees_of_freedom))


def level_order(name: str, values: Iterable[Any]) -> list:
    """Levels of a factor in a readable order: the config's choice order, else numeric, else text."""
    values = sorted({value for value in values}, key=lambda value: str(value))
    if name in CHOICES:
        order = [str(choice) for choice in CHOICES[name]]
        return sorted(values, key=lambda value: (order.index(str(value)) if str(value) in order else len(order),
                                                 str(value)))
    try:
        return sorted(values, key=lambda value: float(value))
    except (TypeError, ValueError):
        return values


def network_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The trainer's rows with an epoch count and a finite value (references, unfinished and non-finite rows
    left out: ``non_finite_runs`` lists the last)."""
    return runs[~reader.reference_rows(runs) & runs["epochs"].notna() & runs[reader.VALUE].notna()]


def non_finite_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The trainer's rows whose value at their epoch count came out NaN or infinite (left out of every mean), and
    rows of runs whose ``glovesweep.non_finite`` tag lists another metric or epoch."""
    trainer_rows = runs[~reader.reference_rows(runs) & runs["epochs"].notna()]
    return trainer_rows[trainer_rows[reader.VALUE].isna() | trainer_rows["non_finite"].notna()]


def epoch_counts(runs: pd.DataFrame) -> list[int]:
    """The requested epoch counts found in the network rows, ascending."""
    return sorted(int(count) for count in network_runs(runs)["epochs"].unique())


def cell_table(runs: pd.DataFrame, factors: Sequence[str], *, confidence: float = CONFIDENCE,
               objective: objective_module.Metric = objective_module.DEFAULT) -> list[dict]:
    """Mean and t-interval (clipped to the objective's range where it has one) over seeds of the objective per cell.

    Trainer cells: one record per (factor values, epoch count). References (baselines): one record per (model,
    values of the factors that shape a baseline's split, ``trainer.baselines.DATA_FIELDS``), other factors ``""``
    and ``epochs`` None. Each record: ``model``, the factors, ``epochs``, ``n`` (seeds with a finite value),
    ``mean``, ``std``, ``ci_low``, ``ci_high`` (the metric's units; NaN with one seed), ``leakage`` (mean),
    ``seeds``, ``non_finite`` (runs whose value came out NaN or infinite: left out of the mean).
    """
    groups: dict[tuple, list[dict]] = {}
    for row in network_runs(runs).to_dict("records"):
        groups.setdefault((row["model"], tuple(row[name] for name in factors), int(row["epochs"])), []).append(row)
    failed: dict[tuple, int] = {}
    for row in non_finite_runs(runs).to_dict("records"):
        if pd.isna(row[reader.VALUE]):
            key = (row["model"], tuple(row[name] for name in factors), int(row["epochs"]))
            groups.setdefault(key, [])
            failed[key] = failed.get(key, 0) + 1
    baseline_factors = [name for name in factors if name in baselines.DATA_FIELDS]
    # A baseline has one value per run, whatever epoch counts it was logged under.
    baseline_rows = runs[reader.reference_rows(runs) & runs[reader.VALUE].notna()]
    for row in baseline_rows.drop_duplicates("run_id").to_dict("records"):
        values = tuple(row[name] if name in baseline_factors else "" for name in factors)
        groups.setdefault((row["model"], values, None), []).append(row)
    orders = {name: level_order(name, runs[name]) for name in factors}

    def sort_key(key):
        model, values, epochs = key
        positions = tuple(orders[name].index(value) if value in orders[name] else -1
                          for name, value in zip(factors, values))
        return (epochs is None, model, positions, epochs or 0)

    records = []
    for key in sorted(groups, key=sort_key):
        model, values, epochs = key
        members = groups[key]
        accuracies = [member[reader.VALUE] for member in members]
        mean, low, high = t_interval(accuracies, confidence, bounds=objective_module.bounds(objective))
        leakages = [member[names.LEAKAGE] for member in members if not math.isnan(member[names.LEAKAGE])]
        records.append({"model": model, **dict(zip(factors, values)), "epochs": epochs, "n": len(members),
                        "mean": mean, "std": float(np.std(accuracies, ddof=1)) if len(members) > 1 else math.nan,
                        "ci_low": low, "ci_high": high,
                        "leakage": float(np.mean(leakages)) if leakages else math.nan,
                        "seeds": seeds_text(members), "non_finite": failed.get(key, 0)})
    return records


def seed_values(values: Iterable[Any]) -> list[int]:
    """The distinct seeds among ``values``, ascending: params read back as text, an unset part as "None" or NaN."""
    found = {str(value) for value in values if not pd.isna(value)}
    return sorted(int(value) for value in found if value.lstrip("-").isdigit())


def crossed_seed_parts(runs: pd.DataFrame) -> list[str]:
    """The seed parts (``reader.REPLICATE_FACTORS``) that take several values among the trainer's runs: a sweep
    that crosses them, whose cells' runs share seed values and so are no independent draws."""
    network = network_runs(runs)
    return [name for name in reader.REPLICATE_FACTORS if name in network and len(seed_values(network[name])) > 1]


def seeds_text(members: Sequence[dict]) -> str:
    """The seeds of a cell's runs: ``"0 1 2"``; where a seed part was set (``reader.REPLICATE_FACTORS``), the values
    of each axis that was, e.g. ``"split_seed 0 1 2 3 x init_seed 0 1"``."""
    values = {name: seed_values(member.get(name) for member in members)
              for name in ("seed", *reader.REPLICATE_FACTORS)}
    parts = [name for name in reader.REPLICATE_FACTORS if values[name]]
    if not parts:
        return " ".join(str(seed) for seed in sorted(int(member["seed"]) for member in members
                                                     if not pd.isna(member["seed"])))
    axes = [name for name in ("seed", *parts) if name in parts or len(values[name]) > 1]
    return " x ".join(f"{name} {' '.join(map(str, values[name]))}" for name in axes)


def resample_within_cells(values: np.ndarray, cells: Iterable[np.ndarray], samples: int, *, seed: int,
                          inflate: bool = True) -> np.ndarray:
    """Bootstrap resamples of ``values`` (shape (n,)) that keep every cell's size; shape (n, samples).

    Each cell's values are its mean plus residuals drawn with replacement. ``inflate`` scales the residuals
    by sqrt(k / (k - 1)) for a cell of k values, so a resample's expected within-cell variance equals the
    data's; without it this is the plain percentile bootstrap of seeds within cells (too narrow for k = 3).
    Seeded: ``numpy.random.default_rng(seed)``.
    """
    random = np.random.default_rng(seed)
    resampled = np.empty((values.size, samples))
    for indices in cells:
        cell_values = values[indices]
        residuals = cell_values - cell_values.mean()
        if inflate and indices.size > 1:
            residuals = residuals * math.sqrt(indices.size / (indices.size - 1))
        draws = random.integers(0, indices.size, size=(indices.size, samples))
        resampled[indices, :] = cell_values.mean() + residuals[draws]
    return resampled


class Design:
    """Dummy-coded factorial design of network rows at one epoch count.

    ``columns`` has shape (n, 1 + n + B): column 0 is the observed validation accuracy, columns 1..n the unit
    vectors (a linear statistic computed on every column gives its value, then its weights on the n runs),
    then B bootstrap resamples (``resample_within_cells``). Every statistic below is computed on all columns.
    """

    def __init__(self, runs: pd.DataFrame, factors: Sequence[str], *, bootstrap_samples: int, seed: int,
                 confidence: float = CONFIDENCE):
        self.size = len(runs)
        self.confidence = confidence
        self.levels = {name: level_order(name, runs[name]) for name in factors}
        self.factors = [name for name in factors if len(self.levels[name]) > 1]
        self.codes = {name: np.array([self.levels[name].index(value) for value in runs[name]])
                      for name in self.factors}
        cells: dict[tuple, list[int]] = {}
        for index in range(self.size):
            cells.setdefault(tuple(int(self.codes[name][index]) for name in self.factors), []).append(index)
        self.cells = {key: np.array(indices) for key, indices in cells.items()}
        observed = runs[reader.VALUE].to_numpy(dtype=float)
        self.single_seed = all(indices.size < 2 for indices in self.cells.values())
        self.residual_df = self.size - len(self.cells)
        within = sum(float(np.sum((observed[indices] - observed[indices].mean()) ** 2))
                     for indices in self.cells.values())
        self.noise_sd = math.sqrt(within / self.residual_df) if self.residual_df > 0 else math.nan
        bootstrap = resample_within_cells(observed, self.cells.values(), bootstrap_samples, seed=seed)
        self.columns = np.column_stack([observed, np.eye(self.size), bootstrap])

    def dummies(self, name: str, codes: np.ndarray | None = None) -> np.ndarray:
        codes = self.codes[name] if codes is None else codes
        return (codes[:, None] == np.arange(1, len(self.levels[name]))[None, :]).astype(float)

    def matrix(self, terms: Sequence, codes: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """Design matrix: intercept, then dummies of each factor name and products for each (a, b) pair."""
        codes = codes or self.codes
        size = len(next(iter(codes.values()))) if codes else self.size
        columns = [np.ones((size, 1))]
        for term in terms:
            if isinstance(term, tuple):
                left, right = (self.dummies(name, codes[name]) for name in term)
                columns.append((left[:, :, None] * right[:, None, :]).reshape(size, -1))
            else:
                columns.append(self.dummies(term, codes[term]))
        return np.hstack(columns)

    def explained(self, terms: Sequence) -> tuple[np.ndarray, int]:
        """Uncentred explained sum of squares of every column (shape (1 + n + B,)) and the model's rank."""
        left, singular, _ = np.linalg.svd(self.matrix(terms), full_matrices=False)
        rank = int(np.sum(singular > singular[0] * 1e-10))
        return np.sum((left[:, :rank].T @ self.columns) ** 2, axis=0), rank

    def type_two(self, term, model_terms: Sequence) -> tuple[np.ndarray, int]:
        """Type II sum of squares of ``term`` in the model ``model_terms`` (factor names and (a, b) pairs).

        ``SS(term | every term of the model that does not contain it)``: the explained sum of squares that
        ``term`` adds, on every column (shape (1 + n + B,)), and its degrees of freedom (0: not estimable there).
        """
        parts = set(term if isinstance(term, tuple) else (term,))
        base = [other for other in model_terms
                if not parts <= set(other if isinstance(other, tuple) else (other,))]
        with_term, rank_with = self.explained(base + [term])
        without_term, rank_without = self.explained(base)
        return with_term - without_term, rank_with - rank_without

    def fitted(self, terms: Sequence) -> np.ndarray:
        matrix = self.matrix(terms)
        return matrix @ (np.linalg.pinv(matrix) @ self.columns)

    def cell_means_explained(self) -> np.ndarray:
        """Explained sum of squares of the saturated model (one mean per cell): everything but seed noise."""
        explained = np.zeros(self.columns.shape[1])
        for indices in self.cells.values():
            explained += indices.size * self.columns[indices].mean(axis=0) ** 2
        return explained

    def contrast_interval(self, statistic: np.ndarray) -> tuple[float, float, float]:
        """(value, low, high) of a linear statistic computed on every column: Student-t, pooled seed noise."""
        weights = statistic[1:1 + self.size]
        half_width = (t_quantile(self.confidence, self.residual_df) * self.noise_sd * float(np.linalg.norm(weights))
                      if self.residual_df > 0 else math.nan)
        return float(statistic[0]), float(statistic[0] - half_width), float(statistic[0] + half_width)

    def bootstrap_interval(self, statistic: np.ndarray) -> tuple[float, float, float]:
        """(value, low, high): percentile interval of a statistic over the bootstrap columns."""
        samples = statistic[1 + self.size:]
        samples = samples[np.isfinite(samples)]
        if samples.size == 0 or self.single_seed:
            return float(statistic[0]), math.nan, math.nan
        tail = 100 * (1 - self.confidence) / 2
        return float(statistic[0]), float(np.percentile(samples, tail)), float(np.percentile(samples, 100 - tail))


def attribute(runs: pd.DataFrame, factors: Sequence[str], *, bootstrap_samples: int = DEFAULT_BOOTSTRAP_SAMPLES,
              seed: int = 0, interaction_min_share: float = INTERACTION_MIN_SHARE,
              objective: objective_module.Metric = objective_module.DEFAULT) -> list[Effect]:
    """Rank the factors (and the two-way interactions that matter) by their effect on the objective.

    The best level is the best in the objective's direction (lowest for a ``min`` metric); effects are in points
    for a metric bounded to [0, 1], else in the metric's units (``objective_module.scale``), positive = better.

    For each requested epoch count, on the network rows: the share of the variance of validation accuracy that
    each main effect and each two-way interaction explains (Type II sums of squares of the model with every main
    effect and two-way interaction: what the term adds to every term that does not contain it, as statsmodels'
    ``anova_lm(typ=2)``); the main effect in accuracy
    points (the fitted difference between the factor's best and worst level, others held fixed); for an
    interaction, its largest departure from additivity in points. Share intervals: residual bootstrap; effect
    intervals: Student-t of the contrast (module docstring). Seed-to-seed variance is a ``residual`` record.

    Returns
    -------
    list of Effect
        Per epoch count, largest share first (``rank`` 1), the residual last: ``term``, ``kind`` (main /
        interaction / residual), ``levels`` (e.g. ``"none vs sklearn_all"``: best vs worst), ``share``,
        ``share_low``, ``share_high`` (fractions of variance), ``effect_points``, ``effect_low``, ``effect_high``
        (points of accuracy, 100 x fraction), ``cells``, ``runs``, ``single_seed``.
    """
    records = []
    network = network_runs(runs)
    for count in epoch_counts(runs):
        at_count = network[network["epochs"] == count]
        design = Design(at_count, factors, bootstrap_samples=bootstrap_samples, seed=seed)
        if not design.factors or len(at_count) < 2:
            continue
        columns = design.columns
        total = np.sum((columns - columns.mean(axis=0)) ** 2, axis=0)
        # A column with no variance has nothing to attribute; its shares are undefined, not zero.
        safe_total = np.where(total > 0, total, np.nan)
        main_fit = design.fitted(design.factors)
        coefficients = np.linalg.pinv(design.matrix(design.factors)) @ columns
        # The model whose Type II sums of squares are the shares: every main effect and two-way interaction.
        pairs = list(itertools.combinations(design.factors, 2))
        model_terms = list(design.factors) + pairs
        common = {"epochs": count, "cells": len(design.cells), "runs": len(at_count),
                  "single_seed": design.single_seed}
        terms = []
        offset = 1
        for name in design.factors:
            share = design.type_two(name, model_terms)[0] / safe_total
            width = len(design.levels[name]) - 1
            effects = np.vstack([np.zeros((1, columns.shape[1])), coefficients[offset:offset + width]])
            offset += width
            oriented = objective_module.sign(objective) * effects
            best, worst = int(np.argmax(oriented[:, 0])), int(np.argmin(oriented[:, 0]))
            points = objective_module.scale(objective) * (oriented[best] - oriented[worst])
            terms.append(dict(common, term=name, kind="main",
                              levels=f"{design.levels[name][best]} vs {design.levels[name][worst]}",
                              share=share, points=design.contrast_interval(points)))
        for left, right in pairs:
            explained, degrees_of_freedom = design.type_two((left, right), model_terms)
            if degrees_of_freedom == 0:
                continue  # Not estimable: the design never crosses these two factors beyond the other terms.
            share = explained / safe_total
            if not share[0] >= interaction_min_share:
                continue  # Too small to matter (or undefined: no variance at all).
            departures = objective_module.scale(objective) * (design.fitted(list(design.factors) + [(left, right)])
                                                              - main_fit)
            largest = int(np.argmax(np.abs(departures[:, 0])))
            # The departure at the run where it is largest, signed so that the observed value is positive.
            points = design.contrast_interval(np.sign(departures[largest, 0]) * departures[largest])
            terms.append(dict(common, term=f"{left} x {right}", kind="interaction", levels="", share=share,
                              points=points))
        residual = (np.sum(columns ** 2, axis=0) - design.cell_means_explained()) / safe_total
        terms.sort(key=lambda term: -np.nan_to_num(term["share"][0], nan=-1.0))
        terms.append(dict(common, term="seed (within cell)", kind="residual", levels="", share=residual,
                          points=(math.nan, math.nan, math.nan)))
        for rank, term in enumerate(terms, start=1):
            share, share_low, share_high = design.bootstrap_interval(term.pop("share"))
            points, points_low, points_high = term.pop("points")
            records.append(Effect(**term, rank=rank if term["kind"] != "residual" else None, share=share,
                                  share_low=share_low, share_high=share_high, effect_points=points,
                                  effect_low=points_low, effect_high=points_high))
    return records
