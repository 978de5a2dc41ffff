"""The running sweep's state: one typed object, written once per sweep next to Ray Tune's own state.

``glovesweep run`` writes ``glovesweep_sweep.json`` into the sweep folder (``<storage_path>/<name>-<time>``);
``resume``, ``ui`` and ``report`` read it back with ``read_state``. The folder may be local or on an object
store (``s3://``, ``gs://``): it is written with ``sweeps.storage.write_bytes`` (a temporary file and rename
locally, one PUT on an object store). Reading needs no Ray.
"""

from __future__ import annotations

import pydantic

from sweeps import storage
from sweeps.run import identity as identity_module

STATE_FILE = "glovesweep_sweep.json"


class SweepState(pydantic.BaseModel):
    """Everything a later process needs to continue, inspect or report on a sweep.

    The file nests the sweep's two records (``{"source": {...}, "identity": {...}, "git_commit": ...}``); a file
    written before they existed (the same fields flat) still reads, since sweeps are resumed across versions.

    Attributes
    ----------
    source : SweepSource
        The sweep file's text as run, where it was and whether its ``smoke`` overrides apply.
    identity : SweepIdentity
        The MLflow store, experiment and parent run, and the sweep folder (Tune's storage and folder name).
    git_commit : str
        The code that ran the sweep.
    data_home, cache_dir : str or None
        Data and cache folders the trials use (None: the environment's defaults).
    download_if_missing : bool
        Whether missing archives and GloVe files may be downloaded.
    """

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    source: identity_module.SweepSource
    identity: identity_module.SweepIdentity
    git_commit: str
    data_home: str | None = None
    cache_dir: str | None = None
    download_if_missing: bool = True

    @pydantic.model_validator(mode="before")
    @classmethod
    def read_flat_format(cls, values):
        # glovesweep_sweep.json before the nested records: every field flat (tests/test_state.py keeps one).
        return identity_module.nest_flat_fields(values, {"source": identity_module.SweepSource,
                                                         "identity": identity_module.SweepIdentity})

    @property
    def sweep_dir(self) -> str:
        """The sweep folder: Tune's experiment folder, holding this state file."""
        return self.identity.sweep_dir

    @property
    def tracking_uri(self) -> str:
        """The MLflow store the sweep logs to (``identity.tracking_uri``)."""
        return self.identity.tracking_uri

    def spec(self):
        """The validated ``SweepSpec`` the sweep runs (its text re-validated, its URIs as recorded)."""
        spec = self.source.spec()
        return spec.replace(tracking_uri=self.identity.tracking_uri, storage_path=self.identity.storage_path)

    def replace(self, **changes) -> "SweepState":
        return self.model_copy(update=changes)


def write_state(state: SweepState) -> str:
    """Write ``state`` into its sweep folder atomically; returns the file's path or URI."""
    return storage.write_bytes(storage.join(state.sweep_dir, STATE_FILE), state.model_dump_json(indent=1).encode())


def read_state(sweep_dir: str) -> SweepState:
    """The state ``run`` wrote into ``sweep_dir``.

    Raises
    ------
    OSError
        ``sweep_dir`` holds no readable state (not a sweep folder); the message names the folder and the fix.
    """
    target = storage.join(sweep_dir, STATE_FILE)
    try:
        payload = storage.read_bytes(target)
    except (OSError, FileNotFoundError) as error:
        raise OSError(f"{sweep_dir} holds no {STATE_FILE}: pass the folder 'glovesweep run' printed "
                      f"(<storage_path>/<name>-<timestamp>)") from error
    try:
        return SweepState.model_validate_json(payload)
    except pydantic.ValidationError as error:
        raise OSError(f"{target} is not a glovesweep sweep state ({error.errors()[0]['msg']}); pass the folder "
                      f"'glovesweep run' printed") from None
