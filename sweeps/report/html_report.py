"""``report.html``: the Markdown report as one self-contained HTML page, its PNGs embedded as base64 ``data:`` URIs.

MLflow's artifact viewer shows an HTML artifact in a sandboxed frame that cannot fetch the images beside it, so
every image travels inside the page. The converter covers what ``sweeps.report.render`` writes and nothing more:
``#``/``##`` headings, paragraphs, ``- `` lists, pipe tables, ``![alt](file.png)`` images and inline code.
"""

from __future__ import annotations

import base64
import html
import pathlib
import re

STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; max-width: 1150px; margin: 2em auto;
       padding: 0 1em; color: #1b1b1b; line-height: 1.45; }
h1 { font-size: 1.6em; border-bottom: 1px solid #ccc; } h2 { font-size: 1.25em; margin-top: 1.6em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.6em 0; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: left; vertical-align: top; }
th { background: #f2f2f2; } tr:nth-child(even) td { background: #fafafa; }
code { background: #f2f2f2; padding: 0 3px; font-size: 0.9em; word-break: break-all; }
img { max-width: 100%; border: 1px solid #eee; }
"""
IMAGE = re.compile(r"^!\[(?P<alt>[^\]]*)\]\((?P<path>[^)]+)\)$")


def inline(text: str) -> str:
    """Escape ``text`` and turn `code` spans into ``<code>``."""
    parts = text.split("`")
    return "".join(f"<code>{html.escape(part)}</code>" if index % 2 else html.escape(part)
                   for index, part in enumerate(parts))


def image(alt: str, path: pathlib.Path) -> str:
    """An ``<img>`` whose source is the PNG at ``path`` as a data URI (a note when the file is absent)."""
    if not path.is_file():
        return f"<p><em>{html.escape(alt)}: image {html.escape(path.name)} not found</em></p>"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<p><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></p>'


def table(lines: list[str]) -> str:
    """A pipe table (header line, separator line, body lines) as ``<table>``."""
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in lines]
    header, body = rows[0], rows[2:]
    output = ["<table>", "<tr>" + "".join(f"<th>{inline(cell)}</th>" for cell in header) + "</tr>"]
    output += ["<tr>" + "".join(f"<td>{inline(cell)}</td>" for cell in row) + "</tr>" for row in body]
    return "\n".join(output + ["</table>"])


def to_html(markdown: str, folder: pathlib.Path, *, title: str) -> str:
    """The page for ``markdown`` (as ``sweeps.report.render.report_markdown`` writes it); images are read from ``folder``."""
    body: list[str] = []
    lines = markdown.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        if not line.strip():
            index += 1
        elif line.startswith("|"):
            block = []
            while index < len(lines) and lines[index].startswith("|"):
                block.append(lines[index])
                index += 1
            body.append(table(block))
        elif line.startswith("- "):
            items = []
            while index < len(lines) and lines[index].startswith("- "):
                items.append(f"<li>{inline(lines[index][2:])}</li>")
                index += 1
            body.append("<ul>\n" + "\n".join(items) + "\n</ul>")
        elif line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{inline(line[level:].strip())}</h{level}>")
            index += 1
        elif match := IMAGE.match(line.strip()):
            body.append(image(match.group("alt"), folder / match.group("path")))
            index += 1
        else:
            body.append(f"<p>{inline(line)}</p>")
            index += 1
    return (f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")
