"""Which sweep this is, defined once: the sweep file as validated, and where the sweep logs and keeps its folder.

``SweepSource`` travels from ``glovesweep submit`` to the job (``job_entry.SubmittedSweep``) and into the state
file (``state.SweepState``); ``SweepIdentity`` is in the state file and reaches every trial
(``trial.TrialContext``). Older state files and submissions wrote these fields flat, side by side;
``nest_flat_fields`` reads them into the records. Reading needs no Ray.
"""

from __future__ import annotations

from typing import Any

import pydantic

from sweeps import storage


class SweepSource(pydantic.BaseModel):
    """The sweep file as it was validated where the user ran the command.

    Attributes
    ----------
    sweep_text : str
        The file's text (a job or a resume never reads the submitter's disk again).
    source_path, base_dir : str
        Where the file was, and the folder its relative paths resolve against.
    smoke_test : bool
        Whether the file's ``smoke`` overrides apply.
    """

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    sweep_text: str
    source_path: str
    base_dir: str
    smoke_test: bool = False

    def spec(self):
        """The validated ``SweepSpec`` of the text (its URIs as the file gives them)."""
        from sweeps import spec as spec_module

        return spec_module.parse_sweep(self.sweep_text, source_path=self.source_path, smoke_test=self.smoke_test,
                                       base_dir=self.base_dir)


class SweepIdentity(pydantic.BaseModel):
    """Where one sweep logs and lives: its MLflow store, experiment and parent run, and its sweep folder.

    Attributes
    ----------
    tracking_uri, experiment_id, parent_run_id : str
        The MLflow store, the experiment and the sweep's parent run.
    storage_path, experiment_name : str
        Tune's storage and the sweep folder's name in it (``sweep_dir`` joins them).
    """

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    storage_path: str
    experiment_name: str

    @property
    def sweep_dir(self) -> str:
        """The sweep folder: Tune's experiment folder, holding the state file (a local path or a URI)."""
        return storage.join(self.storage_path, self.experiment_name)

    def moved_to(self, sweep_dir: str) -> "SweepIdentity":
        """The same sweep, its folder now at ``sweep_dir`` (moved since the run, or on another machine)."""
        storage_path, experiment_name = sweep_dir.rstrip("/").rsplit("/", 1)
        return self.model_copy(update={"storage_path": storage_path, "experiment_name": experiment_name})


def nest_flat_fields(values: Any, nested: dict[str, type[pydantic.BaseModel]]) -> Any:
    """Move the flat fields of an older file (``sweep_text``, ``tracking_uri``...) into their nested records.

    ``nested`` maps a field name (``"source"``) to its record type; a value that already holds that field, or is
    no dict, is returned as it is, so the records' own validation reports what is wrong.
    """
    if not isinstance(values, dict) or any(name in values for name in nested):
        return values
    values = dict(values)
    for name, record in nested.items():
        fields = {key: values.pop(key) for key in list(values) if key in record.model_fields}
        if fields:
            values[name] = fields
    return values
