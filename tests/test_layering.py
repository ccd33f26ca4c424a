"""Layering rules of DESIGN.md §2: which packages may touch the protocol libraries and the simulators."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.test_import_graph import _imports as _imported_roots

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("aidc", "app", "historian", "collectors", "simulators", "analytics", "control", "dashboards", "api")
PROTOCOL_LIBS = {"pymodbus", "asyncua", "pysnmp"}
# The one kernel module with a protocol library: the SNMP dispatcher the collector and the agent simulator share
# (neither may import the other); only those two import it.
SHARED_TRANSPORT = ROOT / "aidc" / "snmp_transport.py"


SOURCES = sorted(p for pkg in PACKAGES if (ROOT / pkg).is_dir() for p in (ROOT / pkg).rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=[str(p.relative_to(ROOT)) for p in SOURCES])
def test_only_collectors_and_simulators_touch_protocol_libraries(path: Path) -> None:
    """pymodbus, asyncua and pysnmp are imported only by collectors/ (clients), simulators/ (servers) and the SNMP
    dispatcher they share."""
    package = path.relative_to(ROOT).parts[0]
    if package in ("collectors", "simulators") or path == SHARED_TRANSPORT:
        return
    assert not (_imported_roots(path) & PROTOCOL_LIBS), f"{path.relative_to(ROOT)} imports a protocol library"


def test_collectors_never_import_simulators() -> None:
    """The collectors talk to devices over sockets only; they never reach into the simulators."""
    offenders = [p for p in (ROOT / "collectors").rglob("*.py") if "simulators" in _imported_roots(p)]
    assert offenders == []


def test_only_the_demo_command_imports_simulators_from_the_composition_root() -> None:
    """The kernel never imports the simulators; in the composition root only the demo command (run.py) starts them,
    and only the controllers' evaluation (app/evaluation/) and the demo's history backfill (backfill.py) step them in
    process."""
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "aidc").rglob("*.py") if "simulators" in _imported_roots(p)]
    offenders += [
        str(p.relative_to(ROOT))
        for p in (ROOT / "app").rglob("*.py")
        if "simulators" in _imported_roots(p)
        and p.name not in ("run.py", "backfill.py")
        and p.parent.name != "evaluation"
    ]
    assert offenders == []


def _imported_modules(path: Path) -> set[str]:
    """Dotted module names a source file imports (absolute imports, anywhere in the file)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_only_collectors_and_simulators_import_the_shared_snmp_dispatcher() -> None:
    """The kernel's pysnmp module is loaded by the SNMP collector and agent only, so no other stage loads pysnmp."""
    users = sorted(
        str(p.relative_to(ROOT))
        for p in SOURCES
        if p != SHARED_TRANSPORT and "aidc.snmp_transport" in _imported_modules(p)
    )
    assert users == ["collectors/snmp.py", "simulators/snmp_agent.py"]
