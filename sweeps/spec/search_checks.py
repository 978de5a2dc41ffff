"""The search part of a sweep file checked against its trainer: the space, the scheduler and its epochs, the
objective, the budget and ``start_from``. Each mistake is one ``ValueError`` line naming the key.

A sweep is a *search* when ``search.mode`` is ``tpe``, or ``random`` with a distribution among its factors; its
trials are then suggested as it runs. ``random`` over lists only still draws cells of the grid up front, and
``asha`` is unchanged (both as before searches existed).
"""

from __future__ import annotations

from typing import Any

from sweeps.spec import schema
from sweeps.spec import space as space_module
from sweeps.trainers import api as trainers_api

SEARCH_EXAMPLE = "search: {mode: tpe, num_samples: 20}"
# Listed under factors but not searched: the epoch axis and the seeds keep their meaning in a search.
AXES = ("epochs", "seed")


def is_search(parsed: schema.SweepFile) -> bool:
    """``tpe``, or ``random`` with a distribution among the factors."""
    mode = parsed.search.mode
    return mode == "tpe" or (mode == "random" and any(isinstance(value, dict) for value in parsed.factors.values()))


def listed_factors(where: str, parsed: schema.SweepFile, searched: bool) -> dict[str, Any]:
    """The factors that are lists of values: all of a grid's; a search's epoch axis and seeds."""
    if searched:
        return {name: value for name, value in parsed.factors.items() if name in AXES and isinstance(value, list)}
    for name, value in parsed.factors.items():
        if isinstance(value, dict):
            raise ValueError(f"{where}: factors.{name}: a distribution needs a search (search.mode random or tpe), "
                             f"e.g. {SEARCH_EXAMPLE}; search.mode {parsed.search.mode!r} runs lists of values")
    return dict(parsed.factors)


def parse_space(where: str, parsed: schema.SweepFile, trainer: trainers_api.Trainer) -> dict[str, Any]:
    """Each searched factor's ``Distribution``, in file order (a list is a choice)."""
    space: dict[str, space_module.Distribution] = {}
    for name, value in parsed.factors.items():
        if name in AXES:
            if isinstance(value, dict):
                axis = "the epoch axis (set scheduler.max_t, or list epochs)" if name == "epochs" else \
                    "the seeds (set seeds: [s])"
                raise ValueError(f"{where}: factors.{name}: not a searched dimension: it is {axis}")
            continue
        if name not in trainer.factors:
            raise ValueError(f"{where}: factors.{name}: unknown setting of trainer {parsed.trainer!r}; allowed: "
                             f"{', '.join(sorted(trainer.factors))}")
        factor = trainer.factors[name]
        space[name] = space_module.parse_factor(where, name, value, factor, space)
        if trainer.prepares_data and factor.shapes_data and space[name].kind != "choice":
            raise ValueError(f"{where}: factors.{name}: trainer {parsed.trainer!r} prepares its data before a search "
                             f"runs, one data set per value: search {name} as a list or {{choice: [...]}}, or hold it "
                             f"in 'fixed'")
    if not space:
        raise ValueError(f"{where}: search.mode {parsed.search.mode!r} needs a searched factor, e.g. factors: "
                         f"{{learning_rate: {{loguniform: [0.0001, 0.1]}}}}")
    return space


