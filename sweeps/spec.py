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

import copy
import dataclasses
import hashlib
import itertools
import json
import os
import pathlib
import typing
from typing import Any

import yaml

from trainer import config as config_module

TOP_LEVEL_KEYS = {
    "name": "Sweep name: the Ray experiment folder prefix and the default MLflow experiment.",
    "description": "Free text shown nowhere but in the file and the parent run's artifact.",
    "factors": "What the study measures: a list of values per TrainerConfig field (full factorial in grid mode).",
    "fixed": "TrainerConfig fields held fixed for every trial.",
    "seeds": "Repeats per cell: an integer n (seeds 0..n-1) or an explicit list of seeds.",
    "baselines": "Optional scikit-learn baselines, one trial per dataset/strip/split cell: multinomial_nb, linear_svm.",
    "resources": "Per-trial resources {cpu, gpu}; fractional values pack several trials on one CPU or GPU.",
    "max_concurrent_trials": "Most trials running at once (0: as many as the resources allow).",
    "max_failures": "Retries of a trial that dies (worker killed, node lost) from its last epoch checkpoint.",
    "search": "{mode: grid} (default) | {mode: random, num_samples} | {mode: asha, num_samples, grace_period}.",
    "mlflow": "{tracking_uri, experiment}: where runs are logged (default sqlite:///mlflow.db, the sweep name).",
    "storage_path": "Ray Tune storage path (local folder or URI) for trial checkpoints and the sweep state.",
    "smoke": "Overrides applied by --smoke-test: TrainerConfig fields, epochs, seeds, factors, resources, ...",
}
SEARCH_MODES = ("grid", "random", "asha")
SEARCH_KEYS = {"grid": {"mode"}, "random": {"mode", "num_samples"}, "asha": {"mode", "num_samples", "grace_period"}}
RESOURCE_KEYS = ("cpu", "gpu")
MLFLOW_KEYS = ("tracking_uri", "experiment")
BASELINES = config_module.BASELINES
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DEFAULT_STORAGE_PATH = "glovesweep_results"
# Fields a sweep must not hold fixed because the sweep itself sets them per trial.
PER_TRIAL_FIELDS = ("seed",)
# A baseline cell: the fields its split depends on, less the seed (one baseline per data cell, seed 0).
BASELINE_FIELDS = tuple(name for name in config_module.factor_names("split") if name not in PER_TRIAL_FIELDS)

