"""The one supervisor interface (control/interface.py) matches the real Supervisor member for member."""

from __future__ import annotations

import inspect
from typing import Any

from control.interface import SupervisorControl
from control.supervisor import Supervisor


def _members(proto: type) -> list[str]:
    """The Protocol's own public members (methods and properties)."""
    return sorted(n for n in vars(proto) if not n.startswith("_"))


def _signature(obj: Any) -> tuple[str, inspect.Signature | None]:
    """What kind of member and its signature, annotations evaluated (so ``Mode`` is the Literal, not the text)."""
    if isinstance(obj, property):
        return "property", inspect.signature(obj.fget, eval_str=True) if obj.fget else None
    if callable(obj):
        return "method", inspect.signature(obj, eval_str=True)
    return type(obj).__name__, None


def mismatches(proto: type, cls: type) -> list[str]:
    """Members of ``proto`` that ``cls`` lacks or declares with another kind, parameters or annotations."""
    out = []
    for name in _members(proto):
        if not hasattr(cls, name):
            out.append(f"{name}: missing")
            continue
        want, got = _signature(inspect.getattr_static(proto, name)), _signature(inspect.getattr_static(cls, name))
        if want != got:
            out.append(f"{name}: {want[0]} {want[1]} != {got[0]} {got[1]}")
    return out


def test_the_real_supervisor_has_the_interface_exactly() -> None:
    """Every member of SupervisorControl exists on Supervisor with the same kind, parameter names, kinds and
    evaluated annotations, so the dashboard and the API cannot drift from the class they drive."""
    assert len(_members(SupervisorControl)) == 6
    assert mismatches(SupervisorControl, Supervisor) == []


def test_the_comparison_sees_a_drifted_copy() -> None:
    """The API's old Controller shape (``set_mode(mode)``, ``set_override(point, value)``) is reported, member by
    member, so the test above cannot pass vacuously."""

    class Drifted:
        @property
        def mode(self) -> str:
            return "off"

        def set_mode(self, mode: str) -> None: ...

        def set_override(self, point: str, value: float | None) -> None: ...

        def overrides(self) -> list[dict[str, object]]:
            return []

        def status(self) -> dict[str, Any]:
            return {}

    found = mismatches(SupervisorControl, Drifted)
    assert [f.split(":")[0] for f in found] == ["clear_override", "mode", "set_mode", "set_override", "status"]
    assert isinstance(Drifted(), SupervisorControl) is False  # missing clear_override; runtime check alone is weak
