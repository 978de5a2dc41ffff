"""A search's space: one ``Distribution`` per searched factor, parsed from the sweep file and checked against the
factor its trainer declares.

A factor in a search is a list (a choice among its values, as in a grid) or a mapping::

    learning_rate: {loguniform: [0.0001, 0.1]}
    dropout: {uniform: [0.0, 0.5], step: 0.1}
    batch_size: {int: [16, 256], log: true}
    loss: {choice: [hinge, log_loss]}
    l1_ratio: {uniform: [0, 1], when: {penalty: elasticnet}}     # sampled only where penalty is elasticnet

Every bound is checked against the factor's own (type, choices, ``ge``/``gt``/``lt``) before any compute, in one
line naming the key. The names and semantics follow Optuna's ``suggest_float`` / ``suggest_int`` /
``suggest_categorical`` (``log``, ``step``), which the searchers call (``sweeps.run.searcher``); Optuna is imported
only by ``optuna_distribution``, which the searcher and the search's report (``sweeps.report.search_stats``) share.
A distribution travels as a record (``to_records`` / ``from_records``): the parent run's ``glovesweep.space`` tag
and a report folder's ``runs.parquet`` metadata.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from sweeps.spec import schema
from trainer.factors import Factor

KINDS = ("uniform", "loguniform", "int", "choice")
OPTIONS = ("log", "step", "when")
# Suggested floats are rounded to this many significant digits: readable cells and params, stable trial keys.
SIGNIFICANT_DIGITS = 6


@dataclasses.dataclass(frozen=True)
class Distribution:
    """One searched factor's distribution.

    Attributes
    ----------
    kind : str
        ``uniform``, ``loguniform`` (floats), ``int`` or ``choice``.
    low, high : int or float, optional
        Inclusive bounds (``uniform``, ``loguniform``, ``int``).
    values : tuple
        The choices (``choice``), typed per the factor.
    log : bool
        Sampled on a log scale (``loguniform``, or ``int`` with ``log: true``).
    step : int or float, optional
        Quantization: values are ``low + k * step``.
    when : dict of str to tuple
        Sampled only where every named factor of the search took one of the listed values; elsewhere the trial
        runs the factor's fixed or default value and its cell omits it.
    """

    kind: str
    low: float | None = None
    high: float | None = None
    values: tuple = ()
    log: bool = False
    step: float | None = None
    when: dict[str, tuple] = dataclasses.field(default_factory=dict)

    def applies(self, cell: dict[str, Any]) -> bool:
        """Whether the factor is sampled given the values drawn before it (its ``when``)."""
        return all(cell.get(name) in allowed for name, allowed in self.when.items())

    def typed(self, factor: Factor, value: Any) -> Any:
        """A suggested value as the trial runs it: a float rounded to 6 significant digits within the bounds."""
        if self.kind == "int" or factor.type is int:
            return int(value)
        if self.kind == "choice":
            return value
        rounded = float(f"{float(value):.{SIGNIFICANT_DIGITS}g}")
        return min(max(rounded, self.low), self.high)

    def contains(self, value: Any) -> bool:
        if self.kind == "choice":
            return value in self.values
        return isinstance(value, (int, float)) and not isinstance(value, bool) and self.low <= value <= self.high

    def text(self) -> str:
        """The distribution as written, e.g. ``loguniform(0.0001, 0.1)`` (the parent run's ``factor.<name>``)."""
        if self.kind == "choice":
            body = "|".join(map(str, self.values))
        else:
            body = f"{self.low:g}, {self.high:g}" + (f", step {self.step:g}" if self.step else "") + \
                (", log" if self.log and self.kind == "int" else "")
        condition = "; ".join(f"{name} in {'|'.join(map(str, allowed))}" for name, allowed in self.when.items())
        return f"{self.kind}({body})" + (f" when {condition}" if condition else "")


def parse_factor(where: str, name: str, value: Any, factor: Factor, earlier: dict[str, Distribution]) -> Distribution:
    """The distribution a sweep file's ``factors.<name>`` gives (a list is a choice); one-line ``ValueError``.

    ``earlier`` holds the searched factors listed before this one: a ``when`` may name only those.
    """
    key = f"{where}: factors.{name}"
    if isinstance(value, list):
        value = {"choice": value}
    kinds = [kind for kind in KINDS if kind in value]
    unknown = sorted(set(value) - set(KINDS) - set(OPTIONS))
    if unknown or len(kinds) != 1:
        found = f"unknown key {unknown[0]!r}" if unknown else f"{len(kinds)} kinds ({', '.join(kinds) or 'none'})"
        raise ValueError(f"{key}={value!r}: {found}; a distribution is one of {', '.join(KINDS)} with optional "
                         f"{', '.join(OPTIONS)}, e.g. {{loguniform: [0.0001, 0.1]}}")
    kind = kinds[0]
    step, log, when = value.get("step"), value.get("log", kind == "loguniform"), value.get("when") or {}
    if kind == "choice":
        made = _choice(key, value["choice"], factor)
    else:
        made = _range(key, kind, value[kind], factor, step=step, log=log)
    if kind == "choice" and (step is not None or "log" in value):
        raise ValueError(f"{key}: step and log apply to uniform, loguniform and int, not to choice")
    return dataclasses.replace(made, when=_when(key, when, earlier))


def _choice(key: str, values: Any, factor: Factor) -> Distribution:
    if not isinstance(values, list) or not values:
        raise ValueError(f"{key}: choice takes a non-empty list of values, e.g. {{choice: [a, b]}}")
    typed = [schema.coerce({factor.name: factor}, factor.name, item) for item in values]
    for item in typed:
        try:
            factor.check(item)
        except ValueError as error:
            raise ValueError(f"{key} value {item!r}: {error}") from None
    if len({repr(item) for item in typed}) != len(typed):
        raise ValueError(f"{key}={values!r} lists a value twice")
    return Distribution("choice", values=tuple(typed))


def _range(key: str, kind: str, bounds: Any, factor: Factor, *, step: Any, log: Any) -> Distribution:
    if not (isinstance(bounds, list) and len(bounds) == 2
            and all(isinstance(item, (int, float)) and not isinstance(item, bool) for item in bounds)):
        raise ValueError(f"{key}: {kind} takes [low, high], two numbers; got {bounds!r}")
    wanted = int if kind == "int" else float
    if factor.type is not wanted or factor.choices:
        other = "{choice: [...]}" if factor.choices or factor.type not in (int, float) else \
            ("{int: [low, high]}" if factor.type is int else "{uniform: [low, high]} or {loguniform: [low, high]}")
        raise ValueError(f"{key}: {kind} does not fit a {factor.type.__name__} factor"
                         f"{' with fixed choices' if factor.choices else ''}; use {other}")
    if kind == "int" and not all(isinstance(item, int) for item in bounds):
        raise ValueError(f"{key}: int takes integer bounds; got {bounds!r}")
    low, high = (wanted(item) for item in bounds)
    if not low < high:
        raise ValueError(f"{key}: {kind} low={bounds[0]!r} must be below high={bounds[1]!r}")
    if not isinstance(log, bool):
        raise ValueError(f"{key}: log={log!r} must be true or false")
    if kind == "loguniform" and not log:
        raise ValueError(f"{key}: loguniform is on a log scale; use {{uniform: [{low:g}, {high:g}]}}")
    if kind == "uniform" and log:
        raise ValueError(f"{key}: uniform takes no log; use {{loguniform: [{low:g}, {high:g}]}}")
    if log and low <= 0:
        raise ValueError(f"{key}: {kind} low={bounds[0]!r} must be > 0 on a log scale")
    for label, bound in (("low", low), ("high", high)):
        try:
            factor.check(bound)
        except ValueError as error:
            raise ValueError(f"{key}: {kind} {label}={bound!r} is outside the factor's bounds: {error}") from None
    if step is not None:
        if isinstance(step, bool) or not isinstance(step, (int, float)) or step <= 0 or step > high - low:
            raise ValueError(f"{key}: step={step!r} must be a number in (0, high - low = {high - low:g}]")
        if kind == "int" and not isinstance(step, int):
            raise ValueError(f"{key}: int takes an integer step; got {step!r}")
        if log and (kind != "int" or step != 1):
            raise ValueError(f"{key}: step and a log scale do not combine (Optuna samples either); drop one")
        if not math.isclose(round((high - low) / step) * step, high - low, rel_tol=1e-9):
            raise ValueError(f"{key}: step={step!r} does not divide high - low = {high - low:g}")
    return Distribution(kind, low=low, high=high, log=bool(log), step=wanted(step) if step is not None else None)


def _when(key: str, when: Any, earlier: dict[str, Distribution]) -> dict[str, tuple]:
    if not isinstance(when, dict):
        raise ValueError(f"{key}: when={when!r} must map factor names to a value or a list of values, e.g. "
                         f"when: {{embedding: trainable}}")
    made = {}
    for name, allowed in when.items():
        parent = earlier.get(name)
        if parent is None or parent.kind != "choice":
            raise ValueError(f"{key}: when.{name}: must name a choice factor of this search listed before it; "
                             f"earlier choices: {', '.join(n for n, d in earlier.items() if d.kind == 'choice') or '(none)'}")
        values = tuple(allowed if isinstance(allowed, list) else [allowed])
        values = tuple(value if value in parent.values else str(value) for value in values)
        outside = [value for value in values if value not in parent.values]
        if outside:
            raise ValueError(f"{key}: when.{name}={outside[0]!r} is not among its values "
                             f"{', '.join(map(repr, parent.values))}")
        made[name] = values
    return made


def to_records(space: dict[str, Distribution]) -> list[list]:
    """The space as JSON-able ``[name, record]`` pairs, in file order (a ``when`` names only earlier factors)."""
    return [[name, {key: list(value) if isinstance(value, tuple) else value
                    for key, value in dataclasses.asdict(distribution).items()}] for name, distribution in space.items()]


def from_records(records: list | None) -> dict[str, Distribution]:
    """The space ``to_records`` wrote (empty for none: a grid)."""
    made = {}
    for name, record in records or []:
        record = dict(record, values=tuple(record.get("values", ())),
                      when={key: tuple(allowed) for key, allowed in (record.get("when") or {}).items()})
        made[name] = Distribution(**record)
    return made


def optuna_distribution(distribution: Distribution):
    """The ``optuna.distributions`` object of a sweep file's ``Distribution``."""
    import optuna

    if distribution.kind == "choice":
        return optuna.distributions.CategoricalDistribution(list(distribution.values))
    if distribution.kind == "int":
        return optuna.distributions.IntDistribution(int(distribution.low), int(distribution.high), log=distribution.log,
                                                    step=int(distribution.step or 1))
    return optuna.distributions.FloatDistribution(distribution.low, distribution.high, log=distribution.log,
                                                  step=distribution.step)


def from_param(factor: Factor, text: str) -> Any:
    """A value as MLflow's params hold it (text) back in the factor's type (``resume`` reads trials this way)."""
    if factor.type is bool:
        return text == "True"
    return factor.type(text)
