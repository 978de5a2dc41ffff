"""scripts/published_vs_measured.py: the README's table from report files (hand-made runs tables)."""

from __future__ import annotations

import importlib.util
import json
import pathlib

from sweeps.report import reader

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load_script():
    spec = importlib.util.spec_from_file_location("published_vs_measured", ROOT / "scripts" / "published_vs_measured.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def row(model, epochs, seed, val_acc, **settings):
    return dict(dict(dataset="19997", strip="none", sizing="vocab_plus_one"), trainer="baseline" if model != "keras"
                else "keras", model=model, epochs=epochs, seed=seed, val_acc=val_acc, **settings)


def test_cells_are_seed_means_with_t_intervals_and_missing_inputs_say_not_run(tmp_path):
    script = load_script()
    rows = [row("keras", 2, 0, 0.90), row("keras", 2, 1, 0.92), row("keras", 2, 2, 0.94),
            row("keras", 10, 0, 0.95), row("keras", 2, 0, 0.40, strip="blank_line"),
            row("linear_svm", None, 0, 0.941)]
    (tmp_path / "study-cpu").mkdir()
    reader.runs_frame(rows).to_parquet(tmp_path / "study-cpu" / "runs.parquet")
    (tmp_path / "kerasio2020-seed0.json").write_text(json.dumps({"val_acc": [0.30, 0.44, 0.5]}))
    lines = {line.split(" | ")[0]: line for line in script.build_table(tmp_path).splitlines()}

    # Three seeds: mean 0.92, t(0.975, 2) = 4.303 x sd 0.02 / sqrt(3) = 0.0497.
    blog = lines["| 19997, headers kept"]
    assert "| 0.920 [0.870, 0.970] (n=3) | 0.950 (n=1) |" in blog
    assert "| 0.400 (n=1) | not run |" in lines["| 19997, headers cut at the first blank line"]
    # Epoch 2 of the keras-io run is the second entry; it has no epoch 10.
    assert "| 0.440 (n=1) | not run |" in lines[next(key for key in lines if "TextVectorization" in key)]
    assert "0.941 (one fit)" in lines["| TF-IDF + linear SVM, 19997, headers kept"]
    assert "not run" in lines[next(key for key in lines if "trainable embedding" in key)]
