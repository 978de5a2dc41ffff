"""The gap between two cells (the blog's and the user's) in the objective, split among the factors that differ.

Works on a sweep's runs frame (``sweeps.report.reader``) with ``sweeps.report.stats.Design``; the split is by Shapley values
and every number in it is a linear contrast of the runs' accuracies, so its interval is the Student-t
interval of that contrast (``Design.contrast_interval``).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any, Sequence

import numpy as np
import pandas as pd

from sweeps.report import objective as objective_module
from sweeps.report import stats
from trainer import config as config_module


@dataclasses.dataclass(frozen=True)
class Contribution:
    """One differing factor's Shapley part of the gap: points (100 x fraction; a metric not bounded to [0, 1]: its
    own units), positive where switching to the user's value makes the cell worse, with its 95% t-interval (NaN:
    one seed per cell), and the factor's value in the blog's cell (``from_value``) and in the user's (``to_value``)."""

    factor: str
    points: float
    low: float
    high: float
    from_value: str
    to_value: str

    def to_dict(self) -> dict[str, Any]:
        """``factor``, ``points``, ``low``, ``high``, ``from``, ``to``: the columns of gap.csv and answer.json."""
        return {"factor": self.factor, "points": self.points, "low": self.low, "high": self.high,
                "from": self.from_value, "to": self.to_value}


@dataclasses.dataclass(frozen=True)
class GapSplit:
    """The gap between the blog's cell and the user's cell at one epoch count (see ``decompose_gap``).

    ``missing`` says why there is no gap (a cell was not run); then only ``epochs`` is set.
    """

    epochs: int
    missing: str | None = None
    blog: float = math.nan
    user: float = math.nan
    gap_points: float = math.nan
    gap_low: float = math.nan
    gap_high: float = math.nan
    contributions: tuple[Contribution, ...] = ()
    stratum: str = ""
    held: dict[str, str] = dataclasses.field(default_factory=dict)
    modelled: tuple[str, ...] = ()
    blog_runs: int = 0
    user_runs: int = 0


def decompose_gap(runs: pd.DataFrame, factors: Sequence[str], blog_cell: dict[str, str], user_cell: dict[str, str],
                  *, confidence: float = stats.CONFIDENCE,
                  objective: objective_module.Metric = objective_module.DEFAULT) -> list[GapSplit]:
    """Split the gap between the blog's cell and the user's cell in ``objective`` among the factors that differ.

    The gap is how much better the blog's cell is, in the objective's direction: ``blog - user`` for a ``max``
    metric, ``user - blog`` for a ``min`` one, in points for a metric bounded to [0, 1] (else its own units).

    At each requested epoch count, the two cells are compared with every other factor held at one setting
    (the stratum with the most observed corner cells, then the most runs, then the most trainer defaults). The
    gap ``blog - user`` is split by Shapley values: each differing factor's contribution is the accuracy change
    when it alone switches from the blog's value to the user's, averaged over every switching order, so the
    contributions add up to the gap exactly. A corner cell that was not run is filled with the main-effects
    model's prediction (listed in ``modelled``). Intervals: Student-t of each contrast, seed noise pooled
    within cells.

    Returns
    -------
    list of GapSplit
        One per epoch count: ``blog``, ``user`` (mean accuracy, fractions), ``gap_points``, ``gap_low``,
        ``gap_high``, ``contributions`` (``Contribution``, largest first), ``stratum`` (the other factors'
        settings as text), ``held`` (the same as a dict of factor name to value text), ``modelled`` (corner cells
        predicted, not run), ``blog_runs``, ``user_runs``; or only ``missing`` (why there is no answer).
    """
    keys = list(dict.fromkeys(list(blog_cell) + list(user_cell)))
    blog = {key: blog_cell.get(key, user_cell.get(key)) for key in keys}
    user = {key: user_cell.get(key, blog_cell.get(key)) for key in keys}
    differing = [key for key in keys if blog[key] != user[key]]
    network = stats.network_runs(runs)
    results = []
    for count in stats.epoch_counts(runs):
        at_count = network[network["epochs"] == count]
        missing = []
        for key in keys:
            if key not in at_count:
                missing.append(f"{key}={blog[key]} (not a setting of these runs)")
                continue
            present = {str(value) for value in at_count[key]}
            absent = [value for value in dict.fromkeys([blog[key], user[key]]) if value not in present]
            if absent:
                # Name what the sweep has, so a wrong --blog-cell / --user-cell is plain to see.
                missing.append(f"{key}={' or '.join(absent)} (the runs have {', '.join(sorted(present)) or 'none'})")
        if missing:
            results.append(GapSplit(epochs=count, missing=f"no runs with {'; '.join(missing)}"))
            continue
        design = stats.Design(at_count, list(dict.fromkeys(list(factors) + keys)), bootstrap_samples=0, seed=0,
                              confidence=confidence)
        results.append(_split(design, at_count, keys, differing, blog, user, count,
                              objective_module.sign(objective) * objective_module.scale(objective)))
    return results