def scheduler_and_epochs(where: str, parsed: schema.SweepFile, trainer: trainers_api.Trainer, epochs: list[int], *,
                         epochs_given: bool) -> tuple[dict[str, Any] | None, list[int]]:
    """The scheduler's settings (``max_t`` resolved) and the epoch list it implies: in a search the epoch count
    is the scheduler's ``max_t`` (or the file's epochs, which must then end at ``max_t``)."""
    if parsed.scheduler is None:
        return None, epochs
    scheduler = parsed.scheduler.model_dump()
    if parsed.search.mode == "asha":
        raise ValueError(f"{where}: scheduler: search.mode 'asha' schedules already; use search.mode random or tpe "
                         f"with scheduler: {{mode: asha}}")
    if not trainer.epoch_axis:
        raise ValueError(f"{where}: scheduler: trainer {parsed.trainer!r} declares no 'epochs' factor, so there is "
                         f"nothing to stop early; remove 'scheduler'")
    if scheduler["max_t"] is None:
        scheduler["max_t"] = max(epochs)
    elif epochs_given and max(epochs) != scheduler["max_t"]:
        raise ValueError(f"{where}: scheduler.max_t={scheduler['max_t']} differs from the largest epoch count "
                         f"{max(epochs)}; give the epochs in one place (scheduler.max_t, or epochs)")
    elif not epochs_given:
        epochs = [scheduler["max_t"]]
    if scheduler["grace_period"] > scheduler["max_t"]:
        raise ValueError(f"{where}: scheduler.grace_period={scheduler['grace_period']} exceeds max_t="
                         f"{scheduler['max_t']}; use a value in 1..{scheduler['max_t']}")
    return scheduler, epochs


def check_search(where: str, parsed: schema.SweepFile, trainer: trainers_api.Trainer, space: dict[str, Any],
                 seeds: list[int]) -> None:
    """What only a search takes (budget, start_from), and the trainers whose seeds can share a trial (a search's
    ``seeds: k`` trains each configuration at k seeds in one trial, ``sweeps.run.seed_group``): a training function,
    side by side in threads, or a trainer that takes turns (``Trainer.takes_turns``)."""
    if not space:
        for key in ("budget", "start_from"):
            if key in parsed.model_fields_set:
                raise ValueError(f"{where}: {key}: applies to a search (search.mode tpe, or random over "
                                 f"distributions), e.g. {SEARCH_EXAMPLE}")
        return
    if len(seeds) > 1 and trainer.function is None and not trainer.takes_turns:
        # A built-in's runner that was never made to share its process with another seed (the TF-IDF baselines).
        raise ValueError(f"{where}: seeds={seeds!r}: trainer {parsed.trainer!r} neither trains its seeds side by side "
                         f"nor takes turns, so a search cannot train them in one trial; use seeds: [{seeds[0]}]")
    if parsed.budget is not None and parsed.budget.trials is None and parsed.budget.cpu_hours is None:
        raise ValueError(f"{where}: budget: give trials and/or cpu_hours, e.g. budget: {{cpu_hours: 6}}")


def objective(where: str, parsed: schema.SweepFile, trainer: trainers_api.Trainer) -> dict[str, str]:
    """``metric`` and ``mode``: the file's ``objective``, else the trainer's first metric in its direction."""
    if parsed.objective is None:
        return {"metric": trainer.objective.name, "mode": trainer.objective.mode}
    metric = trainer.metric(parsed.objective.metric)
    if metric is None:
        raise ValueError(f"{where}: objective.metric={parsed.objective.metric!r}: not a metric of trainer "
                         f"{parsed.trainer!r}; its metrics: {', '.join(item.name for item in trainer.metrics)}")
    return {"metric": metric.name, "mode": parsed.objective.mode or metric.mode}


def start_points(where: str, parsed: schema.SweepFile, trainer: trainers_api.Trainer,
                 space: dict[str, Any]) -> list[dict[str, Any]]:
    """``start_from``'s configurations, typed: each names searched factors, with values inside their distributions."""
    points = []
    for index, point in enumerate(parsed.start_from):
        typed = {}
        for name, value in point.items():
            if name not in space:
                raise ValueError(f"{where}: start_from[{index}].{name}: not a searched factor; searched: "
                                 f"{', '.join(space)}")
            value = schema.coerce(trainer.factors, name, value)
            if not space[name].contains(value):
                raise ValueError(f"{where}: start_from[{index}].{name}={value!r}: outside {space[name].text()}")
            typed[name] = value
        points.append(typed)
    return points
