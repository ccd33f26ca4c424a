"""The one supervisor interface: what the dashboard and the REST API may do with the cooling supervisor.

``control.supervisor.Supervisor`` satisfies :class:`SupervisorControl` member for member, with the same signatures
(tests/test_api_supervisor_interface.py compares them), so neither ``dashboards/`` nor ``api/`` keeps a copy that
could drift. This module imports nothing heavy: front ends import it without loading the controller itself.
"""

from __future__ import annotations

from typing import Literal, Protocol, runtime_checkable

Mode = Literal["off", "advisory", "auto"]
MODES: tuple[Mode, ...] = ("off", "advisory", "auto")


@runtime_checkable
class SupervisorControl(Protocol):
    """Mode, operator overrides with expiry and a status snapshot; every change names the user and is audited."""

    @property
    def mode(self) -> Mode:
        """off / advisory (recommend and log only) / auto (write)."""
        ...

    def set_mode(self, mode: str, user: str) -> None:
        """Switch mode (audited); ConfigError names an unknown mode."""
        ...

    def set_override(self, device: str, point: str, value: float, until_ns: int, user: str) -> None:
        """Hold ``device.point`` at ``value`` until ``until_ns`` (audited); ConfigError when it cannot be held."""
        ...

    def clear_override(self, device: str, point: str, user: str) -> None:
        """Remove an override (audited); unknown ones are ignored."""
        ...

    def overrides(self) -> list[dict[str, object]]:
        """Active overrides: device, point, value, until_ns, user."""
        ...

    def status(self) -> dict[str, object]:
        """Mode, state, the last decision, model provenance and counters (JSON-able)."""
        ...
