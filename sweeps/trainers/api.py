"""The trainer contract: what a training function declares, and how it reports.

A trainer is a plain function of one argument, the trial's settings as a dict, wrapped by ``trainer(...)``,
which declares its factors (the settings a sweep file may set) and its metrics (name and direction)::

    from sweeps.trainers import Factor, Metric, report, trainer

    @trainer(factors=[Factor("C", float, 1.0, "Inverse regularization strength.", gt=0),
                      Factor("epochs", int, 10, "Passes over the data.", ge=1),
                      Factor("seed", int, 0, "Seed of the split and the solver.", ge=0)],
             metrics=[Metric("val_acc", "max", low=0, high=1), Metric("val_loss", "min", low=0)])
    def train(config):
        for epoch in range(config["epochs"]):
            ...
            report({"val_acc": accuracy, "val_loss": loss})   # or ray.tune.report(...), unchanged

Each ``report`` is one epoch (or one result, for a trainer without an ``epochs`` factor); a returned dict is
reported once more at the end, as a Ray Tune function trainable's return value is. What a trainer reports goes
to its trial's MLflow child run (buffered through outages, as the Keras trainer's epochs are) and to Tune; its
own ``mlflow.log_*`` calls inside the trial land in that same run.

What glovesweep gives every trainer from its declaration:
- ``seed`` factor: the sweep's ``seeds`` and the seed-aware statistics (cells with intervals); in a search,
  ``seeds: k`` trains each configuration at k seeds side by side, in threads of one process (keep random state in
  objects such as ``np.random.default_rng(seed)``), or, for a trainer declared with ``takes_turns=True`` (it seeds
  process-wide state: ``np.random.seed``, ``keras.utils.set_random_seed``), one seed at a time, taking turns at each
  epoch's report with each seed's process-wide random state restored (``sweeps.run.baton``);
- ``epochs`` factor: the exact epoch axis (one trial per cell trains to ``max(epochs)``, reporting each epoch);
- ``checkpoints=True``: a retried or resumed trial continues from the newest checkpoint it reported
  (``get_checkpoint()``); glovesweep stores them, the trainer decides what they hold;
- ``metrics[0]``: the objective the report, the answer and the claims use, in its own direction and range;
- ``leak_metric``: a label-leak-like measure the answer may cite.
"""

from __future__ import annotations

import contextvars
import dataclasses
from typing import Any, Callable, Iterable

from trainer import factors as factors_module
from trainer.factors import Factor

MODES = ("max", "min")


@dataclasses.dataclass(frozen=True)
class Metric:
    """A metric a trainer reports.

    Attributes
    ----------
    name : str
        The key in each ``report`` dict and the MLflow metric name.
    mode : str
        ``max`` (higher is better) or ``min``.
    low, high : float, optional
        The range of its values where it has one (an accuracy's [0, 1]; a loss's [0, inf)): claims and plots
        are bounded by it, never by [0, 1] unless it says so.
    help : str
        A few words for reports, e.g. ``validation accuracy``.
    """

    name: str
    mode: str = "max"
    low: float | None = None
    high: float | None = None
    help: str = ""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"metric {self.name!r}: mode {self.mode!r} is not allowed; allowed: max, min")
        if self.low is not None and self.high is not None and not self.low < self.high:
            raise ValueError(f"metric {self.name!r}: low={self.low} must be below high={self.high}")

    @property
    def label(self) -> str:
        return self.help or self.name

    def better(self, first: float, second: float) -> bool:
        """Whether ``first`` is better than ``second`` in this metric's direction."""
        return first > second if self.mode == "max" else first < second

    def as_text(self) -> str:
        """``name:mode[:low:high]``, the parent run's ``glovesweep.objective`` tag."""
        if self.low is None and self.high is None:
            return f"{self.name}:{self.mode}"
        return f"{self.name}:{self.mode}:{'' if self.low is None else self.low}:{'' if self.high is None else self.high}"

    @classmethod
    def from_text(cls, text: str) -> "Metric":
        """The metric ``as_text`` wrote."""
        parts = text.split(":")
        low = float(parts[2]) if len(parts) > 2 and parts[2] else None
        high = float(parts[3]) if len(parts) > 3 and parts[3] else None
        return cls(parts[0], parts[1] if len(parts) > 1 else "max", low, high)


# The Keras trainer's objective and the one every sweep had before trainers were named: read for old runs.
VAL_ACC = Metric("val_acc", "max", low=0.0, high=1.0, help="validation accuracy")


