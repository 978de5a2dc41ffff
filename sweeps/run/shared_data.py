"""Before any trial: find every data source, start Ray, and prepare each distinct data set once.

``resolve_sources`` finds every archive and GloVe file a sweep needs (missing: ``OSError`` before anything
starts), while Ray starts (``start_ray_beside``). ``prepare_shared_data`` runs ``trainer.prepare.prepare`` once per distinct data key (the trainer's
content-hash cache key) in Ray tasks on the driver's node, each preparing several data sets of one archive
from one read of it, so the arrays land in the object store once and trials on every node read them from there.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import threading
import time
from typing import Any, Callable, Iterator, TypeVar

import ray

from sweeps.checks import cluster_checks
from sweeps.checks import resources_check
from sweeps.run import merging
from sweeps import spec as spec_module
from trainer import config as config_module

T = TypeVar("T")

LOOPBACK_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
# A preparation task returns its data sets together: this bounds its memory (a full 19997 set is ~110 MB).
MOST_DATA_SETS_PER_TASK = 4


@dataclasses.dataclass(frozen=True)
class Sources:
    """Every source of a sweep, resolved: ``archives`` (dataset, data_path) -> (path, SHA-256), ``glove``
    (dim, glove_path) -> SHA-256."""

    archives: dict[tuple[str, str], tuple[str, str]]
    glove: dict[tuple[int, str], str]

    def checksums(self) -> dict[str, str]:
        """Dataset (or explicit path) -> SHA-256 of its archive, for the parent run's provenance tag."""
        return {dataset + (f"@{path}" if path else ""): digest for (dataset, path), (_, digest) in self.archives.items()}

    def data_key(self, config: config_module.TrainerConfig) -> str:
        """The trainer's cache key of a config's prepared arrays: trials with equal keys share one object."""
        from trainer import prepare as prepare_module

        archive_sha256 = self.archives[(config.dataset, config.data_path)][1]
        glove_sha256 = "" if config.embedding == "random" else self.glove[(config.glove_dim, config.glove_path)]
        return prepare_module.cache_key(config, archive_sha256=archive_sha256, glove_sha256=glove_sha256)


@dataclasses.dataclass(frozen=True)
class SharedData:
    """The prepared data sets of a sweep in Ray's object store.

    Attributes
    ----------
    data : dict of str to ObjectRef
        Data key -> ``trainer.prepare.Prepared``.
    keys : dict of str to str
        ``TrainerConfig.digest()`` -> data key.
    stats : dict of str to dict
        Data key -> ``Prepared.stats`` (``cache_hit``, ``prepare_seconds``...).
    seconds : float
        Wall time of the preparation.
    """

    data: dict[str, Any]
    keys: dict[str, str]
    stats: dict[str, dict[str, Any]]
    seconds: float

    @property
    def digests(self) -> dict[str, str]:
        """``TrainerConfig.digest()`` -> content digest of the data the network can read (``sweeps.run.merging``)."""
        return {config: self.stats[key]["content_digest"] for config, key in self.keys.items() if key in self.stats}


