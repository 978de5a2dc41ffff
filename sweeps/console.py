"""Console text shared by every command: one line per error, without the escape codes Ray colours them with."""

from __future__ import annotations

import re

# Ray colours the text of errors raised in its workers; a terminal line must not carry escape codes.
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def one_line(error: BaseException) -> str:
    """An exception's message as one line without ANSI codes (Ray's and pydantic's span several)."""
    return single_line(str(error)) or type(error).__name__


def single_line(text: str) -> str:
    """``text`` without ANSI codes, its non-empty lines joined by "; "."""
    return "; ".join(line.strip() for line in ANSI_ESCAPE.sub("", text).splitlines() if line.strip())


def plain_lines(text: str) -> list[str]:
    """``text``'s non-empty lines without ANSI codes."""
    return [line.strip() for line in ANSI_ESCAPE.sub("", text).splitlines() if line.strip()]
