"""Sweep files: the schema, its validation, and the list of trials a sweep file asks for.

A sweep file separates what the study measures (``factors``: lists of values of ``TrainerConfig`` fields)
from what it holds fixed (``fixed``), the way the tuning playbook separates scientific and fixed
parameters. ``sweeps/quick.yaml`` documents every key in its opening comment block.

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
import os
import pathlib
import random
from typing import Any

import yaml

from sweeps.spec import schema
from trainer import config as config_module

DEFAULT_TRACKING_URI = schema.DEFAULT_TRACKING_URI
DEFAULT_STORAGE_PATH = schema.DEFAULT_STORAGE_PATH
BASELINES = config_module.BASELINES
PER_TRIAL_FIELDS = schema.PER_TRIAL_FIELDS
# A baseline cell: the fields its split depends on, less the seed (one baseline per data cell, seed 0).
BASELINE_FIELDS = tuple(name for name in config_module.factor_names("split") if name not in PER_TRIAL_FIELDS)


@dataclasses.dataclass(frozen=True)
class Trial:
    """One trial of a sweep: a cell (factor values without the epoch axis), a seed, and what runs it.

    ``kind`` is ``keras`` (the network, trained to ``max(epochs)``) or ``baseline`` (``baseline`` names the
    scikit-learn model). ``as_dict``/``from_dict`` round-trip through Ray Tune's ``param_space``.
    """

    kind: str
    cell: dict[str, Any]
    seed: int
    baseline: str = ""

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

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "cell": dict(self.cell), "seed": self.seed, "baseline": self.baseline}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "Trial":
        return cls(kind=values["kind"], cell=dict(values["cell"]), seed=int(values["seed"]),
                   baseline=values.get("baseline", "") or "")


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
    resources : dict
        ``cpu`` and ``gpu`` per trial (floats).
    search : dict
        ``mode`` plus ``num_samples`` / ``grace_period`` where the mode takes them.
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

    @property
    def max_epochs(self) -> int:
        return max(self.epochs)

    @property
    def source_sha256(self) -> str:
        """SHA-256 (hex) of the sweep file's text: the parent run's ``glovesweep.sweep_hash`` tag."""
        return hashlib.sha256(self.source_text.encode()).hexdigest()

    @property
    def total_trials(self) -> int:
        """Trials the sweep runs: every grid trial, or the search's ``num_samples``."""
        return len(self.trials())

    @property
    def factor_names(self) -> list[str]:
        """Factor names as logged in the ``factors`` param (``epochs`` included when it is a factor)."""
        return list(self.factors) + (["epochs"] if self.epochs_is_factor else [])

    def cells(self) -> list[dict[str, Any]]:
        """Every combination of factor values (full factorial), in file order."""
        names = list(self.factors)
        return [dict(zip(names, values)) for values in itertools.product(*(self.factors[n] for n in names))]

    def trials(self) -> list[Trial]:
        """Every trial the sweep runs, the same list in every process (so ``resume`` needs no pickled state).

        Grid: one baseline per data cell and kind (seconds each), then cells x seeds, seed-major: every cell at
        the first seed runs before any cell at the second, so a sweep cut short already covers every cell.
        Random and ASHA: ``num_samples`` distinct (cell, seed) pairs drawn without replacement, seeded by the
        sweep file's hash.
        """
        if self.search["mode"] != "grid":
            pairs = [(cell, seed) for seed in self.seeds for cell in self.cells()]
            chosen = random.Random(self.source_sha256).sample(range(len(pairs)), self.search["num_samples"])
            return [Trial(kind="keras", cell=pairs[index][0], seed=pairs[index][1]) for index in chosen]
        seen = []
        for cell in self.cells():
            data_cell = {name: value for name, value in cell.items() if name in BASELINE_FIELDS}
            if data_cell not in seen:
                seen.append(data_cell)
        # A baseline's seed only matters where it shapes the split; one baseline trial per data cell and kind.
        trials = [Trial(kind="baseline", cell=data_cell, seed=self.seeds[0], baseline=kind)
                  for data_cell in seen for kind in self.baselines]
        return trials + [Trial(kind="keras", cell=cell, seed=seed) for seed in self.seeds for cell in self.cells()]

    def trial_config(self, trial: Trial) -> config_module.TrainerConfig:
        """The TrainerConfig a trial runs: fixed settings, the cell's factor values, its seed, max(epochs).

        A baseline's cell holds only data factors; its model factors take their first listed value so the
        config (logged as params) is a valid one.
        """
        values = dict(self.fixed)
        values.update({name: factor_values[0] for name, factor_values in self.factors.items()})
        values.update(trial.cell)
        values.update(seed=trial.seed, epochs=self.max_epochs)
        return config_module.TrainerConfig.from_dict(values)

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


