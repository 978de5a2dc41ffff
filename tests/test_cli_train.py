"""`glovesweep train`: one line per epoch on real files, and errors that list the allowed values."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from sweeps import cli
from sweeps import console


def test_bad_value_is_an_error_listing_the_allowed_values(capsys):
    assert cli.main(["train", "--strip", "headers"]) == 2
    error = capsys.readouterr().err
    assert "strip='headers' is not allowed" in error and "'blank_line'" in error


def test_one_trial_prints_one_line_per_epoch(tiny_archives, tmp_path, capsys):
    corpus = tiny_archives["bydate"]
    history_file = tmp_path / "history.json"
    code = cli.main(["train", "--dataset", "bydate", "--data-path", str(corpus.folder), "--architecture",
                     "global_max", "--max-sequence-length", "149", "--epochs", "2", "--batch-size", "8",
                     "--cache-dir", str(tmp_path / "cache"), "--no-download", "--json", str(history_file)])
    output = capsys.readouterr().out
    assert code == 0, output
    lines = [line for line in output.splitlines() if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in lines] == ["epoch 1/2", "epoch 2/2"]
    # bydate's official split: the 4 groups x 3 test posts are the validation set.
    assert "12 train / 12 val documents" in output
    history = json.loads(history_file.read_text())
    assert history["epoch"] == [1, 2] and f"val_acc {history['val_acc'][-1]:.4f}" in lines[-1]


# ------------------------------------------------------------------------- what the console shows (subprocesses)
# TensorFlow's C++ start-up lines (absl, oneDNN, the CUDA stub and cuInit) as they begin or name their source file.
TENSORFLOW_START_UP = ("WARNING: All log messages before absl::InitializeLog()", "port.cc:", "cudart_stub.cc:",
                       "cuda_platform.cc:")
ROOT = pathlib.Path(__file__).resolve().parents[1]


def glovesweep(*argv: str, **environment: str) -> subprocess.CompletedProcess:
    """``glovesweep ARGV`` in a fresh interpreter (TensorFlow not yet loaded), this checkout first on the path."""
    env = dict(os.environ, **environment)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    return subprocess.run([sys.executable, "-m", "sweeps.cli", *argv], env=env, capture_output=True, text=True,
                          timeout=300)


def test_train_without_its_archive_is_one_line_on_stderr(tmp_path):
    completed = glovesweep("train", "--dataset", "19997", "--no-download", GLOVESWEEP_DATA=str(tmp_path / "none"))
    assert completed.returncode == 2
    assert completed.stderr.splitlines() == [completed.stderr.strip()], completed.stderr
    assert completed.stderr.startswith("glovesweep train: error: 20 Newsgroups '19997' not found")


def test_train_without_its_glove_file_is_one_line_on_stderr(tiny_archives, tmp_path):
    completed = glovesweep("train", "--dataset", "bydate", "--data-path", str(tiny_archives["bydate"].folder),
                           "--embedding", "frozen", "--glove-path", str(tmp_path / "glove.6B.50d.txt"),
                           "--cache-dir", str(tmp_path / "cache"), "--no-download")
    assert completed.returncode == 2
    assert completed.stderr.splitlines() == [completed.stderr.strip()], completed.stderr
    assert "glove.6B.50d.txt" in completed.stderr and "does not exist" in completed.stderr


def test_a_trial_prints_no_tensorflow_start_up_lines(tiny_archives, tmp_path):
    completed = glovesweep("train", "--dataset", "bydate", "--data-path", str(tiny_archives["bydate"].folder),
                           "--architecture", "global_max", "--max-sequence-length", "149", "--epochs", "1",
                           "--batch-size", "8", "--cache-dir", str(tmp_path / "cache"), "--no-download")
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "epoch 1/1:" in completed.stdout
    start_up = [line for line in completed.stderr.splitlines() if any(mark in line for mark in TENSORFLOW_START_UP)]
    assert start_up == [], completed.stderr


def test_native_stderr_is_held_back_and_given_back_when_the_block_fails(capfd):
    with console.native_stderr_held():
        os.write(2, b"chatter from C++\n")
    assert capfd.readouterr().err == ""
    with pytest.raises(ImportError):
        with console.native_stderr_held():
            os.write(2, b"why it failed\n")
            raise ImportError("broken installation")
    assert capfd.readouterr().err == "why it failed\n"
    with console.native_stderr_held(enabled=False):
        os.write(2, b"shown with -v\n")
    assert capfd.readouterr().err == "shown with -v\n"
