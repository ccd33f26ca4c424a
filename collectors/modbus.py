"""Modbus TCP client side: the only module that speaks Modbus (and, with ``decode``, the only one importing pymodbus).

Framing is a lean ``asyncio.Protocol`` over MBAP (7-byte header + PDU) rather than pymodbus's async client:
measured on loopback, pymodbus's client costs about 170 µs of CPU per 100-register read, five times a libmodbus
C client, while this path is about 2x (the read alone; with decode, quality and the batch, ``python bench/collect.py
--modbus-only`` reports ``modbus_ratio``, whose limit is 3x). Everything else reuses pymodbus: its
``ExcCodes`` names exception replies and its ``DATATYPE`` table drives decoding and encoding (``decode.py``).

Two error channels (STYLE.md): a device exception reply is returned as :class:`ExceptionReply` and keeps the
connection; a transport failure (refused, reset, malformed frame) raises :class:`TransportError` and the link
supervisor reconnects. A request that times out raises :class:`RequestTimeout` (a transport error subclass the
engine handles per device, since one unit behind a gateway may be slow while the others answer).

After a timeout the byte stream is out of step: the late reply may still arrive at any moment, even in the middle
of the next reply (a broken gateway, or two writers on one socket), and Modbus TCP has no checksum to tell the
mixed frame apart, which the fuzz campaign caught as GOOD samples with values the device never served. So the
next request on that connection is sent on a fresh one instead (:meth:`ModbusTcpClient._resync`), unless the late
reply has arrived whole in the meantime; the same holds for bytes left over from a broken frame. The link sees
none of this (its connection is the client, not the socket), so the other units behind a gateway keep polling.
"""

from __future__ import annotations

import asyncio
import collections
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from pymodbus.constants import ExcCodes

from collectors.plan import ReadRequest

_MBAP = struct.Struct(">HHHB")
_TID = struct.Struct(">H")
_HEAD = struct.Struct(">HHH")  # transaction id, protocol id, length
_READ = struct.Struct(">HHHBBHH")  # MBAP + function code, address, count
_WRITE1 = _READ  # same layout: function code, address, value


class TransportError(ConnectionError):
    """The connection is unusable: refused, closed, reset, or a malformed frame."""


class RequestTimeout(TransportError):
    """No reply within the request timeout."""


@dataclass(frozen=True, slots=True)
class ExceptionReply:
    """A Modbus exception reply: the device answered, but refused the request."""

    function_code: int
    code: int

    @property
    def reason(self) -> str:
        """Human-readable reason, e.g. ``exception 2 (ILLEGAL_ADDRESS)``."""
        try:
            name = ExcCodes(self.code).name
        except ValueError:
            name = "unknown"
        return f"exception {self.code} ({name})"


