"""Checks a sweep must pass before it runs on a Ray cluster of more than one node.

Ray Tune (>= 2.7) no longer copies trial folders to the head node: every trial writes its checkpoints
straight to ``storage_path`` from whichever node runs it (Ray docs, "Configuring Persistent Storage"). On a
multi-node cluster a local ``storage_path`` therefore scatters checkpoints over the nodes' own disks; a trial
retried on another node, or ``glovesweep resume`` after a lost driver, would not find them. So a multi-node
sweep needs shared storage, and the driver refuses anything else before any trial starts.

The rule (``is_shared_storage``):

- a cloud URI (``s3://``, ``gs://``, ...; see ``SHARED_URI_SCHEMES``) is shared;
- a local folder is shared when it lies on a network filesystem (NFS, CIFS, Lustre, ...: read from
  ``/proc/mounts``), or when the user declares it shared: ``shared_storage=True`` from the caller, or the
  environment variable ``GLOVESWEEP_SHARED_STORAGE`` set to ``1`` (every local folder) or to a
  colon-separated list of folders (only paths inside them), e.g. ``GLOVESWEEP_SHARED_STORAGE=/mnt/glovesweep``;
- anything else is local to one node.

A cluster counts as multi-node when more than one Ray node is alive, or when ``GLOVESWEEP_CLUSTER=1`` says
so: the ``cluster/*.yaml`` files set it on the head, because an autoscaling cluster starts a sweep with the
head alone and adds GPU workers only once trials ask for them.

``verify_storage_on_nodes`` goes one step further for local folders: it writes a marker file and has a
zero-CPU Ray task on every alive node read it back, so a folder declared shared but not mounted on some node
is caught before it loses checkpoints. ``check_cluster_storage`` does both, for the driver to call once after
``ray.init``.

Data on the cluster: the driver resolves datasets and GloVe on its own node, and its preparation tasks run
there too (``on_driver_node``), so the prepared arrays enter the object store from the driver's node and
workers fetch them from there; no worker reads or downloads data itself.
"""

from __future__ import annotations

import os
import pathlib
import secrets
from collections.abc import Iterable

# URI schemes whose storage every node reaches by itself (pyarrow filesystems Ray Tune accepts).
SHARED_URI_SCHEMES = ("s3", "gs", "gcs", "abfs", "abfss", "hdfs", "viewfs")
# Filesystem types (third column of /proc/mounts) that every node can mount at the same path.
NETWORK_FILESYSTEMS = (
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "lustre", "gpfs", "ceph", "glusterfs", "fuse.glusterfs",
    "beegfs", "fuse.gcsfuse", "fuse.s3fs", "fuse.mountpoint-s3", "fuse.sshfs", "fuse.juicefs",
)
SHARED_STORAGE_ENV = "GLOVESWEEP_SHARED_STORAGE"
CLUSTER_ENV = "GLOVESWEEP_CLUSTER"
_TRUE_WORDS = ("1", "true", "yes", "on")
_FALSE_WORDS = ("", "0", "false", "no", "off")


def is_shared_storage(storage_path: str, *, shared_storage: bool | None = None,
                      mounts_file: str | os.PathLike = "/proc/mounts") -> tuple[bool, str]:
    """Whether every node of a cluster sees ``storage_path`` at the same place, and why.

    Parameters
    ----------
    storage_path : str
        Ray Tune ``storage_path``: a URI (``s3://bucket/prefix``) or a local folder (absolute, or
        ``file://``).
    shared_storage : bool or None
        The caller's declaration for a local folder; ``None`` reads ``GLOVESWEEP_SHARED_STORAGE``.
    mounts_file : path-like
        The mount table to look the folder's filesystem type up in.

    Returns
    -------
    (bool, str)
        The verdict and a short reason for messages, e.g. ``(True, "s3:// URI")``.

    Raises
    ------
    ValueError
        When ``GLOVESWEEP_SHARED_STORAGE`` holds a relative folder.
    """
    scheme, separator, rest = storage_path.partition("://")
    if separator and scheme.lower() != "file":
        if scheme.lower() in SHARED_URI_SCHEMES:
            return True, f"{scheme}:// URI"
        return False, f"{scheme}:// is not a storage every node reaches (shared: {', '.join(SHARED_URI_SCHEMES)})"
    folder = pathlib.Path(rest if separator else storage_path).expanduser()
    if not folder.is_absolute():
        return False, "relative folder (resolves differently on every node)"
    folder = pathlib.Path(os.path.abspath(folder))
    filesystem = filesystem_type(folder, mounts_file=mounts_file)
    if filesystem in NETWORK_FILESYSTEMS:
        return True, f"on a {filesystem} mount"
    if shared_storage is True:
        return True, "declared shared by the sweep"
    if shared_storage is None:
        declared = _declared_shared_folders()
        if declared is True:
            return True, f"declared shared by {SHARED_STORAGE_ENV}=1"
        for shared_folder in declared or ():
            if folder == shared_folder or shared_folder in folder.parents:
                return True, f"inside {shared_folder}, declared shared by {SHARED_STORAGE_ENV}"
    return False, f"local folder on a {filesystem or 'local'} filesystem, not declared shared"


