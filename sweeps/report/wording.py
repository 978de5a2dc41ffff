"""The words the report and its answer share: an epoch count, a cell, and one sentence per gap.

``answer`` (computation) and ``render`` (the report's text) both speak of cells and epoch counts; the phrasing
lives here, below both, so that neither imports the other.
"""

from __future__ import annotations

import math


def epochs_text(count: int) -> str:
    """``1 epoch`` / ``10 epochs``."""
    return f"{count} epoch" + ("" if count == 1 else "s")


def describe(cell: dict[str, str]) -> str:
    """``dataset=19997, strip=none``."""
    return ", ".join(f"{key}={value}" for key, value in cell.items())


def answer_sentences(gaps: list[dict], blog_cell: dict[str, str], user_cell: dict[str, str]) -> list[str]:
    """One plain sentence per epoch count naming the factor that explains most of the gap, in points."""
    sentences = []
    for gap in gaps:
        count = gap["epochs"]
        if "missing" in gap:
            sentences.append(f"At {epochs_text(count)} the gap cannot be measured: {gap['missing']}.")
            continue
        if not gap["contributions"]:
            sentences.append(f"At {epochs_text(count)} the blog's and the user's cells are the same cell.")
            continue
        top = gap["contributions"][0]
        held = f" (with {gap['stratum']})" if gap["stratum"] else ""
        interval = ("no interval: one seed per cell" if math.isnan(top["low"])
                    else f"95% t-interval {top['low']:.1f} to {top['high']:.1f}")
        sentence = (f"At {epochs_text(count)} the blog's cell ({describe(blog_cell)}) reaches "
                    f"{gap['blog']:.3f} and the user's cell ({describe(user_cell)}) {gap['user']:.3f}{held}, "
                    f"a gap of {gap['gap_points']:.1f} points; {top['factor']} ({top['from']} -> {top['to']}) "
                    f"explains {top['points']:.1f} of them ({interval})")
        rest = [f"{item['factor']} {item['points']:.1f}" for item in gap["contributions"][1:]]
        sentence += (f", {'; '.join(rest)}." if rest else ".")
        if gap["modelled"]:
            sentence += f" Not run, predicted by the main-effects model: {'; '.join(gap['modelled'])}."
        sentences.append(sentence)
    return sentences
