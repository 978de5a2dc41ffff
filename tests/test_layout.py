"""House rules that keep sweeps/ and trainer/ readable: small modules, no reaching into another's privates, and
sweeps/ in packages by concern that import downward only, with no import cycle."""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("trainer", "sweeps")
MODULES = sorted(path for package in PACKAGES for path in (ROOT / package).rglob("*.py"))
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


@pytest.mark.parametrize("path", MODULES, ids=lambda path: str(path.relative_to(ROOT)))
def test_no_module_uses_another_modules_private_names(path):
    assert private_uses(path) == []


def test_the_checker_sees_a_private_use(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("from sweeps import driver\nfrom trainer.paths import _open_url\ndriver._join('a', 'b')\n")
    assert private_uses(sample) == ["from trainer.paths import _open_url", "driver._join (line 3)"]


@pytest.mark.parametrize("path", sorted((ROOT / "sweeps").rglob("*.py")), ids=lambda path: str(path.relative_to(ROOT)))
def test_sweeps_modules_stay_small(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_SWEEPS_LINES, f"{path.relative_to(ROOT)} has {lines} lines"


# sweeps/ from the bottom up: a module may import its own package's modules and those of lower layers only.
LAYERS = (("sweeps.console", "sweeps.storage", "sweeps.lazy", "sweeps.rest"), ("sweeps.trainers",), ("sweeps.spec",),
          ("sweeps.checks",),
          ("sweeps.tracking",), ("sweeps.report",), ("sweeps.run",), ("sweeps.service",),
          ("sweeps.cli", "sweeps.cli_train", "sweeps.ui"))


def module_names(root: pathlib.Path) -> dict[str, pathlib.Path]:
    names = {}
    for path in root.rglob("*.py"):
        name = ".".join(path.relative_to(root.parent).with_suffix("").parts)
        names[name.removesuffix(".__init__")] = path
    return names


def import_graph(root: pathlib.Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports, at any depth of the file (inside functions too)."""
    modules = module_names(root)
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            candidates = []
            if isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                candidates = [f"{base}.{alias.name}" for alias in node.names] + [base]
            for candidate in candidates:
                while candidate and candidate not in modules:
                    candidate = candidate.rpartition(".")[0]
                if candidate and candidate != name:
                    targets.add(candidate)
                    break
        graph[name] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected set of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def layer_of(name: str) -> int:
    for level, prefixes in enumerate(LAYERS):
        if any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes):
            return level
    raise AssertionError(f"{name} is in no layer of sweeps/: add it to LAYERS")


def test_sweeps_has_no_import_cycle():
    assert cycles(import_graph(ROOT / "sweeps")) == []


def test_sweeps_imports_run_downward_only():
    graph = import_graph(ROOT / "sweeps")
    upward = [f"{name} -> {target}" for name, targets in graph.items() if name != "sweeps"
              for target in targets if target != "sweeps" and layer_of(target) > layer_of(name)]
    assert upward == []


def test_every_package_of_sweeps_names_its_public_surface():
    for init in sorted((ROOT / "sweeps").glob("*/__init__.py")):
        tree = ast.parse(init.read_text())
        assert ast.get_docstring(tree), f"{init.relative_to(ROOT)} has no docstring"
        assert any(isinstance(node, ast.Assign) and any(getattr(target, "id", "") == "__all__" for target in node.targets)
                   for node in tree.body), f"{init.relative_to(ROOT)} names no __all__"


def test_the_checkers_see_a_cycle_and_an_upward_import(tmp_path):
    package = tmp_path / "sweeps"
    (package / "report").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "report" / "__init__.py").write_text("")
    (package / "console.py").write_text("def helper():\n    from sweeps.report import render\n")
    (package / "report" / "render.py").write_text("from sweeps import console\nfrom . import answer\n")
    (package / "report" / "answer.py").write_text("from sweeps.report import render\n")
    graph = import_graph(package)
    assert cycles(graph) == [["sweeps.console", "sweeps.report.answer", "sweeps.report.render"]]
    assert layer_of("sweeps.report.render") > layer_of("sweeps.console")
