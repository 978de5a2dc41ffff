"""The tolerant comparison that the regenerated-results tests use (tests/tolerance.py) fails where it should."""

from __future__ import annotations

import pytest

import tolerance


def test_last_digits_of_a_full_precision_number_may_differ():
    tolerance.assert_same_text("share,0.35466693454055753\n", "share,0.35466693454055151\n")


def test_a_printed_number_may_round_the_other_way_by_one_unit():
    tolerance.assert_same_text("gap 60.0 [55.1, 64.7]", "gap 59.9 [55.1, 64.7]")


@pytest.mark.parametrize("actual, expected", [
    ("share,0.35466693454055753", "share,0.35466693554055753"),  # 3e-9 relative
    ("gap 60.1 points", "gap 59.9 points"),  # two units in the last printed digit
    ("gap 59.9 points", "gap 59.9 percent"),  # the words
    ("cells 1 2", "cells 1"),  # a number missing
])
def test_differences_beyond_the_tolerance_fail(actual, expected):
    with pytest.raises(AssertionError):
        tolerance.assert_same_text(actual, expected)
