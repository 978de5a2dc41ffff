"""House rules that keep sweeps/ and trainer/ readable: small modules, no reaching into another's privates."""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("trainer", "sweeps")
MODULES = sorted(path for package in PACKAGES for path in (ROOT / package).glob("*.py"))
MAX_SWEEPS_LINES = 400


def private_uses(path: pathlib.Path) -> list[str]:
    """``module._name`` uses and ``from package.module import _name`` imports of the project's own modules."""
    tree = ast.parse(path.read_text(), filename=str(path))
    aliases: set[str] = set()
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PACKAGES:
            for alias in node.names:
                if alias.name.startswith("_"):
                    found.append(f"from {node.module} import {alias.name}")
                aliases.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in PACKAGES:
                    aliases.add(alias.asname or alias.name)
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                and node.attr.startswith("_") and not node.attr.startswith("__")):
            found.append(f"{node.value.id}.{node.attr} (line {node.lineno})")
    return found


@pytest.mark.parametrize("path", MODULES, ids=lambda path: f"{path.parent.name}/{path.name}")
def test_no_module_uses_another_modules_private_names(path):
    assert private_uses(path) == []


def test_the_checker_sees_a_private_use(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("from sweeps import driver\nfrom trainer.paths import _open_url\ndriver._join('a', 'b')\n")
    assert private_uses(sample) == ["from trainer.paths import _open_url", "driver._join (line 3)"]


@pytest.mark.parametrize("path", sorted((ROOT / "sweeps").glob("*.py")), ids=lambda path: path.name)
def test_sweeps_modules_stay_small(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_SWEEPS_LINES, f"{path.name} has {lines} lines"
