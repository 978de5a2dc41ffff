"""Declared dependencies match the imports: every third-party module that trainer/, sweeps/ or scripts/ imports
comes from a distribution that pyproject.toml's ``dependencies`` declares."""

from __future__ import annotations

import ast
import importlib.metadata
import pathlib
import re
import sys
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[1]
FOLDERS = ("trainer", "sweeps", "scripts")
LOCAL = {"trainer", "sweeps"}
# Keras 3 ships as its own distribution, but the project gets it through TensorFlow (which pins it).
PROVIDED_BY = {"keras": "tensorflow"}


def normalized(name: str) -> str:
    """A distribution name as PEP 503 compares them (``scikit_learn`` -> ``scikit-learn``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def declared() -> set[str]:
    """The distributions in pyproject.toml's ``project.dependencies`` (names only, extras and versions dropped)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {normalized(re.match(r"[A-Za-z0-9_.-]+", requirement).group(0)) for requirement in project["dependencies"]}


def imported_modules(path: pathlib.Path) -> set[str]:
    """Top-level names of the absolute imports in a file, wherever they stand (functions included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def undeclared_imports(root: pathlib.Path = ROOT) -> dict[str, str]:
    """``"path: module" -> why`` for every import under ``root``'s FOLDERS that no declared distribution provides."""
    distributions = importlib.metadata.packages_distributions()
    allowed = declared()
    problems = {}
    for folder in FOLDERS:
        for path in sorted((root / folder).rglob("*.py")):
            for module in imported_modules(path):
                if module in sys.stdlib_module_names or module in LOCAL or module == "__future__":
                    continue
                if module in PROVIDED_BY:
                    providers = {PROVIDED_BY[module]}
                else:
                    providers = {normalized(name) for name in distributions.get(module, [])}
                if not providers & allowed:
                    where = f"{path.relative_to(root).as_posix()}: {module}"
                    problems[where] = (f"provided by {', '.join(sorted(providers))}" if providers
                                       else "not installed")
    return problems


def test_every_third_party_import_is_a_declared_dependency():
    problems = undeclared_imports()
    assert not problems, ("imports that pyproject.toml's dependencies do not declare (add the distribution): "
                          + "; ".join(f"{where} ({why})" for where, why in sorted(problems.items())))


def test_the_check_catches_an_undeclared_import(tmp_path):
    # The check itself can fail: a module importing a package that is installed but not declared (pytest), beside
    # the standard library, a local package, keras (through tensorflow) and a declared one.
    (tmp_path / "sweeps").mkdir()
    (tmp_path / "sweeps" / "probe.py").write_text("import json\nimport pytest\nfrom sweeps import names\n"
                                                  "def later():\n    import keras\n    from numpy import random\n")
    assert undeclared_imports(tmp_path) == {"sweeps/probe.py: pytest": "provided by pytest"}