_TRAINER_FIELDS = {field.name: field for field in dataclasses.fields(config_module.TrainerConfig)}
# A smoke section may set any TrainerConfig field (a factor collapses to that value), the epoch list, the
# seeds, subsets of factor values, and these top-level keys (a GPU study's smoke test runs on a CPU).
SMOKE_TOP_LEVEL_KEYS = ("resources", "max_concurrent_trials", "baselines")
SMOKE_KEYS = (*_TRAINER_FIELDS, "seeds", "factors", *SMOKE_TOP_LEVEL_KEYS)
_TRAINER_TYPES = typing.get_type_hints(config_module.TrainerConfig)


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

    @property
    def max_epochs(self) -> int:
        return max(self.epochs)

    @property
    def source_sha256(self) -> str:
        """SHA-256 (hex) of the sweep file's text: the parent run's ``glovesweep.sweep_hash`` tag."""
        return hashlib.sha256(self.source_text.encode()).hexdigest()

    @property
    def factor_names(self) -> list[str]:
        """Factor names as logged in the ``factors`` param (``epochs`` included when it is a factor)."""
        return list(self.factors) + (["epochs"] if self.epochs_is_factor else [])

    def cells(self) -> list[dict[str, Any]]:
        """Every combination of factor values (full factorial), in file order."""
        names = list(self.factors)
        return [dict(zip(names, values)) for values in itertools.product(*(self.factors[n] for n in names))]

    def trials(self) -> list[Trial]:
        """Every trial of a grid sweep: one baseline per data cell and kind (seconds each), then cells x seeds.

        Seed-major: every cell at the first seed runs before any cell at the second, so a sweep cut short
        (and resumed later) already covers every cell.
        """
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
        Apply the file's ``smoke`` overrides (tiny data, few epochs, one seed).

    Raises
    ------
    OSError
        When the file cannot be read.
    ValueError
        When a key, value or combination is not allowed; the message names the key, the value and the
        allowed values.
    """
    path = pathlib.Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise OSError(f"cannot read sweep file {path}: {error.strerror or error}; check the path") from error
    return parse_sweep(text, source_path=str(path.resolve()), smoke_test=smoke_test)


def parse_sweep(text: str, *, source_path: str = "<string>", smoke_test: bool = False,
                base_dir: str | os.PathLike | None = None) -> SweepSpec:
    """Validate sweep-file text; see ``load_sweep``. Relative paths resolve against ``base_dir`` (default cwd)."""
    where = source_path
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ValueError(f"{where}: not valid YAML: {error}") from error
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: a sweep file is a mapping of keys ({', '.join(TOP_LEVEL_KEYS)}); got {raw!r}")
    raw = copy.deepcopy(raw)
    _check_keys(where, "", raw, TOP_LEVEL_KEYS)
    base = pathlib.Path(base_dir) if base_dir is not None else pathlib.Path.cwd()

    name = raw.get("name")
    if not isinstance(name, str) or not name or not all(c.isalnum() or c in "-_." for c in name):
        raise ValueError(f"{where}: name={name!r}: a non-empty string of letters, digits, '-', '_', '.' is required")

    factors = _mapping(where, "factors", raw.get("factors", {}))
    fixed = _mapping(where, "fixed", raw.get("fixed", {}))
    seeds_value = raw.get("seeds", 1)
    if smoke_test:
        smoke = _mapping(where, "smoke", raw.get("smoke", {}))
        if not smoke:
            raise ValueError(f"{where}: --smoke-test needs a 'smoke' section (e.g. smoke: {{documents_per_group: 5, "
                             f"epochs: [1, 2], seeds: 1}})")
        _check_keys(where, "smoke.", smoke, {key: "" for key in SMOKE_KEYS})
        for key in SMOKE_TOP_LEVEL_KEYS:
            if key in smoke:
                raw[key] = smoke.pop(key)
        factors, fixed, seeds_value = _apply_smoke(where, smoke, factors, fixed, seeds_value)
    elif "smoke" in raw:
        _check_keys(where, "smoke.", _mapping(where, "smoke", raw["smoke"]), {key: "" for key in SMOKE_KEYS})

    # Every name must be a TrainerConfig field; the sweep sets 'seed' per trial.
    for section, values in (("factors", factors), ("fixed", fixed)):
        for key in values:
            if key not in _TRAINER_FIELDS:
                raise ValueError(f"{where}: {section}.{key}: unknown trainer setting; allowed: "
                                 f"{', '.join(sorted(_TRAINER_FIELDS))}")
    if "seed" in fixed:
        raise ValueError(f"{where}: fixed.seed: seeds are set per trial; use 'seeds: [{fixed['seed']}]' instead")
    both = sorted(set(factors) & set(fixed))
    if both:
        raise ValueError(f"{where}: {both[0]} is both a factor and fixed; keep it in one of 'factors' or 'fixed'")

    factors = {key: _factor_values(where, key, value) for key, value in factors.items()}
    fixed = {key: _coerce(key, value) for key, value in fixed.items()}
    if "seed" in factors:
        if "seeds" in raw and not smoke_test:
            raise ValueError(f"{where}: factors.seed and seeds both given; list the seeds in one place")
        seeds_value = factors.pop("seed")
    seeds = _seeds(where, seeds_value)

    epochs_is_factor = "epochs" in factors
    if epochs_is_factor:
        epochs = sorted(factors.pop("epochs"))
    else:
        epochs = [fixed.pop("epochs", _TRAINER_FIELDS["epochs"].default)]
    for epoch_count in epochs:
        if isinstance(epoch_count, bool) or not isinstance(epoch_count, int) or epoch_count < 1:
            raise ValueError(f"{where}: epochs value {epoch_count!r}: must be an integer >= 1, e.g. [2, 10]")

    for key in ("data_path", "glove_path"):
        if fixed.get(key):
            fixed[key] = str((base / pathlib.Path(fixed[key]).expanduser()).resolve())
        if key in factors:
            factors[key] = [str((base / pathlib.Path(v).expanduser()).resolve()) if v else v for v in factors[key]]

    baselines = raw.get("baselines", []) or []
    if not isinstance(baselines, list):
        raise ValueError(f"{where}: baselines={baselines!r}: a list; allowed values: {', '.join(BASELINES)}")
    for kind in baselines:
        if kind not in BASELINES:
            raise ValueError(f"{where}: baselines value {kind!r} is not allowed; "
                             f"allowed values: {', '.join(BASELINES)}")
    if len(set(baselines)) != len(baselines):
        raise ValueError(f"{where}: baselines={baselines!r} lists a value twice")

    resources = _mapping(where, "resources", raw.get("resources", {}))
    _check_keys(where, "resources.", resources, {key: "" for key in RESOURCE_KEYS})
    resources = {"cpu": resources.get("cpu", 1), "gpu": resources.get("gpu", 0)}
    for key, value in resources.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or (key == "cpu" and value == 0):
            raise ValueError(f"{where}: resources.{key}={value!r}: must be a number "
                             f"{'> 0' if key == 'cpu' else '>= 0'} (fractions allowed, e.g. 0.5)")
        resources[key] = float(value)

    max_concurrent = raw.get("max_concurrent_trials", 0)
    _check_integer(where, "max_concurrent_trials", max_concurrent, minimum=0)
    max_failures = raw.get("max_failures", 3)
    _check_integer(where, "max_failures", max_failures, minimum=0)

    search = _mapping(where, "search", raw.get("search", {"mode": "grid"}))
    mode = search.get("mode", "grid")
    if mode not in SEARCH_MODES:
        raise ValueError(f"{where}: search.mode={mode!r} is not allowed; allowed values: {', '.join(SEARCH_MODES)}")
    _check_keys(where, "search.", search, {key: "" for key in SEARCH_KEYS[mode]})
    search = {"mode": mode}
    if mode != "grid":
        raw_search = raw["search"]
        search["num_samples"] = raw_search.get("num_samples", 10)
        _check_integer(where, "search.num_samples", search["num_samples"], minimum=1)
        if baselines:
            raise ValueError(f"{where}: baselines run only in search.mode 'grid' (one per cell); got mode {mode!r}")
    if mode == "asha":
        search["grace_period"] = raw["search"].get("grace_period", 1)
        _check_integer(where, "search.grace_period", search["grace_period"], minimum=1)
        if search["grace_period"] > max(epochs):
            raise ValueError(f"{where}: search.grace_period={search['grace_period']} exceeds the largest epoch "
                             f"count {max(epochs)}; use a value in 1..{max(epochs)}")

    mlflow_section = _mapping(where, "mlflow", raw.get("mlflow", {}))
    _check_keys(where, "mlflow.", mlflow_section, {key: "" for key in MLFLOW_KEYS})
    tracking_uri = mlflow_section.get("tracking_uri", DEFAULT_TRACKING_URI)
    experiment = mlflow_section.get("experiment", name)
    for key, value in (("mlflow.tracking_uri", tracking_uri), ("mlflow.experiment", experiment)):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{where}: {key}={value!r}: a non-empty string is required")
    storage_path = raw.get("storage_path", DEFAULT_STORAGE_PATH)
    if not isinstance(storage_path, str) or not storage_path:
        raise ValueError(f"{where}: storage_path={storage_path!r}: a local folder or URI (e.g. s3://bucket/sweeps)")

    spec = SweepSpec(
        name=name, factors=factors, epochs=epochs, epochs_is_factor=epochs_is_factor, fixed=fixed, seeds=seeds,
        baselines=list(baselines), resources=resources, max_concurrent_trials=max_concurrent,
        max_failures=max_failures, search=search, tracking_uri=resolve_tracking_uri(tracking_uri, base),
        experiment=experiment, storage_path=resolve_storage_path(storage_path, base), smoke_test=smoke_test,
        source_text=text, source_path=source_path,
    )
    _check_every_config(where, spec)
    return spec


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


def _apply_smoke(where, smoke, factors, fixed, seeds_value):
    """Return (factors, fixed, seeds) with the ``smoke`` section applied over the study's values."""
    factors, fixed = dict(factors), dict(fixed)
    for key, value in smoke.items():
        if key == "seeds":
            seeds_value = value
            factors.pop("seed", None)
        elif key == "factors":
            overrides = _mapping(where, "smoke.factors", value)
            for factor, values in overrides.items():
                if factor not in factors:
                    raise ValueError(f"{where}: smoke.factors.{factor}: not a factor of this sweep; factors: "
                                     f"{', '.join(factors) or '(none)'}")
                factors[factor] = values
        elif key == "epochs" and ("epochs" in factors or isinstance(value, list)):
            factors["epochs"] = value if isinstance(value, list) else [value]
            fixed.pop("epochs", None)
        elif key in factors:
            # A smoke value for a factor collapses that factor to the one value.
            factors[key] = value if isinstance(value, list) else [value]
        else:
            fixed[key] = value
    return factors, fixed, seeds_value


