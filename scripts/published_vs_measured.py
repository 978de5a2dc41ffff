"""The README's "published vs measured" table, from the study's committed report files.

Usage (after ``glovesweep report`` wrote the two study reports into docs/results/):

    python scripts/published_vs_measured.py --results docs/results > docs/results/published_vs_measured.md

Reads ``study-cpu/runs.parquet``, ``study-cpu-ablations/runs.parquet`` and ``kerasio2020-seed*.json``
(``glovesweep train --seed N --json`` outputs) under ``--results``; a missing input leaves its rows as
"not run".
Each measured cell is the mean over seeds with its 95% Student-t interval (``sweeps.report.stats.t_interval``),
clipped to [0, 1] as in the report.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib

import pyarrow.parquet as pq

from sweeps.report import stats

STUDY = "glovesweep run sweeps/study-cpu.yaml --data-dir ../shared/data"
ABLATIONS = "glovesweep run sweeps/study-cpu-ablations.yaml --data-dir ../shared/data"
KERASIO = ("glovesweep train --dataset 19997 --strip first_10_lines --vectorizer kerasio2020 "
           "--architecture kerasio2020 --epochs 10 --seed N --data-dir ../shared/data (N = 0, 1, 2)")

# (what, published, source, table, filters, epochs, command); table "study", "ablations", "kerasio" or
# "baseline:<kind>".
ROWS = [
    ("19997, headers kept", "0.95 @2", "Keras blog 2016, 100d", "study",
     {"dataset": "19997", "strip": "none"}, (2, 10), STUDY),
    ("19997, headers cut at the first blank line", "0.47 @2, 0.71 @10", "Keras PR #5585 2017, 100d", "study",
     {"dataset": "19997", "strip": "blank_line"}, (2, 10), STUDY),
    ("19997, first 10 lines cut (the blog's network)", "", "", "study",
     {"dataset": "19997", "strip": "first_10_lines"}, (2, 10), STUDY),
    ("19997, first 10 lines cut, TextVectorization, 200 tokens, global max + dropout", "0.44 @2, 0.73 @10",
     "keras-io example log 2020, 100d", "kerasio", {}, (2, 10), KERASIO),
    ("bydate, headers/footers/quotes removed (scikit-learn)", "about 0.55 @10", "Stack Exchange answer",
     "study", {"dataset": "bydate", "strip": "sklearn_all"}, (2, 10), STUDY),
    ("bydate, headers kept", "", "", "study", {"dataset": "bydate", "strip": "none"}, (2, 10), STUDY),
    ("bydate, scikit-learn removal, frozen embedding", "", "", "study",
     {"dataset": "bydate", "strip": "sklearn_all"}, (2, 10), STUDY),
    ("bydate, scikit-learn removal, trainable embedding", "", "", "ablations",
     {"embedding": "trainable"}, (2, 10), ABLATIONS),
    ("TF-IDF + linear SVM, 19997, headers kept", "", "", "baseline:linear_svm",
     {"dataset": "19997", "strip": "none"}, (None,), STUDY),
    ("TF-IDF + linear SVM, bydate, scikit-learn removal", "", "", "baseline:linear_svm",
     {"dataset": "bydate", "strip": "sklearn_all"}, (None,), STUDY),
    ("TF-IDF + multinomial NB, bydate, scikit-learn removal", "", "", "baseline:multinomial_nb",
     {"dataset": "bydate", "strip": "sklearn_all"}, (None,), STUDY),
]


def format_cell(values: list[float]) -> str:
    """``0.934 [0.925, 0.943] (n=3)``; one value has no interval."""
    if not values:
        return "not run"
    mean, low, high = stats.t_interval(values, bounds=(0.0, 1.0))
    if math.isnan(low):
        return f"{mean:.3f} (n=1)"
    return f"{mean:.3f} [{low:.3f}, {high:.3f}] (n={len(values)})"


def measured(tables: dict, table: str, filters: dict, epochs: int | None) -> list[float]:
    """Validation accuracies (one per seed) of the matching finished runs at ``epochs``."""
    if table == "kerasio":
        return [history["val_acc"][epochs - 1] for history in tables.get("kerasio", [])
                if len(history["val_acc"]) >= epochs]
    kind = "keras"
    source = table
    if table.startswith("baseline:"):
        source, kind = "study", table.split(":", 1)[1]
    rows = tables.get(source) or []
    # Report folders written since the value column was neutral call it "value"; older ones "val_acc".
    return [row["value"] if "value" in row else row["val_acc"] for row in rows
            if row["model"] == kind and row["epochs"] == epochs
            and all(row[name] == value for name, value in filters.items())]


def build_table(results: pathlib.Path) -> str:
    """The Markdown table, one line per ROWS entry."""
    tables = {}
    for name, folder in (("study", "study-cpu"), ("ablations", "study-cpu-ablations")):
        path = results / folder / "runs.parquet"
        if path.exists():
            tables[name] = pq.read_table(path).to_pylist()
    tables["kerasio"] = [json.loads(path.read_text()) for path in sorted(results.glob("kerasio2020-seed*.json"))]
    lines = ["| cell (GloVe 50d here) | published | measured @2 | measured @10 | command |",
             "|---|---|---|---|---|"]
    for what, published, source, table, filters, epochs, command in ROWS:
        claim = f"{published} ({source})" if published else "—"
        if epochs == (None,):
            cells = [format_cell(measured(tables, table, filters, None)).replace("(n=1)", "(one fit)"), "(no epochs)"]
        else:
            cells = [format_cell(measured(tables, table, filters, count)) for count in epochs]
        lines.append(f"| {what} | {claim} | {cells[0]} | {cells[1]} | `{command}` |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default="docs/results", type=pathlib.Path,
                        help="Folder holding study-cpu/, study-cpu-ablations/ and kerasio2020-seed*.json.")
    args = parser.parse_args()
    print(build_table(args.results), end="")


if __name__ == "__main__":
    main()
