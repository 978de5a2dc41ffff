"""What a user sees in MLflow, seen in a real browser: a real smoke sweep, a real MLflow server, headless Chromium.

The URL `glovesweep run` prints must open MLflow's classic runs table listing every child run with its factor
and val_acc columns, and the parent run's page must show the answer. Set ``GLOVESWEEP_SCREENSHOTS=<folder>``
to keep the screenshots (``docs/screenshots`` holds the committed ones).
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil

import pytest
from conftest import build_tiny_data_home

from sweeps import cli
from sweeps.tracking import names
from sweeps.tracking import mlflow_runs

ROOT = pathlib.Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Flags that keep Chromium from reaching for the network at start (this machine has none) and run it as root.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.skipif(not pathlib.Path(CHROMIUM).exists(), reason="needs Debian's chromium (.ci/run installs it)")


@pytest.fixture(scope="module")
def smoke_sweep(mlflow_server, ray_local, tmp_path_factory):
    """The quick sweep's smoke mode on tiny data, logged to the real server; returns what `run` printed."""
    folder = tmp_path_factory.mktemp("ui-sweep")
    home = build_tiny_data_home(folder)
    import io
    import contextlib

    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        code = cli.main(["run", str(ROOT / "sweeps" / "quick.yaml"), "--smoke-test", "--tracking-uri", mlflow_server,
                         "--storage-path", str(folder / "results"), "--data-dir", str(home),
                         "--cache-dir", str(folder / "cache"), "--no-download"])
    text = output.getvalue()
    assert code == 0, text[-3000:]
    (url,) = re.findall(r"runs in MLflow: (\S+)", text)
    parent_id = re.search(r"parent run ([0-9a-f]{32})", text).group(1)
    return {"url": url, "parent_id": parent_id, "output": text, "tracking_uri": mlflow_server}


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def screenshot(page, name: str, tmp_path: pathlib.Path) -> pathlib.Path:
    # MLflow 3.17 opens an assistant panel on first load; close it so the page shows what matters.
    close = page.locator("[aria-label='Close']")
    if close.count():
        close.first.click()
        page.wait_for_timeout(500)
    folder = pathlib.Path(os.environ.get("GLOVESWEEP_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    return path


def children(smoke_sweep) -> list:
    parent = mlflow_runs.run_by_id(smoke_sweep["tracking_uri"], smoke_sweep["parent_id"])
    return mlflow_runs.child_runs(smoke_sweep["tracking_uri"], parent.info.experiment_id, smoke_sweep["parent_id"])


def test_the_printed_url_opens_the_runs_table_with_every_child_and_its_columns(smoke_sweep, browser, tmp_path):
    url = smoke_sweep["url"]
    assert "/#/experiments/" in url and "/runs?" in url, "the classic runs table, not the GenAI overview"
    page = browser.new_page(viewport={"width": 1800, "height": 700})
    page.goto(url)
    runs = children(smoke_sweep)
    assert len(runs) == 4
    for run in runs:
        page.get_by_text(run.info.run_name, exact=True).first.wait_for(timeout=60_000)
    text = page.inner_text("body")
    for header in ("dataset", "strip", names.val_acc_at(2)):
        assert header in text, f"column {header!r} not shown"
    # The parent run is filtered out: only the sweep's trials are listed.
    assert "quick (smoke)" not in text
    assert screenshot(page, "mlflow-runs-table", tmp_path).stat().st_size > 10_000
    page.close()


def test_the_parent_run_page_shows_the_answer(smoke_sweep, browser, tmp_path):
    base, experiment = re.match(r"(.*)/#/experiments/(\d+)/", smoke_sweep["url"]).groups()
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{base}/#/experiments/{experiment}/runs/{smoke_sweep['parent_id']}?workflowType=machine_learning")
    page.get_by_text("The answer", exact=False).first.wait_for(timeout=60_000)
    assert "blog's cell" in page.inner_text("body")
    assert screenshot(page, "mlflow-parent-run", tmp_path).stat().st_size > 10_000
    page.close()