def load_sweep(path: str | os.PathLike, *, smoke_test: bool = False) -> SweepSpec:
    """Read and validate a sweep file.

    Parameters
    ----------
    path : path-like
        A YAML sweep file (see ``sweeps/quick.yaml``).
    smoke_test : bool
        Apply the file's ``smoke`` overrides (tiny data, few epochs, one seed); the file as written is
        validated first, so a file that passes its smoke test is valid for the real run too.

    Raises
    ------
    OSError
        When the file cannot be read.
    ValueError
        When a key, value or combination is not allowed; one line naming the file, the key path, the value
        and the allowed values.
    """
    path = pathlib.Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as error:
        raise OSError(f"cannot read sweep file {path}: {error.strerror or error}; check the path") from error
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not UTF-8 text (byte {error.start}); save the sweep file as UTF-8") from None
    return parse_sweep(text, source_path=str(path.resolve()), smoke_test=smoke_test)


def parse_sweep(text: str, *, source_path: str = "<string>", smoke_test: bool = False,
                base_dir: str | os.PathLike | None = None) -> SweepSpec:
    """Validate sweep-file text; see ``load_sweep``. Relative paths resolve against ``base_dir`` (default cwd)."""
    where = source_path
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ValueError(f"{where}: not valid YAML: {' '.join(str(error).split())}") from None
    parsed = schema.parse_document(document, where)
    base = pathlib.Path(base_dir) if base_dir is not None else pathlib.Path.cwd()
    spec = _build(parsed, where, base, text=text, smoke_test=False)
    if smoke_test:
        if parsed.smoke is None:
            raise ValueError(f"{where}: --smoke-test needs a 'smoke' section (e.g. smoke: {{documents_per_group: 5, "
                             f"epochs: [1, 2], seeds: 1}})")
        spec = _build(_apply_smoke(where, parsed), where, base, text=text, smoke_test=True)
    return spec


def _build(parsed: schema.SweepFile, where: str, base: pathlib.Path, *, text: str, smoke_test: bool) -> SweepSpec:
    """The resolved, checked ``SweepSpec`` of a parsed file (every trial's config built once)."""
    factors = schema.check_trainer_settings(where, "factors", parsed.factors, lists=True)
    fixed = schema.check_trainer_settings(where, "fixed", parsed.fixed, lists=False)
    if "seed" in fixed:
        raise ValueError(f"{where}: fixed.seed: seeds are set per trial; use 'seeds: [{fixed['seed']}]' instead")
    both = sorted(set(factors) & set(fixed))
    if both:
        raise ValueError(f"{where}: {both[0]} is both a factor and fixed; keep it in one of 'factors' or 'fixed'")
    seeds_value: Any = parsed.seeds
    if "seed" in factors:
        if "seeds" in parsed.model_fields_set and not smoke_test:
            raise ValueError(f"{where}: factors.seed and seeds both given; list the seeds in one place")
        seeds_value = factors.pop("seed")
    seeds = _seeds(where, seeds_value)
    epochs_is_factor = "epochs" in factors
    epochs = sorted(factors.pop("epochs")) if epochs_is_factor else \
        [fixed.pop("epochs", config_module.FACTORS["epochs"].default)]
    for key in ("data_path", "glove_path"):
        if fixed.get(key):
            fixed[key] = str((base / pathlib.Path(fixed[key]).expanduser()).resolve())
        if key in factors:
            factors[key] = [str((base / pathlib.Path(v).expanduser()).resolve()) if v else v for v in factors[key]]
    search = parsed.search.model_dump()
    if search["mode"] != "grid" and parsed.baselines:
        raise ValueError(f"{where}: baselines run only in search.mode 'grid' (one per cell); got mode "
                         f"{search['mode']!r}")
    if search["mode"] != "grid":
        combinations = len(seeds) * len(list(itertools.product(*factors.values())))
        if search["num_samples"] > combinations:
            raise ValueError(f"{where}: search.num_samples={search['num_samples']} exceeds the {combinations} distinct "
                             f"cell x seed combinations (a repeat would train the same trial twice); use at most "
                             f"{combinations}, or mode: grid")
    if search["mode"] == "asha" and search["grace_period"] > max(epochs):
        raise ValueError(f"{where}: search.grace_period={search['grace_period']} exceeds the largest epoch "
                         f"count {max(epochs)}; use a value in 1..{max(epochs)}")
    answer = None
    claims = []
    try:
        if parsed.answer is not None:
            answer = {role: _cell(where, f"answer.{role}", getattr(parsed.answer, role), factors)
                      for role in ("blog_cell", "user_cell")}
        claims = [dict(claim.model_dump(), cell=_cell(where, f"claims[{index}].cell", claim.cell, factors))
                  for index, claim in enumerate(parsed.claims)]
    except ValueError:
        if not smoke_test:
            raise
        # A smoke test's subset of factor values may leave out a declared cell: it reports without it.
    spec = SweepSpec(
        name=parsed.name, factors=factors, epochs=epochs, epochs_is_factor=epochs_is_factor, fixed=fixed,
        seeds=seeds, baselines=list(parsed.baselines), resources={key: float(value) for key, value in
                                                                   parsed.resources.model_dump().items()},
        max_concurrent_trials=parsed.max_concurrent_trials, max_failures=parsed.max_failures, search=search,
        tracking_uri=resolve_tracking_uri(parsed.mlflow.tracking_uri, base),
        experiment=parsed.mlflow.experiment or parsed.name,
        storage_path=resolve_storage_path(parsed.storage_path, base), smoke_test=smoke_test, source_text=text,
        source_path=where, description=parsed.description, answer=answer, claims=claims,
    )
    _check_every_config(where, spec)
    return spec


