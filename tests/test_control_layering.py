"""control/ never reaches the simulated plant; the evaluation (app/evaluation/) steps it through its interfaces."""

from __future__ import annotations

from pathlib import Path

from tests.test_import_graph import _imports

ROOT = Path(__file__).resolve().parents[1]
EVALUATION = sorted((ROOT / "app" / "evaluation").glob("*.py"))


def test_control_imports_no_simulator_module() -> None:
    """No control/ module imports simulators (lazy imports included): the controllers learn from telemetry."""
    offenders = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "control").rglob("*.py")) if "simulators" in _imports(p)]
    assert offenders == []


def test_evaluate_uses_only_the_stepping_interface_of_the_facility() -> None:
    """The evaluation modules call the facility's step/device_values/write_point and never its private members."""
    assert {p.name for p in EVALUATION} >= {"evaluate.py", "harness.py", "oracle.py", "commissioning.py"}
    for path in EVALUATION:
        text = path.read_text(encoding="utf-8")
        for private in ("._update", "._g_", "._hyd", "fac.points", "twin.points"):
            assert private not in text, f"{path.name}: {private}"