def resolve_sources(spec: spec_module.SweepSpec, *, data_home=None, cache_dir=None,
                    download_if_missing: bool = True, trials: list[spec_module.Trial] | None = None,
                    known: Sources | None = None) -> Sources:
    """Find every dataset and GloVe source the sweep needs (of ``trials``: default ``spec.data_trials()``), before
    any compute; sources in ``known`` (found before) are kept, not read again.

    Raises
    ------
    OSError
        A source is missing (and downloads are off or fail); the trainer's message names the file.
    """
    from trainer import data as data_module
    from trainer import embeddings as embeddings_module

    archives = dict(known.archives) if known else {}
    glove = dict(known.glove) if known else {}
    reading = [(trainer, spec.trial_config(trial)) for trial in (spec.data_trials() if trials is None else trials)
               for trainer in [spec.trainer_of(trial)] if trainer.reads_archives]
    # An archive that a preparation task reads anyway is checked there, by the same reader, and its error comes
    # back as one line before any trial starts (``get_or_raise_cause``): a read here too would read it twice.
    prepared = {(config.dataset, config.data_path) for trainer, config in reading if trainer.prepares_data}
    for trainer, config in reading:
        key = (config.dataset, config.data_path)
        if key not in archives:
            source = data_module.resolve_dataset(config.dataset, data_path=config.data_path, data_home=data_home,
                                                 download_if_missing=download_if_missing)
            # Read here when no preparation task reads it (a baseline's archive), so a truncated archive, missing
            # groups or binary posts stop the sweep before any trial; the published archive (its SHA-256 matches)
            # is known to hold none of those, so it is not read.
            if key not in prepared and not data_module.is_published(source, config.dataset):
                data_module.load_documents(source, config.dataset)
            archives[key] = (str(source), data_module.source_sha256(source))
        glove_key = (config.glove_dim, config.glove_path)
        if trainer.prepares_data and config.embedding != "random" and glove_key not in glove:
            loaded = embeddings_module.load_glove(config.glove_dim, glove_path=config.glove_path, data_home=data_home,
                                                  cache_dir=cache_dir, download_if_missing=download_if_missing)
            glove[glove_key] = loaded.sha256
    return Sources(archives=archives, glove=glove)


def start_ray(*, address: str | None = None, num_cpus: int | None = None, include_dashboard: bool = False) -> None:
    """Join ``address`` / ``$RAY_ADDRESS``, reuse this process's Ray, or start one on this machine.

    A Ray started here listens on 127.0.0.1 only: a local sweep serves nobody else.
    """
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        # The dashboard costs memory and start-up time and a local sweep does not need it.
        # address="local": never join a cluster that `ray start` left running on this machine by accident.
        with listening_on_loopback():
            ray.init(address="local", num_cpus=num_cpus or os.cpu_count(), include_dashboard=include_dashboard,
                     log_to_driver=False)
    stop_on_sigterm_as_on_ctrl_c()


def start_ray_beside(checks: Callable[[], T], **ray_options: Any) -> T:
    """``start_ray(**ray_options)`` while ``checks()`` runs in a thread; return what ``checks`` returned.

    Starting Ray is mostly waiting for its own processes (GCS, raylet, the first workers: about 3 s on 2 cores),
    which leaves the driver's core to the checks (MLflow's store, the archives' checksums). An error of ``checks``
    is raised here, after Ray started: the caller's ``ray_stopped_after`` shuts that Ray down, and no experiment,
    run or trial exists yet (hold Ray's start-up lines with ``ray_logs_held`` so the error reads as one line). The
    thread is a daemon, so Ctrl-C is not held up by a download in it (downloads write a ``.part`` file and rename
    it only when complete).
    """
    outcome: dict[str, Any] = {}

    def run_checks() -> None:
        try:
            outcome["value"] = checks()
        except BaseException as error:  # noqa: BLE001 - re-raised in the caller's thread below.
            outcome["error"] = error

    thread = threading.Thread(target=run_checks, name="glovesweep-checks", daemon=True)
    thread.start()
    start_ray(**ray_options)
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


@contextlib.contextmanager
def ray_logs_held() -> Iterator[None]:
    """Hold what Ray's loggers print in the block and print it after, unless the block raised a user error
    (``ValueError``, ``OSError``: a bad input reads as its one line). Ray's loggers print through the handlers of
    the ``ray`` logger, which does not propagate."""

    class Hold(logging.Filter):
        def __init__(self) -> None:
            super().__init__()
            self.records: list[logging.LogRecord] = []

        def filter(self, record: logging.LogRecord) -> bool:
            self.records.append(record)
            return False

    holds = {handler: Hold() for handler in logging.getLogger("ray").handlers}
    for handler, hold in holds.items():
        handler.addFilter(hold)
    user_error = False
    try:
        yield
    except (ValueError, OSError):
        user_error = True
        raise
    finally:
        for handler, hold in holds.items():
            handler.removeFilter(hold)
            for record in [] if user_error else hold.records:
                handler.handle(record)


