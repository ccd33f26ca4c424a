"""control/ reaches the simulated plant only from its evaluation modules, through the stepping interface."""

from __future__ import annotations

from pathlib import Path

from tests.test_import_graph import _imports

ROOT = Path(__file__).resolve().parents[1]
# The evaluation: the harness steps the facility, the oracle reads its what-if interface, evaluate runs them all.
EVALUATION = ("evaluate.py", "harness.py", "oracle.py", "commissioning.py")


def test_control_imports_simulators_only_in_evaluate() -> None:
    """Every control/ module except the evaluation's (evaluate, harness, oracle, commissioning) is free of simulators
    imports."""
    offenders = [
        str(p.relative_to(ROOT))
        for p in sorted((ROOT / "control").rglob("*.py"))
        if "simulators" in _imports(p) and p.name not in EVALUATION
    ]
    assert offenders == []


def test_evaluate_uses_only_the_stepping_interface_of_the_facility() -> None:
    """The evaluation modules call the facility's step/device_values/write_point and never its private members."""
    for name in EVALUATION:
        text = (ROOT / "control" / name).read_text(encoding="utf-8")
        for private in ("._update", "._g_", "._hyd", "fac.points", "twin.points"):
            assert private not in text, f"{name}: {private}"
