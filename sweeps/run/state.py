"""The running sweep's state: one typed object, written once per sweep next to Ray Tune's own state.

``glovesweep run`` writes ``glovesweep_sweep.json`` into the sweep folder (``<storage_path>/<name>-<time>``);
``resume``, ``ui`` and ``report`` read it back with ``read_state``. The folder may be local or on an object
store (``s3://``, ``gs://``): it is written with ``sweeps.storage.write_bytes`` (a temporary file and rename
locally, one PUT on an object store). Reading needs no Ray.
"""

from __future__ import annotations

import pydantic

from sweeps import storage

STATE_FILE = "glovesweep_sweep.json"


class SweepState(pydantic.BaseModel):
    """Everything a later process needs to continue, inspect or report on a sweep.

    Attributes
    ----------
    sweep_text : str
        The sweep file's text as run (the job never reads the submitter's disk again).
    source_path, base_dir : str
        Where the file was and the folder its relative paths resolve against.
    smoke_test : bool
        Whether the file's ``smoke`` overrides apply.
    tracking_uri, experiment_id, parent_run_id : str
        The MLflow store, experiment and the sweep's parent run.
    storage_path, experiment_name : str
        Tune's storage and the sweep folder's name in it.
    git_commit : str
        The code that ran the sweep.
    data_home, cache_dir : str or None
        Data and cache folders the trials use (None: the environment's defaults).
    download_if_missing : bool
        Whether missing archives and GloVe files may be downloaded.
    """

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    sweep_text: str
    source_path: str
    base_dir: str
    smoke_test: bool
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    storage_path: str
    experiment_name: str
    git_commit: str
    data_home: str | None = None
    cache_dir: str | None = None
    download_if_missing: bool = True

    @property
    def sweep_dir(self) -> str:
        """The sweep folder: Tune's experiment folder, holding this state file."""
        return storage.join(self.storage_path, self.experiment_name)

    def spec(self):
        """The validated ``SweepSpec`` the sweep runs (its text re-validated, its URIs as recorded)."""
        from sweeps import spec as spec_module

        spec = spec_module.parse_sweep(self.sweep_text, source_path=self.source_path, smoke_test=self.smoke_test,
                                       base_dir=self.base_dir)
        return spec.replace(tracking_uri=self.tracking_uri, storage_path=self.storage_path)

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
