"""What a post keeps of its header, and whether what it keeps names its label.

The strip modes (``STRIPPERS``, one per value of the ``strip`` factor) cut a post's Usenet header the ways the
published versions did; ``label_header_fraction`` measures the leak they leave: the share of posts that still
hold a header line naming their own newsgroup.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

from trainer import config as config_module


# ------------------------------------------------------------------------------------------- stripping


def _strip_none(text: str) -> str:
    return text


def _strip_blank_line(text: str) -> str:
    # Keras PR #5585 (the blog's loader): i = t.find('\n\n'); if 0 < i: t = t[i:]  -- keeps the blank line.
    index = text.find("\n\n")
    if 0 < index:
        text = text[index:]
    return text


def _strip_first_10_lines(text: str) -> str:
    # keras-io "Using pre-trained word embeddings" (2020): lines = content.split("\n"); lines = lines[10:].
    return "\n".join(text.split("\n")[10:])


def _sklearn_header(text: str) -> str:
    # scikit-learn strip_newsgroup_header: text.partition("\n\n") -> everything after the first blank line.
    _before, _blank_line, after = text.partition("\n\n")
    return after


def _sklearn_footer(text: str) -> str:
    # scikit-learn strip_newsgroup_footer: cut at the last blank or all-hyphen line unless it is line 0.
    lines = text.strip().split("\n")
    cut = next((number for number in range(len(lines) - 1, -1, -1) if lines[number].strip().strip("-") == ""), 0)
    return "\n".join(lines[:cut]) if cut > 0 else text


# scikit-learn _QUOTE_RE: lines quoting or introducing a quote.
_QUOTE_PATTERN = re.compile(r"(writes in|writes:|wrote:|says:|said:|^In article|^Quoted from|^\||^>)")


def _sklearn_quoting(text: str) -> str:
    # scikit-learn strip_newsgroup_quoting: drop every line the quote pattern matches.
    return "\n".join(line for line in text.split("\n") if not _QUOTE_PATTERN.search(line))


def _strip_sklearn_headers(text: str) -> str:
    # fetch_20newsgroups(remove=('headers',)).
    return _sklearn_header(text)


def _strip_sklearn_all(text: str) -> str:
    # fetch_20newsgroups(remove=('headers', 'footers', 'quotes')) applies them in this order.
    return _sklearn_quoting(_sklearn_footer(_sklearn_header(text)))


STRIPPERS: dict[str, Callable[[str], str]] = {
    "none": _strip_none,
    "blank_line": _strip_blank_line,
    "first_10_lines": _strip_first_10_lines,
    "sklearn_headers": _strip_sklearn_headers,
    "sklearn_all": _strip_sklearn_all,
}
assert tuple(STRIPPERS) == config_module.choices("strip"), "STRIPPERS must cover the strip factor's choices"


def strip_text(text: str, mode: str) -> str:
    """Apply one header-stripping mode (a value of ``trainer.config.choices("strip")``) to a post."""
    if mode not in STRIPPERS:
        raise ValueError(f"strip mode {mode!r} is not known; allowed: {', '.join(STRIPPERS)}")
    return STRIPPERS[mode](text)


def normalise_text(text: str) -> str:
    """Lower-case with whitespace runs collapsed to one space: the key for dedup and leakage."""
    return " ".join(text.lower().split())


# -------------------------------------------------------------------------------- label-bearing headers

# Header fields of the 19997 archive whose value can name the post's group. Newsgroups lists the groups a post
# was sent to; Xref (written by the server the posts were read from, e.g. cantaloupe.srv.cs.cmu.edu) lists
# "<group>:<article number>" per group; Path is the relay chain and names a group only rarely. bydate has
# "some headers removed" (http://qwone.com/~jason/20Newsgroups/): its headers hold none of these three lines.
LABEL_HEADER_FIELDS = ("Newsgroups", "Xref", "Path")
_LABEL_HEADER_PATTERN = re.compile(r"^(?:" + "|".join(LABEL_HEADER_FIELDS) + r"):(.*)$",
                                   re.IGNORECASE | re.MULTILINE)
# Group names are separated by commas (Newsgroups), spaces and ":<number>" (Xref) or "!" (Path).
_HEADER_VALUE_SEPARATORS = re.compile(r"[\s,:!]+")


def names_own_group(text: str, group: str) -> bool:
    """Whether ``text`` holds a header-style line that names ``group``.

    A header-style line starts (at the very start of a line, any case) with ``Newsgroups:``, ``Xref:`` or
    ``Path:``; it names the group when one of its comma-, space-, colon- or ``!``-separated words equals the
    group name exactly (``sci.space.shuttle`` does not name ``sci.space``). A body line that merely mentions
    the group, or a quoted header (``> Newsgroups: ...``), does not count.
    """
    lowered = group.lower()
    for match in _LABEL_HEADER_PATTERN.finditer(text):
        if lowered in _HEADER_VALUE_SEPARATORS.split(match.group(1).lower()):
            return True
    return False


def label_header_fraction(texts: list[str], labels: np.ndarray, label_names: list[str]) -> float:
    """Fraction of documents whose text still carries a header line naming the document's own group.

    This is the mechanism behind the Keras blog's 95%: the 19997 archive keeps every post's ``Newsgroups:``
    and ``Xref:`` lines, which name the label. Pass texts after stripping (as a ``Split`` holds them): with
    headers kept the fraction is about 1 on 19997, and 0 after a header-stripping mode and on bydate (whose
    posts lost those headers). It measures the text; the tokenizer may still truncate a long post's header
    away (``pad_sequences`` keeps the last tokens).

    Parameters
    ----------
    texts : list of str, length N
        Document texts, after stripping.
    labels : array-like of int, shape (N,)
        Index of each document's group in ``label_names``.
    label_names : list of str
        Group names (e.g. ``alt.atheism``).

    Returns
    -------
    float
        In [0, 1]; 0.0 for no documents.
    """
    if len(texts) != len(labels):
        raise ValueError(f"{len(texts)} texts but {len(labels)} labels; give one label per text")
    if not texts:
        return 0.0
    carrying = sum(names_own_group(text, label_names[int(label)]) for text, label in zip(texts, labels))
    return carrying / len(texts)


# ------------------------------------------------------------------------------------------------ split
