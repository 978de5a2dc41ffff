"""Shared fixtures. This file is shared by several areas: add fixtures by appending, never rewrite it."""

from __future__ import annotations

import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _isolated_homes(tmp_path_factory, monkeypatch):
    """Keep every test's caches and data home out of the user's home folder."""
    monkeypatch.setenv("GLOVESWEEP_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.setenv("GLOVESWEEP_DATA", str(tmp_path_factory.getbasetemp() / "no-data-home"))


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    """The real archives beside the checkout (present on developer machines and in CI)."""
    if not (SHARED_DATA / "20news-19997.tar.gz").exists():
        pytest.skip(f"real archives not found in {SHARED_DATA}")
    return SHARED_DATA
