"""Shared fixtures. This file is shared by several areas: add fixtures by appending, never rewrite it."""

from __future__ import annotations

import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _isolated_homes(tmp_path_factory, monkeypatch):
    """Keep every test's caches and data home out of the user's home folder."""
    monkeypatch.setenv("GLOVESWEEP_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.setenv("GLOVESWEEP_DATA", str(tmp_path_factory.getbasetemp() / "no-data-home"))


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    """The real archives beside the checkout (present on developer machines and in CI)."""
    if not (SHARED_DATA / "20news-19997.tar.gz").exists():
        pytest.skip(f"real archives not found in {SHARED_DATA}")
    return SHARED_DATA


# ----------------------------------------------------------- tiny 20 Newsgroups corpora (trainer/data.py)
# Each corpus exists twice: as an extracted folder and as a .tar.gz packed like the public archives.

import dataclasses  # noqa: E402 - appended section; the top of this shared file stays as written
import shutil  # noqa: E402
import tarfile  # noqa: E402

TINY_TOP_FOLDERS = {
    "19997": ("20_newsgroups",),
    "bydate": ("20news-bydate-train", "20news-bydate-test"),
    "18828": ("20news-18828",),
}
TINY_ARCHIVE_NAMES = {"19997": "20news-19997.tar.gz", "bydate": "20news-bydate.tar.gz", "18828": "20news-18828.tar.gz"}
TINY_GROUPS = ("alt.atheism", "comp.graphics", "rec.autos", "sci.space")
TINY_GROUP_WORDS = {
    "alt.atheism": "god belief atheism morality",
    "comp.graphics": "image polygon render texture",
    "rec.autos": "engine car brake dealer",
    "sci.space": "orbit shuttle launch nasa",
}
# File names whose string order differs from their numeric order ("10" < "100" < "11" < "9").
TINY_IDS = ("9", "10", "100", "11", "99", "1000", "12", "98")


def tiny_post(version: str, group: str, name: str, body: str) -> str:
    """A post with the headers each version keeps (19997: all; bydate: no Xref/Path/Newsgroups/Date; 18828:
    From/Subject)."""
    words = TINY_GROUP_WORDS.get(group, "misc words")
    headers = {
        "Xref": f"cantaloupe.srv.cs.cmu.edu {group}:{name}",
        "Path": "cantaloupe.srv.cs.cmu.edu!news.example.edu!poster",
        "From": f"poster{name}@example.edu (Poster {name})",
        "Newsgroups": group,
        "Subject": f"Re: {words.split()[0]} question {name}",
        "Message-ID": f"<1993Apr5.{name}@example.edu>",
        "Date": "Mon, 5 Apr 1993 18:01:16 GMT",
        "Organization": "Example University",
        "Lines": str(body.count("\n") + 1),
    }
    kept = {
        "19997": tuple(headers),
        "bydate": ("From", "Subject", "Organization", "Lines"),
        "18828": ("From", "Subject"),
    }[version]
    return "".join(f"{key}: {headers[key]}\n" for key in kept) + "\n" + body


def tiny_body(group: str, name: str) -> str:
    """A body with a quote introduction, a quoted line, own text and a signature (all sklearn_all strips)."""
    words = TINY_GROUP_WORDS.get(group, "misc words")
    return (
        f"In article <{name}@example.edu>, someone@example.edu writes:\n"
        f"> what about {words.split()[1]}?\n"
        f"\n"
        f"Post {name} in {group} talks about {words}.\n"
        f"A second line on {words.split()[-1]} for post {name}.\n"
        f"\n"
        f"-- \n"
        f"Poster {name}, Example University\n"
    )


@dataclasses.dataclass
class TinyCorpus:
    """One tiny corpus: ``folder`` holds the top-level folder(s); ``files`` maps "<top>/<group>/<id>" to text."""

    version: str
    archive: pathlib.Path
    folder: pathlib.Path
    files: dict


def build_tiny_corpus(root, version, files=None, *, groups=TINY_GROUPS, posts_per_group=3):
    """Write a corpus under ``root`` (``root/extracted`` and ``root/<archive name>``) and return it.

    Without ``files`` every group of every subset gets ``posts_per_group`` generated posts (bydate test
    ids get a leading 7). Each group folder also holds a non-digit ``.DS_Store`` that loaders must skip.
    Archive members are written in reverse order so that loaders must sort.
    """
    root = pathlib.Path(root)
    if files is None:
        files = {}
        for top in TINY_TOP_FOLDERS[version]:
            for group in groups:
                for position in range(posts_per_group):
                    name = ("7" if top.endswith("-test") else "") + TINY_IDS[position]
                    files[f"{top}/{group}/{name}"] = tiny_post(version, group, name, tiny_body(group, name))
    folder = root / "extracted"
    for relative, text in files.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode("latin-1"))
    for group_folder in {(folder / relative).parent for relative in files}:
        (group_folder / ".DS_Store").write_bytes(b"\x00\x01 not a post")
    archive = root / TINY_ARCHIVE_NAMES[version]
    members = sorted(path for path in folder.rglob("*"))
    with tarfile.open(archive, "w:gz") as tar:
        for path in reversed(members):
            tar.add(path, arcname=path.relative_to(folder).as_posix(), recursive=False)
    return TinyCorpus(version=version, archive=archive, folder=folder, files=dict(files))


