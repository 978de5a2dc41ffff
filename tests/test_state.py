"""The sweep's typed state file: round trip, atomic write, clear errors, and readers that need no Ray."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sweeps.run import identity as identity_module
from sweeps.run import state as state_module


def make_state(tmp_path, **changes) -> state_module.SweepState:
    source = identity_module.SweepSource(sweep_text="name: x\n", source_path=str(tmp_path / "x.yaml"),
                                         base_dir=str(tmp_path), smoke_test=False)
    identity = identity_module.SweepIdentity(tracking_uri="sqlite:////tmp/m.db", experiment_id="1",
                                             parent_run_id="abc", storage_path=str(tmp_path / "results"),
                                             experiment_name="x-20260101-000000")
    values = dict(source=source, identity=identity, git_commit="0" * 40)
    return state_module.SweepState(**{**values, **changes})


# What glovesweep wrote before the sweep's records were nested (commit 2866a49): users resume such sweeps.
FLAT_STATE = """{
 "sweep_text": "name: x\\n",
 "source_path": "/sweeps/x.yaml",
 "base_dir": "/sweeps",
 "smoke_test": true,
 "tracking_uri": "http://127.0.0.1:5000",
 "experiment_id": "7",
 "parent_run_id": "abc123",
 "storage_path": "/results",
 "experiment_name": "x-smoke-20260101-000000",
 "git_commit": "0000000000000000000000000000000000000000",
 "data_home": "/data",
 "cache_dir": null,
 "download_if_missing": false
}"""


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
    identity = make_state(tmp_path).identity.model_copy(update={"storage_path": f"file://{tmp_path}/bucket"})
    state = make_state(tmp_path, identity=identity)
    assert state_module.write_state(state).startswith("file://")
    assert state_module.read_state(state.sweep_dir).identity.parent_run_id == "abc"


def test_a_state_file_of_the_flat_format_still_reads(tmp_path):
    folder = tmp_path / "x-smoke-20260101-000000"
    folder.mkdir()
    (folder / state_module.STATE_FILE).write_text(FLAT_STATE)
    state = state_module.read_state(str(folder))
    assert state.source == identity_module.SweepSource(sweep_text="name: x\n", source_path="/sweeps/x.yaml",
                                                       base_dir="/sweeps", smoke_test=True)
    assert state.identity == identity_module.SweepIdentity(
        tracking_uri="http://127.0.0.1:5000", experiment_id="7", parent_run_id="abc123", storage_path="/results",
        experiment_name="x-smoke-20260101-000000")
    assert (state.git_commit, state.data_home, state.cache_dir, state.download_if_missing) == ("0" * 40, "/data", None,
                                                                                               False)
    assert state.sweep_dir == "/results/x-smoke-20260101-000000" and state.tracking_uri == "http://127.0.0.1:5000"
    # Written again, it takes the nested format, which reads back the same.
    moved = state.replace(identity=state.identity.moved_to(str(folder)))
    state_module.write_state(moved)
    assert '"identity": {' in (folder / state_module.STATE_FILE).read_text()
    assert state_module.read_state(str(folder)) == moved
    # An old file with a field no version wrote is still refused, naming the fix.
    (folder / state_module.STATE_FILE).write_text(FLAT_STATE.replace('"data_home"', '"data_dir"'))
    with pytest.raises(OSError, match="is not a glovesweep sweep state"):
        state_module.read_state(str(folder))


def test_a_moved_sweep_folder_keeps_its_mlflow_identity(tmp_path):
    identity = make_state(tmp_path).identity.moved_to("s3://bucket/sweeps/x-20260101-000000/")
    assert (identity.storage_path, identity.experiment_name) == ("s3://bucket/sweeps", "x-20260101-000000")
    assert identity.sweep_dir == "s3://bucket/sweeps/x-20260101-000000"
    assert (identity.tracking_uri, identity.experiment_id, identity.parent_run_id) == ("sqlite:////tmp/m.db", "1",
                                                                                      "abc")


def test_the_state_and_ui_modules_need_no_ray():
    code = ("import sys; import sweeps.run.state, sweeps.ui; "
            "print(sorted(name for name in sys.modules if name == 'ray' or name.startswith('ray.')))")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[]"



def test_resume_names_a_full_results_disk_in_one_line_before_writing_anything(tmp_path, capsys):
    """Found by the chaos run: a resume on a full results disk ended in a bare '[Errno 28] No space left on
    device'. A real small tmpfs (under 16 MB free) holds the sweep folder."""
    from sweeps import cli

    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        folder = disk / "results" / "x-1"
        state_module.write_state(make_state(disk, identity=make_state(disk).identity.moved_to(str(folder))))
        before = sorted(path.name for path in folder.iterdir())
        assert cli.main(["resume", str(folder)]) == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert f"the results folder {folder} is full" in line and f"glovesweep resume {folder}" in line
        assert sorted(path.name for path in folder.iterdir()) == before
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_a_full_disk_while_the_tuner_is_restored_or_runs_is_named_with_the_fix(tmp_path):
    """Found by scripts/chaos.py --smoke (its disk_full fault during a resume): restoring the Tuner raised a bare
    '[Errno 28] Error writing bytes to file'. fit_and_finish now turns a full disk from either step into this."""
    import errno

    from sweeps.run import fitting

    folder = str(tmp_path)  # plenty of free space: only the error's errno says the disk was full
    found = fitting.full_disk_error(OSError(errno.ENOSPC, "Error writing bytes to file"), folder)
    assert isinstance(found, OSError) and f"the results folder {folder} is full ([Errno 28] Error writing" in str(found)
    assert str(found).endswith(f"free space there, then: glovesweep resume {folder}")
    assert fitting.full_disk_error(OSError(errno.EACCES, "Permission denied"), folder) is None
    assert fitting.full_disk_error(KeyboardInterrupt(), folder) is None
