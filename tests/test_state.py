"""The sweep's typed state file: round trip, atomic write, clear errors, and readers that need no Ray."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sweeps.run import state as state_module


def make_state(tmp_path, **changes) -> state_module.SweepState:
    values = dict(sweep_text="name: x\n", source_path=str(tmp_path / "x.yaml"), base_dir=str(tmp_path),
                  smoke_test=False, tracking_uri="sqlite:////tmp/m.db", experiment_id="1", parent_run_id="abc",
                  storage_path=str(tmp_path / "results"), experiment_name="x-20260101-000000", git_commit="0" * 40)
    return state_module.SweepState(**{**values, **changes})


def test_state_round_trips_through_its_folder(tmp_path):
    state = make_state(tmp_path, data_home="/data", download_if_missing=False)
    written = state_module.write_state(state)
    assert written == f"{tmp_path}/results/x-20260101-000000/{state_module.STATE_FILE}"
    assert state_module.read_state(state.sweep_dir) == state
    # Nothing but the state file: the temporary sibling was renamed into place.
    assert [path.name for path in (tmp_path / "results" / "x-20260101-000000").iterdir()] == [state_module.STATE_FILE]


def test_unknown_or_missing_fields_are_refused(tmp_path):
    state = make_state(tmp_path)
    state_module.write_state(state)
    target = tmp_path / "results" / "x-20260101-000000" / state_module.STATE_FILE
    target.write_text(json.dumps({**json.loads(target.read_text()), "extra": 1}))
    with pytest.raises(OSError, match="is not a glovesweep sweep state"):
        state_module.read_state(state.sweep_dir)
    with pytest.raises(OSError, match="holds no glovesweep_sweep.json: pass the folder 'glovesweep run' printed"):
        state_module.read_state(str(tmp_path))


def test_state_on_an_object_store_uri(tmp_path):
    # pyarrow's file:// filesystem stands in for s3:// or gs:// (one output stream = one PUT there).
    state = make_state(tmp_path, storage_path=f"file://{tmp_path}/bucket")
    assert state_module.write_state(state).startswith("file://")
    assert state_module.read_state(state.sweep_dir).parent_run_id == "abc"


def test_the_state_and_ui_modules_need_no_ray():
    code = ("import sys; import sweeps.run.state, sweeps.ui; "
            "print(sorted(name for name in sys.modules if name == 'ray' or name.startswith('ray.')))")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[]"
