"""``glovesweep run``: a sweep file becomes Ray Tune trials, each logged to MLflow.

Order of work, so that a mistake costs nothing:

1. the sweep file is validated and every trial's ``TrainerConfig`` is built (``sweeps.spec``);
2. the MLflow store is checked (unreachable: ``OSError`` before anything starts);
3. every dataset and GloVe source is resolved (missing: ``OSError``, nothing started);
4. Ray starts (locally unless ``--address``/``RAY_ADDRESS`` names a cluster); ``trainer.prepare.prepare``
   runs once per distinct data key (the trainer's content-hash cache key) as a Ray task, so the arrays land
   in the object store once and trials on every node read them from there;
5. the parent MLflow run is created, the sweep's state is written next to Tune's, and the Tuner runs.

Each trial trains to ``max(epochs)``, reporting every epoch to Tune with a checkpoint and to MLflow as step
metrics; a trial whose worker dies is retried from its last epoch (``FailureConfig(max_failures)``) and
continues the same child run. ``glovesweep resume <sweep dir>`` (``sweeps.driver_resume``) restores a sweep
whose driver died.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import logging
import math
import os
import pathlib
import platform
import shutil
import sys
import tempfile
import time
from typing import Any

import ray
from ray import tune

from sweeps import cluster_checks
from sweeps import spec as spec_module
from sweeps import tracking
from trainer import config as config_module

logger = logging.getLogger(__name__)

SWEEP_STATE_FILE = "glovesweep_sweep.json"
CHECKPOINTS_TO_KEEP = 2


@dataclasses.dataclass
class SweepResult:
    """What a finished (or interrupted) sweep left behind."""

    sweep_dir: str
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    total: int
    done: int
    failed: int
    seconds: float
    prepare_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.done == self.total


# --------------------------------------------------------------------------------------------- command line
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sweep_file", help="A sweep file, e.g. sweeps/quick.yaml.")
    parser.add_argument("--smoke-test", action="store_true",
                        help="Apply the file's 'smoke' overrides (tiny data, few epochs, one seed).")
    add_runtime_arguments(parser)
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow tracking URI overriding the file's mlflow.tracking_uri "
                             "(sqlite:///... or http://...).")
    parser.add_argument("--storage-path", default=None, help="Ray storage path overriding the file's storage_path.")


def add_runtime_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``run`` and ``resume``: where data lives and which Ray to use."""
    parser.add_argument("--data-dir", default=None,
                        help="Data home holding the archives (default: $GLOVESWEEP_DATA or ~/glovesweep_data).")
    parser.add_argument("--cache-dir", default=None,
                        help="Preprocessing cache (default: $GLOVESWEEP_CACHE or ~/.cache/glovesweep).")
    parser.add_argument("--no-download", action="store_true",
                        help="Never download; a missing archive or GloVe file is an error.")
    parser.add_argument("--address", default=None,
                        help="Ray cluster address (default: $RAY_ADDRESS, else start Ray on this machine).")
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray (default: all cores).")
    parser.add_argument("--dashboard", action="store_true", help="Start Ray's dashboard with a local Ray.")


def main(args: argparse.Namespace) -> int:
    spec = spec_module.load_sweep(args.sweep_file, smoke_test=args.smoke_test)
    overrides = {}
    if args.tracking_uri:
        overrides["tracking_uri"] = spec_module.resolve_tracking_uri(args.tracking_uri, pathlib.Path.cwd())
    if args.storage_path:
        overrides["storage_path"] = spec_module.resolve_storage_path(args.storage_path, pathlib.Path.cwd())
    spec = dataclasses.replace(spec, **overrides)
    result = run_sweep(spec, **runtime_options(args))
    return 0 if result.ok else 1


def runtime_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "data_home": str(pathlib.Path(args.data_dir).resolve()) if args.data_dir else None,
        "cache_dir": str(pathlib.Path(args.cache_dir).resolve()) if args.cache_dir else None,
        "download_if_missing": not args.no_download,
        "address": args.address,
        "num_cpus": args.num_cpus,
        "include_dashboard": args.dashboard,
    }


