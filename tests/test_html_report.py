"""report.html (sweeps/report/html_report.py): CommonMark with pipe tables, text from a sweep file stays escaped,
the report's own PNGs embedded, nothing read from outside the report folder."""

from __future__ import annotations

import base64
import pathlib
import shutil

from sweeps import report
from sweeps.report import html_report

ROOT = pathlib.Path(__file__).resolve().parents[1]
QUICK = ROOT / "docs" / "results" / "quick"
PNG = QUICK / "gap.png"


def body(page: str) -> str:
    return page.split("<body>", 1)[1]


def test_a_table_renders_as_a_table_and_an_escaped_pipe_stays_in_its_cell(tmp_path):
    page = html_report.to_html("| source | value |\n|---|---|\n| a \\| b | `x` |\n| c | 0.5 |\n", tmp_path, title="t")
    assert "<table>" in page and "<th>source</th>" in page and "<th>value</th>" in page
    # The escaped pipe is part of the cell, not a third column (a claim's source may hold one).
    assert "<td>a | b</td>\n<td><code>x</code></td>" in page and page.count("<td>") == 4


def test_html_in_sweep_file_text_stays_escaped_text(tmp_path):
    markdown = ("# Sweep report: <b>x</b>\n\n<script>alert('block')</script>\n\nA description <script>alert(1)</script> "
                "<img src=x onerror=alert(2)>\n\n| source |\n|---|\n| <script>alert(3)</script> |\n\n"
                "[click](javascript:alert(4))\n")
    page = html_report.to_html(markdown, tmp_path, title="<script>t</script>")
    # markdown-it refuses a javascript: link: its text stays as written, never an href.
    assert "<script" not in page and "<img" not in page and "<b>" not in page and "<a " not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<td>&lt;script&gt;alert(3)&lt;/script&gt;</td>" in page
    assert "<title>&lt;script&gt;t&lt;/script&gt;</title>" in page


def test_a_claim_source_with_markup_in_the_sweep_file_reaches_the_page_as_text(tmp_path, monkeypatch):
    folder = tmp_path / "quick"
    shutil.copytree(QUICK, folder)
    with open(folder / "sweep.yaml", "a") as handle:
        handle.write('claims:\n  - {source: "<script>alert(1)</script> blog", cell: {dataset: "19997", strip: none}, '
                     "epoch: 5, value: 0.9}\n")
    monkeypatch.chdir(tmp_path)
    result = report.make_report("quick", out_dir="out", bootstrap_samples=20)
    assert [verdict.source for verdict in result.verdicts] == ["<script>alert(1)</script> blog"]
    page = result.files["html"].read_text()
    assert "<script" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; blog" in page


def test_the_report_folder_s_pngs_are_embedded_byte_for_byte(tmp_path):
    (tmp_path / "plots").mkdir()
    shutil.copy(PNG, tmp_path / "plots" / "gap plot.png")
    page = html_report.to_html("# R\n\n![the gap](plots/gap%20plot.png)\n", tmp_path, title="R")
    prefix = '<img src="data:image/png;base64,'
    assert page.count(prefix) == 1
    encoded = page.split(prefix, 1)[1].split('"', 1)[0]
    assert base64.b64decode(encoded) == PNG.read_bytes() and 'alt="the gap"' in page


def test_an_image_or_link_outside_the_report_folder_is_not_read(tmp_path):
    folder = tmp_path / "report"
    folder.mkdir()
    secret = tmp_path / "secret.png"
    shutil.copy(PNG, secret)
    (folder / "inside.png").symlink_to(secret)
    secret_text = base64.b64encode(secret.read_bytes()).decode("ascii")
    markdown = (f"![up](../secret.png)\n\n![absolute]({secret})\n\n![linked](inside.png)\n\n"
                f"![url](file://{secret})\n\n[a link](../secret.png)\n")
    page = html_report.to_html(markdown, folder, title="R")
    assert secret_text[:200] not in page and "data:image" not in page
    for alt, name in (("up", "secret.png"), ("absolute", "secret.png"), ("linked", "inside.png")):
        assert f"<em>{alt}: image {name} not found in the report folder</em>" in page, alt
    # markdown-it refuses a file: URL (its text stays as written); a link is never read, it stays a link.
    assert f"<p>![url](file://{secret})</p>" in page
    assert '<a href="../secret.png">a link</a>' in body(page)


def test_a_missing_image_is_a_note():
    page = html_report.to_html("![missing plot](absent.png)\n", pathlib.Path("."), title="T")
    assert "<em>missing plot: image absent.png not found in the report folder</em>" in page
