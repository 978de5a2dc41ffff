"""Cluster mode: the shared-storage rule (fast), and a real two-node Ray cluster on this machine (slow).

The slow test starts what `ray up` starts, minus SSH: a head (``ray start --head``, no CPUs for trials, like
the cluster YAMLs) and a "GPU" node (``ray start --num-gpus 1``: a declared GPU, no real one), both with Ray
token authentication; a real MLflow server started by ``cluster/start_mlflow.py`` on 127.0.0.1; a shared
storage folder. ``glovesweep run`` joins the cluster as a separate process. The sweep's trials ask for
``gpu: 0.5``, so they can only run on the GPU node, two at a time; TensorFlow inside them finds no CUDA
device and trains on the CPU. Mid-sweep the GPU node is killed (SIGKILL of its whole process group) and a new
one started: the interrupted trials resume from their last epoch checkpoint in the same MLflow child runs.
"""

from __future__ import annotations

import json
import os
import pathlib
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest
from conftest import build_tiny_corpus, free_port

from sweeps.checks import cluster_checks

ROOT = pathlib.Path(__file__).resolve().parents[1]
BIN = pathlib.Path(sys.executable).parent


# ------------------------------------------------------------------------- the shared-storage rule (fast)
@pytest.fixture
def no_declarations(monkeypatch):
    monkeypatch.delenv(cluster_checks.SHARED_STORAGE_ENV, raising=False)
    monkeypatch.delenv(cluster_checks.CLUSTER_ENV, raising=False)


@pytest.mark.parametrize("uri", ["s3://bucket/glovesweep", "gs://bucket/x", "GS://Bucket/x", "abfs://c@a/x"])
def test_cloud_uris_are_shared_on_any_cluster(uri, no_declarations):
    cluster_checks.check_storage_for_cluster(uri, alive_nodes=5)
    assert cluster_checks.is_shared_storage(uri)[0]


def test_a_local_folder_is_refused_on_more_than_one_node_with_a_message_that_says_how_to_fix_it(
        tmp_path, no_declarations):
    folder = str(tmp_path / "results")
    with pytest.raises(ValueError) as refused:
        cluster_checks.check_storage_for_cluster(folder, alive_nodes=3)
    message = str(refused.value)
    assert repr(folder) in message and "3 alive nodes" in message
    assert "s3://" in message and "GLOVESWEEP_SHARED_STORAGE" in message and "NFS" in message
    # One node: every trial writes to the same disk, so a local folder is fine.
    cluster_checks.check_storage_for_cluster(folder, alive_nodes=1)
    cluster_checks.check_storage_for_cluster(folder, alive_nodes=0)


@pytest.mark.parametrize("path", ["file:///tmp/results", "memory://results", "relative/results"])
def test_file_uris_memory_and_relative_paths_are_not_shared(path, no_declarations):
    with pytest.raises(ValueError, match="is not shared storage"):
        cluster_checks.check_storage_for_cluster(path, alive_nodes=2)


def test_cluster_flag_refuses_a_local_folder_before_the_autoscaler_adds_workers(tmp_path, monkeypatch,
                                                                                 no_declarations):
    with pytest.raises(ValueError, match="GLOVESWEEP_CLUSTER=1"):
        cluster_checks.check_storage_for_cluster(str(tmp_path), alive_nodes=1, cluster=True)
    monkeypatch.setenv(cluster_checks.CLUSTER_ENV, "1")
    with pytest.raises(ValueError, match="autoscaling"):
        cluster_checks.check_storage_for_cluster(str(tmp_path), alive_nodes=1)
    cluster_checks.check_storage_for_cluster("s3://bucket/x", alive_nodes=1)
    monkeypatch.setenv(cluster_checks.CLUSTER_ENV, "maybe")
    with pytest.raises(ValueError, match="use 1 or 0"):
        cluster_checks.check_storage_for_cluster(str(tmp_path), alive_nodes=1)