def build_tiny_data_home(root, versions=("19997", "bydate"), *, posts_per_group=8) -> pathlib.Path:
    """A data home under ``root`` holding the tiny archive of each version (as a user's would)."""
    root = pathlib.Path(root)
    home = root / "home"
    home.mkdir(parents=True)
    for version in versions:
        corpus = build_tiny_corpus(root / version, version, posts_per_group=posts_per_group)
        shutil.copy(corpus.archive, home / corpus.archive.name)
    return home


@pytest.fixture
def tiny_corpus_factory(tmp_path):
    """``build(version, files=None, **options) -> TinyCorpus`` in a fresh tmp folder (also ``build.post``,
    ``build.body``)."""
    counter = iter(range(10**6))

    def build(version, files=None, **options):
        return build_tiny_corpus(tmp_path / f"corpus-{version}-{next(counter)}", version, files, **options)

    # Tests that hand-write a file table build posts with the same helpers.
    build.post = tiny_post
    build.body = tiny_body
    return build


@pytest.fixture
def tiny_archives(tiny_corpus_factory):
    """A tiny corpus (archive and folder) for each version: {"19997": TinyCorpus, "bydate": ..., "18828": ...}."""
    return {version: tiny_corpus_factory(version) for version in TINY_TOP_FOLDERS}


