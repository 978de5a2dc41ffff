"""How many epochs a search's scheduler lets its configurations train, in expectation, before any of them runs.

The rungs are placed as Ray Tune 2.60's ``AsyncHyperBandScheduler`` places them (``ray/tune/schedulers/
async_hyperband.py``, ``_Bracket.__init__``): bracket ``s`` of grace period ``g``, reduction factor ``eta`` and
``max_t`` ``T`` has ``int(log(T / g) / log(eta) - s + 1)`` rungs at ``g * eta ** (k + s)``. A trial is judged at
the first epoch it reports at or past a rung it has not yet recorded (the highest such rung, one per report), and
stopped when its value is below the ``(1 - 1/eta)`` percentile of the values recorded there before it; at ``T`` it
stops anyway, so a rung at ``T`` saves nothing. HyperBand (``brackets > 1``) sends each trial to bracket ``s``
with probability proportional to ``e ** (rungs of s)``.

Two expectations:

- *long run*: a fraction ``1/eta`` continues past each rung, the asymptote of a long search.
- *these configurations*, arriving one at a time with values in random order: the first to reach a rung always
  continues (nothing is recorded there yet), and the n-th continues with probability ``((n - 1)/eta + 1) / (n + 1)``
  (the chance that a uniform value clears the linearly interpolated percentile of n - 1 earlier uniform values,
  ``numpy.nanpercentile``'s default), which falls to ``1/eta``. ``tests/test_plan_search.py`` checks it against
  Ray's own scheduler driven with random values.

Both are expectations: a searcher whose later suggestions are better (TPE) lets more through than random order.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

# Above this many configurations the per-configuration expectation is extended at the long-run rate (the exact one
# needs a square matrix of this size per bracket).
EXACT_CONFIGURATIONS = 1000


def bracket_count(settings: dict[str, Any]) -> int:
    """Brackets of the scheduler glovesweep builds (``sweeps.run.searcher.make_scheduler``): 1 for ASHA; for
    HyperBand one per rung position the first rung can take below ``max_t``."""
    if settings["mode"] == "asha":
        return 1
    ratio = math.log(settings["max_t"] / settings["grace_period"]) / math.log(settings["reduction_factor"])
    return max(1, int(ratio + 1e-9) + 1)


@dataclasses.dataclass(frozen=True)
class Schedule:
    """A search's scheduler resolved into what it does to epochs.

    Attributes
    ----------
    mode : str
        ``asha``, ``hyperband``, or ``none`` (every configuration trains ``max_t`` epochs).
    max_t : int
        Epochs of a configuration that is never stopped.
    reduction_factor : float
        ``eta``: in the long run 1 in ``eta`` continue past each rung.
    rungs : tuple of tuple of float
        Per bracket, Ray's rung positions in epochs, ``max_t`` included where Ray places one there.
    judged : tuple of tuple of int
        Per bracket, the epochs at which a trial is judged (each below ``max_t``), in order.
    probabilities : tuple of float
        Per bracket, the probability that a configuration is sent to it.
    """

    mode: str
    max_t: int
    reduction_factor: float
    rungs: tuple[tuple[float, ...], ...]
    judged: tuple[tuple[int, ...], ...]
    probabilities: tuple[float, ...]

    def long_run_epochs(self) -> float:
        """Expected epochs per configuration when ``1/eta`` continue past each judged rung."""
        total = 0.0
        for judged, probability in zip(self.judged, self.probabilities):
            ends = (0, *judged, self.max_t)
            total += probability * sum((ends[index + 1] - ends[index]) / self.reduction_factor ** index
                                       for index in range(len(ends) - 1))
        return total

    def expected_epochs(self, configurations: int) -> list[float]:
        """Expected epochs of the first ``m`` configurations, arriving one at a time, for ``m = 0..configurations``
        (the first to reach a rung always continues; see the module docstring).

        Returns
        -------
        list of float, length ``configurations + 1``
            Cumulative expected epochs (per seed).
        """
        exact = min(configurations, EXACT_CONFIGURATIONS)
        counts = np.arange(exact + 1)
        totals = np.zeros(exact + 1)
        for judged, probability in zip(self.judged, self.probabilities):
            per_count = self._bracket_epochs(judged, exact)
            if probability == 1.0:
                totals += per_count
                continue
            from scipy import stats

            # Each configuration goes to this bracket independently: a binomial number of the first m land here.
            landed = stats.binom.pmf(counts[None, :], counts[:, None], probability)
            totals += landed @ per_count
        rate = self.long_run_epochs()
        return [float(value) for value in totals] + [float(totals[-1] + rate * extra)
                                                     for extra in range(1, configurations - exact + 1)]

    def _bracket_epochs(self, judged: tuple[int, ...], size: int) -> np.ndarray:
        """Expected epochs of ``n`` configurations in one bracket, for ``n = 0..size``."""
        passes = continue_probability(np.arange(size), self.reduction_factor)
        # moves[n, k]: probability that k of n arrivals at a rung continue (the i-th with passes[i]).
        moves = np.zeros((size + 1, size + 1))
        moves[0, 0] = 1.0
        for count in range(1, size + 1):
            moves[count] = moves[count - 1] * (1 - passes[count - 1])
            moves[count, 1:] += moves[count - 1, :-1] * passes[count - 1]
        ends = (*judged, self.max_t)
        counts = np.arange(size + 1, dtype=float)
        # Backwards from the last rung: epochs still to come after each rung, given how many arrive there.
        later = np.zeros(size + 1)
        for index in reversed(range(len(judged))):
            later = moves @ (counts * (ends[index + 1] - ends[index]) + later)
        return counts * (ends[0] if judged else self.max_t) + later


def continue_probability(recorded: np.ndarray, reduction_factor: float) -> np.ndarray:
    """Probability that a configuration continues past a rung where ``recorded`` values came before it (random
    order): 1 with none, else ``((n - 1)/eta + 1) / (n + 1)``."""
    recorded = np.asarray(recorded, dtype=float)
    return np.where(recorded == 0, 1.0, ((recorded - 1) / reduction_factor + 1) / (recorded + 1))


def schedule(settings: dict[str, Any] | None, max_t: int) -> Schedule:
    """The ``Schedule`` of a search's ``scheduler`` settings (``None``: no scheduler, every configuration to
    ``max_t``)."""
    if settings is None:
        return Schedule("none", max_t, 1.0, ((),), ((),), (1.0,))
    grace, eta, max_t = settings["grace_period"], float(settings["reduction_factor"]), int(settings["max_t"])
    rungs = []
    for bracket in range(bracket_count(settings)):
        # Ray's own expression, in numpy as Ray computes it (a float rounding must fall the same way).
        count = int(np.log(max_t / grace) / np.log(eta) - bracket + 1)
        rungs.append(tuple(float(grace * eta ** (k + bracket)) for k in range(max(0, count))))
    sizes = np.array([len(bracket) for bracket in rungs])
    weights = np.e ** (sizes - sizes.max())
    judged = tuple(judged_epochs(bracket, max_t) for bracket in rungs)
    return Schedule(settings["mode"], max_t, eta, tuple(rungs), judged,
                    tuple(float(weight) for weight in weights / weights.sum()))


def judged_epochs(rungs: tuple[float, ...], max_t: int) -> tuple[int, ...]:
    """The epochs below ``max_t`` at which a trial reporting every epoch is judged at one of ``rungs``: at each
    report the highest rung at or below it not yet recorded (``_Bracket.on_result``)."""
    recorded: set[float] = set()
    judged = []
    for epoch in range(1, max_t):
        waiting = [rung for rung in rungs if rung <= epoch and rung not in recorded]
        if waiting:
            recorded.add(max(waiting))
            judged.append(epoch)
    return tuple(judged)
