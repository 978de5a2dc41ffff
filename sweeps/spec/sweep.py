"""Sweep files: the schema, its validation, and the list of trials a sweep file asks for.

A sweep file separates what the study measures (``factors``: lists of values of ``TrainerConfig`` fields)
from what it holds fixed (``fixed``), the way the tuning playbook separates scientific and fixed
parameters. ``sweeps/quick.yaml`` documents every key in its opening comment block. ``sweeps.spec.build``
reads and checks the file; this module holds what it becomes: ``SweepSpec`` and its ``Trial`` list.

Validation happens before any compute: every key is checked, and every trial's ``TrainerConfig`` is built
up front, so an unknown key or a bad factor value raises one ``ValueError`` that names the key, the value
and the allowed values, and nothing has started.

The epoch axis is answered by one trial per cell: it trains to ``max(epochs)`` and the answer for "E
epochs" is its state after epoch E (the trainer draws each epoch's shuffle from (seed, epoch) and keeps the
learning rate constant, so that equals a separate E-epoch run).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import random
from typing import Any

from sweeps.spec import schema
from sweeps.spec import space as space_module
from sweeps.spec import stages
from sweeps.trainers import api as trainers_api
from sweeps.trainers import registry
from trainer import config as config_module

DEFAULT_TRACKING_URI = schema.DEFAULT_TRACKING_URI
DEFAULT_STORAGE_PATH = schema.DEFAULT_STORAGE_PATH
BASELINES = config_module.BASELINES
PER_TRIAL_FIELDS = schema.PER_TRIAL_FIELDS
# The reference trainer the sweep file's ``baselines:`` list runs beside the network, one trial per model.
BASELINES_TRAINER = "tfidf"
_LOADED: dict[tuple[str, str], trainers_api.Trainer] = {}


def load_trainer(name: str, folder: str = "") -> trainers_api.Trainer:
    """The trainer ``name`` (``sweeps.trainers.registry.load``), loaded once per process."""
    key = (name, folder)
    if key not in _LOADED:
        _LOADED[key] = registry.load(name, folder=folder or None)
    return _LOADED[key]


@dataclasses.dataclass(frozen=True)
class Trial:
    """One trial of a sweep: a cell (factor values without the epoch axis), a seed, and what runs it.

    ``kind`` is the trainer's kind (``keras``, ``baseline`` for the TF-IDF models, or a user trainer's name);
    ``baseline`` is a reference trainer's variant (the scikit-learn model); ``stage`` is a search's stage after
    the search itself (``confirm``, ``final``: ``sweeps.spec.stages``; empty otherwise). ``as_dict``/``from_dict``
    round-trip through Ray Tune's ``param_space``.
    """

    kind: str
    cell: dict[str, Any]
    seed: int
    baseline: str = ""
    stage: str = ""

    @property
    def label(self) -> str:
        """The cell's factor values joined, e.g. ``dataset=19997,strip=none`` (MLflow tag ``glovesweep.cell``)."""
        return cell_label(self.cell)

    @property
    def key(self) -> str:
        """Stable identity of the trial within its sweep (hex, 16 chars): MLflow tag ``glovesweep.trial_id``.

        The same in every process and after ``resume``, unlike Tune's own trial ids.
        """
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()[:16]

    @property
    def config_key(self) -> str:
        """The configuration's identity without its seed or stage (hex, 16 chars): MLflow tag
        ``glovesweep.config_id``, the same on the runs of every seed of a search's configuration and of its confirm
        and final stages."""
        values = {"kind": self.kind, "cell": dict(self.cell), "baseline": self.baseline}
        return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]

    def as_dict(self) -> dict[str, Any]:
        values = {"kind": self.kind, "cell": dict(self.cell), "seed": self.seed, "baseline": self.baseline}
        # Only a stage's trials name it, so every other trial keeps the key it always had.
        return dict(values, stage=self.stage) if self.stage else values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "Trial":
        return cls(kind=values["kind"], cell=dict(values["cell"]), seed=int(values["seed"]),
                   baseline=values.get("baseline", "") or "", stage=values.get("stage", "") or "")


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    """A validated sweep file (after ``--smoke-test`` overrides when asked).

    Attributes
    ----------
    factors : dict of str to list
        Factor name -> values, in file order, without ``epochs`` (see ``epochs``) and ``seed`` (``seeds``).
    epochs : list of int
        Requested epoch counts, sorted; each trial trains to ``max(epochs)`` and reports every epoch.
    epochs_is_factor : bool
        Whether the file lists ``epochs`` under ``factors`` (then it is named in the ``factors`` param).
    fixed : dict
        TrainerConfig fields held fixed (paths made absolute).
    seeds : list of int
        A grid's seeds (each a trial); in a search, the seeds every configuration trains at, side by side in one
        trial whose reported objective is their mean.
    resources : dict
        ``cpu`` and ``gpu`` per trial (floats).
    search : dict
        ``mode`` plus ``num_samples`` / ``grace_period`` / ``seed`` where the mode takes them.
    space : dict of str to Distribution
        A search's factors (``tpe``, or ``random`` over distributions), in file order; then ``factors`` is empty
        and the trials are suggested as the search runs (``sweeps.run.searcher``). Empty in a grid.
    objective : dict
        ``metric`` and ``mode`` the searcher and the scheduler optimize (default: the trainer's first metric).
    scheduler : dict or None
        ``mode`` (asha, hyperband), ``grace_period``, ``reduction_factor``, ``max_t`` (= max(epochs)).
    budget : dict
        ``trials`` and/or ``cpu_hours`` (None where not set).
    start_from : list of dict
        Configurations a search evaluates first (typed values of searched factors).
    confirm, final : ConfirmStage, FinalStage or None
        A search's stages after it (``sweeps.spec.stages``).
    """

    name: str
    factors: dict[str, list]
    epochs: list[int]
    epochs_is_factor: bool
    fixed: dict[str, Any]
    seeds: list[int]
    baselines: list[str]
    resources: dict[str, float]
    max_concurrent_trials: int
    max_failures: int
    search: dict[str, Any]
    tracking_uri: str
    experiment: str
    storage_path: str
    smoke_test: bool
    source_text: str
    source_path: str
    description: str = ""
    answer: dict[str, dict[str, Any]] | None = None
    claims: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    trainer: str = schema.DEFAULT_TRAINER
    trainer_folder: str = ""
    space: dict[str, space_module.Distribution] = dataclasses.field(default_factory=dict)
    objective: dict[str, str] = dataclasses.field(default_factory=dict)
    scheduler: dict[str, Any] | None = None
    budget: dict[str, Any] = dataclasses.field(default_factory=dict)
    start_from: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    confirm: stages.ConfirmStage | None = None
    final: stages.FinalStage | None = None

    @property
    def main_trainer(self) -> trainers_api.Trainer:
        """The sweep's trainer (``trainer:`` in the file; the Keras network by default)."""
        return load_trainer(self.trainer, self.trainer_folder)

    def trainers(self) -> dict[str, trainers_api.Trainer]:
        """Every trainer the sweep runs, by kind: its own, and the TF-IDF baselines where it lists them."""
        main = self.main_trainer
        found = {main.kind: main}
        if self.baselines:
            reference = load_trainer(BASELINES_TRAINER)
            found[reference.kind] = reference
        return found

    def trainer_of(self, trial: Trial) -> trainers_api.Trainer:
        return self.trainers()[trial.kind]

    @property
    def max_epochs(self) -> int:
        return max(self.epochs)

    @property
    def source_sha256(self) -> str:
        """SHA-256 (hex) of the sweep file's text: the parent run's ``glovesweep.sweep_hash`` tag."""
        return hashlib.sha256(self.source_text.encode()).hexdigest()

    @property
    def searched(self) -> bool:
        """A search whose trials are suggested as it runs (``tpe``, ``random`` over distributions)."""
        return bool(self.space)

    @property
    def total_trials(self) -> int:
        """Trials the sweep runs: every grid trial, or the search's ``num_samples`` (capped by its trial budget)."""
        if self.searched:
            return min(self.search["num_samples"], self.budget.get("trials") or self.search["num_samples"])
        return len(self.trials())

    @property
    def stage_trials(self) -> int:
        """Trials a search's stages add after it (``confirm``: top x seeds; ``final``: its seeds)."""
        return (self.confirm.trials if self.confirm else 0) + (len(self.final.seeds) if self.final else 0)

    @property
    def factor_names(self) -> list[str]:
        """Factor names as logged in the ``factors`` param (``epochs`` included when it is a factor)."""
        return list(self.factors or self.space) + (["epochs"] if self.epochs_is_factor else [])

    @property
    def seeds_side_by_side(self) -> int:
        """Seeds each configuration of a search trains at in one trial (``seeds: k``); 1 in a grid, whose seeds are
        trials of their own."""
        return len(self.seeds) if self.searched else 1

    def search_trial(self, values: dict[str, Any]) -> Trial:
        """The trial of a suggested configuration: each searched factor whose ``when`` holds, typed and rounded
        (``Distribution.typed``), at the sweep's first seed (its other seeds: ``sweeps.run.seed_group``). Its key is
        the same for the same values in any process."""
        declared = self.main_trainer.factors
        cell: dict[str, Any] = {}
        for name, distribution in self.space.items():
            if name in values and distribution.applies(cell):
                cell[name] = distribution.typed(declared[name], values[name])
        return Trial(kind=self.main_trainer.kind, cell=cell, seed=self.seeds[0])

    def data_trials(self) -> list[Trial]:
        """Trials whose configs hold every data setting the sweep can reach (what is prepared before it runs):
        every trial of a grid; for a search, its first configuration with each combination of the values of its
        searched data settings (a trainer that prepares data searches them as choices) and of the choices their
        ``when`` depends on, at each of its seeds where it trains them in one trial (``seeds: k``: a seed may draw
        a split of its own)."""
        if not self.searched:
            return self.trials()
        names = self._data_names()
        combinations = itertools.product(*(self.space[name].values for name in names))
        trials = {trial.key: trial for trial in (self._data_trial(dict(zip(names, values)))
                                                 for values in combinations)}
        seeds = self.seeds if self.seeds_side_by_side > 1 else self.seeds[:1]
        return [dataclasses.replace(trial, seed=seed) for seed in seeds for trial in trials.values()]

    def data_trial_of(self, trial: Trial) -> Trial:
        """The data trial (``data_trials``) whose prepared data a search's suggested ``trial`` trains on: the same
        searched data settings (and the choices they depend on) and seed."""
        values = {name: trial.cell[name] for name in self._data_names() if name in trial.cell}
        return dataclasses.replace(self._data_trial(values), seed=trial.seed)

    def _data_names(self) -> list[str]:
        """The searched factors that shape the prepared data, and the choices their ``when`` depends on, in file
        order (a ``when`` names only choices listed before its factor)."""
        trainer = self.main_trainer
        needed = {name for name in self.space if trainer.prepares_data and trainer.factors[name].shapes_data}
        for name in reversed(list(self.space)):
            if name in needed:
                needed.update(self.space[name].when)
        return [name for name in self.space if name in needed]

    def _data_trial(self, data_values: dict[str, Any]) -> Trial:
        """The search's first configuration (``start_from``'s first, else each factor's first value or low end)
        with ``data_values`` in place of its own."""
        first = {name: dist.values[0] if dist.kind == "choice" else dist.low for name, dist in self.space.items()}
        return self.search_trial({**first, **(self.start_from[0] if self.start_from else {}), **data_values})

    def cells(self) -> list[dict[str, Any]]:
        """Every combination of factor values (full factorial), in file order."""
        names = list(self.factors)
        return [dict(zip(names, values)) for values in itertools.product(*(self.factors[n] for n in names))]

    def trials(self) -> list[Trial]:
        """Every trial the sweep runs, the same list in every process (so ``resume`` needs no pickled state).

        Grid: the reference trainers' trials first (one per distinct data cell and variant, seconds each), then
        cells x seeds, seed-major: every cell at the first seed runs before any cell at the second, so a sweep
        cut short already covers every cell. Random and ASHA: ``num_samples`` distinct (cell, seed) pairs drawn
        without replacement, seeded by ``search.seed`` or else the sweep file's hash. A search: none up front.
        """
        kind = self.main_trainer.kind
        if self.searched:
            return []  # Suggested as the search runs (sweeps.run.searcher); data_trials() for what to prepare.
        if self.search["mode"] != "grid":
            pairs = [(cell, seed) for seed in self.seeds for cell in self.cells()]
            draw_seed = self.search.get("seed")
            chosen = random.Random(self.source_sha256 if draw_seed is None else draw_seed).sample(
                range(len(pairs)), self.search["num_samples"])
            return [Trial(kind=kind, cell=pairs[index][0], seed=pairs[index][1]) for index in chosen]
        trials = []
        for reference in self.trainers().values():
            if not reference.reference:
                continue
            fields = [name for name in reference.data_fields if name not in PER_TRIAL_FIELDS]
            seen = []
            for cell in self.cells():
                data_cell = {name: value for name, value in cell.items() if name in fields}
                if data_cell not in seen:
                    seen.append(data_cell)
            # Its seed only matters where it shapes the split; one trial per data cell and variant.
            trials += [Trial(kind=reference.kind, cell=data_cell, seed=self.seeds[0], baseline=variant)
                       for data_cell in seen for variant in self.baselines]
        return trials + [Trial(kind=kind, cell=cell, seed=seed) for seed in self.seeds for cell in self.cells()]

    def trial_config(self, trial: Trial):
        """The config a trial runs (its trainer's typed config): fixed settings, the cell's factor values, its
        seed, max(epochs) (where the trainer declares them).

        A reference trainer's cell holds only data factors; the others take their first listed value so the
        config (logged as params) is a valid one.
        """
        trainer = self.trainer_of(trial)
        values = dict(self.fixed)
        values.update({name: factor_values[0] for name, factor_values in self.factors.items()})
        values.update(trial.cell)
        if trial.stage == stages.FINAL:
            values.update(self.final.settings)
        if trainer.seeded:
            values["seed"] = trial.seed
        if trainer.epoch_axis:
            values["epochs"] = self.max_epochs
        return trainer.make_config({name: value for name, value in values.items() if name in trainer.factors})

    def replace(self, **changes: Any) -> "SweepSpec":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The effective spec (after smoke overrides), JSON-able; logged next to the sweep file."""
        values = dataclasses.asdict(self)
        values.pop("source_text")
        return values


def cell_label(cell: dict[str, Any]) -> str:
    """Factor values joined as ``name=value`` pairs with commas (empty cell: ``all``)."""
    return ",".join(f"{name}={value}" for name, value in cell.items()) or "all"
