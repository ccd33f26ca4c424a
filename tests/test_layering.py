"""Layering rules of DESIGN.md §2: which packages may touch the protocol libraries and the simulators."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_import_graph import _imports as _imported_roots

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("aidc", "app", "historian", "collectors", "simulators", "analytics", "control", "dashboards", "api")
PROTOCOL_LIBS = {"pymodbus", "asyncua"}


SOURCES = sorted(p for pkg in PACKAGES if (ROOT / pkg).is_dir() for p in (ROOT / pkg).rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=[str(p.relative_to(ROOT)) for p in SOURCES])
def test_only_collectors_and_simulators_touch_protocol_libraries(path: Path) -> None:
    """pymodbus and asyncua are imported only by collectors/ (clients) and simulators/ (servers)."""
    package = path.relative_to(ROOT).parts[0]
    if package in ("collectors", "simulators"):
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
