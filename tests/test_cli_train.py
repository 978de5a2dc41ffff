"""`glovesweep train`: one line per epoch on real files, and errors that list the allowed values."""

import json

from sweeps import cli


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
