"""Inside a submitted sweep's Ray job: the sweep as ``glovesweep submit`` validated it, run on the cluster.

``glovesweep submit`` validates the sweep file on the user's machine and puts the validated text (with the
options that shape it) into the job's environment as one base64 JSON value, ``SubmittedSweep``; the job's
entrypoint is ``glovesweep run --sweep-from-env --parent-run-id ID --experiment-name SWEEP_ID``, so the job
never reads the submitter's disk. The job then:

1. joins the cluster (``RAY_ADDRESS``, set by Ray for job drivers) and checks that some node, or some node type
   the autoscaler may add, can hold one trial (``sweeps.checks.resources_check``); the verdict goes to the parent
   run's ``glovesweep.resources`` tag, which ``submit`` waits for;
2. runs the sweep into the parent run ``submit`` created, in the Tune folder named after the sweep id;
3. on a stop (``glovesweep cancel``: Ray sends SIGTERM), ends like Ctrl-C: Tune stops its trials and every
   MLflow run still open ends KILLED; ``glovesweep submit --resume SWEEP_ID`` finishes it later.

On a cluster started from ``cluster/*.yaml`` (``GLOVESWEEP_CLUSTER=1`` on the head) the job logs to the
cluster's own MLflow server (``$MLFLOW_TRACKING_URI``, the head's private address; ``submit`` reached the same
server through its SSH tunnel) and stores Tune's state under ``$GLOVESWEEP_STORAGE_PATH``.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import os
from typing import ClassVar

import pydantic

from sweeps.checks import cluster_checks
from sweeps import spec as spec_module
from sweeps.run import identity as identity_module
from sweeps.tracking import mlflow_runs
from sweeps.tracking import outbox

SWEEP_ENV = "GLOVESWEEP_SUBMITTED_SWEEP"
SWEEP_ID_ENV = "GLOVESWEEP_SWEEP_ID"
CLUSTER_STORAGE_ENV = "GLOVESWEEP_STORAGE_PATH"


class SubmittedSweep(pydantic.BaseModel):
    """The validated sweep a job runs, as ``submit`` resolved it.

    Attributes
    ----------
    source : SweepSource
        The sweep file's text, where it was, the folder its relative paths resolved against, and whether its
        ``smoke`` overrides apply (the same record the sweep's state file keeps).
    tracking_uri : str
        The MLflow store as ``submit`` reached it (the parent run lives there).
    file_storage_path : str
        The file's ``storage_path``, resolved by ``submit``.
    job_tracking_uri : str or None
        The same store as the job reaches it, when ``submit --job-tracking-uri`` named it.
    storage_path : str or None
        ``submit --storage-path`` (Tune's storage for the job), else None: the cluster's or the file's.
    """

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    source: identity_module.SweepSource
    tracking_uri: str
    file_storage_path: str
    job_tracking_uri: str | None = None
    storage_path: str | None = None

    @pydantic.model_validator(mode="before")
    @classmethod
    def read_flat_format(cls, values):
        # A submission from before the nested record (its source fields flat) still runs.
        return identity_module.nest_flat_fields(values, {"source": identity_module.SweepSource})

    def encode(self) -> str:
        """One environment-safe string (base64 of the JSON)."""
        return base64.b64encode(self.model_dump_json().encode()).decode("ascii")

    @classmethod
    def decode(cls, text: str) -> "SubmittedSweep":
        return cls.model_validate_json(base64.b64decode(text.encode("ascii")))

    def job_spec(self, environment: dict[str, str] | None = None) -> spec_module.SweepSpec:
        """The spec the job runs, re-validated from the text, with the job's MLflow store and Tune storage."""
        environment = os.environ if environment is None else environment
        spec = self.source.spec()
        tracking_uri, storage_path = self.tracking_uri, self.storage_path or self.file_storage_path
        if environment.get(cluster_checks.CLUSTER_ENV) == "1":
            tracking_uri = environment.get("MLFLOW_TRACKING_URI") or tracking_uri
            storage_path = self.storage_path or environment.get(CLUSTER_STORAGE_ENV) or storage_path
        return spec.replace(tracking_uri=self.job_tracking_uri or tracking_uri, storage_path=storage_path)


@dataclasses.dataclass(frozen=True)
class Verdict:
    """What ``submit`` learns from the job: its resource check's answer, or why there is none.

    The job writes the answer into the parent run's ``glovesweep.resources`` tag (``tag_value``: ``ok`` or
    ``refused: <reason>``); ``submit`` reads it back with ``from_tag``.

    Attributes
    ----------
    kind : str
        ``ok`` (some node can hold a trial), ``refused`` (none ever can), ``ended`` (the job ended before it
        checked) or ``waiting`` (no answer yet when ``submit`` stopped waiting).
    message : str
        The reason for ``refused``; for ``ended`` and ``waiting``, what happened and the command to look further.
    """

    kind: str
    message: str = ""

    KINDS: ClassVar[tuple[str, ...]] = ("ok", "refused", "ended", "waiting")
    REFUSED_PREFIX: ClassVar[str] = "refused: "

    def __post_init__(self) -> None:
        assert self.kind in self.KINDS, self.kind

    @property
    def ok(self) -> bool:
        return self.kind == "ok"

    def tag_value(self) -> str:
        """The parent run's ``glovesweep.resources`` tag: ``ok`` or ``refused: <reason>``."""
        assert self.kind in ("ok", "refused"), self.kind
        return "ok" if self.ok else self.REFUSED_PREFIX + self.message

    @classmethod
    def from_tag(cls, value: str) -> "Verdict":
        """The verdict a ``glovesweep.resources`` tag holds (any other text: no answer yet, shown as it is)."""
        if value == "ok":
            return cls("ok")
        if value.startswith(cls.REFUSED_PREFIX):
            return cls("refused", value.removeprefix(cls.REFUSED_PREFIX))
        return cls("waiting", value)


def run_submitted(args: argparse.Namespace) -> int:
    """``glovesweep run --sweep-from-env``: the submitted sweep, into the parent run ``submit`` created."""
    from sweeps.run import driver
    from sweeps.run import parent_run
    from sweeps.checks import resources_check
    from sweeps.run import shared_data

    if not args.parent_run_id or not args.experiment_name:
        raise ValueError("--sweep-from-env needs --parent-run-id and --experiment-name (glovesweep submit sets them)")
    text = os.environ.get(SWEEP_ENV)
    if not text:
        raise ValueError(f"--sweep-from-env: ${SWEEP_ENV} is empty; submit the sweep with 'glovesweep submit'")
    submitted = SubmittedSweep.decode(text)
    spec = submitted.job_spec()
    if args.smoke_test and not spec.smoke_test:
        raise ValueError("--smoke-test: give it to 'glovesweep submit', which validates the sweep")
    outbox.driver_client_settings()
    mlflow_runs.check_reachable(spec.tracking_uri)
    try:
        mlflow_runs.get_run(spec.tracking_uri, args.parent_run_id)
    except OSError as error:
        raise OSError(f"{error}: the job's MLflow store is not the one 'glovesweep submit' used "
                      f"({submitted.tracking_uri}); submit with --job-tracking-uri URI") from None
    options = driver.runtime_options(args)
    outcome = "FAILED"
    try:
        shared_data.start_ray(address=options["address"], num_cpus=options["num_cpus"])
        try:
            resources_check.check_trial_resources(spec)
        except ValueError as error:
            mlflow_runs.set_run_tags(spec.tracking_uri, args.parent_run_id,
                                     {mlflow_runs.RESOURCES_TAG: Verdict("refused", str(error)).tag_value()})
            raise
        mlflow_runs.set_run_tags(spec.tracking_uri, args.parent_run_id,
                                 {mlflow_runs.RESOURCES_TAG: Verdict("ok").tag_value()})
        result = driver.run_sweep(spec, experiment_name=args.experiment_name, parent_run_id=args.parent_run_id,
                                  check_resources=False, **options)
        outcome = ""
        parent_run.conclude(spec, result, data_checksums=result.data_checksums, write_report=not args.no_report)
        return 0 if result.ok else 1
    except KeyboardInterrupt:
        outcome = "KILLED"
        raise
    finally:
        if outcome:
            end_if_running(spec.tracking_uri, args.parent_run_id, outcome)


def end_if_running(tracking_uri: str, run_id: str, status: str) -> None:
    """End a parent run the sweep stopped before its Tuner could (refused, failed or cancelled early)."""
    try:
        if mlflow_runs.get_run(tracking_uri, run_id).info.status == "RUNNING":
            mlflow_runs.end_run(tracking_uri, run_id, status)
    except OSError:
        pass  # The store is gone; the sweep's own error is the one to report.
