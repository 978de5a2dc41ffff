"""The bad-input table (issue 12): every input a user can get wrong is refused with a non-zero exit and one
line on stderr that names the bad thing and the fix, without a traceback, before any compute, leaving nothing
half-written in the cache or in MLflow.

Each row runs ``sweeps.cli.main`` in this process (``capsys``). Rows marked ``ray`` reach the checks made
after Ray starts; they reuse the session's local Ray (``ray_local``), so no row trains or prepares anything.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
import shutil
import sqlite3
import subprocess
import sys
import tarfile
from typing import Callable

import pytest
from conftest import build_tiny_corpus, build_tiny_data_home

from sweeps import cli
from trainer import data as data_module

GOOD_SWEEP = """\
# Run: glovesweep run {sweep}
name: bad-inputs
factors:
  dataset: ["19997"]
  epochs: [1]
fixed:
  architecture: global_max
  max_sequence_length: 160
  {fixed}
seeds: 1
resources: {{cpu: 1, gpu: 0}}
mlflow: {{tracking_uri: "{tracking_uri}", experiment: bad-inputs}}
storage_path: {results}
"""


@dataclasses.dataclass(frozen=True)
class Row:
    """One bad input: the command line (placeholders: {sweep} {home} {tmp}), what its one line must say."""

    name: str
    argv: tuple[str, ...]
    expect: str  # a regex the single stderr line must match: the bad thing ... the fix
    sweep: str | None = None  # the sweep file's text (placeholders as GOOD_SWEEP's); None: GOOD_SWEEP
    fixed: str = "embedding: random"
    tracking_uri: str = "sqlite:///{tmp}/mlflow.db"
    setup: Callable[[pathlib.Path], None] | None = None  # writes extra files under tmp
    env: tuple[tuple[str, str], ...] = ()
    unset: tuple[str, ...] = ()
    ray: bool = False


RUN = ("run", "{sweep}", "--no-download", "--data-dir", "{home}", "--cache-dir", "{tmp}/cache")


def bad_archive(kind: str) -> Callable[[pathlib.Path], None]:
    """A data home at tmp/bad-home whose 19997 archive is truncated, holds 2 groups, or holds a binary post."""

    def setup(tmp: pathlib.Path) -> None:
        groups = ("alt.atheism", "sci.space") if kind == "two-groups" else data_module.NEWSGROUPS
        corpus = build_tiny_corpus(tmp / "corpus", "19997", groups=groups, posts_per_group=2)
        if kind == "binary":
            (corpus.folder / "20_newsgroups" / "rec.autos" / "10").write_bytes(b"\x00\x01\x02" * 100)
            with tarfile.open(corpus.archive, "w:gz") as tar:
                tar.add(corpus.folder / "20_newsgroups", arcname="20_newsgroups")
        home = tmp / "bad-home"
        home.mkdir()
        content = corpus.archive.read_bytes()
        (home / corpus.archive.name).write_bytes(content[:len(content) // 2] if kind == "truncated" else content)

    return setup


def write(relative: str, content: bytes) -> Callable[[pathlib.Path], None]:
    def setup(tmp: pathlib.Path) -> None:
        path = tmp / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)

    return setup


SWEEP_WITH = GOOD_SWEEP.replace("  epochs: [1]\n", "  epochs: [1]\n{extra}")
BAD_HOME = ("run", "{sweep}", "--no-download", "--data-dir", "{tmp}/bad-home", "--cache-dir", "{tmp}/cache")
ROWS = [
    # ------------------------------------------------------------------------------------------ sweep files
    Row("sweep-file-missing", ("run", "{tmp}/nowhere.yaml"), r"cannot read sweep file .*nowhere\.yaml.*check the path"),
    Row("sweep-file-not-yaml", RUN, r"(YAML|yaml).*line", sweep="name: [unclosed\nfactors: {\n"),
    Row("sweep-file-empty", RUN, r"sweep.*(empty|mapping|name)", sweep=""),
    Row("sweep-file-not-utf8", RUN, r"not UTF-8 text .*save the sweep file as UTF-8",
        sweep="name: caf\udce9\n"),
    Row("unknown-top-level-key", RUN, r"unknown key 'colour'; allowed keys: answer, baselines",
        sweep=GOOD_SWEEP + "colour: blue\n"),
    Row("unknown-factor", RUN, r"flavour.*(allowed|known|factor)",
        sweep=SWEEP_WITH.replace("{extra}", "  flavour: [a, b]\n")),
    Row("bad-factor-value", RUN, r"strip.*nonsense.*(allowed|none)",
        sweep=SWEEP_WITH.replace("{extra}", "  strip: [none, nonsense]\n")),
    Row("epochs-mixed-types", RUN, r"epochs.*'x'.*", sweep=GOOD_SWEEP.replace("epochs: [1]", 'epochs: [2, "x"]')),
    Row("epochs-zero", RUN, r"epochs.*0.*(>= 1|at least|greater)", sweep=GOOD_SWEEP.replace("epochs: [1]", "epochs: [0]")),
    Row("seeds-zero", RUN, r"seeds.*(>= 1|at least|greater|positive)", sweep=GOOD_SWEEP.replace("seeds: 1", "seeds: 0")),
    Row("asha-without-num-samples", RUN, r"num_samples", sweep=GOOD_SWEEP + "search: {mode: asha}\n"),
    Row("negative-gpu", RUN, r"gpu.*(greater than or equal to 0|>= 0)",
        sweep=GOOD_SWEEP.replace("{{cpu: 1, gpu: 0}}", "{{cpu: 1, gpu: -1}}")),
    Row("fixed-bad-value", RUN, r"max_sequence_length.*(too short|>=|149)", fixed="max_sequence_length: 3"),
    Row("tracking-uri-bad-scheme", RUN, r"ftp://.*(sqlite|http)", tracking_uri="ftp://example.com/mlflow"),
    Row("tracking-server-unreachable", RUN, r"MLflow tracking server http://127\.0\.0\.1:9 is unreachable.*--tracking-uri",
        tracking_uri="http://127.0.0.1:9"),
    Row("sqlite-folder-missing", RUN, r"folder .*no-such-folder does not exist; create it",
        tracking_uri="sqlite:///{tmp}/no-such-folder/mlflow.db"),
    # ---------------------------------------------------------------------------------------------- flags
    Row("run-without-sweep-file", ("run",), r"give a sweep file, e.g. glovesweep run sweeps/quick.yaml"),
    Row("num-cpus-not-a-number", (*RUN, "--num-cpus", "many"), r"--num-cpus: invalid int value: 'many'.*--help"),
    Row("unknown-command", ("sweep", "x.yaml"), r"invalid choice: 'sweep'.*--help"),
    Row("unknown-flag", (*RUN, "--gpus", "2"), r"unrecognized arguments: --gpus 2.*--help"),
    Row("ui-port-not-a-number", ("ui", "--port", "http"), r"--port: invalid int value: 'http'"),
    Row("ui-remote-host", ("ui", "--tracking-uri", "sqlite:///{tmp}/ui.db", "--host", "0.0.0.0"),
        r"--host 0\.0\.0\.0 .*--allow-remote", setup=write("ui.db", b"")),
    Row("ui-store-missing", ("ui", "--tracking-uri", "sqlite:///{tmp}/missing.db"),
        r"no MLflow store at .*missing\.db: run a sweep first"),
    Row("train-bad-dataset", ("train", "--dataset", "20news"), r"dataset='20news' is not allowed; allowed values: '19997', 'bydate', '18828'"),
    Row("train-bad-boolean", ("train", "--dedup", "maybe"), r"--dedup.*'maybe' is not a boolean; use true or false"),
    Row("resume-not-a-sweep-folder", ("resume", "{tmp}"), r"{tmp}.*(sweep|state)"),
    Row("report-store-missing", ("report", "my-sweep", "--tracking-uri", "sqlite:///{tmp}/none.db"), r"none\.db"),
    Row("report-without-sweep", ("report", "--tracking-uri", "sqlite:///{tmp}/none.db"),
        r"name the sweep: glovesweep report <report folder, sweep name or parent run id>"),
    # ------------------------------------------------------------------------------------------- archives
    Row("archive-missing-no-download", ("run", "{sweep}", "--no-download", "--data-dir", "{tmp}/empty-home"),
        r"20 Newsgroups '19997' not found.*downloads are off.*Download http"),
    Row("archive-truncated", BAD_HOME, r"cannot read archive .*20news-19997\.tar\.gz: it is truncated or corrupt.*again",
        setup=bad_archive("truncated")),
    Row("archive-two-groups", BAD_HOME, r"holds 2 of the 20 groups \(missing: comp\.graphics.*complete archive",
        setup=bad_archive("two-groups"), unset=(data_module.ALLOW_GROUP_SUBSET_ENV,)),
    Row("archive-binary-post", BAD_HOME, r"post rec\.autos/10 \(all\) is binary.*unmodified",
        setup=bad_archive("binary")),
    Row("data-path-not-an-archive", RUN, r"data_path=.*notes\.txt.*neither a folder nor a tar archive",
        fixed="embedding: random\n  data_path: {tmp}/notes.txt", setup=write("notes.txt", b"hello\n")),
    Row("data-path-other-version", RUN, r"bydate.*version's folder\).*not an extracted '19997' folder",
        fixed="embedding: random\n  data_path: {tmp}/corpus/extracted/20news-bydate-train",
        setup=lambda tmp: build_tiny_corpus(tmp / "corpus", "bydate")),
    # --------------------------------------------------------------------------------------------- GloVe
    Row("glove-missing", RUN, r"glove_path=.*glove\.6B\.50d\.txt.*does not exist; give the path of glove\.6B\.zip",
        fixed="embedding: frozen\n  glove_path: {tmp}/glove.6B.50d.txt"),
    Row("glove-wrong-dimension", RUN, r"glove\.6B\.50d\.txt has 3 numbers per line, expected 50",
        fixed="embedding: frozen\n  glove_path: {tmp}/glove.6B.50d.txt",
        setup=write("glove.6B.50d.txt", b"the 0.1 0.2 0.3\nof 0.4 0.5 0.6\n")),
    Row("glove-not-text", RUN, r"glove\.6B\.50d\.txt.*(not a GloVe text file|numbers per line)",
        fixed="embedding: frozen\n  glove_path: {tmp}/glove.6B.50d.txt", setup=write("glove.6B.50d.txt", b"\x00" * 64)),
    # ------------------------------------------------------------------------------------------ environment
    Row("env-data-home-empty", ("run", "{sweep}", "--no-download"), r"not found: .*data home .*env-home.*downloads are off",
        env=(("GLOVESWEEP_DATA", "{tmp}/env-home"),)),
    Row("env-cluster-flag-garbage", RUN, r"GLOVESWEEP_CLUSTER='maybe': use 1 or 0", env=(("GLOVESWEEP_CLUSTER", "maybe"),),
        ray=True),
    Row("env-shared-storage-relative", RUN, r"GLOVESWEEP_SHARED_STORAGE='results'.*not an absolute folder",
        env=(("GLOVESWEEP_CLUSTER", "1"), ("GLOVESWEEP_SHARED_STORAGE", "results")), ray=True),
    Row("resources-gpu-absent", RUN, r"each trial asks for CPU=1, GPU=2, but none of the 1 node\(s\) of this Ray cluster.*gpu: 0",
        sweep=GOOD_SWEEP.replace("{{cpu: 1, gpu: 0}}", "{{cpu: 1, gpu: 2}}"), ray=True),
]


@pytest.fixture(scope="module")
def tiny_home(tmp_path_factory):
    return build_tiny_data_home(tmp_path_factory.mktemp("bad-inputs-data"), versions=("19997",))


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory):
    """An MLflow sqlite store with its tables (creating them costs seconds): each row starts from a copy."""
    from sweeps.tracking import mlflow_runs

    path = tmp_path_factory.mktemp("bad-inputs-store") / "mlflow.db"
    mlflow_runs.check_reachable(f"sqlite:///{path}")
    return path


def fill(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace("{" + key + "}", value)
    return text


def assert_nothing_half_written(tmp: pathlib.Path) -> None:
    cache = tmp / "cache"
    # A preparation task that refused its archive may leave its entry's lock file (empty), never an entry.
    entries = [path for path in (cache / "prepared").glob("*") if path.suffix != ".lock"]
    assert not entries, f"a prepared entry was written: {entries}"
    assert all(path.stat().st_size == 0 for path in (cache / "prepared").glob("*.lock"))
    assert not [path for path in tmp.rglob("*.tmp")], "a temporary file was left"
    assert not (tmp / "results").exists(), "Tune results were written"
    store = tmp / "mlflow.db"
    if store.exists() and store.stat().st_size:
        with sqlite3.connect(store) as connection:
            tables = {name for (name,) in connection.execute("select name from sqlite_master where type='table'")}
            if "experiments" in tables:
                names = [name for (name,) in connection.execute("select name from experiments")]
                assert "bad-inputs" not in names, "an MLflow experiment was created"
            if "runs" in tables:
                assert connection.execute("select count(*) from runs").fetchone()[0] == 0, "an MLflow run was created"


@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
def test_a_bad_input_is_one_line_naming_it_and_the_fix(row, tmp_path, tiny_home, empty_store, capsys, monkeypatch,
                                                       request):
    if row.ray:
        request.getfixturevalue("ray_local")
    shutil.copy(empty_store, tmp_path / "mlflow.db")
    values = {"tmp": str(tmp_path), "home": str(tiny_home), "sweep": str(tmp_path / "sweep.yaml"),
              "results": str(tmp_path / "results")}
    if row.setup:
        row.setup(tmp_path)
    tracking_uri = fill(row.tracking_uri, values)
    text = row.sweep if row.sweep is not None else GOOD_SWEEP
    text = text.replace("{fixed}", fill(row.fixed, values)).replace("{tracking_uri}", tracking_uri)
    text = fill(text, values).replace("{{", "{").replace("}}", "}")
    (tmp_path / "sweep.yaml").write_bytes(text.encode("utf-8", errors="surrogateescape"))
    for key, value in row.env:
        monkeypatch.setenv(key, fill(value, values))
    for key in row.unset:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)
    argv = [fill(word, values) for word in row.argv]
    if row.unset:
        # Ray's workers read the environment of the Ray they belong to, and the preparation tasks check the archives:
        # a session Ray that other tests started keeps the variable, so this row runs in a process of its own.
        finished = subprocess.run([sys.executable, "-m", "sweeps.cli", *argv], cwd=tmp_path, env=dict(os.environ),
                                  capture_output=True, text=True, timeout=600)
        code, error_text = finished.returncode, finished.stderr
    else:
        capsys.readouterr()
        try:
            code = cli.main(argv)
        except SystemExit as exit_info:  # argparse's usage errors
            code = exit_info.code
        error_text = capsys.readouterr().err
    lines = error_text.splitlines()
    assert code not in (0, None), f"exit {code}: {error_text}"
    assert len(lines) == 1, f"expected one line on stderr, got:\n{error_text}"
    assert "Traceback" not in error_text and "\x1b[" not in error_text
    assert re.search(fill(row.expect, {"tmp": re.escape(str(tmp_path))}), lines[0]), lines[0]
    assert_nothing_half_written(tmp_path)


def test_the_table_is_long_enough():
    assert len(ROWS) >= 25 and len({row.name for row in ROWS}) == len(ROWS)