def _cell(where: str, key: str, cell: dict[str, Any], factors: dict[str, list]) -> dict[str, Any]:
    """A cell named by factor values; each name must be a factor of the sweep and each value one of its values."""
    resolved = {}
    for name, value in cell.items():
        if name not in factors:
            raise ValueError(f"{where}: {key}.{name}: not a factor of this sweep; factors: "
                             f"{', '.join(factors) or '(none)'}")
        value = schema.coerce(name, value)
        if value not in factors[name]:
            raise ValueError(f"{where}: {key}.{name}={value!r}: not among the factor's values "
                             f"{', '.join(map(repr, factors[name]))}")
        resolved[name] = value
    return resolved


def resolve_tracking_uri(uri: str, base_dir: str | os.PathLike) -> str:
    """Make a relative ``sqlite:///file.db`` absolute: trials run in other working directories."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + str((pathlib.Path(base_dir) / uri[len(prefix):]).resolve())
    if "://" not in uri:
        # A bare folder is MLflow's file store; make it absolute for the same reason.
        return str((pathlib.Path(base_dir) / uri).resolve())
    return uri


def resolve_storage_path(path: str, base_dir: str | os.PathLike) -> str:
    """Absolute local folder, or the URI unchanged (``s3://``, ``gs://``, ``file://``...)."""
    if "://" in path:
        return path
    return str((pathlib.Path(base_dir) / pathlib.Path(path).expanduser()).resolve())


def _apply_smoke(where: str, parsed: schema.SweepFile) -> schema.SweepFile:
    """The file with its ``smoke`` section applied: a smoke value for a factor collapses it to that value."""
    smoke = parsed.smoke
    factors, fixed = dict(parsed.factors), dict(parsed.fixed)
    changes: dict[str, Any] = {name: getattr(smoke, name) for name in ("resources", "max_concurrent_trials",
                                                                        "baselines") if getattr(smoke, name) is not None}
    if smoke.seeds is not None:
        changes["seeds"] = smoke.seeds
        factors.pop("seed", None)
    for factor, values in (smoke.factors or {}).items():
        if factor not in factors:
            raise ValueError(f"{where}: smoke.factors.{factor}: not a factor of this sweep; factors: "
                             f"{', '.join(factors) or '(none)'}")
        factors[factor] = values
    for key, value in (smoke.model_extra or {}).items():
        if key == "epochs" and ("epochs" in factors or isinstance(value, list)):
            factors["epochs"] = value if isinstance(value, list) else [value]
            fixed.pop("epochs", None)
        elif key in factors:
            factors[key] = value if isinstance(value, list) else [value]
        else:
            fixed[key] = value
    schema.check_trainer_settings(where, "smoke", {key: value for key, value in (smoke.model_extra or {}).items()
                                                       if not isinstance(value, list)}, lists=False)
    return parsed.model_copy(update=dict(changes, factors=factors, fixed=fixed))


def _check_every_config(where: str, spec: SweepSpec) -> None:
    """Build each factor value's config alone (precise message), then every trial's config (combinations)."""
    base = dict(spec.fixed, epochs=spec.max_epochs, seed=spec.seeds[0])
    try:
        config_module.TrainerConfig.from_dict(base)
    except ValueError as error:
        raise ValueError(f"{where}: fixed: {error}") from None
    for name, values in spec.factors.items():
        for value in values:
            try:
                config_module.TrainerConfig.from_dict(dict(base, **{name: value}))
            except ValueError as error:
                raise ValueError(f"{where}: factors.{name} value {value!r}: {error}") from None
    for trial in spec.trials():
        try:
            spec.trial_config(trial)
        except ValueError as error:
            raise ValueError(f"{where}: cell {trial.label}: {error}") from None


def _seeds(where: str, value: Any) -> list[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise ValueError(f"{where}: seeds={value!r}: an integer >= 1 (seeds 0..n-1) or a list of seeds")
        return list(range(value))
    if isinstance(value, list) and value and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                                                 for s in value):
        if len(set(value)) != len(value):
            raise ValueError(f"{where}: seeds={value!r} lists a seed twice")
        return list(value)
    raise ValueError(f"{where}: seeds={value!r}: an integer >= 1 (seeds 0..n-1) or a list of integers >= 0")