class _MbapProtocol(asyncio.Protocol):
    """Splits the byte stream into MBAP frames and resolves the waiting request by transaction id."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.pending: dict[int, asyncio.Future[bytes]] = {}
        self.closed: asyncio.Future[None] = self.loop.create_future()
        # Request timeouts without a timer per request (asyncio.timeout costs about a fifth of a read's CPU):
        # one lazy timer per connection, re-armed only when it fires before the waiting request's deadline.
        self._waiting: asyncio.Future[bytes] | None = None
        self._waiting_tid = 0
        self._deadline = 0.0
        self._timeout_s = 0.0  # the waiting request's timeout, for the error's text
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self.late: set[int] = set()  # transaction ids that timed out and whose reply has not arrived
        self.dead = True  # no transport yet, or failed for good: ``closed`` done (a flag, cheaper on the hot path)

    @property
    def out_of_step(self) -> bool:
        """Whether bytes not yet received or parsed may belong to an earlier exchange (see the module docstring)."""
        return bool(self.late or self.buf)

    def wait_for(self, tid: int, fut: asyncio.Future[bytes], timeout_s: float) -> None:
        """Fail ``fut`` (request ``tid``) with :class:`RequestTimeout` unless it completes within ``timeout_s``."""
        self._waiting, self._waiting_tid, self._deadline = fut, tid, self.loop.time() + timeout_s
        self._timeout_s = timeout_s
        if self._timer is None or self._timer_at > self._deadline:
            self._arm(self._deadline)

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._timer_at = self.loop.call_at(when, self._expire), when

    def _expire(self) -> None:
        self._timer = None
        fut = self._waiting
        if fut is None or fut.done():
            return
        if self.loop.time() >= self._deadline:
            # Its reply may still come: until it does, the stream is out of step.
            self.pending.pop(self._waiting_tid, None)
            self.late.add(self._waiting_tid)
            fut.set_exception(RequestTimeout(f"timeout after {self._timeout_s:g}s"))
        else:
            self._arm(self._deadline)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # No isinstance check: uvloop's transports implement the interface without subclassing asyncio's.
        self.transport = cast(asyncio.Transport, transport)
        self.dead = self.closed.done()

    def data_received(self, data: bytes) -> None:
        if not self.buf and len(data) >= 8:  # the usual case: exactly one whole frame, no copy into the buffer
            tid, proto, length = _HEAD.unpack_from(data)
            if proto == 0 and 2 <= length <= 254 and len(data) == 6 + length:
                fut = self.pending.pop(tid, None)
                if fut is not None and not fut.done():
                    fut.set_result(data[6:])
                elif fut is None:
                    self.late.discard(tid)
                return
        buf = self.buf
        buf += data
        while len(buf) >= 8:
            tid, proto, length = _HEAD.unpack_from(buf)
            if proto != 0 or not 2 <= length <= 254:
                self._fail(TransportError(f"malformed MBAP header (protocol {proto}, length {length})"))
                return
            end = 6 + length
            if len(buf) < end:
                return
            fut = self.pending.pop(tid, None)
            if fut is not None and not fut.done():
                fut.set_result(bytes(buf[6:end]))  # unit id + PDU
            elif fut is None:  # a late reply to a timed-out request (dropped): back in step; or an unknown frame
                self.late.discard(tid)
            del buf[:end]

    def _fail(self, exc: Exception) -> None:
        self.dead = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for fut in self.pending.values():
            if not fut.done():
                fut.set_exception(exc)
        self.pending.clear()
        if not self.closed.done():
            self.closed.set_result(None)
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(TransportError(f"connection lost: {exc}" if exc else "connection closed by peer"))


class ModbusTcpClient:
    """One TCP connection to a Modbus server (a device or a gateway serving several unit ids)."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._proto: _MbapProtocol | None = None
        self._tid = 0
        self.resyncs = 0  # connections replaced because the stream was out of step after a timeout
        # Many devices and gateways mishandle pipelined transactions: one request at a time per connection. The
        # turn is a flag while uncontended (an ``asyncio.Lock`` costs two Python calls and a coroutine per read);
        # contenders queue in ``_waiters`` and are handed the turn in order (:meth:`_wait_turn`, :meth:`_release`).
        self._busy = False
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    @property
    def address(self) -> str:
        """``host:port`` for logs."""
        return f"{self.host}:{self.port}"

    @property
    def connected(self) -> bool:
        """Whether the connection is open."""
        return self._proto is not None and not self._proto.closed.done()

    async def connect(self, timeout_s: float) -> None:
        """Open the connection; raises TransportError naming the address."""
        self._proto = await self._open(timeout_s)

    async def _open(self, timeout_s: float) -> _MbapProtocol:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout_s):
                _, proto = await loop.create_connection(_MbapProtocol, self.host, self.port)
        except TimeoutError:
            raise TransportError(f"{self.address}: connect timed out after {timeout_s:g}s") from None
        except OSError as exc:
            raise TransportError(f"{self.address}: {exc.strerror or exc}") from None
        return proto

    async def _resync(self, timeout_s: float) -> _MbapProtocol:
        """Replace an out-of-step connection by a fresh one (the caller holds the lock)."""
        old = self._proto
        self.resyncs += 1
        try:
            new = await self._open(timeout_s)
        except TransportError:
            self.close()
            raise
        if self._proto is not old:  # closed meanwhile (the link is stopping or reconnecting): do not revive it
            new._fail(TransportError("closed"))
            raise TransportError(f"{self.address}: not connected")
        self._proto = new
        if old is not None:
            old._fail(TransportError("out of step after a timeout: replaced"))
        return new

    async def wait_closed(self) -> None:
        """Return when the peer closes the connection (a connection replaced by :meth:`_resync` is followed)."""
        while (proto := self._proto) is not None:
            await asyncio.shield(proto.closed)
            if self._proto is proto or self._proto is None:
                return

    def close(self) -> None:
        """Close the connection (idempotent)."""
        if self._proto is not None:
            self._proto._fail(TransportError("closed"))
            self._proto = None

    async def _wait_turn(self) -> None:
        """Wait until the transaction in flight hands this one the turn (only called while ``_busy``)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():  # handed the turn, then cancelled before taking it: pass it on
                self._release()
            raise

    def _release(self) -> None:
        """End this transaction's turn: hand it to the first live waiter, or free it."""
        waiters = self._waiters
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(None)  # ``_busy`` stays set: the turn passes straight to that waiter
                return
        self._busy = False

    def _ready(self) -> _MbapProtocol:
        """The connection for the next transaction (the caller holds the turn); TransportError if closed."""
        proto = self._proto
        if proto is None or proto.transport is None or proto.closed.done():
            raise TransportError(f"{self.address}: not connected")
        return proto

    async def _exchange(self, unit: int, frame: Callable[[int], bytes], timeout_s: float) -> bytes:
        """Send ``frame(transaction id)`` and wait for its reply (unit id + PDU); one transaction at a time."""
        if self._busy:
            await self._wait_turn()
        self._busy = True
        try:
            proto = self._ready()
            if proto.out_of_step:  # a late reply could land inside this one's frame: use a fresh connection
                proto = await self._resync(timeout_s)
            assert proto.transport is not None
            self._tid = tid = (self._tid + 1) & 0xFFFF
            fut: asyncio.Future[bytes] = proto.loop.create_future()
            proto.pending[tid] = fut
            proto.transport.write(frame(tid))
            proto.wait_for(tid, fut, timeout_s)
            reply = await fut  # a timeout fails it with its text (:meth:`_MbapProtocol._expire`)
        finally:
            self._release()
        if reply[0] != unit and unit != 0:
            raise TransportError(f"{self.address}: reply from unit {reply[0]} to a request for unit {unit}")
        return reply

    async def _request(self, unit: int, pdu: bytes, timeout_s: float) -> bytes:
        """Send a PDU to ``unit``; the reply PDU."""
        reply = await self._exchange(unit, lambda tid: _MBAP.pack(tid, 0, len(pdu) + 1, unit) + pdu, timeout_s)
        return reply[1:]

    async def read(self, req: ReadRequest, timeout_s: float) -> bytes | ExceptionReply:
        """Execute a planned read: register bytes (or packed bits), or the device's exception reply.

        A poll takes the same steps without this coroutine when the connection is free and in step
        (:meth:`begin_read`, :meth:`end_turn`, :meth:`reply_of`): one coroutine less per read.
        """
        if self._busy:
            await self._wait_turn()
        self._busy = True
        try:
            proto = self._proto
            if proto is None or proto.dead:
                raise TransportError(f"{self.address}: not connected")
            if proto.late or proto.buf:  # out of step: a late reply could land inside this one's frame
                proto = await self._resync(timeout_s)
            reply = await self._send(proto, req, timeout_s)
        finally:
            self.end_turn()
        return self.reply_of(req, reply)

    def begin_read(self, req: ReadRequest, timeout_s: float) -> asyncio.Future[bytes] | None:
        """Send a planned read now if the connection is free and in step: the future of its reply (unit id + PDU;
        it fails with :class:`RequestTimeout`), with the turn held until :meth:`end_turn`, which the caller must
        call however the wait ends. None: the connection is busy or must be replaced first; use :meth:`read`."""
        if self._busy:
            return None
        proto = self._proto
        if proto is None or proto.dead:
            raise TransportError(f"{self.address}: not connected")
        if proto.late or proto.buf:
            return None
        self._busy = True
        return self._send(proto, req, timeout_s)

    def _send(self, proto: _MbapProtocol, req: ReadRequest, timeout_s: float) -> asyncio.Future[bytes]:
        """Send ``req`` on ``proto`` (the caller holds the turn): the frame is the request's precomputed tail behind
        the transaction id; the reply's future, with the connection's one timer checked for its deadline."""
        transport = proto.transport
        assert transport is not None
        self._tid = tid = (self._tid + 1) & 0xFFFF
        loop = proto.loop
        fut: asyncio.Future[bytes] = loop.create_future()
        proto.pending[tid] = fut
        transport.write(_TID.pack(tid) + req.frame_tail)
        # :meth:`_MbapProtocol.wait_for`, inlined: a poll's one timer check.
        deadline = loop.time() + timeout_s
        proto._waiting, proto._waiting_tid, proto._deadline, proto._timeout_s = fut, tid, deadline, timeout_s
        if proto._timer is None or proto._timer_at > deadline:
            proto._arm(deadline)
        return fut

    def end_turn(self) -> None:
        """End this transaction's turn (after :meth:`begin_read`'s reply, or its failure or cancellation)."""
        if self._waiters:
            self._release()
        else:
            self._busy = False

    def reply_of(self, req: ReadRequest, reply: bytes) -> bytes | ExceptionReply:
        """The register bytes (or packed bits) of ``req``'s reply, or the device's exception reply: a well-formed
        reply (unit, function code, byte count and length all as asked) is told apart in one test; anything else
        goes through the same checks one by one (TransportError if malformed)."""
        if len(reply) == req.reply_len and reply[1] == req.function_code and reply[2] == req.payload:
            if reply[0] == req.unit_id or req.unit_id == 0:
                return reply[3:]
        return self._odd_reply(req, reply)

    def _odd_reply(self, req: ReadRequest, reply: bytes) -> ExceptionReply:
        """A reply that is not the well-formed answer to ``req``: an exception reply, or TransportError."""
        unit = req.unit_id
        if reply[0] != unit and unit != 0:
            raise TransportError(f"{self.address}: reply from unit {reply[0]} to a request for unit {unit}")
        if reply[1] == req.function_code | 0x80:
            return ExceptionReply(req.function_code, reply[2] if len(reply) > 2 else 0)
        raise TransportError(
            f"{self.address} unit {req.unit_id}: malformed reply to function {req.function_code} "
            f"at {req.address} x{req.count}"
        )

    async def write_registers(
        self, unit: int, address: int, registers: list[int], timeout_s: float
    ) -> ExceptionReply | None:
        """Write one register (function 6) or several (function 16); None on success."""
        if len(registers) == 1:
            pdu = struct.pack(">BHH", 6, address, registers[0] & 0xFFFF)
        else:
            n = len(registers)
            pdu = struct.pack(f">BHHB{n}H", 16, address, n, 2 * n, *registers)
        return self._write_result(pdu[0], await self._request(unit, pdu, timeout_s))

    async def write_coil(self, unit: int, address: int, value: bool, timeout_s: float) -> ExceptionReply | None:
        """Write one coil (function 5); None on success."""
        pdu = struct.pack(">BHH", 5, address, 0xFF00 if value else 0)
        return self._write_result(5, await self._request(unit, pdu, timeout_s))

    @staticmethod
    def _write_result(fc: int, reply: bytes) -> ExceptionReply | None:
        if reply[0] == fc | 0x80:
            return ExceptionReply(fc, reply[1] if len(reply) > 1 else 0)
        if reply[0] != fc:
            raise TransportError(f"malformed reply to write function {fc}")
        return None