def test_declared_shared_folders(tmp_path, monkeypatch, no_declarations):
    shared, other = tmp_path / "nfs", tmp_path / "local"
    cluster_checks.check_storage_for_cluster(str(other), alive_nodes=2, shared_storage=True)
    monkeypatch.setenv(cluster_checks.SHARED_STORAGE_ENV, f"/elsewhere{os.pathsep}{shared}")
    cluster_checks.check_storage_for_cluster(str(shared / "ray_results"), alive_nodes=2)
    cluster_checks.check_storage_for_cluster(str(shared), alive_nodes=2)
    with pytest.raises(ValueError, match="not declared shared"):
        cluster_checks.check_storage_for_cluster(str(other), alive_nodes=2)
    # A sibling whose name merely starts like the shared folder is not inside it.
    with pytest.raises(ValueError):
        cluster_checks.check_storage_for_cluster(str(tmp_path / "nfs-old"), alive_nodes=2)
    # The caller's explicit "not shared" wins over the environment.
    with pytest.raises(ValueError):
        cluster_checks.check_storage_for_cluster(str(shared), alive_nodes=2, shared_storage=False)
    monkeypatch.setenv(cluster_checks.SHARED_STORAGE_ENV, "1")
    cluster_checks.check_storage_for_cluster(str(other), alive_nodes=2)
    monkeypatch.setenv(cluster_checks.SHARED_STORAGE_ENV, "relative/folder")
    with pytest.raises(ValueError, match="not an absolute folder"):
        cluster_checks.check_storage_for_cluster(str(other), alive_nodes=2)


def test_network_mounts_count_as_shared(tmp_path, no_declarations):
    mounts = tmp_path / "mounts"
    mounts.write_text("/dev/sda1 / ext4 rw 0 0\n"
                      "server:/export /mnt/nfs nfs4 rw,vers=4.1 0 0\n"
                      "tmpfs /mnt/nfs/scratch tmpfs rw 0 0\n"
                      "//srv/share /mnt/my\\040share cifs rw 0 0\n")
    assert cluster_checks.filesystem_type("/mnt/nfs/ray/results", mounts_file=mounts) == "nfs4"
    assert cluster_checks.is_shared_storage("/mnt/nfs/ray", mounts_file=mounts) == (True, "on a nfs4 mount")
    # The deepest mount decides: a local tmpfs mounted inside the NFS tree is not shared.
    assert cluster_checks.is_shared_storage("/mnt/nfs/scratch/x", mounts_file=mounts)[0] is False
    assert cluster_checks.filesystem_type("/mnt/my share/x", mounts_file=mounts) == "cifs"
    assert cluster_checks.is_shared_storage("/home/me/results", mounts_file=mounts)[0] is False


def test_alive_nodes_must_be_a_count(no_declarations):
    for value in (-1, 2.0, "2", True):
        with pytest.raises(ValueError, match="alive_nodes"):
            cluster_checks.check_storage_for_cluster("s3://b/x", alive_nodes=value)


# ------------------------------------------------------------------------- a real two-node cluster (slow)
SWEEP = """\
# Run: glovesweep run {path} --address {address}
name: multinode
factors:
  strip: [none, blank_line]
  epochs: [2, {epochs}]
fixed:
  dataset: "19997"
  architecture: global_max
  max_sequence_length: 160
  sizing: num_words_plus_one
seeds: 1
resources: {{cpu: 1, gpu: 0.5}}
max_concurrent_trials: 0
max_failures: 3
mlflow: {{tracking_uri: "{tracking_uri}", experiment: {experiment}}}
storage_path: {storage}
"""
# Enough epochs that the GPU node is lost mid-trial even on a fast, idle machine with the fast path (an epoch of the tiny data
# takes a fraction of a second there).
EPOCHS = 150
# The command under test; tests may point it at another entry point with the same arguments.
GLOVESWEEP = [str(BIN / "glovesweep")]


class RayNode:
    """One `ray start --block` process group: SIGKILL of the group is a node failure (raylet and its workers)."""

    def __init__(self, arguments: list[str], *, environment: dict[str, str], log: pathlib.Path):
        self.log = log
        with open(log, "ab") as stream:
            self.process = subprocess.Popen([str(BIN / "ray"), "start", "--block", *arguments], env=environment,
                                            stdout=stream, stderr=subprocess.STDOUT, start_new_session=True)

    def kill(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=30)


