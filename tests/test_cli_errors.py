"""User errors reach the terminal as one line, never a traceback; --help lists every fixed set of values
(issue 12, items 7 and 10)."""

from __future__ import annotations

import argparse
import re

import pytest

from sweeps import cli
from sweeps.run import shared_data
from sweeps import ui
from trainer import config as config_module

ANSI = re.compile(r"\x1b\[")


def fail_with(monkeypatch, error: BaseException) -> None:
    def main(args):
        raise error

    monkeypatch.setattr(ui, "main", main)


@pytest.mark.parametrize("error", [ValueError("bad value\n  second line \x1b[31mred\x1b[0m"),
                                   FileNotFoundError(2, "No such file or directory", "/x/y")],
                         ids=["value-error", "os-error"])
def test_a_user_error_is_one_line_on_stderr_and_exit_2(monkeypatch, capsys, error):
    fail_with(monkeypatch, error)
    assert cli.main(["ui"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("glovesweep ui: error: "), captured.err
    assert not ANSI.search(captured.err) and "Traceback" not in captured.err
    assert ("bad value; second line red" if isinstance(error, ValueError) else "/x/y") in lines[0]


def test_an_unexpected_error_is_one_line_that_points_to_the_verbose_flag(monkeypatch, capsys):
    fail_with(monkeypatch, KeyError("boom"))
    assert cli.main(["ui"]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "unexpected error: KeyError" in lines[0] and "glovesweep -v ui" in lines[0], lines
    # With -v the traceback is the point.
    with pytest.raises(KeyError):
        cli.main(["-v", "ui"])


def test_ctrl_c_before_tune_takes_over_is_one_line_and_exit_130(monkeypatch, capsys):
    # Ctrl-C while Ray starts or data is prepared (Tune handles its own), or a driver's SIGTERM at that time.
    fail_with(monkeypatch, KeyboardInterrupt())
    assert cli.main(["ui"]) == cli.INTERRUPTED == 130
    assert capsys.readouterr().err.splitlines() == ["glovesweep ui: stopped"]
    with pytest.raises(KeyboardInterrupt):
        cli.main(["-v", "ui"])


def test_a_usage_error_is_one_line_naming_the_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["ui", "--port", "many"])
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "--port: invalid int value: 'many'" in lines[0], lines
    assert "see glovesweep ui --help" in lines[0]


def test_an_error_raised_in_a_ray_task_comes_back_as_its_own_type_and_message(ray_local):
    @ray_local.remote(max_retries=0)
    def broken(kind):
        raise kind("archive /data/x.tar.gz is truncated; download it again")

    for kind in (ValueError, OSError):
        with pytest.raises(kind) as error:
            shared_data.get_or_raise_cause([broken.remote(kind)])
        assert str(error.value) == "archive /data/x.tar.gz is truncated; download it again"
        assert not isinstance(error.value, ray_local.exceptions.RayTaskError)

    @ray_local.remote(max_retries=0)
    def bug():
        raise ZeroDivisionError("a bug")

    with pytest.raises(ray_local.exceptions.RayTaskError):
        shared_data.get_or_raise_cause([bug.remote()])


def allowed_values(action: argparse.Action) -> list[str]:
    """The fixed set of values a flag accepts ([] when it takes free values or none)."""
    if action.choices:
        return [str(choice) for choice in action.choices]
    factor = config_module.FACTORS.get(action.dest)
    if factor is not None and factor.choices:
        return [str(choice) for choice in factor.choices]
    if factor is not None and factor.type is bool:
        return ["true", "false"]
    return []


@pytest.mark.parametrize("command", list(cli.COMMANDS))
def test_every_flag_with_a_fixed_set_of_values_lists_them_in_help(command):
    parser = cli.build_parser(command)
    subparser = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    command_parser = subparser.choices[command]
    checked = 0
    for action in command_parser._actions:
        values = allowed_values(action)
        if not values or not action.option_strings:
            continue
        checked += 1
        for value in values:
            assert value in (action.help or ""), f"{command} {action.option_strings[0]}: {value!r} not in its help"
    if command == "train":
        assert checked >= 10  # Every choice factor and both booleans.


class FailedTrial:
    """What SweepCallback reads of a failed Tune trial."""

    def __init__(self, error_file):
        from sweeps import spec as spec_module

        self.config = {"task": {"trial": spec_module.Trial(kind="keras", cell={"dataset": "19997"}, seed=0).as_dict()}}
        self.error_file = str(error_file)
        self.local_path = str(error_file.parent)
        self.path = self.local_path
        self.status = "ERROR"
        self.trial_id = "abc"


def test_a_failed_trial_is_one_progress_line_saying_why(tmp_path, capsys, monkeypatch):
    from sweeps.run import fitting
    from sweeps.run import progress

    error_file = tmp_path / "error.txt"
    error_file.write_text("\x1b[36mray::ImplicitFunc.train()\x1b[39m (pid=1, ip=127.0.0.1)\n" + "  File \"x.py\"\n" * 60
                          + "\x1b[31mValueError\x1b[0m: post sci.space/9 is binary\n\n")
    callback = progress.SweepCallback("http://127.0.0.1:9", "0", "parent")
    monkeypatch.setattr(callback, "_mark", lambda trial, status: None)  # No MLflow here.
    trial = FailedTrial(error_file)
    callback.on_trial_error(0, [trial], trial)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and "FAILED: ValueError: post sci.space/9 is binary (see " in lines[0], lines
    assert "\x1b[" not in lines[0]
    # Tune's own traceback per attempt is off unless the user turns it back on.
    monkeypatch.delenv("TUNE_PRINT_ALL_TRIAL_ERRORS", raising=False)
    fitting.quiet_tune_output()
    import os

    assert os.environ["TUNE_PRINT_ALL_TRIAL_ERRORS"] == "0"
