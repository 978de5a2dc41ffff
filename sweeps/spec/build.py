"""From sweep-file text to a checked ``SweepSpec``: the trainer's factors, seeds, epochs, smoke overrides, the
answer's cells and claims, and every trial's config built once before any compute."""

from __future__ import annotations

import itertools
import os
import pathlib
from typing import Any

import yaml

from sweeps.spec import schema
from sweeps.spec import search_checks
from sweeps.spec import stages
from sweeps.spec.sweep import BASELINES_TRAINER, SweepSpec, load_trainer
from sweeps.trainers import registry


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
    _check_smoke_keys(where, parsed)
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
    folder = registry.folder_of(where)
    try:
        trainer = load_trainer(parsed.trainer, folder)
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None
    if trainer.variant:
        # A reference trainer runs one of its variants per trial, which only a 'baselines' list names.
        raise ValueError(f"{where}: trainer: {parsed.trainer!r} is a reference trainer that runs beside a network; "
                         f"list its models under 'baselines:' (e.g. baselines: [linear_svm]) with trainer: keras")
    declared = trainer.factors
    searched = search_checks.is_search(parsed)
    factors = schema.check_trainer_settings(where, "factors", search_checks.listed_factors(where, parsed, searched),
                                            lists=True, factors=declared, trainer=parsed.trainer)
    space = search_checks.parse_space(where, parsed, trainer) if searched else {}
    fixed = schema.check_trainer_settings(where, "fixed", parsed.fixed, lists=False, factors=declared,
                                          trainer=parsed.trainer)
    if "seed" in fixed:
        raise ValueError(f"{where}: fixed.seed: seeds are set per trial; use 'seeds: [{fixed['seed']}]' instead")
    both = sorted((set(factors) | set(space)) & set(fixed))
    if both:
        raise ValueError(f"{where}: {both[0]} is both a factor and fixed; keep it in one of 'factors' or 'fixed'")
    seeds_value: Any = parsed.seeds
    if "seed" in factors:
        if "seeds" in parsed.model_fields_set and not smoke_test:
            raise ValueError(f"{where}: factors.seed and seeds both given; list the seeds in one place")
        seeds_value = factors.pop("seed")
    seeds = _seeds(where, seeds_value)
    if not trainer.seeded and seeds != [0]:
        raise ValueError(f"{where}: seeds={seeds_value!r}: trainer {parsed.trainer!r} declares no 'seed' factor, "
                         f"so a sweep of it has one seed; remove 'seeds' or give the trainer a seed factor")
    epochs_is_factor = "epochs" in factors
    # A trainer without an epoch axis reports once: its result is "epoch 1".
    epochs_given = epochs_is_factor or "epochs" in fixed
    epochs = sorted(factors.pop("epochs")) if epochs_is_factor else \
        [fixed.pop("epochs", declared["epochs"].default) if trainer.epoch_axis else 1]
    scheduler, epochs = search_checks.scheduler_and_epochs(where, parsed, trainer, epochs, epochs_given=epochs_given)
    for key in (name for name, factor in declared.items() if factor.path):
        if fixed.get(key):
            fixed[key] = str((base / pathlib.Path(fixed[key]).expanduser()).resolve())
        if key in factors:
            factors[key] = [str((base / pathlib.Path(v).expanduser()).resolve()) if v else v for v in factors[key]]
    if parsed.baselines:
        reference = load_trainer(BASELINES_TRAINER)
        missing = [name for name in reference.data_fields if name not in declared]
        if missing:
            raise ValueError(f"{where}: baselines: the TF-IDF baselines need the data factors {', '.join(missing)}, "
                             f"which trainer {parsed.trainer!r} does not declare; remove 'baselines'")
    search = parsed.search.model_dump(exclude_none=True)
    search_checks.check_search(where, parsed, trainer, space, seeds)
    if search["mode"] != "grid" and parsed.baselines:
        raise ValueError(f"{where}: baselines run only in search.mode 'grid' (one per cell); got mode "
                         f"{search['mode']!r}")
    if search["mode"] != "grid" and not space:
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
            answer = {role: _cell(where, f"answer.{role}", getattr(parsed.answer, role), factors, declared)
                      for role in ("blog_cell", "user_cell")}
        claims = [dict(claim.model_dump(), cell=_cell(where, f"claims[{index}].cell", claim.cell, factors, declared))
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
        source_path=where, description=parsed.description, answer=answer, claims=claims, trainer=parsed.trainer,
        trainer_folder=folder, space=space, objective=search_checks.objective(where, parsed, trainer),
        scheduler=scheduler, budget=parsed.budget.model_dump() if parsed.budget else {},
        start_from=search_checks.start_points(where, parsed, trainer, space),
    )
    _check_claims(where, spec)
    _check_every_config(where, spec)
    return spec.replace(**stages.parse_stages(where, parsed, spec))


