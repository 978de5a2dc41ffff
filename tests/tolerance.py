"""Compare regenerated text (CSV, JSON, Markdown) with a committed copy, numbers within a tolerance.

Floating point differs in the last digits between CPUs and BLAS builds (an Intel and an AMD machine disagree
in the 14th digit of the study's effects), so a byte-exact comparison of regenerated results fails on the
next machine. Here the words must match exactly, a number written at full precision must match to ``rel``
(relative) and a number rounded for print may differ by one unit in its last printed digit, as a value on a
rounding boundary can.
"""

from __future__ import annotations

import math
import re

NUMBER = re.compile(r"-?\d+(?:\.(\d+))?(?:[eE][-+]?\d+)?")
# A number written with at least this many significant digits is taken as full precision.
FULL_PRECISION_DIGITS = 10


def _tolerance(token: str, decimals: str | None, rel: float) -> tuple[float, float]:
    """(relative, absolute) tolerance for one number as written."""
    digits = len(re.sub(r"[^0-9]", "", token.split("e")[0].split("E")[0]).lstrip("0"))
    if digits >= FULL_PRECISION_DIGITS or "e" in token.lower():
        return rel, 1e-12
    return 0.0, 10.0 ** -(len(decimals) if decimals else 0) * 1.000001


def assert_same_text(actual: str, expected: str, *, rel: float = 1e-9, name: str = "") -> None:
    """Assert ``actual`` equals ``expected`` word for word, numbers within their tolerance."""
    actual_words, expected_words = NUMBER.split(actual), NUMBER.split(expected)
    actual_numbers = list(NUMBER.finditer(actual))
    expected_numbers = list(NUMBER.finditer(expected))
    # re.split with a group keeps the group's text (the decimals) between the words: compare words only.
    assert actual_words[::2] == expected_words[::2], f"{name}: the text differs beside its numbers"
    assert len(actual_numbers) == len(expected_numbers), f"{name}: {len(actual_numbers)} numbers, expected {len(expected_numbers)}"
    for got, want in zip(actual_numbers, expected_numbers):
        relative, absolute = _tolerance(want.group(0), want.group(1), rel)
        assert math.isclose(float(got.group(0)), float(want.group(0)), rel_tol=relative, abs_tol=absolute), (
            f"{name}: {got.group(0)} where {want.group(0)} is expected "
            f"(at character {got.start()}: ...{actual[max(0, got.start() - 60):got.start()]!r})")
