"""A supervised Modbus TCP connection polling every device (unit id) behind one host:port."""

from __future__ import annotations

from dataclasses import dataclass, field
from time import perf_counter
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from aidc.clock import Clock
from aidc.config import DeviceRef
from aidc.errors import AidcError
from aidc.model import Batch
from aidc.profiles import Point
from collectors.decode import RegisterDecoder, encode, unpack_bits
from collectors.fastpoll import fast_poll
from collectors.link import HEALTH_FIELDS, DeviceHealth, Emit, Link, LinkOptions
from collectors.modbus import ExceptionReply, ModbusTcpClient, RequestTimeout, TransportError
from collectors.plan import READ_FUNCTION, ModbusPlan, ReadRequest, plan_modbus, series_ids
from collectors.quality import QualityTracker

if TYPE_CHECKING:
    from collectors._fastpoll import Poll

_F8, _I8 = np.dtype(np.float64), np.dtype(np.int64)  # dtype objects: numpy need not convert a type per call


class DeviceWriteError(AidcError):
    """A write or read-back was refused by the device or could not be sent."""


@dataclass
class _DeviceRuntime:
    plan: ModbusPlan
    decoder: RegisterDecoder
    tracker: QualityTracker
    health: DeviceHealth
    regbuf: bytearray  # raw register bytes as received, reused every poll
    bits: npt.NDArray[np.bool_]
    # The constant columns of an all-good poll's batch (the points then the health fields), read-only and
    # shared by every such batch of the device: only the values and timestamps are new arrays per poll.
    series: np.ndarray
    good: npt.NDArray[np.uint8]
    # The hot path of a clean poll of a plan of register values only and no sentinels (see :meth:`ModbusLink.poll`):
    # its batches list the points in the decoder's ``fast_order`` (then the health fields), with these series.
    fused: bool = False
    fast_series: np.ndarray = field(init=False)
    # The clean poll in C (collectors/fastpoll.py), where it is built: its batches list the points in plan order.
    fast: Poll | None = field(init=False)
    one_read: bool = field(init=False)  # one register read covers the whole buffer: its reply is decoded in place
    n: int = 0  # points of the plan
    width: int = 0  # samples of an all-good batch: the points and the health fields
    # Per poll: the register bytes written through ``view``, read by numpy as ``registers`` (the same memory).
    view: memoryview = field(init=False)
    registers: npt.NDArray[np.uint8] = field(init=False)

    def __post_init__(self) -> None:
        self.n = len(self.plan.points)
        self.width = len(self.series)
        self.view = memoryview(self.regbuf)
        self.registers = np.frombuffer(self.regbuf, dtype=np.uint8)
        self.fused = self.decoder.registers_only and not len(self.tracker.sentinels)
        reqs = self.plan.requests
        self.one_read = (
            len(reqs) == 1 and not reqs[0].bit_table and reqs[0].span_hi - reqs[0].span_lo == len(self.regbuf)
        )
        order = list(self.decoder.fast_order) if self.fused else list(range(self.n))
        self.fast_series = _shared(np.concatenate((self.plan.series[order], self.series[self.n :])))
        self.fast = fast_poll(self.plan, self.tracker) if self.fused else None