def node_arguments() -> list[str]:
    """Ports that default to fixed numbers (two nodes on one machine would collide); workers take any port.

    Ray maps 127.0.0.1 to this machine's address (the one it uses to reach other hosts).
    """
    return ["--dashboard-agent-listen-port", str(free_port()), "--min-worker-port", "0", "--max-worker-port", "0",
            "--node-ip-address", "127.0.0.1", "--disable-usage-stats"]


def ray_python(code: str, environment: dict[str, str], timeout: float = 120) -> str:
    """Run ``code`` as a separate Ray driver (this test process never joins the cluster); return its stdout."""
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=environment, capture_output=True,
                            text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"driver snippet failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result.stdout.strip().splitlines()[-1]


def spawn_python(code: str, environment: dict[str, str]) -> subprocess.Popen:
    """Start ``code`` as a separate Ray driver without waiting for it (stdout and stderr piped)."""
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=environment, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_until(predicate, *, timeout: float, what: str, interval: float = 0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def listening_addresses(port: int) -> set[str]:
    """IPv4 addresses with a socket in LISTEN state on ``port`` (from /proc/net/tcp)."""
    found = set()
    for line in pathlib.Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        address, port_hex = fields[1].split(":")
        if fields[3] == "0A" and int(port_hex, 16) == port:
            found.add(".".join(str(int(address[index:index + 2], 16)) for index in (6, 4, 2, 0)))
    return found


@pytest.fixture
def cluster(tmp_path):
    """Head (1 CPU for the driver's data preparation, no GPU) + a GPU node, token auth on, MLflow server."""
    # Unix socket paths are limited to 107 bytes: Ray's session folder must sit under a short path.
    temp_dir = pathlib.Path(tempfile.mkdtemp(prefix="gs-ray-", dir="/tmp"))
    environment = dict(os.environ, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32),
                       RAY_USAGE_STATS_ENABLED="0")
    for name in ("RAY_ADDRESS", cluster_checks.SHARED_STORAGE_ENV, cluster_checks.CLUSTER_ENV):
        environment.pop(name, None)
    data_home = tmp_path / "data-home"
    data_home.mkdir()
    corpus = build_tiny_corpus(tmp_path / "corpus", "19997", posts_per_group=8)
    shutil.copy(corpus.archive, data_home / corpus.archive.name)
    folders = {name: tmp_path / name for name in ("head-cache", "gpu-cache", "gpu-data", "shared", "mlflow")}
    folders["gpu-data"].mkdir()
    address = f"127.0.0.1:{free_port()}"
    # The GPU node's own data home is empty and its cache separate: a trial (or a preparation task) that
    # prepared or downloaded data there instead of reading the driver's arrays would leave files behind.
    head_environment = dict(environment, GLOVESWEEP_CACHE=str(folders["head-cache"]), GLOVESWEEP_DATA=str(data_home))
    gpu_environment = dict(environment, GLOVESWEEP_CACHE=str(folders["gpu-cache"]),
                           GLOVESWEEP_DATA=str(folders["gpu-data"]))
    nodes: list[RayNode] = []
    mlflow_port = free_port()
    mlflow = subprocess.Popen([sys.executable, str(ROOT / "cluster" / "start_mlflow.py"), "--host", "127.0.0.1",
                               "--port", str(mlflow_port), "--store", str(folders["mlflow"]),
                               # The login is tested in test_mlflow_auth.py; here workers log without one.
                               "--auth", "none"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def start_gpu_node() -> RayNode:
        node = RayNode(["--address", address, "--num-cpus", "2", "--num-gpus", "1", *node_arguments()],
                       environment=gpu_environment, log=tmp_path / "gpu-node.log")
        nodes.append(node)
        return node

    try:
        nodes.append(RayNode(["--head", "--port", address.split(":")[1], "--num-cpus", "1", "--num-gpus", "0",
                              "--temp-dir", str(temp_dir), "--include-dashboard", "false",
                              "--ray-client-server-port", str(free_port()), *node_arguments()],
                             environment=head_environment, log=tmp_path / "head.log"))
        wait_until(lambda: "Ray runtime started" in (tmp_path / "head.log").read_text(), timeout=120,
                   what="the head node")
        gpu_node = start_gpu_node()
        output, errors = mlflow.communicate(timeout=180)
        assert mlflow.returncode == 0, errors
        yield {"address": address, "environment": environment, "tracking_uri": output.strip().splitlines()[-1],
               "mlflow_port": mlflow_port, "data_home": data_home, "folders": folders, "gpu_node": gpu_node,
               "start_gpu_node": start_gpu_node, "tmp_path": tmp_path}
    finally:
        for node in reversed(nodes):
            node.kill()
        if mlflow.poll() is None:
            mlflow.kill()
        subprocess.run([sys.executable, str(ROOT / "cluster" / "start_mlflow.py"), "--stop", "--store",
                        str(folders["mlflow"])], timeout=60)
        shutil.rmtree(temp_dir, ignore_errors=True)


def most_at_once(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = most = 0
    for _, change in events:
        running += change
        most = max(most, running)
    return most


@pytest.mark.slow
def test_gpu_sweep_on_two_nodes_survives_losing_the_gpu_node(cluster):
    from mlflow import tracking as mlflow_tracking

    from sweeps.tracking import mlflow_runs

    environment, tmp_path, shared = cluster["environment"], cluster["tmp_path"], cluster["folders"]["shared"]
    assert listening_addresses(cluster["mlflow_port"]) == {"127.0.0.1"}
    # Three independent checks run side by side (each is a Python process that imports Ray: seconds apiece).
    # 1. Both nodes are up and every one of them reads a marker written in the shared folder (a task pinned
    #    to each node); the head is recorded, to show that no trial ran there.
    probe = spawn_python(f"""
        import json, time, ray
        from sweeps.checks import cluster_checks
        ray.init(address="{cluster['address']}", log_to_driver=False)
        while cluster_checks.alive_node_count() < 2:
            time.sleep(0.25)
        print(json.dumps({{"probed": cluster_checks.verify_storage_on_nodes("{shared}"),
                           "head": ray.get_runtime_context().get_node_id()}}))
    """, environment)
    # 2. Token authentication is on: a driver holding another token is turned away.
    wrong_token = spawn_python(f"import ray; ray.init(address='{cluster['address']}')",
                               dict(environment, RAY_AUTH_TOKEN="0" * 64))
    # 3. A multi-node sweep with a local, undeclared storage folder is refused before any trial starts.
    local = tmp_path / "local.yaml"
    local.write_text(SWEEP.format(path=local, address=cluster["address"], epochs=EPOCHS, experiment="refused",
                                  tracking_uri=cluster["tracking_uri"], storage=tmp_path / "local-results"))
    probe_output, probe_errors = probe.communicate(timeout=180)
    assert probe.returncode == 0, probe_errors[-3000:]
    probe = json.loads(probe_output.strip().splitlines()[-1])
    assert probe["probed"] == 2
    # Started once both nodes are known to be up: with one node a local folder is fine (and then the GPU request
    # would be refused instead, for want of the GPU node).
    refused = subprocess.Popen([*GLOVESWEEP, "run", str(local), "--address", cluster["address"], "--data-dir",
                                str(cluster["data_home"]), "--no-download"], env=environment, cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, wrong_errors = wrong_token.communicate(timeout=180)
    assert wrong_token.returncode != 0 and "auth" in wrong_errors.lower()
    refused_output, refused_errors = refused.communicate(timeout=300)
    assert refused.returncode == 2, refused_output + refused_errors
    assert "is not shared storage" in refused_errors and "2 alive nodes" in refused_errors
    assert not (tmp_path / "local-results").exists()

    # The real sweep: storage on the folder declared shared.
    path = tmp_path / "multinode.yaml"
    path.write_text(SWEEP.format(path=path, address=cluster["address"], epochs=EPOCHS, experiment="multinode",
                                 tracking_uri=cluster["tracking_uri"], storage=shared))
    started = time.monotonic()
    with open(tmp_path / "driver.log", "wb") as log:
        driver = subprocess.Popen([*GLOVESWEEP, "run", str(path), "--address", cluster["address"],
                                   "--data-dir", str(cluster["data_home"]), "--no-download"],
                                  env=dict(environment, GLOVESWEEP_SHARED_STORAGE=str(shared)), stdout=log,
                                  stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        # Kill the GPU node as soon as a trial has checkpointed an epoch, while trials still run, and start a
        # replacement at once (as the autoscaler would).
        wait_until(lambda: list(shared.glob("multinode-*/trial_*/checkpoint_000000")) or driver.poll() is not None,
                   timeout=240, what="a trial's first epoch checkpoint", interval=0.05)
        assert driver.poll() is None, (tmp_path / "driver.log").read_text()[-3000:]
        cluster["gpu_node"].kill()
        cluster["start_gpu_node"]()
        returncode = driver.wait(timeout=300)
    finally:
        if driver.poll() is None:
            driver.kill()
    output = (tmp_path / "driver.log").read_text()
    assert returncode == 0, output[-4000:]
    assert "2/2 trials done, 0 failed" in output and "; retrying (from its last epoch checkpoint" in output
    sweep_seconds = time.monotonic() - started

    # Every child run arrived, once per trial, complete, and the interrupted ones continued the same run.
    client = mlflow_tracking.MlflowClient(tracking_uri=cluster["tracking_uri"])
    experiment = client.get_experiment_by_name("multinode")
    runs = client.search_runs([experiment.experiment_id])
    children = [run for run in runs if run.data.tags.get(mlflow_runs.ROLE_TAG) == "trial"]
    assert len(children) == 2 and len(runs) == 3
    assert len({run.data.tags[mlflow_runs.TRIAL_ID_TAG] for run in children}) == 2
    assert {run.info.status for run in runs} == {"FINISHED"}
    for run in children:
        steps = [metric.step for metric in client.get_metric_history(run.info.run_id, "val_acc")]
        assert sorted(steps) == list(range(1, EPOCHS + 1)), steps
        assert {"val_acc_at_2", f"val_acc_at_{EPOCHS}"} <= set(run.data.metrics)
        assert run.data.tags["device"].startswith("CPU")  # TensorFlow found no CUDA device and used the CPU
    resumed = [int(run.data.tags["glovesweep.resumed_from_epoch"]) for run in children
               if "glovesweep.resumed_from_epoch" in run.data.tags]
    assert resumed and all(1 <= epoch < EPOCHS for epoch in resumed)

    # Trials ran only on GPU nodes (the lost one and its replacement), at most two at a time and two at once.
    actors = json.loads(ray_python(f"""
        import json, ray
        from ray._private import state
        ray.init(address="{cluster['address']}", log_to_driver=False)
        print(json.dumps([{{"class": actor["ActorClassName"], "node": actor["Address"]["NodeID"],
                            "start": actor["StartTime"], "end": actor["EndTime"]}}
                          for actor in state.actors().values()]))
    """, environment))
    trials = [actor for actor in actors if "run_trial" in actor["class"] or "ImplicitFunc" in actor["class"]]
    assert len(trials) >= 3, actors  # two trials, at least one of them twice
    assert all(actor["node"] != probe["head"] for actor in trials)
    assert len({actor["node"] for actor in trials}) == 2
    assert most_at_once([(actor["start"], actor["end"] or float("inf")) for actor in trials]) == 2

    # Data reached the GPU nodes through the object store only: nothing prepared or downloaded there.
    for name in ("gpu-cache", "gpu-data"):
        folder = cluster["folders"][name]
        assert not folder.exists() or not any(folder.iterdir()), (name, sorted(folder.rglob("*")))
    print(f"sweep with node loss: {sweep_seconds:.0f} s")
