"""The sweep-file schema: typed pydantic models, every section ``extra="forbid"``.

``parse_document(data, where)`` turns the YAML mapping into a ``SweepFile`` or raises one ``ValueError`` line
that names the file, the key path, the bad value and what is allowed. Trainer settings (``factors``,
``fixed``, the trainer part of ``smoke``) are checked against the factors the sweep's trainer declares
(``check_trainer_settings``; the Keras trainer's are ``trainer.config.FACTORS``), so a new factor or a new
trainer is accepted here without touching this module. ``sweeps/quick.yaml`` documents every key for users.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, Union

import pydantic
from pydantic import Field, StrictBool, StrictFloat, StrictInt, StrictStr

from trainer import config as config_module
from trainer import factors as factors_module

Number = Union[StrictInt, StrictFloat]
NAME_PATTERN = r"^[A-Za-z0-9_.-]+$"
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DEFAULT_STORAGE_PATH = "glovesweep_results"
DEFAULT_TRAINER = "keras"
# Fields a sweep must not hold fixed because the sweep itself sets them per trial.
PER_TRIAL_FIELDS = ("seed",)


class Section(pydantic.BaseModel):
    """A sweep-file section: unknown keys are errors, values are never silently converted."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)


class Resources(Section):
    """Per-trial resources; fractions pack several trials on one CPU or GPU."""

    cpu: Number = Field(1, gt=0)
    gpu: Number = Field(0, ge=0)


class GridSearch(Section):
    mode: Literal["grid"] = "grid"


class RandomSearch(Section):
    """Cells of the grid drawn up front when every factor is a list; else samples of the distributions."""

    mode: Literal["random"]
    num_samples: StrictInt = Field(ge=1)
    seed: StrictInt | None = Field(None, ge=0)


class AshaSearch(Section):
    mode: Literal["asha"]
    num_samples: StrictInt = Field(ge=1)
    grace_period: StrictInt = Field(1, ge=1)


class TpeSearch(Section):
    """Optuna's TPE through Ray Tune's ``OptunaSearch``."""

    mode: Literal["tpe"]
    num_samples: StrictInt = Field(ge=1)
    seed: StrictInt = Field(0, ge=0)


Search = Annotated[Union[GridSearch, RandomSearch, AshaSearch, TpeSearch], Field(discriminator="mode")]
SEARCH_MODELS = {"grid": GridSearch, "random": RandomSearch, "asha": AshaSearch, "tpe": TpeSearch}
SEARCH_MODES = tuple(SEARCH_MODELS)


class Scheduler(Section):
    """Early stopping on the objective, epoch by epoch (Ray Tune's ASHA, or its asynchronous HyperBand)."""

    mode: Literal["asha", "hyperband"]
    grace_period: StrictInt = Field(1, ge=1)
    reduction_factor: Number = Field(3, gt=1)
    max_t: StrictInt | None = Field(None, ge=1)


class Objective(Section):
    """What the searcher and the scheduler optimize; default the trainer's first metric, in its direction."""

    metric: StrictStr = Field(min_length=1)
    mode: Literal["max", "min"] | None = None


class Budget(Section):
    """When a search stops suggesting: after this many trials or CPU hours (wall x CPUs held), run before too."""

    trials: StrictInt | None = Field(None, ge=1)
    cpu_hours: Number | None = Field(None, gt=0)


class Confirm(Section):
    """After a search: its ``top`` configurations retrained on ``seeds`` fresh seeds each (``sweeps.spec.stages``)."""

    top: StrictInt = Field(3, ge=1)
    seeds: StrictInt = Field(3, ge=1)


class Final(Section):
    """After a search: the chosen configuration retrained with these trainer settings (extra keys, e.g.
    ``validation: auto``) on ``seeds`` seeds and scored once; checked against the trainer's factors."""

    model_config = pydantic.ConfigDict(extra="allow", frozen=True)

    seeds: StrictInt | None = Field(None, ge=1)


class Mlflow(Section):
    tracking_uri: StrictStr = Field(DEFAULT_TRACKING_URI, min_length=1)
    experiment: StrictStr | None = Field(None, min_length=1)


class Answer(Section):
    """The two cells the report compares: the blog's and the user's (factor values; others take the first)."""

    blog_cell: dict[str, Any]
    user_cell: dict[str, Any]


class Claim(Section):
    """A published number: the report gives it a verdict against the measured cell."""

    source: StrictStr = Field(min_length=1)
    cell: dict[str, Any]
    epoch: StrictInt = Field(ge=1)
    value: Number  # within the objective metric's range: checked against the trainer's declaration


class Smoke(Section):
    """What ``--smoke-test`` changes; trainer settings go in as extra keys, checked against the factor registry."""

    model_config = pydantic.ConfigDict(extra="allow", frozen=True)

    seeds: StrictInt | list[StrictInt] | None = None
    factors: dict[str, list[Any]] | None = None
    resources: Resources | None = None
    max_concurrent_trials: StrictInt | None = Field(None, ge=0)
    baselines: list[Literal[config_module.BASELINES]] | None = None  # type: ignore[valid-type]