def _shared(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


class ModbusLink(Link):
    """One TCP connection, one supervisor, one poll loop per unit id."""

    protocol = "modbus"

    def __init__(self, key: str, devices: list[DeviceRef], *, clock: Clock, emit: Emit, options: LinkOptions) -> None:
        super().__init__(key, devices, clock=clock, emit=emit, options=options)
        first = devices[0].config
        assert first.port is not None
        self.client = ModbusTcpClient(first.host, first.port)
        self.rt: dict[str, _DeviceRuntime] = {}
        for dev in devices:
            plan = plan_modbus(dev)
            series = np.concatenate((plan.series, self.health[dev.name].series))
            decoder = RegisterDecoder(plan)
            self.rt[dev.name] = _DeviceRuntime(
                plan,
                decoder,
                QualityTracker(
                    plan.points,
                    sentinels=dev.profile.workarounds.sentinels,
                    stuck_polls=self.options.stuck_polls,
                    list_order=decoder.fast_order if decoder.registers_only else None,
                ),
                self.health[dev.name],
                bytearray(2 * plan.n_registers),
                np.zeros(plan.n_bits, dtype=bool),
                _shared(series),
                _shared(np.zeros(len(series), dtype=np.uint8)),
            )

    def transport_errors(self) -> tuple[type[BaseException], ...]:
        """Connection-level failures."""
        return (TransportError,)

    def plan(self, device: str) -> ModbusPlan:
        """The request plan of a device on this link."""
        return self.rt[device].plan

    def series_of(self, dev: DeviceRef) -> np.ndarray:
        """Series ids of the device's points."""
        return self.rt[dev.name].plan.series

    async def connect(self) -> None:
        """Open the TCP connection."""
        self.client.close()
        await self.client.connect(max(d.config.timeout_s for d in self.devices))

    async def close(self) -> None:
        """Close the TCP connection."""
        self.client.close()

    async def watch(self) -> None:
        """Return when the server closes the connection."""
        await self.client.wait_closed()

    async def poll(self, dev: DeviceRef) -> Batch:
        """Execute the device's planned reads, decode and quality-check every point."""
        config = dev.config
        rt = self.rt[config.name]  # not ``dev.name``: a property call per poll
        health = rt.health
        timeout = config.timeout_s
        ts = self.clock.now_ns()
        t0 = perf_counter()
        failures: list[tuple[tuple[int, ...], str]] = []
        timed_out = False
        client, view = self.client, rt.view
        whole: bytes | None = None  # the reply of a plan read in one request: decoded as it is, copied when needed
        for req in rt.plan.requests:
            if timed_out:  # the device is not answering: do not wait out every request of the poll
                failures.append((req.points, "timeout"))
                continue
            try:
                # The usual read: sent at once and its reply's future awaited here (no coroutine per read); a busy
                # or out-of-step connection takes the client's full path.
                sent = client.begin_read(req, timeout)
                if sent is None:
                    reply = await client.read(req, timeout)
                else:
                    try:
                        frame = await sent
                    finally:
                        client.end_turn()
                    reply = client.reply_of(req, frame)
            except RequestTimeout as exc:
                timed_out = True
                failures.append((req.points, str(exc)))
                continue
            if isinstance(reply, ExceptionReply):
                failures.append((req.points, f"{reply.reason} reading {req.table} {req.address} x{req.count}"))
            elif req.bit_table:
                rt.bits[req.first : req.first + req.count] = unpack_bits(reply, req.count)
            elif rt.one_read:
                whole = reply
            else:
                view[req.span_lo : req.span_hi] = reply
        latency = perf_counter() - t0
        n = rt.n
        if rt.fused and not failures:
            health.success(ts, latency)
            if rt.fast is not None:
                # The usual poll in one C call (decode, the clean checks and their state, the batch's columns).
                cols = rt.tracker.clean_columns(rt.regbuf if whole is None else whole, health.values(), ts)
                if cols is not None:
                    return Batch.trusted(rt.series, cols[0], cols[1], rt.good)
                scaled = None
            else:
                # The same in Python, without numpy until the batch: every point read in place by ``struct`` and
                # scaled as Python numbers (as numpy would: one multiply, one add, both rounded the same), in the
                # decoder's ``fast_order`` (no reordering), quality checked on them, then the batch's column in one
                # call with the health fields; the batch lists the points in that order (``fast_series``).
                scaled = rt.decoder.unpack_scaled(rt.regbuf if whole is None else whole)
            if scaled is not None and rt.tracker.clean_list(scaled):
                scaled += health.values()
                ts_col = np.empty(rt.width, _I8)
                ts_col.fill(ts)
                return Batch.trusted(rt.fast_series, ts_col, np.array(scaled, _F8), rt.good)
            if whole is not None:
                view[:] = whole
            # Some sample needs a closer look (nothing was changed by clean_list()): every check, with reasons.
            column = np.empty(n + len(HEALTH_FIELDS), dtype=np.float64)
            eng = column[:n]
            raw = rt.decoder.decode_into(rt.registers, rt.bits, eng)
            values, quality, reasons = rt.tracker.assess(raw, eng)
        else:
            if whole is not None:
                view[:] = whole
            column = np.empty(n + len(HEALTH_FIELDS), dtype=np.float64)  # the batch's values: points, then health
            eng = column[:n]
            raw = rt.decoder.decode_into(rt.registers, rt.bits, eng)
            values, quality, reasons = rt.tracker.assess(raw, eng, failures)
            if timed_out and len(failures) == len(rt.plan.requests):
                health.consecutive_timeouts += 1
                health.failure(f"no reply (timeout after {timeout:g}s)")
                opts = self.options
                if health.consecutive_timeouts >= opts.timeouts_before_reconnect and all(
                    self.health[d.name].consecutive_timeouts >= opts.timeouts_before_reconnect for d in self.devices
                ):
                    self.emit(self._batch(rt, ts, values, quality, reasons, health))
                    raise TransportError(f"{self.client.address}: no reply for {health.consecutive_timeouts} polls")
            else:
                health.success(ts, latency, failures[0][1] if failures else "")
        if reasons or values is not eng:
            return self._batch(rt, ts, values, quality, reasons, health)
        # All good: the values were decoded straight into the batch's column.
        column[n:] = health.values()
        return self._good_batch(rt, ts, column)

    @staticmethod
    def _good_batch(rt: _DeviceRuntime, ts: int, column: npt.NDArray[np.float64]) -> Batch:
        """An all-good batch of ``column`` (points, then health) with the device's shared series and qualities."""
        ts_col = np.empty(len(column), dtype=np.int64)
        ts_col.fill(ts)
        return Batch(rt.series, ts_col, column, rt.good)

    @staticmethod
    def _batch(
        rt: _DeviceRuntime,
        ts: int,
        values: npt.NDArray[np.float64],
        quality: npt.NDArray[np.uint8],
        reasons: list[str],
        health: DeviceHealth,
    ) -> Batch:
        data = Batch(rt.plan.series, np.full(len(values), ts, dtype=np.int64), values, quality, reasons)
        return Batch.concat([data, health.batch(ts)])

    # --- writer support -----------------------------------------------------------------------------

    def _single(self, dev: DeviceRef, point: Point) -> tuple[ReadRequest, RegisterDecoder]:
        assert point.table is not None
        assert point.address is not None
        bits = point.table in ("coil", "discrete")
        count = 1 if bits else point.registers
        req = ReadRequest(point.table, READ_FUNCTION[point.table], dev.config.unit_id, point.address, count, 0, (0,))
        plan = ModbusPlan(
            dev, (point,), series_ids(dev, (point,)), (req,), (0,), 0 if bits else count, count if bits else 0
        )
        return req, RegisterDecoder(plan)

    async def read_point(self, dev: DeviceRef, point: Point) -> float:
        """Read one point now (engineering units); DeviceWriteError on an exception reply."""
        req, decoder = self._single(dev, point)
        reply = await self.client.read(req, dev.config.timeout_s)
        if isinstance(reply, ExceptionReply):
            raise DeviceWriteError(f"{dev.name}.{point.name}: read refused: {reply.reason}")
        if req.is_bits:
            regs, bits = np.zeros(0, np.uint8), unpack_bits(reply, 1)
        else:
            regs, bits = np.frombuffer(reply, dtype=np.uint8), np.zeros(0, bool)
        return float(decoder.decode(regs, bits)[1][0])

    async def write_point(self, dev: DeviceRef, point: Point, value: float) -> None:
        """Write one point (function 5, 6 or 16); DeviceWriteError on an exception reply."""
        assert point.address is not None
        unit, timeout = dev.config.unit_id, dev.config.timeout_s
        if point.table == "coil":
            err = await self.client.write_coil(unit, point.address, bool(value), timeout)
        else:
            err = await self.client.write_registers(unit, point.address, encode(point, value), timeout)
        if err is not None:
            raise DeviceWriteError(f"{dev.name}.{point.name}: write refused: {err.reason}")


def _fast_concat(a: Batch, b: Batch) -> Batch:
    """Concatenate two all-good batches (no reasons) without the generic path's checks."""
    return Batch(
        np.concatenate((a.series, b.series)),
        np.concatenate((a.ts_ns, b.ts_ns)),
        np.concatenate((a.values, b.values)),
        np.concatenate((a.quality, b.quality)),
    )
