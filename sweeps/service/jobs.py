"""The cluster's Ray job server, as the service commands use it (``ray.job_submission.JobSubmissionClient``;
``status`` and ``list`` read its job list over Ray's REST API, ``GET /api/jobs/``, without importing ``ray``).

The address is the job server's URL: the head's dashboard, ``http://127.0.0.1:8265`` on a head started on this
machine (``ray start --head --dashboard-host 127.0.0.1``) or through ``ray dashboard cluster/<file>.yaml``
(an SSH tunnel to the head's loopback). ``--address`` wins, then ``$RAY_ADDRESS``, then that default. A Ray
cluster address (``host:6379``, ``auto``) is accepted too: Ray finds its dashboard.

Ray's token authentication works as it does for ``ray job submit``: with ``RAY_AUTH_MODE=token`` Ray sends the
token itself; when a server demands a token and none was sent, the one Ray would use (``$RAY_AUTH_TOKEN``,
``$RAY_AUTH_TOKEN_PATH``, ``~/.ray/auth_token``) is sent once more, explicitly.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
import pathlib
import sys
from typing import Any, Callable, Iterator

from sweeps import rest

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
START_HINT = ("start one on this machine with: ray start --head --dashboard-host 127.0.0.1 (job server "
              f"{DEFAULT_ADDRESS}), or on a cloud: ray up cluster/aws-gpu.yaml, then keep "
              "'ray dashboard cluster/aws-gpu.yaml' running (it forwards the head's job server to "
              f"{DEFAULT_ADDRESS})")
# Job metadata keys (strings only, as Ray stores them).
SWEEP_ID = "glovesweep.sweep_id"
SWEEP_NAME = "glovesweep.sweep_name"
PARENT_RUN_ID = "glovesweep.parent_run_id"
EXPERIMENT_ID = "glovesweep.experiment_id"
TRACKING_URI = "glovesweep.tracking_uri"
TOTAL_TRIALS = "glovesweep.total_trials"
NETWORK_TRIALS = "glovesweep.network_trials"
MAX_EPOCHS = "glovesweep.max_epochs"
RESUME_OF = "glovesweep.resume_of"
TRAINER_MODULE = "glovesweep.trainer_module"  # the user's trainer module shipped with the job (py_modules)
# Ray's job states, as the service names them.
STATES = {"PENDING": "pending", "RUNNING": "running", "SUCCEEDED": "succeeded", "FAILED": "failed",
          "STOPPED": "stopped"}
TERMINAL = ("succeeded", "failed", "stopped")


class ClusterUnreachable(OSError):
    """No Ray job server answers at the address (exit code 3 of the service commands)."""


class UnknownSweep(LookupError):
    """The job server knows no sweep by that id (exit code 3)."""


def resolve_address(address: str | None) -> str:
    return address or os.environ.get("RAY_ADDRESS") or DEFAULT_ADDRESS


@contextlib.contextmanager
def _api_server_address(address: str) -> Iterator[None]:
    # Ray lets $RAY_ADDRESS override an explicit address (as ray.init does); --address must win here.
    saved = os.environ.get("RAY_API_SERVER_ADDRESS")
    os.environ["RAY_API_SERVER_ADDRESS"] = address
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("RAY_API_SERVER_ADDRESS", None)
        else:
            os.environ["RAY_API_SERVER_ADDRESS"] = saved


def local_token() -> str:
    """The Ray token this machine holds (``$RAY_AUTH_TOKEN``, ``$RAY_AUTH_TOKEN_PATH``, ``~/.ray/auth_token``)."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return os.environ["RAY_AUTH_TOKEN"].strip()
    path = pathlib.Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or "~/.ray/auth_token").expanduser()
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def add_address(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--address", default=None,
                        help=f"The Ray job server's URL (default: $RAY_ADDRESS, else {DEFAULT_ADDRESS}); not the "
                             f"Ray cluster address that 'run --address' takes.")