# --------------------------------------------------------------------------------------------- the sweep
def run_sweep(
    spec: spec_module.SweepSpec,
    *,
    data_home: str | None = None,
    cache_dir: str | None = None,
    download_if_missing: bool = True,
    address: str | None = None,
    num_cpus: int | None = None,
    include_dashboard: bool = False,
    experiment_name: str | None = None,
) -> SweepResult:
    """Run a validated sweep to the end; every trial is logged to MLflow under one parent run.

    Parameters
    ----------
    spec : SweepSpec
        From ``sweeps.spec.load_sweep``.
    data_home, cache_dir : str, optional
        Absolute folders; default ``$GLOVESWEEP_DATA`` / ``$GLOVESWEEP_CACHE`` (``trainer.paths``).
    address : str, optional
        A Ray cluster; default ``$RAY_ADDRESS``, else a Ray started on this machine (or the one this
        process already joined).
    experiment_name : str, optional
        Folder name under ``spec.storage_path``; default ``<name>-<UTC timestamp>``.

    Raises
    ------
    ValueError, OSError
        Before any trial starts: bad sweep, unreachable MLflow, missing data or GloVe.
    """
    started = time.perf_counter()
    tracking.check_reachable(spec.tracking_uri)
    sources = resolve_sources(spec, data_home=data_home, cache_dir=cache_dir, download_if_missing=download_if_missing)
    experiment_id = tracking.ensure_experiment(spec.tracking_uri, spec.experiment)
    commit, dirty = tracking.git_commit()
    start_ray(address=address, num_cpus=num_cpus, include_dashboard=include_dashboard)
    # On several nodes, Tune's storage must be shared: refuse a local folder before any trial starts.
    cluster_checks.check_cluster_storage(spec.storage_path)
    shared = prepare_shared_data(spec, sources, data_home=data_home, cache_dir=cache_dir,
                                 download_if_missing=download_if_missing)

    name = experiment_name or f"{spec.name}{'-smoke' if spec.smoke_test else ''}-" \
                              f"{datetime.datetime.now(datetime.timezone.utc):%Y%m%d-%H%M%S}"
    sweep_dir = _join(spec.storage_path, name)
    parent_run_id = tracking.start_parent_run(spec.tracking_uri, experiment_id, spec=spec, tags={
        "git_commit": commit, "git_dirty": str(dirty).lower(), "versions": tracking.package_versions(),
        "glovesweep.sweep_dir": sweep_dir, "glovesweep.sweep_file": spec.source_path})
    state = {
        "sweep_text": spec.source_text, "source_path": spec.source_path, "smoke_test": spec.smoke_test,
        "base_dir": str(pathlib.Path.cwd()), "tracking_uri": spec.tracking_uri, "storage_path": spec.storage_path,
        "experiment_id": experiment_id, "parent_run_id": parent_run_id, "git_commit": commit,
        "data_home": data_home, "cache_dir": cache_dir, "download_if_missing": download_if_missing,
        "experiment_name": name,
    }
    total = len(spec.trials()) if spec.search["mode"] == "grid" else spec.search["num_samples"]
    print(f"glovesweep: sweep {spec.name!r}: {total} trials "
          f"({len(spec.cells())} cells x {len(spec.seeds)} seeds"
          f"{f' + {total - len(spec.cells()) * len(spec.seeds)} baselines' if spec.baselines else ''}, "
          f"epochs {spec.epochs}) -> {sweep_dir}", flush=True)
    print(f"glovesweep: MLflow {spec.tracking_uri} experiment {spec.experiment!r}, parent run {parent_run_id}",
          flush=True)

    def make_tuner() -> tune.Tuner:
        write_sweep_state(sweep_dir, state)
        tune_config, param_space = _tune_config_and_space(spec)
        run_config = tune.RunConfig(
            name=name,
            storage_path=spec.storage_path,
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=CHECKPOINTS_TO_KEEP),
            callbacks=[SweepCallback(spec.tracking_uri, experiment_id, parent_run_id)],
            verbose=0,
        )
        quiet_tune_output()
        trainable = make_trainable(spec, _trial_context(spec, state, shared))
        return tune.Tuner(trainable, param_space=param_space, tune_config=tune_config, run_config=run_config)

    result = _fit_and_finish(make_tuner, state, started=started, total=total)
    return dataclasses.replace(result, prepare_seconds=shared["seconds"])