@dataclasses.dataclass(frozen=True)
class Trainer:
    """A training function and its declaration (made by ``trainer(...)``; the built-ins are instances too).

    Attributes
    ----------
    name : str
        How sweep files and the trainer tag of each child run name it.
    function : callable
        ``function(config: dict) -> dict | None``; config holds every factor, ``seed`` and ``epochs`` included.
    factors : dict of str to Factor
    metrics : tuple of Metric
        The first is the objective.
    checkpoints : bool
        It reports checkpoints and continues from ``get_checkpoint()``.
    leak_metric : str
        A metric measuring label leakage (the Keras trainer's ``leakage``); empty: none.
    data_fields : tuple of str
        For a reference trainer beside a network (the TF-IDF baselines): the factors its result depends on; it
        runs once per distinct combination of them, at the first seed.
    variant : str
        The name of the setting that picks one of its variants (``model`` for the TF-IDF baselines), given by
        the sweep file's list (``baselines:``) rather than by ``factors``.
    kind : str
        The child runs' ``trainer`` tag and the trial key's ``kind`` (default: ``name``; the built-ins keep the
        values of the runs they logged before: ``keras``, ``baseline``).
    runner : callable, optional
        Built-ins only: ``runner(session)`` runs the trial with the sweep's shared data instead of ``function``.
    reads_archives, prepares_data : bool
        Built-ins only: the driver checks the 20 Newsgroups archives before Ray starts (both built-ins), and
        prepares the arrays once per data key and merges trials that would train identically (the network).
    check : callable, optional
        ``check(config)`` raising ``ValueError`` for combinations the factors' own bounds cannot express.
    test_set : callable, optional
        Built-ins only: ``test_set(config)`` is True where the config's validation metrics come from an official
        test set (the Keras network on bydate with ``validation: auto``), so a search must not select on them.
    final_settings : dict
        Built-ins only: the settings a search's final stage retrains the chosen configuration with by default
        (``{"validation": "auto"}``: all training files, scored on the test set), where they reach a test set.
    takes_turns : bool
        It keeps process-wide state (global random seeds, a Keras session), so a search's seeds of one configuration
        train one at a time in their trial, taking turns at each report, each with its own process-wide random state
        (``sweeps.run.baton``); False: they train side by side in threads.
    """

    name: str
    function: Callable[[dict[str, Any]], Any] | None
    factors: dict[str, Factor]
    metrics: tuple[Metric, ...]
    checkpoints: bool = False
    leak_metric: str = ""
    data_fields: tuple[str, ...] = ()
    variant: str = ""
    kind: str = ""
    runner: Callable[[Any], None] | None = None
    reads_archives: bool = False
    prepares_data: bool = False
    config_class: type | None = None
    description: str = ""
    test_set: Callable[[Any], bool] | None = None
    final_settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    takes_turns: bool = False

    def __post_init__(self) -> None:
        if not self.metrics:
            raise ValueError(f"trainer {self.name!r}: declare at least one metric (the objective), e.g. "
                             f"Metric('val_acc', 'max')")
        if not self.kind:
            object.__setattr__(self, "kind", self.name)
        if self.config_class is None:
            object.__setattr__(self, "config_class", factors_module.make_config_class(
                self.factors, name=f"{self.name.title().replace('_', '')}Config", module=__name__))

    @property
    def objective(self) -> Metric:
        return self.metrics[0]

    @property
    def epoch_axis(self) -> bool:
        """The exact epoch axis: an ``epochs`` factor, one report per epoch."""
        return "epochs" in self.factors

    @property
    def seeded(self) -> bool:
        return "seed" in self.factors

    @property
    def reference(self) -> bool:
        """A reference beside a network (runs per data cell, at one seed), not a network of its own."""
        return bool(self.data_fields)

    def metric(self, name: str) -> Metric | None:
        return next((metric for metric in self.metrics if metric.name == name), None)

    def __call__(self, config: dict[str, Any]) -> Any:
        """Call the training function itself (tests, notebooks): no trial, no MLflow."""
        if self.function is None:
            raise TypeError(f"trainer {self.name!r} runs only inside a sweep's trial (it has no plain function)")
        return self.function(config)

    def make_config(self, values: dict[str, Any]):
        """The typed, checked config of ``values`` (unknown keys and bad values: ``ValueError``)."""
        return self.config_class.from_dict(values)


def trainer(*, factors: Iterable[Factor], metrics: Iterable[Metric], name: str = "", checkpoints: bool = False,
            leak_metric: str = "", description: str = "", takes_turns: bool = False) -> Callable[[Callable], Trainer]:
    """Declare a training function as a glovesweep trainer (see the module's docstring).

    ``name`` defaults to the function's name; ``takes_turns=True`` where it seeds process-wide state (its seeds in a
    search then take turns, ``Trainer.takes_turns``). Returns a ``Trainer``, still callable as the function.
    """
    def wrap(function: Callable) -> Trainer:
        declared = list(factors)
        names = [factor.name for factor in declared]
        if len(set(names)) != len(names):
            raise ValueError(f"trainer {name or function.__name__!r}: a factor is declared twice: {names}")
        made = Trainer(name=name or function.__name__, function=function,
                               factors={factor.name: factor for factor in declared}, metrics=tuple(metrics),
                               checkpoints=checkpoints, leak_metric=leak_metric, takes_turns=takes_turns,
                               description=description or (function.__doc__ or "").strip().split("\n")[0])
        return made

    return wrap


def report(metrics: dict[str, Any], *, checkpoint=None) -> None:
    """Report one epoch's metrics (and optionally a ``ray.tune.Checkpoint``) from inside a trial.

    The same as ``ray.tune.report``, which glovesweep intercepts inside its trials: either reaches the trial's
    MLflow child run and Tune. Under ``glovesweep train`` (no Ray) it prints one line.
    """
    from ray import tune

    tune.report(dict(metrics), checkpoint=checkpoint)


# The checkpoint the running trial continues from; set by the trial (``sweeps.run.session``) around the call.
CURRENT_CHECKPOINT: contextvars.ContextVar = contextvars.ContextVar("glovesweep_checkpoint", default=None)


def get_checkpoint():
    """The checkpoint this trial should continue from (``ray.tune.Checkpoint``), or None to start afresh.

    A retry within one Tune run gets Tune's newest checkpoint; a trial of a resumed sweep gets the newest one
    its earlier attempts left; a seed of a search's configuration (``seeds: k``) gets its own. Only for trainers
    declared with ``checkpoints=True``.
    """
    return CURRENT_CHECKPOINT.get()


__all__ = ["Factor", "Metric", "Trainer", "trainer", "report", "get_checkpoint", "VAL_ACC"]