def filesystem_type(folder: str | os.PathLike, *, mounts_file: str | os.PathLike = "/proc/mounts") -> str:
    """Filesystem type of the mount holding ``folder`` (longest matching mount point), or "" if unknown.

    ``folder`` need not exist yet: the deepest mount point above it decides.
    """
    folder = pathlib.Path(os.path.abspath(folder))
    try:
        lines = pathlib.Path(mounts_file).read_text().splitlines()
    except OSError:
        return ""
    best_point, best_type = None, ""
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        # /proc/mounts escapes spaces in mount points as \040.
        point = pathlib.Path(fields[1].replace("\\040", " "))
        if (folder == point or point in folder.parents) and (best_point is None or len(point.parts) > len(
                best_point.parts)):
            best_point, best_type = point, fields[2]
    return best_type


def check_storage_for_cluster(storage_path: str, *, alive_nodes: int, shared_storage: bool | None = None,
                              cluster: bool | None = None) -> None:
    """Refuse a multi-node sweep whose Tune ``storage_path`` is not on shared storage.

    Call it after ``ray.init`` and before any trial starts (``alive_node_count()`` gives ``alive_nodes``).

    Parameters
    ----------
    storage_path : str
        The sweep's Ray Tune ``storage_path`` (absolute folder or URI).
    alive_nodes : int
        Number of Ray nodes alive now (head included).
    shared_storage : bool or None
        Declaration for a local folder (see ``is_shared_storage``); ``None`` reads
        ``GLOVESWEEP_SHARED_STORAGE``.
    cluster : bool or None
        Treat the run as multi-node even with one node alive (an autoscaling cluster that has not added
        workers yet); ``None`` reads ``GLOVESWEEP_CLUSTER``.

    Raises
    ------
    ValueError
        When the run is multi-node and ``storage_path`` is not shared; the message names the path, the
        node count and the ways to fix it.
    """
    if isinstance(alive_nodes, bool) or not isinstance(alive_nodes, int) or alive_nodes < 0:
        raise ValueError(f"alive_nodes={alive_nodes!r}: must be the number of alive Ray nodes (an integer >= 0)")
    if cluster is None:
        cluster = _env_flag(CLUSTER_ENV)
    if alive_nodes <= 1 and not cluster:
        return
    shared, reason = is_shared_storage(storage_path, shared_storage=shared_storage)
    if shared:
        return
    where = (f"this Ray cluster has {alive_nodes} alive nodes" if alive_nodes > 1
             else f"{CLUSTER_ENV}=1 says this driver runs on a multi-node (autoscaling) cluster")
    raise ValueError(
        f"storage_path={storage_path!r} is not shared storage ({reason}), but {where}: trials on other nodes "
        f"would write their checkpoints to their own disks, and a retried or resumed trial could not find them. "
        f"Use shared storage: an s3:// or gs:// URI (e.g. storage_path: s3://my-bucket/glovesweep), or a "
        f"folder on NFS mounted at the same path on every node (declare a folder that is not detected as a "
        f"network mount with {SHARED_STORAGE_ENV}=/path/to/folder, colon-separated, or "
        f"{SHARED_STORAGE_ENV}=1)."
    )


def check_cluster_storage(storage_path: str, *, shared_storage: bool | None = None) -> int:
    """The driver's one call after ``ray.init``: refuse unshared storage, then prove a shared folder is shared.

    ``check_storage_for_cluster`` with the live node count; on more than one node, a local folder that
    passed (declared shared or a network mount) is then probed on every node (``verify_storage_on_nodes``).

    Returns
    -------
    int
        Number of alive nodes.

    Raises
    ------
    ValueError
        As ``check_storage_for_cluster`` and ``verify_storage_on_nodes``.
    """
    nodes = alive_node_count()
    check_storage_for_cluster(storage_path, alive_nodes=nodes, shared_storage=shared_storage)
    scheme, separator, _ = storage_path.partition("://")
    if nodes > 1 and (not separator or scheme.lower() == "file"):
        verify_storage_on_nodes(storage_path)
    return nodes