def quiet_tune_output() -> None:
    """Tune's own tables and hints off: ``SweepCallback`` prints one line per event instead."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Keeping 2 checkpoints per trial forces a state snapshot every few epochs; that is cheap, not a warning.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")


def _fit_and_finish(make_tuner, state: dict[str, Any], *, started: float, total: int) -> SweepResult:
    """Build and run the Tuner; end the parent run FINISHED / FAILED / KILLED, no child run left RUNNING."""
    tracking_uri, experiment_id, parent_run_id = state["tracking_uri"], state["experiment_id"], state["parent_run_id"]
    sweep_dir = _join(state["storage_path"], state["experiment_name"])
    try:
        tuner = make_tuner()
    except BaseException:
        _close_runs(tracking_uri, experiment_id, parent_run_id, "FAILED")
        raise
    try:
        results = tuner.fit()
    except BaseException:
        _close_runs(tracking_uri, experiment_id, parent_run_id, "KILLED")
        print(f"glovesweep: interrupted; continue with: glovesweep resume {sweep_dir}", file=sys.stderr, flush=True)
        raise
    statuses = [trial.status for trial in tune.ExperimentAnalysis(results.experiment_path).trials]
    failed, done = statuses.count("ERROR"), statuses.count("TERMINATED")
    # Tune returns early (unfinished trials) when the sweep was interrupted with Ctrl-C.
    status = "FAILED" if failed else ("FINISHED" if done >= total else "KILLED")
    _close_runs(tracking_uri, experiment_id, parent_run_id, status)
    seconds = time.perf_counter() - started
    print(f"glovesweep: {done}/{total} trials done, {failed} failed in {seconds:.0f} s", flush=True)
    print(f"glovesweep: results in {sweep_dir}", flush=True)
    print(f"glovesweep: open the MLflow UI with: glovesweep ui --tracking-uri {tracking_uri}", flush=True)
    if status != "FINISHED":
        print(f"glovesweep: {'retry the failed' if failed else 'finish the missing'} trials with: "
              f"glovesweep resume {sweep_dir}", flush=True)
    return SweepResult(sweep_dir=sweep_dir, tracking_uri=tracking_uri, experiment_id=experiment_id,
                       parent_run_id=parent_run_id, total=total, done=done, failed=failed, seconds=seconds)


def _close_runs(tracking_uri: str, experiment_id: str, parent_run_id: str, parent_status: str) -> None:
    """After the Tuner: a child still RUNNING has no live worker; it ends FAILED (KILLED when interrupted)."""
    child_status = "KILLED" if parent_status == "KILLED" else "FAILED"
    try:
        for run in tracking.child_runs(tracking_uri, experiment_id, parent_run_id):
            if run.info.status == "RUNNING":
                tracking.end_run(tracking_uri, run.info.run_id, child_status)
        tracking.end_run(tracking_uri, parent_run_id, parent_status)
    except Exception as error:  # noqa: BLE001 - closing runs must not hide the sweep's own outcome
        logger.warning("could not close MLflow runs of parent %s: %s", parent_run_id, error)


# --------------------------------------------------------------------------------------------- set-up steps
def resolve_sources(spec: spec_module.SweepSpec, *, data_home=None, cache_dir=None,
                    download_if_missing: bool = True) -> dict[str, Any]:
    """Find every dataset and GloVe source the sweep needs, before any compute.

    Returns
    -------
    dict
        ``archives``: (dataset, data_path) -> (source path, SHA-256); ``glove``: (dim, glove_path) -> SHA-256.

    Raises
    ------
    OSError
        A source is missing (and downloads are off or fail); the trainer's message names the file.
    """
    from trainer import data as data_module
    from trainer import embeddings as embeddings_module

    configs = [spec.trial_config(trial) for trial in spec.trials()]
    archives: dict[tuple[str, str], tuple[str, str]] = {}
    glove: dict[tuple[int, str], str] = {}
    for config in configs:
        key = (config.dataset, config.data_path)
        if key not in archives:
            source = data_module.resolve_dataset(config.dataset, data_path=config.data_path, data_home=data_home,
                                                 download_if_missing=download_if_missing)
            archives[key] = (str(source), data_module.source_sha256(source))
    for trial, config in zip(spec.trials(), configs):
        if trial.kind != "keras" or config.embedding == "random":
            continue
        key = (config.glove_dim, config.glove_path)
        if key not in glove:
            loaded = embeddings_module.load_glove(config.glove_dim, glove_path=config.glove_path, data_home=data_home,
                                                  cache_dir=cache_dir, download_if_missing=download_if_missing)
            glove[key] = loaded.sha256
    return {"archives": archives, "glove": glove}


def data_key(config: config_module.TrainerConfig, sources: dict[str, Any]) -> str:
    """The trainer's cache key of a config's prepared arrays: trials with equal keys share one object."""
    from trainer import prepare as prepare_module

    archive_sha256 = sources["archives"][(config.dataset, config.data_path)][1]
    glove_sha256 = "" if config.embedding == "random" else sources["glove"][(config.glove_dim, config.glove_path)]
    return prepare_module.cache_key(config, archive_sha256=archive_sha256, glove_sha256=glove_sha256)


def start_ray(*, address: str | None = None, num_cpus: int | None = None, include_dashboard: bool = False) -> None:
    """Join ``address`` / ``$RAY_ADDRESS``, reuse this process's Ray, or start one on this machine."""
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=False)
        return
    # The dashboard costs memory and start-up time and a local sweep does not need it.
    # address="local": never join a cluster that `ray start` left running on this machine by accident.
    ray.init(address="local", num_cpus=num_cpus or os.cpu_count(), include_dashboard=include_dashboard,
             log_to_driver=False)


