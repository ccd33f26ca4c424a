"""What the simulated HTTP devices (dcgm-exporter pages, Redfish services) share: one listener per port, start and
stop, the restart fault, and the devices' faults applied to every reply."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from pathlib import Path

from aidc.config import DeviceRef
from simulators.faults import FaultBook
from simulators.http_server import HttpListener, Request, Response
from simulators.interface import FacilityPhysics


class HttpDeviceSim(abc.ABC):
    """Devices served over HTTP(S) on one port; a subclass renders them (``refresh``) and answers (``_handle``)."""

    def __init__(
        self,
        bind: str,
        port: int,
        devices: Sequence[DeviceRef],
        physics: FacilityPhysics,
        faults: FaultBook,
        tls: tuple[Path, Path] | None,
    ) -> None:
        self.devices = list(devices)
        self.physics, self.faults = physics, faults
        self.port = port
        self.listener = HttpListener(bind, port, self._handle, self._fault, tls=tls)

    @abc.abstractmethod
    def refresh(self) -> None:
        """Render the devices' resources from the physics' current values (after a tick)."""

    @abc.abstractmethod
    async def _handle(self, req: Request) -> Response:
        """The reply to one request; ``Response.device`` names the devices whose faults apply."""

    @property
    def running(self) -> bool:
        """Whether the port listens."""
        return self.listener.running

    async def start(self) -> None:
        """Render, then listen (OSError if the port is taken)."""
        self.refresh()
        await self.listener.start()

    async def stop(self) -> None:
        """Stop listening."""
        await self.listener.stop()

    def restart(self, seconds: float) -> None:
        """The restart fault: the port goes away for ``seconds``."""
        self.listener.restart(seconds)

    def _fault(self, devices: str) -> tuple[bool, float, bool]:
        """(drop, delay, exception) for a reply about ``devices`` (comma-separated): the worst of their faults."""
        names = devices.split(",")
        return (
            any(self.faults.dropping(n) for n in names),
            max(self.faults.delay_s(n) for n in names),
            any(self.faults.exception_code(n) is not None for n in names),
        )