def start_and_prepare(spec: spec_module.SweepSpec, checks: Callable[[], Sources], *, ray_options: dict[str, Any],
                      check_resources: bool = True, data_home=None, cache_dir=None,
                      download_if_missing: bool = True) -> tuple[Sources, SharedData]:
    """Everything a sweep (or its resume) does before its trials: Ray started beside ``checks`` (which returns the
    sources, ``start_ray_beside``), the cluster's storage and the trial's resources checked, every data set
    prepared. Ray's start-up lines are held until all of it passed, so a refused sweep prints its one line."""
    with ray_logs_held():
        sources = start_ray_beside(checks, **ray_options)
        # On several nodes, Tune's storage must be shared: refuse a local folder before any trial starts.
        cluster_checks.check_cluster_storage(spec.storage_path)
        if check_resources:
            resources_check.check_trial_resources(spec)
        # The preparation tasks check the archives they read (``resolve_sources`` does not read them again).
        shared = prepare_shared_data(spec, sources, data_home=data_home, cache_dir=cache_dir,
                                     download_if_missing=download_if_missing)
    return sources, shared


def stop_on_sigterm_as_on_ctrl_c() -> None:
    """After ``ray.init``: SIGTERM stops this driver as Ctrl-C does, instead of through Ray's C++ handler.

    ``ray.init`` leaves absl's failure signal handler on SIGTERM in the driver (Ray's src/ray/util/logging.cc,
    ``InstallFailureSignalHandler``): a ``kill`` printed a stack dump ("*** SIGTERM received at ...", "PC: @ ...")
    and the process died mid-way. Python's handler replaces it: Tune's graceful stop (its SIGINT handler) while
    the Tuner runs, ``KeyboardInterrupt`` before, so the MLflow runs end KILLED either way.
    """
    if threading.current_thread() is not threading.main_thread():
        return  # Only the main thread may set handlers; a driver run in a thread keeps Ray's.

    def interrupt(signum, frame):
        handler = signal.getsignal(signal.SIGINT)
        if callable(handler) and handler is not interrupt:
            handler(signal.SIGINT, frame)
        else:
            raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


@contextlib.contextmanager
def listening_on_loopback():
    """While a local Ray starts in the block, make 127.0.0.1 its node address, so every server of it binds there.

    Ray's gcs_server, raylets and workers bind 127.0.0.1 instead of every interface when their node address
    is 127.0.0.1 (src/ray/rpc/grpc_server.cc, ``listen_to_localhost_only``), but ``ray.init`` turns a
    loopback ``_node_ip_address`` into the machine's routable one. Its own switch for laptops,
    ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (no multi-node clusters: loopback), keeps it: read when Ray is
    imported, so the driver's copy is set too, and inherited by the processes ``ray.init`` starts. Both are
    restored afterwards: a later ``ray start`` from this process must still be able to join a cluster.
    """
    from ray._private import ray_constants

    saved = os.environ.get(LOOPBACK_SWITCH), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[LOOPBACK_SWITCH] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        if saved[0] is None:
            os.environ.pop(LOOPBACK_SWITCH, None)
        else:
            os.environ[LOOPBACK_SWITCH] = saved[0]
        ray_constants.ENABLE_RAY_CLUSTER = saved[1]


@contextlib.contextmanager
def ray_stopped_after():
    """On every way out of the block, shut down a Ray that the block started (or joined) in this process, and put
    back the SIGTERM handler that was there before it."""
    already = ray.is_initialized()
    main_thread = threading.current_thread() is threading.main_thread()
    sigterm_handler = signal.getsignal(signal.SIGTERM) if main_thread else None
    try:
        yield
    finally:
        if not already and ray.is_initialized():
            ray.shutdown()
        if main_thread and sigterm_handler is not None:
            signal.signal(signal.SIGTERM, sigterm_handler)  # ray.init's and ours were for this Ray only.