def _split(design: stats.Design, at_count: pd.DataFrame, keys: list[str], differing: list[str],
           blog: dict[str, str], user: dict[str, str], count: int, factor: float) -> GapSplit:
    """The gap split of one epoch count (see ``decompose_gap``); ``factor`` orients and scales a difference."""
    others = [name for name in design.factors if name not in keys]
    coefficients = np.linalg.pinv(design.matrix(design.factors)) @ design.columns

    def corner_key(assignment: dict[str, str], stratum: tuple) -> tuple:
        values = dict(zip(others, stratum), **assignment)
        return tuple(design.levels[name].index(values[name]) for name in design.factors)

    corners = [dict(zip(differing, choice)) for choice in
               itertools.product(*[(blog[key], user[key]) for key in differing])]
    fixed = {key: blog[key] for key in keys if key not in differing}
    strata = sorted({tuple(row) for row in at_count[others].itertuples(index=False)})
    defaults = {name: str(value) for name, value in config_module.TrainerConfig().to_dict().items()}

    def stratum_score(stratum):
        observed = [design.cells.get(corner_key(dict(fixed, **corner), stratum)) for corner in corners]
        # Ties go to the trainer's defaults, the blog's own settings (frozen GloVe, its sizing).
        return (sum(found is not None for found in observed),
                sum(found.size for found in observed if found is not None),
                sum(defaults.get(name) == str(value) for name, value in zip(others, stratum)))

    stratum = max(strata, key=stratum_score)
    values, modelled = {}, []
    for corner in corners:
        key = corner_key(dict(fixed, **corner), stratum)
        indices = design.cells.get(key)
        if indices is not None:
            values[tuple(corner.values())] = design.columns[indices].mean(axis=0)
        else:
            codes = {name: np.array([code]) for name, code in zip(design.factors, key)}
            values[tuple(corner.values())] = (design.matrix(design.factors, codes) @ coefficients)[0]
            modelled.append(", ".join(f"{name}={value}" for name, value in corner.items()))
    blog_values = values[tuple(blog[key] for key in differing)]
    user_values = values[tuple(user[key] for key in differing)]
    shapley = {key: np.zeros(design.columns.shape[1]) for key in differing}
    orders = list(itertools.permutations(differing))
    for order in orders:
        current = dict(blog)
        for key in order:
            following = dict(current, **{key: user[key]})
            shapley[key] += (values[tuple(current[name] for name in differing)]
                             - values[tuple(following[name] for name in differing)])
            current = following
    contributions = []
    for key in differing:
        points, low, high = design.contrast_interval(factor * shapley[key] / len(orders))
        contributions.append(Contribution(factor=key, points=points, low=low, high=high, from_value=blog[key],
                                          to_value=user[key]))
    contributions.sort(key=lambda item: -abs(item.points))
    gap, gap_low, gap_high = design.contrast_interval(factor * (blog_values - user_values))
    blog_key = corner_key(dict(fixed, **{key: blog[key] for key in differing}), stratum)
    user_key = corner_key(dict(fixed, **{key: user[key] for key in differing}), stratum)
    return GapSplit(epochs=count, blog=float(blog_values[0]), user=float(user_values[0]), gap_points=gap,
                    gap_low=gap_low, gap_high=gap_high, contributions=tuple(contributions),
                    stratum=", ".join(f"{name}={value}" for name, value in zip(others, stratum)),
                    held={name: str(value) for name, value in zip(others, stratum)}, modelled=tuple(modelled),
                    blog_runs=int(design.cells[blog_key].size) if blog_key in design.cells else 0,
                    user_runs=int(design.cells[user_key].size) if user_key in design.cells else 0)
