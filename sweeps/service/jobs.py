"""The cluster's Ray job server, as the service commands use it (``ray.job_submission.JobSubmissionClient``).

The address is the job server's URL: the head's dashboard, ``http://127.0.0.1:8265`` on a head started on this
machine (``ray start --head --dashboard-host 127.0.0.1``) or through ``ray dashboard cluster/<file>.yaml``
(an SSH tunnel to the head's loopback). ``--address`` wins, then ``$RAY_ADDRESS``, then that default. A Ray
cluster address (``host:6379``, ``auto``) is accepted too: Ray finds its dashboard.

Ray's token authentication works as it does for ``ray job submit``: with ``RAY_AUTH_MODE=token`` Ray sends the
token itself; when a server demands a token and none was sent, the one Ray would use (``$RAY_AUTH_TOKEN``,
``$RAY_AUTH_TOKEN_PATH``, ``~/.ray/auth_token``) is sent once more, explicitly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pathlib
import sys
from typing import Iterator

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

    url = resolve_address(address)
    if "://" not in url and ":" not in url and url != "auto":
        raise ValueError(f"--address {url!r}: give the job server's URL, e.g. {DEFAULT_ADDRESS}")
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
        raise OSError(f"the Ray job server at {url} refused this machine's Ray token: use the cluster's "
                      f"(ray get-auth-token on the head, into ~/.ray/auth_token or $RAY_AUTH_TOKEN) and "
                      f"export RAY_AUTH_MODE=token ({str(error).splitlines()[0]})") from None
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise ClusterUnreachable(f"no Ray cluster answers at {url} ({type(error).__name__}); {START_HINT}") from None


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