# ----------------------------------------------------------- real MLflow server and local Ray (sweeps/)
import contextlib  # noqa: E402 - appended section
import os  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_http(url: str, *, process: subprocess.Popen | None = None, timeout: float = 120.0) -> None:
    """Poll ``url`` until it answers 200; fail with the server's output when it dies or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def start_mlflow_server(folder: pathlib.Path, port: int) -> subprocess.Popen:
    """A real MLflow tracking server on 127.0.0.1:``port`` over ``folder``'s sqlite store; returns once healthy."""
    folder.mkdir(parents=True, exist_ok=True)
    log = open(folder / "server.log", "ab")
    # MLflow 3's server also starts job-runner processes (huey) that tracking never uses: they cost CPU.
    environment = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    process = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
         "--artifacts-destination", str(folder / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        cwd=folder, env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", process=process)
    except RuntimeError as error:
        stop_mlflow_server(process)
        pytest.fail(f"{error}\n{(folder / 'server.log').read_text()[-3000:]}")
    return process


def stop_mlflow_server(process: subprocess.Popen) -> None:
    """Stop a server started by ``start_mlflow_server`` and every worker in its session."""
    for sent in (15, 9):
        try:
            os.killpg(process.pid, sent)
            process.wait(timeout=30)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real MLflow tracking server on 127.0.0.1 with a sqlite backend; yields its ``http://`` URI.

    Tests share it for speed: each should log into its own experiment (e.g. named after the test).
    """
    port = free_port()
    process = start_mlflow_server(tmp_path_factory.mktemp("mlflow-server"), port)
    yield f"http://127.0.0.1:{port}"
    stop_mlflow_server(process)


@pytest.fixture(scope="session")
def ray_local():
    """A real local Ray runtime with 2 CPUs for the whole session (the driver reuses it), shut down after."""
    import ray

    os.environ.pop("RAY_ADDRESS", None)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def run_concurrently(function, count: int) -> tuple[list, list]:
    """Call ``function()`` from ``count`` threads at once; returns (results, errors raised)."""
    import threading

    results, errors = [], []

    def call():
        try:
            results.append(function())
        except Exception as error:  # noqa: BLE001 - returned for the caller's assertion
            errors.append(error)

    threads = [threading.Thread(target=call) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results, errors


# ----------------------------------------------------------- tiny corpora hold 4 of the 20 groups (trainer/data.py)
@pytest.fixture(scope="session", autouse=True)
def _tiny_corpora_hold_few_groups():
    """The tiny corpora hold 4 of the 20 groups: accept that (``trainer.data.ALLOW_GROUP_SUBSET_ENV``).

    Session-wide and in ``os.environ`` (before any Ray starts), so that local Ray workers and subprocesses
    inherit it; tests of the check itself pass ``require_all_groups=True`` or delete the variable.
    """
    from trainer import data as data_module

    previous = os.environ.get(data_module.ALLOW_GROUP_SUBSET_ENV)
    os.environ[data_module.ALLOW_GROUP_SUBSET_ENV] = "1"
    yield
    if previous is None:
        os.environ.pop(data_module.ALLOW_GROUP_SUBSET_ENV, None)
    else:
        os.environ[data_module.ALLOW_GROUP_SUBSET_ENV] = previous

# ----------------------------------------------------------- a real Ray head with its job server (sweeps/service)
import dataclasses as _dataclasses  # noqa: E402 - appended section
import secrets  # noqa: E402
import signal  # noqa: E402
import tempfile  # noqa: E402

RAY_BIN = pathlib.Path(sys.executable).parent


@_dataclasses.dataclass
class RayHead:
    """A head started by ``ray start`` in its own process group: its job server URL, environment and folders."""

    url: str
    address: str
    environment: dict
    temp_dir: pathlib.Path
    process_group: int
    log: pathlib.Path

    def stop(self) -> None:
        """Kill this head's processes only (``ray stop`` would stop every Ray on the machine)."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in head_pids(self.temp_dir, self.process_group):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            time.sleep(1 if sig == signal.SIGTERM else 0)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def head_pids(temp_dir: pathlib.Path, process_group: int) -> list[int]:
    """Processes of one head: its process group, and any process naming its temp folder (workers, job drivers)."""
    found = []
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            group = os.getpgid(int(entry.name))
        except (OSError, ProcessLookupError):
            continue
        if group == process_group or str(temp_dir) in command:
            found.append(int(entry.name))
    return found


def ray_environment(folder: pathlib.Path, **extra) -> dict:
    """The environment a test head runs with: this interpreter's bin first, this checkout importable, a fresh
    token (written to a file, as ``ray get-auth-token --generate`` does) and token authentication on."""
    token_file = pathlib.Path(folder) / "auth_token"
    token_file.write_text(secrets.token_hex(32))
    token_file.chmod(0o600)
    environment = dict(os.environ, PATH=f"{RAY_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
                       PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
                       RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token_file),
                       MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    for name in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_TOKEN", "GLOVESWEEP_CLUSTER",
                 "GLOVESWEEP_SHARED_STORAGE", "MLFLOW_TRACKING_URI"):
        environment.pop(name, None)
    environment.update(extra)
    return environment


def head_start_flags(temp_dir: pathlib.Path, dashboard_port: int) -> list[str]:
    """Flags that keep a test head to itself: free ports (Ray's defaults are fixed numbers), its own temp folder."""
    return [f"--dashboard-port={dashboard_port}", f"--temp-dir={temp_dir}", f"--ray-client-server-port={free_port()}",
            f"--dashboard-agent-listen-port={free_port()}", "--min-worker-port=0", "--max-worker-port=0",
            "--node-ip-address=127.0.0.1", "--disable-usage-stats"]


