"""No import cycles among the project's modules, and the stage layering of DESIGN.md §2 (historian and kernel)."""

from __future__ import annotations

import ast
from collections.abc import Collection, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("aidc", "app", "historian", "collectors", "simulators", "analytics", "control", "dashboards", "api")
STAGES = ("historian", "collectors", "simulators", "analytics", "control", "dashboards", "api")
# Pairs still being untangled (each entry is a sorted tuple of module names); the list must only shrink.
KNOWN_CYCLES: set[tuple[str, ...]] = set()


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for pkg in PACKAGES:
        if (ROOT / pkg).is_dir():
            for p in (ROOT / pkg).rglob("*.py"):
                found[_module_name(p)] = p
    return found


MODULES = _modules()


def _imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """Project modules a source file imports anywhere in it (module level, functions, TYPE_CHECKING blocks)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()

    def add(mod: str) -> None:
        while mod and mod not in known:
            mod = mod.rpartition(".")[0]
        if mod and mod != name:
            out.add(mod)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join([*base, node.module] if node.module else base)
            else:
                mod = node.module or ""
            for alias in node.names:
                full = f"{mod}.{alias.name}"
                if full in known:  # `from pkg import submodule`
                    add(full)
                else:
                    add(mod)
    return out


def _graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    known = set(modules)
    return {name: _imported_modules(name, path, known) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> Iterator[tuple[str, ...]]:
    """Strongly connected components with more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp: list[str] = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    comp.append(m)
                    if m == node:
                        break
                if len(comp) > 1:
                    yield tuple(sorted(comp))


def test_no_import_cycles() -> None:
    """No group of project modules imports each other in a circle (imports inside functions count too)."""
    cycles = set(_cycles(_graph(MODULES)))
    assert cycles - KNOWN_CYCLES == set()


def test_known_cycles_are_still_real() -> None:
    """Every allowed cycle still exists, so the allowance is removed as soon as it is fixed."""
    assert KNOWN_CYCLES <= set(_cycles(_graph(MODULES)))


def test_the_cycle_finder_sees_a_cycle(tmp_path: Path) -> None:
    """A three-module circle written to disk is reported, and a chain is not (so the test cannot pass vacuously)."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("", encoding="utf-8")
    (pkg / "a.py").write_text("from pkg import b\n", encoding="utf-8")
    (pkg / "b.py").write_text("def f():\n    from pkg.c import x\n", encoding="utf-8")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import a\n", encoding="utf-8")
    (pkg / "d.py").write_text("import pkg.a\n", encoding="utf-8")
    mods = {f"pkg.{p.stem}".removesuffix(".__init__"): p for p in pkg.glob("*.py")}
    graph = {n: _imported_modules(n, p, set(mods)) for n, p in mods.items()}
    assert set(_cycles(graph)) == {("pkg.a", "pkg.b", "pkg.c")}


def _stage_imports(path: Path) -> set[str]:
    name = _module_name(path)
    return {m.split(".")[0] for m in _imported_modules(name, path, set(MODULES))}


HISTORIAN = sorted(p for n, p in MODULES.items() if n.split(".")[0] == "historian")
# The kernel is all of aidc/: the composition root (CLI, main job, commands) lives in app/, so there is no exemption.
KERNEL = sorted(p for n, p in MODULES.items() if n.split(".")[0] == "aidc")
ABOVE_KERNEL = (*STAGES, "app")


def _named_modules(path: Path, modules: Collection[str] = MODULES.keys()) -> set[str]:
    """Stage or composition-root packages named by a string literal that is one of their module paths (importlib)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value.strip()
            module = text.split(":")[0]
            # a bare package name ("historian") is also a site-file table name; a dotted path is unambiguous
            if module.split(".")[0] in ABOVE_KERNEL and module in modules and ("." in module or ":" in text):
                out.add(module.split(".")[0])
    return out


@pytest.mark.parametrize("path", HISTORIAN, ids=[str(p.relative_to(ROOT)) for p in HISTORIAN])
def test_historian_imports_no_other_stage(path: Path) -> None:
    """historian/ depends only on the kernel: never on collectors, analytics, control, dashboards or simulators."""
    assert _stage_imports(path) & (set(STAGES) - {"historian"}) == set()


@pytest.mark.parametrize("path", KERNEL, ids=[str(p.relative_to(ROOT)) for p in KERNEL])
def test_kernel_imports_no_stage(path: Path) -> None:
    """The shared kernel in aidc/ imports no stage and not the composition root, not even through importlib strings."""
    assert _stage_imports(path) & set(ABOVE_KERNEL) == set()
    assert _named_modules(path) == set()


def test_the_string_check_sees_a_module_path(tmp_path: Path) -> None:
    """A module path in a string (as importlib would take it) is caught, and prose mentioning a stage is not."""
    f = tmp_path / "m.py"
    f.write_text('import importlib\nimportlib.import_module("analytics.energy.cli")\nX = "collectors/ is a folder"\n',
                 encoding="utf-8")
    assert _named_modules(f, {"analytics.energy.cli", "collectors"}) == {"analytics"}


def test_the_layering_sets_are_populated() -> None:
    """The rules above look at real files (the historian and the kernel are found where the layout says)."""
    assert len(HISTORIAN) >= 8
    assert len(KERNEL) >= 8
    assert "app.job" in MODULES
    assert "app.cli" in MODULES
    assert not any(n.split(".")[0] == "aidc" and n.split(".")[-1] in ("app", "cli", "commands") for n in MODULES)