@ray.remote(num_returns=2)
def _prepare_task(config_values: dict, data_home, cache_dir, download_if_missing: bool):
    """A Ray task: the prepared arrays (into the object store, owned by the driver) and their stats."""
    from trainer import prepare as prepare_module

    config = config_module.TrainerConfig.from_dict(config_values)
    prepared = prepare_module.prepare(config, data_home=data_home, cache_dir=cache_dir,
                                      download_if_missing=download_if_missing)
    return prepared, dict(prepared.stats)


def prepare_shared_data(spec: spec_module.SweepSpec, sources: dict[str, Any], *, data_home=None, cache_dir=None,
                        download_if_missing: bool = True) -> dict[str, Any]:
    """Prepare every distinct data key once (in parallel as Ray tasks) and wait for all of them.

    Returns
    -------
    dict
        ``data``: cache key -> ObjectRef of ``Prepared``; ``keys``: config digest -> cache key;
        ``stats``: cache key -> stats dict (``cache_hit``, ``prepare_seconds``, ...).
    """
    started = time.perf_counter()
    keys: dict[str, str] = {}
    first_config: dict[str, config_module.TrainerConfig] = {}
    for trial in spec.trials():
        if trial.kind != "keras":
            continue
        config = spec.trial_config(trial)
        key = data_key(config, sources)
        keys[config.digest()] = key
        first_config.setdefault(key, config)
    data_refs, stats_refs = {}, {}
    for key, config in first_config.items():
        # On the driver's node: it resolved the sources, and its object store outlives any worker.
        task = _prepare_task.options(scheduling_strategy=cluster_checks.on_driver_node())
        data_refs[key], stats_refs[key] = task.remote(config.to_dict(), data_home, cache_dir, download_if_missing)
    stats = dict(zip(stats_refs, ray.get(list(stats_refs.values())))) if stats_refs else {}
    hits = sum(1 for value in stats.values() if value.get("cache_hit"))
    print(f"glovesweep: prepared {len(stats)} data set(s) ({hits} from cache) in "
          f"{time.perf_counter() - started:.1f} s", flush=True)
    return {"data": data_refs, "keys": keys, "stats": stats, "seconds": time.perf_counter() - started}