class SweepFile(Section):
    """A whole sweep file, as written (before defaults are resolved against the working folder)."""

    name: StrictStr = Field(pattern=NAME_PATTERN)
    description: StrictStr = ""
    trainer: StrictStr = Field(DEFAULT_TRAINER, min_length=1)
    factors: dict[str, Any] = {}
    fixed: dict[str, Any] = {}
    seeds: StrictInt | list[StrictInt] = 1
    baselines: list[Literal[config_module.BASELINES]] = []  # type: ignore[valid-type]
    resources: Resources = Resources()
    max_concurrent_trials: StrictInt = Field(0, ge=0)
    max_failures: StrictInt = Field(3, ge=0)
    search: Search = GridSearch()
    scheduler: Scheduler | None = None
    objective: Objective | None = None
    budget: Budget | None = None
    start_from: list[dict[str, Any]] = []
    confirm: Confirm | None = None
    final: Final | Literal[False] | None = None  # false: no final stage, not even the trainer's default one
    select_on_test_set: StrictBool = False  # a search may select on an official test set only when this says so
    mlflow: Mlflow = Mlflow()
    storage_path: StrictStr = Field(DEFAULT_STORAGE_PATH, min_length=1)
    answer: Answer | None = None
    claims: list[Claim] = []
    smoke: Smoke | None = None

    @pydantic.field_validator("factors", mode="before")
    @classmethod
    def _factor_lists(cls, factors: Any) -> Any:
        if isinstance(factors, dict):
            for name, values in factors.items():
                if not isinstance(values, (list, dict)) or not values:
                    raise ValueError(f"factors.{name}={values!r}: must be a non-empty list of values, e.g. "
                                     f"{name}: [a, b], or a distribution, e.g. {{loguniform: [0.0001, 0.1]}}")
        return factors


def coerce(factors: dict[str, factors_module.Factor], name: str, value: Any) -> Any:
    """YAML reads ``dataset: 19997`` as an integer; a string factor takes it as its text, a float one as a float."""
    factor = factors.get(name)
    if factor is None or isinstance(value, bool) or not isinstance(value, int):
        return value
    if factor.type is str:
        return str(value)
    if factor.type is float:
        return float(value)
    return value


def check_trainer_settings(where: str, section: str, values: dict[str, Any], *, lists: bool,
                           factors: dict[str, factors_module.Factor], trainer: str = DEFAULT_TRAINER) -> dict[str, Any]:
    """Unknown trainer settings and values outside a factor's choices or bounds are one-line errors.

    ``factors`` are those the sweep's trainer declares. Returns the values coerced to the factors' types (lists
    of values when ``lists``).
    """
    checked = {}
    for name, value in values.items():
        if name not in factors:
            raise ValueError(f"{where}: {section}.{name}: unknown setting of trainer {trainer!r}; allowed: "
                             f"{', '.join(sorted(factors))}")
        items = [coerce(factors, name, item) for item in value] if lists else [coerce(factors, name, value)]
        for item in items:
            try:
                factors[name].check(item)
            except ValueError as error:
                raise ValueError(f"{where}: {section}.{name} value {item!r}: {error}") from None
        if lists and len({json.dumps(item, sort_keys=True) for item in items}) != len(items):
            raise ValueError(f"{where}: {section}.{name}={value!r} lists a value twice")
        checked[name] = items if lists else items[0]
    return checked


def parse_document(data: Any, where: str) -> SweepFile:
    """Validate a loaded YAML document; ``ValueError`` with one line naming the key path and the fix."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}: a sweep file is a mapping of keys ({', '.join(SweepFile.model_fields)}); "
                         f"got {data!r}")
    try:
        return SweepFile.model_validate(data)
    except pydantic.ValidationError as error:
        raise ValueError(f"{where}: {describe(error.errors()[0])}") from None


UNION_MEMBERS = (Final.__name__,)
BOUND_WORDS = {"greater_than": ("gt", ">"), "greater_than_equal": ("ge", ">="), "less_than": ("lt", "<"),
               "less_than_equal": ("le", "<=")}


def describe(error: dict[str, Any]) -> str:
    """One pydantic error as ``key.path=value: what is allowed``."""
    location = []
    for part in error["loc"]:
        if isinstance(part, int) and location:
            location[-1] += f"[{part}]"  # A list item: baselines[0], claims[1].
        else:
            location.append(str(part))
    # A plain union puts the member's class into the path (final.Final.seeds); users wrote final.seeds.
    location = [part for part in location if part not in UNION_MEMBERS]
    mode = None
    # A discriminated union puts the tag into the path (search.asha.num_samples); users wrote search.num_samples.
    if len(location) > 1 and location[0] == "search" and location[1] in SEARCH_MODES:
        mode = location.pop(1)
    kind = error["type"]
    if kind == "extra_forbidden":
        parent, key = ".".join(location[:-1]), location[-1]
        fields = SEARCH_MODELS[mode].model_fields if mode else _fields_at(location[:-1])
        return f"unknown key {parent + '.' if parent else ''}{key!r}; allowed keys: {', '.join(sorted(fields))}"
    path = ".".join(location)
    if kind == "missing":
        return f"{path} is required"
    if kind == "union_tag_invalid":
        return f"{path}.mode={error['ctx']['tag']!r} is not allowed; allowed values: {', '.join(SEARCH_MODES)}"
    if kind == "value_error":
        return str(error["ctx"]["error"])
    message = error["msg"]
    if kind == "literal_error":
        message = f"is not allowed; allowed values: {error['ctx']['expected']}"
    elif kind in BOUND_WORDS:
        bound, word = BOUND_WORDS[kind]
        message = f"must be a number {word} {error['ctx'][bound]}"
    elif kind == "string_pattern_mismatch":
        message = "must be a non-empty string of letters, digits, '-', '_', '.'"
    return f"{path}={error['input']!r}: {message}"


def _fields_at(location: list[str]) -> list[str]:
    """Field names of the model found at ``location`` in ``SweepFile`` (for the allowed-keys list)."""
    model: Any = SweepFile
    for part in location:
        annotation = model.model_fields[part].annotation
        candidates = [getattr(annotation, "__args__", None) or (annotation,)][0]
        model = next((candidate for candidate in candidates if isinstance(candidate, type)
                      and issubclass(candidate, pydantic.BaseModel)), None)
        if model is None:
            return []
    return list(model.model_fields)