@ray.remote
def _prepare_task(configs: list[dict], data_home, cache_dir, download_if_missing: bool) -> tuple:
    """A Ray task: data sets of one archive, read once; returns the prepared arrays of each config (into the
    object store, owned by the driver) and then their stats, in the order of ``configs``."""
    from trainer import data as data_module
    from trainer import prepare as prepare_module

    reader = data_module.ArchiveReader()
    prepared = [prepare_module.prepare(config_module.TrainerConfig.from_dict(values), data_home=data_home,
                                       cache_dir=cache_dir, download_if_missing=download_if_missing, reader=reader)
                for values in configs]
    return (*prepared, *(dict(item.stats, content_digest=merging.content_digest(item)) for item in prepared))


def prepare_shared_data(spec: spec_module.SweepSpec, sources: Sources, *, data_home=None, cache_dir=None,
                        download_if_missing: bool = True, trials: list[spec_module.Trial] | None = None) -> SharedData:
    """Prepare every distinct data key of ``trials`` (default ``spec.data_trials()``) once and wait for all of them:
    Ray tasks on the driver's node, each preparing several data sets of one archive from one read of it
    (``task_groups``), in parallel."""
    started = time.perf_counter()
    keys: dict[str, str] = {}
    by_archive: dict[tuple[str, str], dict[str, config_module.TrainerConfig]] = {}
    for trial in spec.data_trials() if trials is None else trials:
        if not spec.trainer_of(trial).prepares_data:
            continue
        config = spec.trial_config(trial)
        key = sources.data_key(config)
        keys[config.digest()] = key
        by_archive.setdefault((config.dataset, config.data_path), {}).setdefault(key, config)
    data_refs, stats_refs = {}, {}
    for group in task_groups(by_archive, cluster_checks.driver_node_cpus()):
        # On the driver's node: it resolved the sources, and its object store outlives any worker.
        task = _prepare_task.options(scheduling_strategy=cluster_checks.on_driver_node(),
                                     num_returns=2 * len(group))
        refs = task.remote([config.to_dict() for config in group.values()], data_home, cache_dir,
                           download_if_missing)
        for index, key in enumerate(group):
            data_refs[key], stats_refs[key] = refs[index], refs[len(group) + index]
    stats = dict(zip(stats_refs, get_or_raise_cause(list(stats_refs.values())))) if stats_refs else {}
    hits = sum(1 for value in stats.values() if value.get("cache_hit"))
    print(f"glovesweep: prepared {len(stats)} data set(s) ({hits} from cache) in "
          f"{time.perf_counter() - started:.1f} s", flush=True)
    return SharedData(data=data_refs, keys=keys, stats=stats, seconds=time.perf_counter() - started)


def task_groups(by_archive: dict[tuple[str, str], dict[str, config_module.TrainerConfig]], cpus: int, *,
                most: int = MOST_DATA_SETS_PER_TASK) -> list[dict[str, config_module.TrainerConfig]]:
    """Split each archive's data sets (data key -> config) into preparation tasks.

    One task per archive reads it once; an archive with more data sets than that is split so that the
    tasks keep ``cpus`` busy (one read per task is cheap next to a preparation), and no task holds more than
    ``most`` prepared data sets at once (they are returned together).
    """
    groups = []
    spare = max(1, cpus // max(1, len(by_archive)))
    for configs in by_archive.values():
        keys = list(configs)
        count = max(-(-len(keys) // most), min(len(keys), spare))
        groups += [{key: configs[key] for key in keys[start::count]} for start in range(count)]
    return groups


def get_or_raise_cause(refs: list) -> list:
    """``ray.get``, but a ``ValueError`` / ``OSError`` raised in the task comes back as itself, in one line.

    Ray wraps a task's exception in ``RayTaskError``, whose text is the remote traceback with colour codes;
    a user error (bad data, missing file) must read the same as when it is raised on the driver.
    """
    try:
        return ray.get(refs)
    except ray.exceptions.RayTaskError as error:
        cause = error.cause
        if isinstance(cause, (ValueError, OSError)):
            raise (OSError if isinstance(cause, OSError) else ValueError)(str(cause)) from None
        raise