def on_driver_node():
    """A Ray scheduling strategy that runs a task on the driver's own node (hard affinity).

    The sweep driver resolves datasets and GloVe on its node; its data-preparation tasks must run there
    too, so that no worker reads (or downloads) data itself, and the prepared arrays live in the driver
    node's object store, which outlives any worker (a lost spot instance does not lose them).
    """
    import ray
    from ray.util import scheduling_strategies

    return scheduling_strategies.NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)


def driver_node_cpus() -> int:
    """CPUs of the Ray node this driver runs on, where ``on_driver_node`` tasks run (1 when Ray does not say)."""
    import ray

    node_id = ray.get_runtime_context().get_node_id()
    for node in ray.nodes():
        if node.get("NodeID") == node_id:
            return max(1, int(node.get("Resources", {}).get("CPU", 1)))
    return 1


def alive_node_count() -> int:
    """Number of alive nodes in the Ray cluster this process is connected to (``ray.init`` first)."""
    import ray

    return sum(1 for node in ray.nodes() if node.get("Alive"))


def verify_storage_on_nodes(storage_path: str, *, timeout_seconds: float = 60.0) -> int:
    """Prove that every alive node sees a local ``storage_path``: write a marker, read it on each node.

    URIs are not probed (each node reaches the bucket itself; credentials are the cluster's business).
    Each probe is a zero-CPU task pinned to one node, so it runs even on a node busy with trials.

    Parameters
    ----------
    storage_path : str
        Absolute local folder (or ``file://`` URI); created if missing.
    timeout_seconds : float
        How long to wait for all probes, in seconds.

    Returns
    -------
    int
        Number of nodes probed (0 for a URI).

    Raises
    ------
    ValueError
        When some node cannot read the marker; the message lists those nodes.
    """
    import ray
    from ray.util import scheduling_strategies

    scheme, separator, rest = storage_path.partition("://")
    if separator and scheme.lower() != "file":
        return 0
    folder = pathlib.Path(rest if separator else storage_path).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(16)
    marker = folder / f".glovesweep-shared-check-{token}"
    marker.write_text(token)

    @ray.remote(num_cpus=0, max_retries=0)
    def read_marker(path: str) -> str:
        try:
            return pathlib.Path(path).read_text()
        except OSError as error:
            return f"error: {error}"

    try:
        nodes = [node for node in ray.nodes() if node.get("Alive")]
        probes = {
            node["NodeManagerAddress"] + " " + node["NodeID"][:12]: read_marker.options(
                scheduling_strategy=scheduling_strategies.NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
            ).remote(str(marker))
            for node in nodes
        }
        results = dict(zip(probes, ray.get(list(probes.values()), timeout=timeout_seconds)))
    finally:
        marker.unlink(missing_ok=True)
    blind = sorted(name for name, content in results.items() if content != token)
    if blind:
        raise ValueError(
            f"storage_path={storage_path!r} is declared shared, but node(s) {', '.join(blind)} cannot read a file "
            f"written there by the driver; mount the same shared folder at {folder} on every node, or use an "
            f"s3:// or gs:// URI."
        )
    return len(results)


def _declared_shared_folders() -> bool | list[pathlib.Path]:
    """``GLOVESWEEP_SHARED_STORAGE``: True (``1``), [] (unset / ``0``), or the absolute folders it lists."""
    value = os.environ.get(SHARED_STORAGE_ENV, "").strip()
    if value.lower() in _TRUE_WORDS:
        return True
    if value.lower() in _FALSE_WORDS:
        return []
    folders = []
    for item in _split_paths(value):
        folder = pathlib.Path(item).expanduser()
        if not folder.is_absolute():
            raise ValueError(f"{SHARED_STORAGE_ENV}={value!r}: {item!r} is not an absolute folder; give absolute "
                             f"folders separated by '{os.pathsep}', or 1 to declare every local folder shared")
        folders.append(pathlib.Path(os.path.abspath(folder)))
    return folders


def _split_paths(value: str) -> Iterable[str]:
    return [item for item in value.split(os.pathsep) if item.strip()]


def _env_flag(name: str) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if value in _TRUE_WORDS:
        return True
    if value in _FALSE_WORDS:
        return False
    raise ValueError(f"{name}={os.environ[name]!r}: use 1 or 0")