def _trial_context(spec: spec_module.SweepSpec, state: dict[str, Any], shared: dict[str, Any]) -> dict[str, Any]:
    return {
        "spec": spec, "data": shared["data"], "data_keys": shared["keys"],
        "tracking_uri": state["tracking_uri"], "experiment_id": state["experiment_id"],
        "parent_run_id": state["parent_run_id"], "git_commit": state["git_commit"],
        "data_home": state["data_home"], "cache_dir": state["cache_dir"],
        "download_if_missing": state["download_if_missing"],
    }


def make_trainable(spec: spec_module.SweepSpec, context: dict[str, Any]):
    """The trial function with the shared context (object refs, MLflow ids) and per-trial resources."""
    trainable = tune.with_parameters(run_trial, context=context)
    return tune.with_resources(trainable, {"cpu": spec.resources["cpu"], "gpu": spec.resources["gpu"]})


def _tune_config_and_space(spec: spec_module.SweepSpec) -> tuple[tune.TuneConfig, dict[str, Any]]:
    # Reused workers keep TensorFlow imported and initialised: a trial starts in about a second, not ten.
    common = {"max_concurrent_trials": spec.max_concurrent_trials or None,
              "trial_dirname_creator": trial_dirname, "reuse_actors": True}
    mode = spec.search["mode"]
    if mode == "grid":
        space = {"trial": tune.grid_search([trial.as_dict() for trial in spec.trials()])}
        return tune.TuneConfig(num_samples=1, **common), space
    space = {"cell": {name: tune.choice(values) for name, values in spec.factors.items()},
             "seed": tune.choice(spec.seeds)}
    if mode == "random":
        return tune.TuneConfig(num_samples=spec.search["num_samples"], **common), space
    from ray.tune import schedulers

    scheduler = schedulers.ASHAScheduler(time_attr="training_iteration", max_t=spec.max_epochs,
                                         grace_period=spec.search["grace_period"])
    return tune.TuneConfig(num_samples=spec.search["num_samples"], scheduler=scheduler, metric="val_acc",
                           mode="max", **common), space


def trial_dirname(trial) -> str:
    """Short, filesystem-safe trial folder names (Tune's default embeds the whole config)."""
    return f"trial_{trial.trial_id}"


# --------------------------------------------------------------------------------------------- state file
def _join(storage_path: str, name: str) -> str:
    return f"{storage_path.rstrip('/')}/{name}"


def _filesystem(path: str):
    from pyarrow import fs as pyarrow_fs

    if "://" in path:
        return pyarrow_fs.FileSystem.from_uri(path)
    return pyarrow_fs.LocalFileSystem(), path


def write_sweep_state(sweep_dir: str, state: dict[str, Any]) -> None:
    """Write ``glovesweep_sweep.json`` into the sweep folder (local or URI); ``resume`` reads it."""
    filesystem, path = _filesystem(sweep_dir)
    filesystem.create_dir(path, recursive=True)
    with filesystem.open_output_stream(f"{path}/{SWEEP_STATE_FILE}") as stream:
        stream.write(json.dumps(state, indent=1, sort_keys=True).encode())


def read_sweep_state(sweep_dir: str) -> dict[str, Any]:
    """The state ``run`` wrote; ``OSError`` naming the folder when it is not a glovesweep sweep."""
    filesystem, path = _filesystem(sweep_dir)
    try:
        with filesystem.open_input_stream(f"{path.rstrip('/')}/{SWEEP_STATE_FILE}") as stream:
            return json.loads(stream.read().decode())
    except (OSError, FileNotFoundError) as error:
        raise OSError(f"{sweep_dir} holds no {SWEEP_STATE_FILE}: pass the folder 'glovesweep run' printed "
                      f"(<storage_path>/<name>-<timestamp>)") from error


