"""Modbus TCP servers for the simulated devices: one port per device, or a gateway with several unit ids.

Each port is a pymodbus :class:`ModbusTcpServer` over :class:`SimDevice` register layouts built from the
device profiles (holding registers of writable points are writable, the rest read-only; a device with the
``no_gap_reads`` quirk rejects reads across undefined registers with exception 2, and one with a
``max_registers_per_read`` below 125 rejects longer reads with exception 3). A ``SimDevice`` action
answers every request from the device's :class:`RegisterImage`, refreshed from the physics each tick, and is
where faults act (delay, exception code). Client writes are decoded, range-checked (exception 3 outside
min/max) and passed to ``physics.write_point``. Requests for a unit id the port does not serve get exception
0x0B (gateway target failed to respond), as real gateways answer.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Sequence

from pymodbus.constants import ExcCodes
from pymodbus.exceptions import NoSuchIdException
from pymodbus.server import ModbusTcpServer
from pymodbus.server.requesthandler import ServerRequestHandler
from pymodbus.simulator import DataType as SimType
from pymodbus.simulator import SimData, SimDevice
from pymodbus.simulator.simcore import SimCore
from pymodbus.simulator.simutils import SimUtils

from aidc.config import DeviceRef
from aidc.profiles import Table
from simulators.faults import FaultBook
from simulators.interface import FacilityPhysics
from simulators.registers import BIT_TABLES, RegisterImage, WriteRejected
from simulators.restart import RestartFault

log = logging.getLogger(__name__)

FC_TABLE: dict[int, Table] = {1: "coil", 5: "coil", 15: "coil", 2: "discrete", 3: "holding", 4: "input",
                              6: "holding", 16: "holding", 22: "holding", 23: "holding"}
# SimDevice needs every table defined; an unused table gets one read-only register at the top of the address
# space, so reads at ordinary addresses answer ILLEGAL_ADDRESS as a device without that table does.
_UNUSED_ADDRESS = 65535


def _register_blocks(image: RegisterImage, table: Table, no_gaps: bool) -> list[SimData]:
    """SimData runs for a register table: contiguous registers of equal writability, gaps filled unless no_gaps."""
    defined = image.defined[table]
    if not defined:
        return [SimData(_UNUSED_ADDRESS, datatype=SimType.REGISTERS, readonly=True)]
    blocks: list[SimData] = []
    start, writable = -1, False
    top = max(defined)
    for a in range(min(defined), top + 2):
        cur: bool | None = defined.get(a, None if no_gaps else False) if a <= top else None
        if start >= 0 and (cur is None or cur != writable):
            blocks.append(SimData(start, count=a - start, datatype=SimType.REGISTERS, readonly=not writable))
            start = -1
        if cur is not None and start < 0:
            start, writable = a, cur
    return blocks


def _bit_blocks(image: RegisterImage, table: Table) -> list[SimData]:
    size = len(image.bits[table])
    if not size:
        return [SimData(_UNUSED_ADDRESS, values=False, datatype=SimType.BITS, readonly=True)]
    return [SimData(0, values=[False] * size, datatype=SimType.BITS)]


class _KnownUnits:
    """Datastore that serves only the configured unit ids (others raise, and pymodbus answers 0x0B)."""

    def __init__(self, core: SimCore) -> None:
        self._core = core
        self._units = set(core.device_ids())

    def device_ids(self) -> list[int]:
        return sorted(self._units)

    async def async_getValues(self, device_id: int, func_code: int, address: int, count: int = 1) -> object:
        if device_id not in self._units:
            raise NoSuchIdException(f"unit id {device_id} is not served on this port")
        return await self._core.async_getValues(device_id, func_code, address, count)

    async def async_setValues(self, device_id: int, func_code: int, address: int, values: list) -> object:
        if device_id not in self._units:
            raise NoSuchIdException(f"unit id {device_id} is not served on this port")
        return await self._core.async_setValues(device_id, func_code, address, values)


class _Handler(ServerRequestHandler):
    """Per-connection handler that hangs up on clients of a device with the ``drop`` fault."""

    def callback_data(self, data: bytes, addr: tuple | None = None) -> int:
        port: ModbusPort = self.server.port
        # MBAP header: transaction (2), protocol (2), length (2), unit id (1).
        if len(data) >= 7 and port.dropping(data[6]):
            self.close()
            return len(data)
        return super().callback_data(data, addr)


class _PortServer(ModbusTcpServer):
    def __init__(self, port: ModbusPort, devices: list[SimDevice]) -> None:
        super().__init__(devices, address=(port.host, port.port))
        self.port = port
        assert isinstance(self.context, SimCore)
        self.context = _KnownUnits(self.context)  # type: ignore[assignment]

    def callback_new_connection(self) -> _Handler:
        return _Handler(self, self.trace_packet, self.trace_pdu, self.trace_connect)


class ModbusPort:
    """One listening TCP port serving one device, or several unit ids behind a gateway."""

    def __init__(self, host: str, port: int, devices: Sequence[DeviceRef], physics: FacilityPhysics,
                 faults: FaultBook) -> None:
        self.host, self.port = host, port
        self.devices = {d.config.unit_id: d for d in devices}
        self.images = {unit: RegisterImage(d.profile) for unit, d in self.devices.items()}
        self.physics, self.faults = physics, faults
        self._server: _PortServer | None = None
        self._restart = RestartFault(f"modbus {host}:{port}", self._close, self.start)

    @property
    def gateway(self) -> bool:
        """Whether several unit ids share this port."""
        return len(self.devices) > 1

    @property
    def running(self) -> bool:
        """Whether the port is listening."""
        return self._server is not None

    def _simdevices(self) -> list[SimDevice]:
        out = []
        for unit, dev in self.devices.items():
            image = self.images[unit]
            no_gaps = dev.profile.workarounds.no_gap_reads
            out.append(SimDevice(
                unit,
                simdata=(_bit_blocks(image, "coil"), _bit_blocks(image, "discrete"),
                         _register_blocks(image, "holding", no_gaps), _register_blocks(image, "input", no_gaps)),
                action=functools.partial(self._action, unit),
            ))
        return out

    async def start(self) -> None:
        """Listen; raises OSError naming the address if the port cannot be bound."""
        server = _PortServer(self, self._simdevices())
        try:
            await server.serve_forever(background=True)
        except RuntimeError:
            raise OSError(f"cannot listen on {self.host}:{self.port} (in use or not permitted)") from None
        self._server = server

    async def stop(self) -> None:
        """Close the listener and every connection."""
        self._restart.cancel()
        await self._close()

    async def _close(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            await server.shutdown()

    def restart(self, after_s: float) -> None:
        """Go away for ``after_s`` seconds (connections refused), then listen again."""
        self._restart.schedule(after_s)

    def dropping(self, unit: int) -> bool:
        """Whether a request for ``unit`` should make the device hang up."""
        dev = self.devices.get(unit)
        return dev is not None and self.faults.dropping(dev.name)

    def refresh(self) -> None:
        """Re-encode every device's registers from the physics (after a tick)."""
        for unit, dev in self.devices.items():
            values = self.faults.apply(dev.name, self.physics.device_values(dev.name))
            self.images[unit].update(values)

    async def _action(self, unit: int, func_code: int, start: int, address: int, count: int,
                      registers: list[int], set_values: list[int] | list[bool] | None) -> ExcCodes | None:
        dev = self.devices[unit]
        delay = self.faults.delay_s(dev.name)
        if delay:
            await asyncio.sleep(delay)
        code = self.faults.exception_code(dev.name)
        if code is not None:
            return ExcCodes(code)
        table = FC_TABLE.get(func_code)
        if table is None:
            return ExcCodes.ILLEGAL_FUNCTION
        image = self.images[unit]
        if set_values is not None:
            return self._write(dev, image, table, address, set_values)
        if table not in BIT_TABLES and count > dev.profile.workarounds.max_registers_per_read:
            # Embedded controllers with small buffers refuse longer reads, as the profile's quirk says.
            return ExcCodes.ILLEGAL_VALUE
        if table in BIT_TABLES:
            packed = SimUtils.bitsToRegisters(image.bits[table] + [False] * (-len(image.bits[table]) % 16))
            registers[: len(packed)] = packed
        else:
            words = image.words[table]
            offset = address - start
            registers[offset : offset + count] = words[address : address + count]
        return None

    def _write(self, dev: DeviceRef, image: RegisterImage, table: Table, address: int,
               values: list[int] | list[bool]) -> ExcCodes | None:
        try:
            written = image.write(table, address, values)
        except WriteRejected as exc:
            log.info("modbus %s unit %s: write to %s %s rejected: %s",
                     dev.name, dev.config.unit_id, table, address, exc)
            return ExcCodes(exc.code)
        for point, value in written:
            self.physics.write_point(dev.name, point.name, value)
        return None