def guarded(main: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Exit 3 with one line when no cluster answers or the sweep is unknown."""

    def call(args: argparse.Namespace) -> int:
        try:
            return main(args)
        except (ClusterUnreachable, UnknownSweep) as error:
            print(f"glovesweep {args.command}: {error.args[0]}", file=sys.stderr)
            return 3

    return call


def refused_token(url: str, reason: str) -> OSError:
    return OSError(f"the Ray job server at {url} refused this machine's Ray token: use the cluster's "
                   f"(ray get-auth-token on the head, into ~/.ray/auth_token or $RAY_AUTH_TOKEN) and "
                   f"export RAY_AUTH_MODE=token ({reason})")


def unreachable(url: str, kind: str) -> ClusterUnreachable:
    return ClusterUnreachable(f"no Ray cluster answers at {url} ({kind}); {START_HINT}")


def checked_url(address: str | None) -> str:
    url = resolve_address(address)
    if "://" not in url and ":" not in url and url != "auto":
        raise ValueError(f"--address {url!r}: give the job server's URL, e.g. {DEFAULT_ADDRESS}")
    return url


def connect(address: str | None = None):
    """A ``JobSubmissionClient`` for the job server at ``address``.

    Raises
    ------
    ClusterUnreachable
        Nothing answers there (one line, with the command that starts a cluster).
    OSError
        The server refuses this machine's Ray token, or has none to check it against.
    """
    from ray import exceptions as ray_exceptions
    from ray import job_submission

    url = checked_url(address)
    try:
        with _api_server_address(url):
            try:
                return job_submission.JobSubmissionClient(url)
            except ray_exceptions.AuthenticationError:
                token = local_token()
                if not token:
                    raise
                return job_submission.JobSubmissionClient(url, headers={"Authorization": f"Bearer {token}"})
    except ray_exceptions.AuthenticationError as error:
        raise refused_token(url, str(error).splitlines()[0]) from None
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise unreachable(url, type(error).__name__) from None


@dataclasses.dataclass(frozen=True)
class JobRecord:
    """One job as Ray's job server lists it (the fields of Ray's ``JobDetails`` that the service reads).

    Attributes
    ----------
    submission_id, status, message : str
        ``status`` is Ray's state name: PENDING, RUNNING, SUCCEEDED, FAILED or STOPPED.
    start_time, end_time : int or None
        Milliseconds since the epoch.
    metadata : dict
        The job's metadata (strings; the ``glovesweep.*`` keys above on a sweep's job).
    """

    submission_id: str | None
    status: str
    message: str | None
    start_time: int | None
    end_time: int | None
    metadata: dict[str, str]

    @classmethod
    def from_json(cls, job: dict[str, Any]) -> "JobRecord":
        return cls(submission_id=job.get("submission_id"), status=str(job.get("status")), message=job.get("message"),
                   start_time=job.get("start_time"), end_time=job.get("end_time"), metadata=job.get("metadata") or {})


class JobList:
    """Ray's job list read over the job server's REST API, as ``JobSubmissionClient`` reads it, without importing
    ``ray`` (about 0.5 CPU seconds a call): ``GET /api/version`` to check the server, then ``GET /api/jobs/``.

    The token goes as ``JobSubmissionClient`` sends it: with ``RAY_AUTH_MODE=token`` always, otherwise once more
    when the server demands one.
    """

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.url = url.rstrip("/")
        self.headers = headers

    @classmethod
    def open(cls, url: str) -> "JobList":
        token = local_token()
        bearer = {"Authorization": f"Bearer {token}"} if token else {}
        server = cls(url, bearer if os.environ.get("RAY_AUTH_MODE", "").lower() == "token" else {})
        try:
            try:
                server.get("/api/version")
            except rest.HttpError as error:
                if error.status not in (401, 403) or server.headers or not bearer:
                    raise
                server = cls(url, bearer)
                server.get("/api/version")
        except rest.HttpError as error:
            if error.status in (401, 403):
                word = "required" if error.status == 401 else "failed"
                raise refused_token(url, f"Authentication {word}: {error.body.strip()}") from None
            raise unreachable(url, "RuntimeError") from None
        except OSError:
            raise unreachable(url, "ConnectionError") from None
        except ValueError:  # Something answers there, but not in JSON: not a job server.
            raise unreachable(url, "ValueError") from None
        return server

    def get(self, path: str) -> Any:
        return rest.request_json("GET", self.url + path, headers=self.headers)

    def list_jobs(self) -> list[JobRecord]:
        try:
            return [JobRecord.from_json(job) for job in self.get("/api/jobs/")]
        except rest.HttpError as error:
            raise RuntimeError(f"Request failed with status code {error.status}: {error.body}.") from None


def job_list(address: str | None = None):
    """What ``status`` and ``list`` read jobs from: a ``JobList`` for a job server's ``http(s)://`` URL, else (a
    Ray cluster address, whose dashboard Ray finds) a ``JobSubmissionClient``. Both have ``list_jobs()``."""
    url = checked_url(address)
    if url.startswith(("http://", "https://")):
        return JobList.open(url)
    return connect(address)


def sweep_jobs(client) -> dict[str, list]:
    """Sweep id -> its jobs (the first submission, then each ``--resume``), oldest first; other jobs skipped."""
    sweeps: dict[str, list] = {}
    for job in client.list_jobs():
        sweep_id = (job.metadata or {}).get(SWEEP_ID)
        if sweep_id:
            sweeps.setdefault(sweep_id, []).append(job)
    for jobs in sweeps.values():
        jobs.sort(key=lambda job: job.start_time or 0)
    return sweeps


def jobs_of(client, sweep_id: str) -> list:
    """The jobs of one sweep, oldest first; ``UnknownSweep`` when there are none."""
    jobs = sweep_jobs(client).get(sweep_id)
    if not jobs:
        raise UnknownSweep(f"no sweep {sweep_id!r} on this cluster; 'glovesweep status' lists them")
    return jobs


def state(job) -> str:
    """pending, running, succeeded, failed or stopped."""
    return STATES.get(str(getattr(job.status, "value", job.status)), str(job.status).lower())


def follow_logs(client, submission_id: str, *, stream=None) -> None:
    """Print the job's output as it comes until the job ends (Ray's ``tail_job_logs``)."""
    stream = stream or sys.stdout
    # Ray's SDK logs the websocket's closing at INFO; the stream's end says enough.
    logging.getLogger("ray.dashboard.modules.job.sdk").setLevel(logging.WARNING)

    async def tail() -> None:
        async for lines in client.tail_job_logs(submission_id):
            stream.write(lines)
            stream.flush()

    asyncio.run(tail())