# --------------------------------------------------------------------------------------------- progress
class SweepCallback(tune.Callback):
    """Driver-side: one concise progress line per event, and MLflow status a dead worker could not set.

    Holds only strings, so Tune can pickle it into the experiment state and ``Tuner.restore`` brings it back.
    """

    def __init__(self, tracking_uri: str, experiment_id: str, parent_run_id: str) -> None:
        self.tracking_uri = tracking_uri
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id

    @staticmethod
    def _counts(trials) -> str:
        statuses = [trial.status for trial in trials]
        return (f"{statuses.count('TERMINATED')} done, {statuses.count('RUNNING')} running, "
                f"{statuses.count('ERROR')} failed, {statuses.count('PENDING')} pending")

    @staticmethod
    def _name(trial) -> str:
        values = trial.config.get("trial") or {"kind": "keras", "cell": trial.config.get("cell", {}),
                                                "seed": trial.config.get("seed", 0)}
        label = spec_module.cell_label(values["cell"])
        return f"{values.get('baseline') or ''} {label}".strip() + f" seed={values['seed']}"

    def _print(self, trials, message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {self._counts(trials)} | {message}", flush=True)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if "val_acc" in result:
            epoch = result.get("epoch", result.get("training_iteration"))
            self._print(trials, f"{self._name(trial)}: epoch {epoch} val_acc {result['val_acc']:.3f}")

    def on_trial_complete(self, iteration, trials, trial, **info):
        # A scheduler-stopped trial (ASHA) never reaches its own end; its run is finished here.
        self._mark(trial, "FINISHED")
        self._print(trials, f"{self._name(trial)}: done")

    def on_trial_recover(self, iteration, trials, trial, **info):
        self._print(trials, f"{self._name(trial)}: worker failed; retrying from its last epoch checkpoint")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._mark(trial, "FAILED")
        self._print(trials, f"{self._name(trial)}: FAILED (see {trial.local_path or trial.path})")

    def _mark(self, trial, status: str) -> None:
        try:
            tracking.mark_trial(self.tracking_uri, self.experiment_id, self.parent_run_id, trial.trial_id, status)
        except Exception as error:  # noqa: BLE001 - progress must not stop the sweep
            logger.warning("could not set MLflow status of trial %s: %s", trial.trial_id, error)


# --------------------------------------------------------------------------------------------- the trial
def configure_tensorflow(cpus: float) -> str:
    """Before TensorFlow touches a GPU: memory growth (fractional GPUs pack trials), threads = our CPUs.

    Ray already limits ``CUDA_VISIBLE_DEVICES`` to the trial's GPUs. Returns a device description.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # Without growth TensorFlow maps nearly all GPU memory at start, so a second trial on the card fails.
    os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:
            pass  # A reused worker initialised TensorFlow in an earlier trial, with growth already on.
    threads = max(1, math.ceil(cpus))
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(min(2, threads))
    except RuntimeError:
        pass  # Already initialised by an earlier trial in this worker with the same resources.
    if gpus:
        names = [tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name) for gpu in gpus]
        return f"GPU: {', '.join(names)}"
    return f"CPU: {platform.machine()} {platform.processor() or ''} ({threads} threads)".replace("  ", " ")


def run_trial(param: dict[str, Any], context: dict[str, Any]) -> None:
    """One Ray Tune trial: a network trained to ``max(epochs)`` or one baseline, logged to its child run."""
    spec: spec_module.SweepSpec = context["spec"]
    if "trial" in param:
        trial = spec_module.Trial.from_dict(param["trial"])
    else:
        trial = spec_module.Trial(kind="keras", cell=dict(param["cell"]), seed=int(param["seed"]))
    config = spec.trial_config(trial)
    device = configure_tensorflow(spec.resources["cpu"]) if trial.kind == "keras" else f"CPU: {platform.machine()}"
    trial_id = tune.get_context().get_trial_id()
    run = tracking.TrialRun(context["tracking_uri"], context["experiment_id"], context["parent_run_id"], trial_id)
    params = {**config.to_dict(), "factors": ",".join(spec.factor_names)}
    if trial.kind == "baseline":
        params["baseline"] = trial.baseline
    run_name = f"{trial.baseline + ' ' if trial.baseline else ''}{trial.label} seed={trial.seed}"
    existing = run.find()
    if existing is not None and existing.info.status == "FINISHED":
        # Finished before the driver died, after Tune's last state snapshot: report it, never run it again.
        metrics = existing.data.metrics
        tune.report({key: metrics[key] for key in ("loss", "acc", "val_loss", "val_acc") if key in metrics}
                    | {"epoch": config.epochs if trial.kind == "keras" else 0, "already_finished": True})
        return
    run.start(existing=existing, run_name=run_name, cell=trial.label,
              trainer="baseline" if trial.kind == "baseline" else "keras", params=params,
              tags={"git_commit": context["git_commit"], "versions": tracking.package_versions(), "device": device,
                    "glovesweep.node": platform.node(), "glovesweep.worker_pid": os.getpid()})
    try:
        if trial.kind == "baseline":
            _run_baseline(trial, config, run, context)
        else:
            _run_network(config, run, context, requested_epochs=spec.epochs)
    except SystemExit:
        # Tune ends a stopped trial's thread with SystemExit at its next report (an ASHA early stop, or the
        # sweep interrupted). The driver knows which: SweepCallback finishes the run, or the sweep kills it.
        raise
    except BaseException:
        try:
            run.end("FAILED")
        except Exception as error:  # noqa: BLE001 - the trial's own error matters more
            logger.warning("could not mark run %s FAILED: %s", run.run_id, error)
        raise
    run.end("FINISHED")


def _run_network(config, run: tracking.TrialRun, context: dict[str, Any], *, requested_epochs: list[int]) -> None:
    from trainer import train as train_module

    key = context["data_keys"][config.digest()]
    prepared = ray.get(context["data"][key])
    run.log_metrics(tracking.stats_metrics(prepared.stats))
    run.set_tags({"archive_sha256": prepared.stats.get("archive_sha256", ""),
                  "glove_source": prepared.stats.get("glove_source", ""), "glovesweep.data_key": key})

    def on_epoch(epoch: int, metrics: dict[str, float], state) -> None:
        # MLflow first: a worker killed between the two re-runs this epoch, and its step is skipped then.
        run.log_epoch(epoch, metrics, requested_epochs=requested_epochs)
        with tempfile.TemporaryDirectory(prefix="glovesweep-checkpoint-") as directory:
            state.save(directory)
            tune.report({**metrics, "epoch": epoch}, checkpoint=tune.Checkpoint.from_directory(directory))

    checkpoint = tune.get_checkpoint()
    resume_directory = None
    try:
        if checkpoint is not None:
            resume_directory = tempfile.mkdtemp(prefix="glovesweep-resume-")
            checkpoint.to_directory(resume_directory)
            state_file = pathlib.Path(resume_directory) / train_module.CHECKPOINT_STATE
            resumed_epoch = json.loads(state_file.read_text())["epoch"]
            run.set_tags({"glovesweep.resumed_from_epoch": resumed_epoch})
        history = train_module.train(config, prepared, on_epoch=on_epoch, resume=resume_directory)
    finally:
        if resume_directory:
            shutil.rmtree(resume_directory, ignore_errors=True)
    run.log_metrics(tracking.summary_from_history(history, requested_epochs))


def _run_baseline(trial, config, run: tracking.TrialRun, context: dict[str, Any]) -> None:
    try:
        from trainer import baselines as baselines_module
    except ImportError as error:  # pragma: no cover - the trainer ships it
        raise OSError(f"baseline {trial.baseline!r} needs trainer.baselines: {error}") from error

    result = baselines_module.run_baseline(config, trial.baseline, data_home=context["data_home"],
                                           download_if_missing=context["download_if_missing"])
    numbers = {key: value for key, value in result.items()
               if isinstance(value, (int, float)) and not isinstance(value, bool)}
    run.log_metrics(numbers)
    tune.report({"val_acc": result["val_acc"], "epoch": 0})