def wait_for_job_server(url: str, *, timeout: float) -> None:
    """Poll ``url/api/version`` until the server answers at all (401 counts: token authentication is on)."""
    import urllib.error

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/api/version", timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.25)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def start_ray_head(command: str, *, environment: dict, cwd: pathlib.Path, temp_dir: pathlib.Path,
                   dashboard_port: int, log: pathlib.Path) -> RayHead:
    """Run a shell ``command`` that starts a head (it returns once the head is up) in a new process group, and
    wait for the job server on ``dashboard_port``."""
    with open(log, "ab") as stream:
        process = subprocess.Popen(["bash", "-c", command], env=environment, cwd=cwd, stdout=stream,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    head = RayHead(url=f"http://127.0.0.1:{dashboard_port}", address="", environment=environment,
                   temp_dir=temp_dir, process_group=process.pid, log=log)
    try:
        returncode = process.wait(timeout=180)
        if returncode != 0:
            raise RuntimeError(f"the head start command exited with {returncode}")
        wait_for_job_server(head.url, timeout=120)
    except (RuntimeError, subprocess.TimeoutExpired) as error:
        head.stop()
        pytest.fail(f"{error}\n{log.read_text()[-4000:]}")
    return head


@pytest.fixture(scope="session")
def ray_head(tmp_path_factory):
    """A real Ray head (2 CPUs, no GPU) with its job server on 127.0.0.1, as ``ray start --head --dashboard-host
    127.0.0.1`` starts it; stopped (its processes only) at the end."""
    # Unix socket paths are limited to 107 bytes: Ray's session folder must sit under a short path.
    temp_dir = pathlib.Path(tempfile.mkdtemp(prefix="gs-head-", dir="/tmp"))
    # Job drivers run in the folder 'ray start' ran in: keep it free of a 'ray' folder that Python would import.
    cwd = tmp_path_factory.mktemp("ray-head-cwd")
    dashboard_port = free_port()
    environment = ray_environment(cwd)
    command = " ".join([str(RAY_BIN / "ray"), "start", "--head", f"--port={free_port()}", "--num-cpus=2",
                        "--num-gpus=0", "--dashboard-host=127.0.0.1", *head_start_flags(temp_dir, dashboard_port)])
    head = start_ray_head(command, environment=environment, cwd=cwd, temp_dir=temp_dir,
                          dashboard_port=dashboard_port, log=cwd / "head.log")
    yield head
    head.stop()


def kill_mid_sweep(process: subprocess.Popen, children, *, timeout: float = 240) -> dict:
    """SIGKILL a sweep's driver and its session (the local Ray it started) once one trial has FINISHED while
    another runs; ``children()`` lists the sweep's child runs. Returns {trial id: end time} of the finished ones
    (empty when that moment never came)."""
    finished_before = {}
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and process.poll() is None:
            try:
                found = children()
            except (AssertionError, AttributeError):
                found = []
            done = [run for run in found if run.info.status == "FINISHED"]
            if done and any(run.info.status == "RUNNING" for run in found):
                finished_before = {run.data.tags["glovesweep.trial_id"]: run.info.end_time for run in done}
                break
            time.sleep(0.1)
    finally:
        with contextlib.suppress(ProcessLookupError):  # the driver may have ended on its own
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    return finished_before


def kill_driver_when(arguments: list[str], *, cwd, environment: dict, log_path, ready, timeout: float = 240.0):
    """Run ``python -m sweeps.cli ARGUMENTS`` in its own session and SIGKILL that whole session (the driver and the
    Ray it started, as on a lost host) as soon as ``ready()`` returns a true value; returns that value (None if the
    driver ended or the time ran out first)."""
    import os
    import signal
    import sys
    import time

    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "sweeps.cli", *arguments], cwd=cwd, env=environment,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and process.poll() is None:
                found = ready()
                if found:
                    return found
                time.sleep(0.1)
            return None
        finally:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