def _check_claims(where: str, spec: SweepSpec) -> None:
    """A claimed value lies within the objective metric's range (an accuracy's [0, 1]; a loss's [0, inf))."""
    objective = spec.main_trainer.objective
    for index, claim in enumerate(spec.claims):
        value = claim["value"]
        if (objective.low is not None and value < objective.low) or (objective.high is not None and value > objective.high):
            raise ValueError(f"{where}: claims[{index}].value={value!r}: outside the range of {objective.name} "
                             f"[{objective.low if objective.low is not None else '-inf'}, "
                             f"{objective.high if objective.high is not None else 'inf'}]")


def _cell(where: str, key: str, cell: dict[str, Any], factors: dict[str, list],
          declared: dict[str, Any]) -> dict[str, Any]:
    """A cell named by factor values; each name must be a factor of the sweep and each value one of its values."""
    resolved = {}
    for name, value in cell.items():
        if name not in factors:
            raise ValueError(f"{where}: {key}.{name}: not a factor of this sweep; factors: "
                             f"{', '.join(factors) or '(none)'}")
        value = schema.coerce(declared, name, value)
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


def _check_smoke_keys(where: str, parsed: schema.SweepFile) -> None:
    """A ``smoke`` section's trainer keys are factors of the sweep's trainer (checked with or without the flag)."""
    if parsed.smoke is None or not parsed.smoke.model_extra:
        return
    try:
        declared = load_trainer(parsed.trainer, registry.folder_of(where)).factors
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None
    for key in parsed.smoke.model_extra:
        if key not in declared:
            allowed = sorted({*type(parsed.smoke).model_fields, *declared})
            raise ValueError(f"{where}: unknown key smoke.{key!r}; allowed keys: {', '.join(allowed)}")


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
    smoke_epochs = (smoke.model_extra or {}).get("epochs")
    if smoke_epochs is not None and parsed.scheduler is not None and parsed.scheduler.max_t is not None:
        # A search's epoch count is its scheduler's: the smoke test's epochs shorten both.
        max_t = max(smoke_epochs) if isinstance(smoke_epochs, list) else smoke_epochs
        changes["scheduler"] = parsed.scheduler.model_copy(update={
            "max_t": max_t, "grace_period": min(parsed.scheduler.grace_period, max_t)})
    declared = load_trainer(parsed.trainer, registry.folder_of(where)).factors
    for key, value in (smoke.model_extra or {}).items():
        schema.check_trainer_settings(where, "smoke", {key: value}, lists=isinstance(value, list), factors=declared,
                                      trainer=parsed.trainer)
    return parsed.model_copy(update=dict(changes, factors=factors, fixed=fixed))


def _check_every_config(where: str, spec: SweepSpec) -> None:
    """Build each factor value's config alone (precise message), then every trial's config (combinations)."""
    trainer = spec.main_trainer
    base = dict(spec.fixed)
    base.update({"epochs": spec.max_epochs} if trainer.epoch_axis else {})
    base.update({"seed": spec.seeds[0]} if trainer.seeded else {})
    try:
        trainer.make_config(base)
    except ValueError as error:
        raise ValueError(f"{where}: fixed: {error}") from None
    for name, values in spec.factors.items():
        for value in values:
            try:
                trainer.make_config(dict(base, **{name: value}))
            except ValueError as error:
                raise ValueError(f"{where}: factors.{name} value {value!r}: {error}") from None
    for name, distribution in spec.space.items():
        # A conditional factor is sampled only where its condition holds: check it there.
        condition = {factor: allowed[0] for factor, allowed in distribution.when.items()}
        for value in distribution.values or (distribution.low, distribution.high):
            try:
                trainer.make_config(dict(base, **condition, **{name: value}))
            except ValueError as error:
                raise ValueError(f"{where}: factors.{name} value {value!r}: {error}") from None
    start = [spec.search_trial(point) for point in spec.start_from]
    for trial in spec.trials() + start + (spec.data_trials() if spec.searched else []):
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
