"""``report.html``: the Markdown report as one self-contained HTML page, its PNGs embedded as base64 ``data:`` URIs.

MLflow's artifact viewer shows an HTML artifact in a sandboxed frame that cannot fetch the images beside it, so
every image travels inside the page. markdown-it-py parses the report as CommonMark plus pipe tables, with raw
HTML off: text the report quotes from a sweep file (claims' sources, cell values) stays escaped text, never markup.
An image is read only when it is a PNG file inside the report folder; any other image becomes a short note.
"""

from __future__ import annotations

import base64
import html
import pathlib
import urllib.parse

import markdown_it

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
# The key under which ``to_html`` hands the report folder to the image rule through markdown-it's ``env``.
FOLDER_KEY = "glovesweep_folder"


def image_file(source: str, folder: pathlib.Path) -> pathlib.Path | None:
    """The PNG file that an image's ``source`` names inside ``folder``, or None.

    None for a URL (any scheme), an absolute path, a path that leaves ``folder`` (``..``, a link out of it), a
    file that is not a PNG, or a file that does not exist: only the report's own plots are read.
    """
    parsed = urllib.parse.urlsplit(source)
    if parsed.scheme or parsed.netloc or not parsed.path:
        return None
    relative = pathlib.PurePosixPath(urllib.parse.unquote(parsed.path))
    if relative.is_absolute() or relative.suffix.lower() != ".png":
        return None
    root = folder.resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        return None
    return path


def _render_image(renderer, tokens, index, options, env) -> str:
    """markdown-it's image rule with the picture read into a ``data:`` URI, or a note when it cannot be."""
    token = tokens[index]
    path = image_file(str(token.attrGet("src") or ""), env[FOLDER_KEY])
    if path is None:
        alt = renderer.renderInlineAsText(token.children or [], options, env)
        name = pathlib.PurePosixPath(urllib.parse.unquote(str(token.attrGet("src") or ""))).name
        return f"<em>{html.escape(alt)}: image {html.escape(name)} not found in the report folder</em>"
    token.attrSet("src", "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii"))
    return renderer.image(tokens, index, options, env)


def parser() -> markdown_it.MarkdownIt:
    """CommonMark with pipe tables and raw HTML off (escaped), images embedded by ``_render_image``."""
    markdown = markdown_it.MarkdownIt("commonmark", {"html": False}).enable("table")
    markdown.add_render_rule("image", _render_image)
    return markdown


def to_html(markdown: str, folder: pathlib.Path, *, title: str) -> str:
    """The page for ``markdown`` (as ``sweeps.report.render.report_markdown`` writes it).

    Parameters
    ----------
    markdown : str
        The report's Markdown.
    folder : path
        The report folder: images are read from it, and only from it.
    title : str
        The page's ``<title>`` (escaped).
    """
    body = parser().render(markdown, {FOLDER_KEY: pathlib.Path(folder)})
    return (f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
            + body + "</body>\n</html>\n")
