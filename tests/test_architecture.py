"""The layout is the architecture: layers import only downwards and no module imports itself
back through another (imports inside functions included)."""

from __future__ import annotations

import ast
from pathlib import Path

import pyiron_assyst

PACKAGE = Path(pyiron_assyst.__file__).parent
LAYERS = ["core", "numerics", "execution", "calculators", "storage", "stages",
          {"fitting", "export", "figures"}, "workflow", "cli"]
"""Bottom to top; a set is one level whose members do not import each other."""


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Package modules that ``path`` imports anywhere in its body."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        out |= {n for n in names if n in modules}
    return out


GRAPH = {name: _imports(path, _modules()) - {name} for name, path in _modules().items()}


def _level(module: str) -> int | None:
    parts = module.split(".")
    if len(parts) < 2:
        return None
    for level, layer in enumerate(LAYERS):
        if parts[1] in (layer if isinstance(layer, set) else {layer}):
            return level
    return None


def test_every_subpackage_has_a_layer():
    packages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    placed = set().union(*({x} if isinstance(x, str) else x for x in LAYERS))
    assert packages == placed


def test_layers_import_only_downwards():
    upward = []
    for module, imported in GRAPH.items():
        for target in imported:
            here, there = _level(module), _level(target)
            if here is None or there is None:
                continue
            same_level_peer = here == there and module.split(".")[1] != target.split(".")[1]
            if there > here or same_level_peer:
                upward.append(f"{module} -> {target}")
    assert upward == []


def test_no_import_cycles():
    cycles, state = [], {}

    def visit(module: str, stack: list[str]) -> None:
        state[module] = "open"
        for target in sorted(GRAPH[module]):
            if state.get(target) == "open":
                cycles.append([*stack[stack.index(target):], target])
            elif target not in state:
                visit(target, [*stack, target])
        state[module] = "done"

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_the_package_itself_does_not_import_pyiron_workflow():
    import subprocess
    import sys

    code = ("import sys, pyiron_assyst, pyiron_assyst.stages.sample, pyiron_assyst.cli.settings;"
            "print('pyiron_workflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"


def test_the_repository_is_ruff_clean():
    """``ruff check`` with the project's rule set (pyproject.toml) finds nothing in the
    package, tests, benchmarks and scripts, so CI enforces the style the docs promise."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", str(root)],
                            capture_output=True, text=True, cwd=root, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