def _check_every_config(where: str, spec: SweepSpec) -> None:
    """Build each factor value's config alone (precise message), then every trial's config (combinations)."""
    base = dict(spec.fixed, epochs=spec.max_epochs, seed=spec.seeds[0])
    try:
        config_module.TrainerConfig.from_dict(base)
    except ValueError as error:
        raise ValueError(f"{where}: fixed: {error}") from error
    for name, values in spec.factors.items():
        for value in values:
            try:
                config_module.TrainerConfig.from_dict(dict(base, **{name: value}))
            except ValueError as error:
                raise ValueError(f"{where}: factors.{name} value {value!r}: {error}") from error
    for trial in spec.trials():
        try:
            spec.trial_config(trial)
        except ValueError as error:
            raise ValueError(f"{where}: cell {trial.label}: {error}") from error


def _check_keys(where: str, prefix: str, values: dict, allowed: dict) -> None:
    for key in values:
        if key not in allowed:
            raise ValueError(f"{where}: unknown key {prefix}{key!r}; allowed keys: {', '.join(sorted(allowed))}")


def _mapping(where: str, key: str, value: Any) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{where}: {key}={value!r}: must be a mapping (key: value lines)")
    return value


def _factor_values(where: str, key: str, value: Any) -> list:
    if not isinstance(value, list) or not value:
        raise ValueError(f"{where}: factors.{key}={value!r}: must be a non-empty list of values, e.g. {key}: [a, b]")
    values = [_coerce(key, item) for item in value]
    if len({json.dumps(item, sort_keys=True) for item in values}) != len(values):
        raise ValueError(f"{where}: factors.{key}={value!r} lists a value twice")
    return values


def _coerce(key: str, value: Any) -> Any:
    """YAML reads ``dataset: 19997`` as an integer; a string field takes it as its text."""
    expected = _TRAINER_TYPES.get(key)
    if expected is str and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


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


def _check_integer(where: str, key: str, value: Any, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{where}: {key}={value!r}: must be an integer >= {minimum}")
