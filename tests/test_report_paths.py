"""No file a report writes, and no committed result, names a folder of one machine or a store's credentials:
report folders get committed (docs/results) and shared, and are regenerated on other machines."""

from __future__ import annotations

import json
import pathlib
import re
import shutil

import pytest
from pyarrow import parquet

from sweeps import report
from sweeps.report import reader

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
# An absolute sqlite or file URI, or an absolute path under a root that holds users' and scratch folders.
ABSOLUTE = re.compile(r"sqlite:////|file:///|(?<![\w.~-])/(?:work|tmp|root|home|Users|private|var|mnt|opt|srv)/")


def texts(path: pathlib.Path) -> list[str]:
    """What a file says: its text, or for a Parquet file its schema metadata and every string value."""
    if path.suffix == ".parquet":
        table = parquet.read_table(path)
        said = [key.decode() + "=" + value.decode() for key, value in (table.schema.metadata or {}).items()]
        for name in table.column_names:
            if table.schema.field(name).type == "string":
                said += [value for value in table.column(name).to_pylist() if value]
        return said
    return [path.read_bytes().decode("latin-1")]


def machine_paths(folder: pathlib.Path, *machine_folders: pathlib.Path) -> dict[str, list[str]]:
    """``file -> the absolute paths it names`` for every file under ``folder`` that names one."""
    found = {}
    needles = [str(item) for item in (ROOT, *machine_folders)]
    for path in sorted(item for item in folder.rglob("*") if item.is_file()):
        hits = [match.group(0) for text in texts(path) for match in ABSOLUTE.finditer(text)]
        hits += [needle for text in texts(path) for needle in needles if needle in text]
        if hits:
            found[path.relative_to(folder).as_posix()] = sorted(set(hits))
    return found


def test_the_check_finds_a_machine_path():
    # The check itself can fail: absolute sqlite URIs and scratch folders are found, relative ones are not.
    assert ABSOLUTE.search("at `sqlite:////work/study-run/mlflow.db`") and ABSOLUTE.search("archive /tmp/x/a.tar.gz")
    assert not ABSOLUTE.search('tracking_uri: "sqlite:///mlflow.db", source ../shared/data/x, docs/results/quick')


def test_no_committed_result_names_a_machine_path():
    assert machine_paths(RESULTS) == {}
    assert machine_paths(ROOT / "tests" / "data") == {}


@pytest.mark.parametrize("study", ["quick", "study-cpu-ablations"])
def test_a_report_regenerated_from_a_committed_folder_names_no_machine_path(study, tmp_path, monkeypatch):
    # The README's command, from the checkout's root, into a scratch folder.
    monkeypatch.chdir(ROOT)
    result = report.make_report(pathlib.Path("docs") / "results" / study, out_dir=tmp_path / study,
                                bootstrap_samples=20)
    assert machine_paths(tmp_path, tmp_path) == {}
    markdown = result.files["markdown"].read_text()
    assert f"Read from `docs/results/{study}` (runs.parquet" in markdown
    assert f"Reproduce: `glovesweep report docs/results/{study}`" in markdown


def test_a_folder_written_with_the_store_s_path_and_read_by_its_absolute_path_stays_neutral(tmp_path, monkeypatch):
    # A folder written before the store's URI was left out carries it in runs.parquet's metadata; read from
    # another working directory by its absolute path, the report shows neither.
    folder = tmp_path / "old" / "quick"
    shutil.copytree(RESULTS / "quick", folder)
    table = parquet.read_table(folder / reader.RUNS_FILE)
    metadata = json.loads(table.schema.metadata[reader.METADATA_KEY])
    metadata["tracking_uri"] = "sqlite:////home/someone/study/mlflow.db"
    parquet.write_table(table.replace_schema_metadata({reader.METADATA_KEY: json.dumps(metadata).encode()}),
                        folder / reader.RUNS_FILE)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = report.make_report(folder, out_dir=elsewhere / "out", bootstrap_samples=20)
    assert result.sweep.tracking_uri == ""
    assert machine_paths(elsewhere / "out", tmp_path) == {}
    markdown = result.files["markdown"].read_text()
    assert "Read from `quick` (runs.parquet" in markdown and "Reproduce: `glovesweep report quick`" in markdown


def test_paths_and_store_uris_are_shown_relative_and_without_credentials(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert reader.shown_path(tmp_path / "reports" / "quick") == "reports/quick"
    assert reader.shown_path("docs/results/quick") == "docs/results/quick"
    assert reader.shown_path("/somewhere/else/quick") == "quick"
    assert reader.shown_store(f"sqlite:///{tmp_path}/mlflow.db") == "sqlite:///mlflow.db"
    assert reader.shown_store("sqlite:///mlflow.db") == "sqlite:///mlflow.db"
    assert reader.shown_store("sqlite:////srv/study/mlflow.db") == "sqlite:///mlflow.db"
    assert reader.shown_store(f"file://{tmp_path}/mlruns") == "mlruns"
    assert reader.shown_store("postgresql://user:secret@db:5432/mlflow?password=secret") == "postgresql://db:5432/mlflow"
    assert reader.shown_store("http://admin:pw@127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert reader.shown_store("databricks") == "databricks" and reader.shown_store("") == ""
