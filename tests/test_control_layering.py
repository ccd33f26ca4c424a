"""control/ reaches the simulated plant only from its evaluation module, through the stepping interface."""

from __future__ import annotations

from pathlib import Path

from tests.test_import_graph import _imports

ROOT = Path(__file__).resolve().parents[1]


def test_control_imports_simulators_only_in_evaluate() -> None:
    """Every control/ module except control/evaluate.py is free of simulators imports (lazy ones included)."""
    offenders = [
        str(p.relative_to(ROOT))
        for p in sorted((ROOT / "control").rglob("*.py"))
        if "simulators" in _imports(p) and p.name != "evaluate.py"
    ]
    assert offenders == []


def test_evaluate_uses_only_the_stepping_interface_of_the_facility() -> None:
    """control/evaluate.py calls the facility's step/device_values/write_point and never its private members."""
    text = (ROOT / "control" / "evaluate.py").read_text(encoding="utf-8")
    for private in ("._update", "._g_", "._hyd", "fac.points", "twin.points"):
        assert private not in text, private
