"""What every command shows on the console: one line per error, without the escape codes Ray colours them with,
and without the lines native libraries print while they load."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from typing import Iterator

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


@contextlib.contextmanager
def native_stderr_held(enabled: bool = True) -> Iterator[None]:
    """Hold back what is written on file descriptor 2 while the block runs; write it out only if the block raises.

    Importing TensorFlow 2.21 prints six lines from C++ (absl's "All log messages before absl::InitializeLog()"
    warning, oneDNN's notice and the CUDA stub's "Could not find cuda drivers", once per library that carries
    them) before any log level is read, so ``TF_CPP_MIN_LOG_LEVEL`` cannot silence them; only the descriptor
    can. A block that fails gives its held text back, so a broken installation still explains itself.

    Parameters
    ----------
    enabled : bool
        False runs the block with stderr untouched (``glovesweep -v``).
    """
    if not enabled:
        yield
        return
    with contextlib.suppress(AttributeError, ValueError, OSError):
        sys.stderr.flush()  # Python's own buffered text belongs before the block, not in it.
    try:
        saved = os.dup(2)
    except OSError:  # No stderr at all (a daemon): nothing to hold back.
        yield
        return
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        failed = False
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            with contextlib.suppress(AttributeError, ValueError, OSError):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if failed:
                held.seek(0)
                text = held.read()
                while text:
                    text = text[os.write(2, text):]
