"""The stages after a search: ``confirm`` (the best configurations retrained on fresh seeds) and ``final`` (the
confirmed configuration retrained with the final settings, e.g. on all training files, and scored once on a test
set), and the check that a search never selects on a test set.

- ``confirm: {top: N, seeds: K}``: the N best configurations by the search's objective (ties: the smaller trial
  key) each trained on K seeds the search never used (``max(seeds) + 1`` onwards), no scheduler. The best
  configuration is then the one with the best mean over those K seeds, not the best single search trial (the
  winner's curse: the best of many noisy trials is lucky as well as good).
- ``final: {<setting>: <value>, seeds: K}``: the chosen configuration (the confirmed one, else the search's
  best) retrained with those trainer settings on K seeds. A trainer may name default settings
  (``Trainer.final_settings``: the Keras network's ``validation: auto``, which on bydate trains on every training
  file and scores the official test set); they apply where they reach a test set the search did not see.
  ``final: false``: no final stage.
- A trainer that knows its test sets (``Trainer.test_set``) refuses a search whose selection would validate on
  one (the Keras network on bydate with ``validation: auto``) unless the file says ``select_on_test_set: true``.

Each mistake is one ``ValueError`` line naming the key.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from sweeps.spec import schema

DEFAULT_SEEDS = 3
# Stage names: the child runs' ``glovesweep.stage`` tag (``sweeps.tracking.names``) and ``Trial.stage``.
SEARCH = "search"
CONFIRM = "confirm"
FINAL = "final"
CONFIRM_EXAMPLE = "confirm: {top: 3, seeds: 3}"


@dataclasses.dataclass(frozen=True)
class ConfirmStage:
    """``confirm:`` resolved: how many of the best configurations, and the fresh seeds each is trained on."""

    top: int
    seeds: tuple[int, ...]

    @property
    def trials(self) -> int:
        return self.top * len(self.seeds)


@dataclasses.dataclass(frozen=True)
class FinalStage:
    """``final:`` resolved: the trainer settings it changes and the seeds it trains on; ``asked``: the file named
    the stage (else it is the trainer's default)."""

    settings: dict[str, Any]
    seeds: tuple[int, ...]
    asked: bool


def fresh_seeds(seeds: list[int], count: int) -> tuple[int, ...]:
    """``count`` seeds the search never trained on: the ones above its largest."""
    return tuple(range(max(seeds) + 1, max(seeds) + 1 + count))


def parse_stages(where: str, parsed: schema.SweepFile, spec) -> dict[str, Any]:
    """``{"confirm": ConfirmStage | None, "final": FinalStage | None}`` of a built ``SweepSpec``, checked."""
    if not spec.searched:
        for key in ("confirm", "final", "select_on_test_set"):
            if key in parsed.model_fields_set and getattr(parsed, key) not in (None, False):
                raise ValueError(f"{where}: {key}: applies to a search (search.mode tpe, or random over "
                                 f"distributions), e.g. search: {{mode: tpe, num_samples: 20}}")
        return {"confirm": None, "final": None}
    check_selection(where, parsed, spec)
    trainer = spec.main_trainer
    confirm = None
    if parsed.confirm is not None:
        if not trainer.seeded:
            raise ValueError(f"{where}: confirm: trainer {parsed.trainer!r} declares no 'seed' factor, so a "
                             f"configuration trains the same on every seed; remove 'confirm'")
        confirm = ConfirmStage(top=parsed.confirm.top, seeds=fresh_seeds(spec.seeds, parsed.confirm.seeds))
    return {"confirm": confirm, "final": final_stage(where, parsed, spec, confirm)}


def selection_config(spec):
    """The config of the search's first data set (every data set validates the same way: ``check_selection``)."""
    return spec.trial_config(spec.data_trials()[0])


def check_selection(where: str, parsed: schema.SweepFile, spec) -> None:
    """A search whose trials validate on an official test set tunes on it: refused unless the file says so."""
    trainer = spec.main_trainer
    if trainer.test_set is None or parsed.select_on_test_set:
        return
    # Every data set the search can train on (its searched data settings included) must validate off the test set.
    selecting = [spec.trial_config(trial) for trial in spec.data_trials()]
    config = next((item for item in selecting if trainer.test_set(item)), None)
    if config is None:
        return
    fixes = [f"fixed.{name}: {choice}" for name in trainer.final_settings
             for choice in trainer.factors[name].choices or ()
             if not trainer.test_set(trainer.make_config({**config.to_dict(), name: choice}))]
    raise ValueError(f"{where}: this search validates on an official test set, so it would tune on it; select on "
                     f"a split of the training files ({' or '.join(fixes) or 'see the trainer'}), the final stage "
                     f"then scores the chosen configuration on the test set once; or set select_on_test_set: true")


def final_stage(where: str, parsed: schema.SweepFile, spec, confirm: ConfirmStage | None) -> FinalStage | None:
    """The final stage the file asks for, else the trainer's default where it reaches a test set; or None."""
    if parsed.final is False:
        return None
    trainer = spec.main_trainer
    asked = parsed.final is not None
    given = (parsed.final.model_extra or {}) if asked else {}
    settings = schema.check_trainer_settings(where, "final", given, lists=False, factors=trainer.factors,
                                             trainer=parsed.trainer)
    for name in settings:
        if name in spec.space or name in ("seed", "epochs"):
            what = "is searched" if name in spec.space else "is the stage's own axis (final.seeds; the epochs " \
                                                              "are the search's)"
            raise ValueError(f"{where}: final.{name}: {what}; the final stage changes held-fixed settings only")
    selection = selection_config(spec)
    if not settings:
        settings = dict(trainer.final_settings)
        reaches_test = trainer.test_set is not None and settings and not trainer.test_set(selection) and \
            trainer.test_set(trainer.make_config({**selection.to_dict(), **settings}))
        if not reaches_test:
            if asked:
                raise ValueError(f"{where}: final: name the settings the final stage changes, e.g. final: "
                                 f"{{validation: auto}}; trainer {parsed.trainer!r} has no default that reaches a "
                                 f"test set here")
            return None
    try:
        trainer.make_config({**selection.to_dict(), **settings})
    except ValueError as error:
        raise ValueError(f"{where}: final: {error}") from None
    count = parsed.final.seeds if asked and parsed.final.seeds else len(confirm.seeds) if confirm else DEFAULT_SEEDS
    if not trainer.seeded:
        if asked and parsed.final.seeds not in (None, 1):
            raise ValueError(f"{where}: final.seeds={parsed.final.seeds}: trainer {parsed.trainer!r} declares no "
                             f"'seed' factor; use final.seeds: 1")
        return FinalStage(settings=settings, seeds=(spec.seeds[0],), asked=asked)
    return FinalStage(settings=settings, seeds=fresh_seeds(spec.seeds, count), asked=asked)


def best_first(values: list[float], keys: list[str], mode: str) -> list[int]:
    """Positions of ``values`` best first in the objective's direction (``max``/``min``); a missing or non-finite
    value last; ties by ``keys`` (trial or configuration keys), so the driver and the report rank alike."""
    def order(position: int) -> tuple:
        value = values[position]
        usable = value is not None and math.isfinite(value)
        return (not usable, (-value if mode == "max" else value) if usable else 0.0, keys[position])

    return sorted(range(len(values)), key=order)
