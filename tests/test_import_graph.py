"""The house rule that analytics and control learn from telemetry only: they never import the simulators."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GUARDED = ("analytics", "control", "api")  # api: serves telemetry, never the simulators


def _imports(path: Path) -> set[str]:
    """Top-level module names imported by a source file (absolute imports)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


SOURCES = sorted(
    p for pkg in GUARDED if (ROOT / pkg).is_dir() for p in (ROOT / pkg).rglob("*.py")
)


@pytest.mark.parametrize("path", SOURCES, ids=[str(p.relative_to(ROOT)) for p in SOURCES])
def test_no_direct_simulator_import(path: Path) -> None:
    """No analytics/control source file names the simulators package in an import."""
    assert "simulators" not in _imports(path)


def test_no_transitive_simulator_import() -> None:
    """Importing every analytics/control module does not load any simulators module, even indirectly."""
    mods = [".".join(p.relative_to(ROOT).with_suffix("").parts) for p in SOURCES]
    mods = [m.removesuffix(".__init__") for m in mods]
    code = (
        "import importlib, sys\n"
        f"for m in {mods!r}: importlib.import_module(m)\n"
        "bad = sorted(m for m in sys.modules if m == 'simulators' or m.startswith('simulators.'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_the_checker_sees_a_simulator_import(tmp_path: Path) -> None:
    """The AST check does catch both import forms (so the rule cannot pass vacuously)."""
    f = tmp_path / "m.py"
    f.write_text("import simulators.facility\nfrom simulators import physics\n", encoding="utf-8")
    assert "simulators" in _imports(f)
    assert len(SOURCES) >= 8
