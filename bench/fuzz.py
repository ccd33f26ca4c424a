"""Fuzz campaign: hostile Modbus servers, hostile OPC-UA values and mutated site files / profiles.

Modbus: in-process hostile servers answer the real collector engine (``collectors.engine.Engine``, real
``ModbusLink`` over loopback TCP) with a random mix of valid replies, malformed MBAP headers (protocol id,
length field), wrong byte counts and truncated PDUs, wrong transaction ids, wrong function codes and unit ids,
random exception codes, garbage, extra unsolicited frames, fragmented frames, slow replies (past the timeout),
silence (half-open connections) and connections closed mid-frame. One clean server per profile gives the truth.

OPC-UA: an asyncua server exposes the GPU rack profile's nodes, and every read of every node returns a random
hostile DataValue: wrong variant types (String, ByteString, Boolean, LocalizedText, DateTime, null), arrays of
the wrong length or element type, nested arrays, NaN / inf / huge integers, and Bad / Uncertain status codes.

SNMP: in-process hostile v2c agents answer the real ``SnmpLink`` (pysnmp over loopback UDP) for the Raritan
PDU2-MIB profile with a random mix of valid responses, garbage datagrams, truncated messages, wrong request ids,
values of the wrong type (OCTET STRING, NULL, IpAddress, OID, TimeTicks), noSuchInstance / noSuchObject /
endOfMibView, error statuses, renamed, missing or extra varbinds, GETBULK walks that go backwards, duplicate and
slow replies and silence. One clean agent gives the truth.
DCGM and Redfish (bench/fuzz_http.py): hostile HTTP peers serve dcgm-exporter pages and Redfish resources with
HTTP-level damage (garbage, error statuses, short bodies, closes, late or no replies) and damaged bodies (garbage
text, cut-off pages and JSON, wrong types, NaN / inf / huge numbers, missing and duplicated samples, bad labels,
deep nesting); a clean peer of each gives the truth.

Configs: mutated site documents (keys deleted, values replaced by zeros, negatives, huge, NaN, strings, lists,
nested tables) and mutated profile files (the same, plus byte-level damage to the TOML text) go through the
path ``aidc check`` uses; each must load or fail with one ConfigError line.

Figures: ``tracebacks`` counts exceptions outside every designed error channel (the links' safety net,
supervisor restarts, the event loop's handler, any exception escaping the config loaders); ``engine_stops``
counts collector engine tasks that died; ``points_lost`` counts points missing from a poll's batch, points
the output dropped, and GOOD samples whose value differs from the truth. All three must be 0.
``lost_by_kind`` says which hostile replies produced the lost points: each lost point counts once for every
reply kind its poll received and for every kind of the three replies before it on that connection (a late or
split reply from an earlier request), so a pattern shows as the kinds that keep coming up together; the lost
points themselves are printed grouped by that pattern.

Bounded: the whole run ends within ``--deadline-s`` (450 s by default, on a loaded 2-core machine too). The
protocol phase gets most of it and the config phase the rest; a phase that meets the deadline stops with what it
measured and the JSON says ``cut_short``. Should the event loop hang, a watchdog thread prints the figures
gathered so far (``cut_short`` with the phase it hung in) and ends the process.

    python bench/fuzz.py                      # >= 10^5 replies, >= 10^4 configs (a few minutes)
    python bench/fuzz.py --modbus-replies 3000 --opcua-values 500 --snmp-replies 600 --configs 300   # seconds
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import logging
import math
import os
import random
import struct
import sys
import tempfile
import threading
import time
import tomllib
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import tomli_w

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from asyncua import ua
from pyasn1.codec.ber import decoder as ber_decoder
from pyasn1.codec.ber import encoder as ber_encoder
from pyasn1.type import univ
from pysnmp.proto import rfc1902, rfc1905
from pysnmp.proto.api import v2c as snmp_v2c

from aidc.clock import ScaledClock
from aidc.config import DeviceConfig, DeviceRef, site_from_dict
from aidc.errors import AidcError
from aidc.model import Batch
from aidc.profiles import PROFILE_DIR, Profile, builtin_profiles, load_profile_file
from aidc.sitegen import SiteTemplate, render_site
from aidc.snmp_config import SnmpSettings
from collectors.engine import Engine, EngineOptions
from collectors.link import LinkOptions
from collectors.modbus_link import ModbusLink
from collectors.plan import plan_modbus, plan_opcua, series_ids
from collectors.snmp import SnmpLink

_T0 = time.monotonic()  # the deadline counts from here (the imports take a few seconds before it)

MUTATIONS = (
    "valid", "valid", "valid", "valid", "split", "mbap_protocol", "mbap_length", "byte_count", "truncated",
    "wrong_tid", "wrong_fc", "wrong_unit", "exception", "garbage", "extra_frame", "slow", "silent", "close_mid",
)  # fmt: skip
TIMEOUT_S = 0.05
LOOKBACK = 3  # replies before a poll that may still be in flight when it runs (late, split)


# ------------------------------------------------------------------------------------------ Modbus


class HostileModbus(asyncio.Protocol):
    """A Modbus TCP server connection that answers each read with a mutation drawn from ``MUTATIONS``."""

    def __init__(self, farm: ModbusFarm, hostile: bool) -> None:
        self.farm, self.hostile = farm, hostile
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        # One reply log per server (its port), across the client's reconnects: what each poll was answered with.
        self.log = self.farm.log.setdefault(int(transport.get_extra_info("sockname")[1]), [])

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while len(self.buf) >= 12 and self.transport is not None:
            tid, _proto, _length, unit, fc, addr, count = struct.unpack_from(">HHHBBHH", self.buf)
            del self.buf[:12]
            self.farm.replies += 1
            self._answer(tid, unit, fc, addr, count)

    def _valid(self, tid: int, unit: int, fc: int, addr: int, count: int) -> bytes:
        if fc in (1, 2):
            data = bytes(self.farm.rng.getrandbits(8) & 0 for _ in range(-(-count // 8)))
        else:
            data = self.farm.image[2 * addr : 2 * (addr + count)]
        pdu = bytes([fc, len(data)]) + data
        return struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit) + pdu

    def _answer(self, tid: int, unit: int, fc: int, addr: int, count: int) -> None:
        t = self.transport
        assert t is not None
        rng = self.farm.rng
        kind = rng.choice(MUTATIONS) if self.hostile else "valid"
        self.farm.kinds[kind] += 1
        self.log.append(kind)
        ok = self._valid(tid, unit, fc, addr, count)
        loop = asyncio.get_running_loop()
        if kind == "valid":
            t.write(ok)
        elif kind == "split":
            cut = rng.randrange(1, len(ok))
            t.write(ok[:cut])
            loop.call_later(0.002, _write_later, t, ok[cut:])
        elif kind == "mbap_protocol":
            t.write(ok[:2] + struct.pack(">H", rng.randrange(1, 65536)) + ok[4:])
        elif kind == "mbap_length":
            t.write(ok[:4] + struct.pack(">H", rng.choice((0, 1, 255, 256, 65535, rng.randrange(65536)))) + ok[6:])
        elif kind == "byte_count":
            body = bytearray(ok)
            body[8] = (body[8] + rng.randrange(1, 255)) & 0xFF
            t.write(bytes(body))
        elif kind == "truncated":
            n = rng.randrange(1, max(2, len(ok) - 8))
            pdu = ok[7 : len(ok) - n]
            t.write(struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit) + pdu)
        elif kind == "wrong_tid":
            t.write(struct.pack(">H", (tid + rng.randrange(1, 65535)) & 0xFFFF) + ok[2:])
        elif kind == "wrong_fc":
            bad = rng.choice([f for f in range(1, 128) if f != fc])
            t.write(ok[:7] + bytes([bad]) + ok[8:])
        elif kind == "wrong_unit":
            t.write(ok[:6] + bytes([(unit + rng.randrange(1, 256)) & 0xFF]) + ok[7:])
        elif kind == "exception":
            t.write(struct.pack(">HHHBBB", tid, 0, 3, unit, fc | 0x80, rng.randrange(256)))
        elif kind == "garbage":
            t.write(rng.randbytes(rng.randrange(1, 300)))
        elif kind == "extra_frame":
            t.write(ok + struct.pack(">H", (tid + 7) & 0xFFFF) + ok[2:])
        elif kind == "slow":
            loop.call_later(TIMEOUT_S * 3, _write_later, t, ok)
        elif kind == "silent":
            pass  # half-open: the request is swallowed and the connection stays up
        elif kind == "close_mid":
            t.write(ok[: rng.randrange(1, len(ok))])
            t.close()


def _write_later(t: asyncio.Transport, data: bytes) -> None:
    if not t.is_closing():
        t.write(data)


@dataclass
class ModbusFarm:
    """Hostile and clean Modbus servers on loopback, sharing one register image and one random generator."""

    rng: random.Random
    image: bytes = b""
    replies: int = 0
    kinds: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    log: dict[int, list[str]] = field(default_factory=dict)  # per server port: the kind of every reply, in order
    servers: list[asyncio.base_events.Server] = field(default_factory=list)

    async def serve(self, hostile: bool) -> int:
        """Start one server; its port."""
        loop = asyncio.get_running_loop()
        srv = await loop.create_server(lambda: HostileModbus(self, hostile), "127.0.0.1", 0)
        self.servers.append(srv)
        return int(srv.sockets[0].getsockname()[1])

    def close(self) -> None:
        """Stop every server."""
        for s in self.servers:
            s.close()


def _snmp_device(name: str, profile: Profile, port: int) -> DeviceRef:
    """An SNMP v2c PDU on a hostile (or clean) agent's port."""
    config = DeviceConfig(name=name, protocol="snmp", profile=profile.name, poll_interval_s=0.02, port=port,
                          timeout_s=SNMP_TIMEOUT_S,
                          snmp=SnmpSettings(version="2c", community_env="AIDC_FUZZ_SNMP_COMMUNITY"))  # fmt: skip
    return DeviceRef("pdu", name, config, profile, {"site": "fuzz", "device": name})


def _device(name: str, profile: Profile, **cfg: Any) -> DeviceRef:
    config = DeviceConfig(name=name, protocol=profile.protocol, profile=profile.name, poll_interval_s=0.02,
                          timeout_s=TIMEOUT_S, **cfg)  # fmt: skip
    return DeviceRef("pdu", name, config, profile, {"site": "fuzz", "device": name})


# ------------------------------------------------------------------------------------------ OPC-UA


def _hostile_value(rng: random.Random, array: bool) -> ua.DataValue:
    """One hostile (or, sometimes, valid) DataValue for a node of a numeric scalar or Double[] point."""
    good = ua.StatusCode(ua.UInt32(ua.StatusCodes.Good))
    pick = rng.randrange(16)
    if pick < 4:  # valid
        v = ua.Variant([rng.uniform(0, 100) for _ in range(4)], ua.VariantType.Double) if array else \
            ua.Variant(rng.uniform(0, 100), ua.VariantType.Double)  # fmt: skip
        return ua.DataValue(v, StatusCode=good)
    choices: list[ua.Variant] = [
        ua.Variant("12.5", ua.VariantType.String),
        ua.Variant(b"\x00\xff", ua.VariantType.ByteString),
        ua.Variant(rng.random() < 0.5, ua.VariantType.Boolean),
        ua.Variant(ua.LocalizedText("x"), ua.VariantType.LocalizedText),
        ua.Variant(datetime.now(UTC), ua.VariantType.DateTime),
        ua.Variant(None, ua.VariantType.Null),
        ua.Variant([], ua.VariantType.Double),
        ua.Variant([1.0], ua.VariantType.Double),
        ua.Variant([float(i) for i in range(rng.choice((3, 5, 1000)))], ua.VariantType.Double),
        ua.Variant(["a", "b"], ua.VariantType.String),
        ua.Variant([math.nan, math.inf, -math.inf], ua.VariantType.Double),
        ua.Variant(2**63 - 1, ua.VariantType.Int64),
        ua.Variant(math.inf, ua.VariantType.Double),
        ua.Variant([[1.0, 2.0], [3.0]], ua.VariantType.Double),
    ]
    v = rng.choice(choices)
    status = rng.choice((ua.StatusCodes.Good, ua.StatusCodes.BadSensorFailure, ua.StatusCodes.BadCommunicationError,
                         ua.StatusCodes.UncertainLastUsableValue, ua.StatusCodes.BadNodeIdUnknown))  # fmt: skip
    return ua.DataValue(v, StatusCode=ua.StatusCode(ua.UInt32(status)))


class HostileOpcUa:
    """An asyncua server for one GPU-rack device whose every node read returns a hostile DataValue."""

    def __init__(self, rng: random.Random, dev: DeviceRef, pki: Path) -> None:
        self.rng, self.dev, self.pki = rng, dev, pki
        self.values = 0
        self.endpoint: Any = None

    async def start(self) -> None:
        """Build the address space from the profile (the simulator's endpoint) and hook every value read."""
        from simulators.faults import FaultBook  # the fuzz bench may use the simulators (bench/ is allowed to)
        from simulators.opcua_server import OpcUaEndpoint

        class _Zero:
            def device_values(self, device: str) -> dict[str, Any]:
                return {}

        self.endpoint = OpcUaEndpoint(str(self.dev.config.endpoint), [self.dev], _Zero(),  # type: ignore[arg-type]
                                      FaultBook({self.dev.name: self.dev.profile}), self.pki)  # fmt: skip
        await self.endpoint.start()
        aspace = self.endpoint.server.iserver.aspace
        for p in self.dev.profile.points:
            nid = ua.NodeId.from_string(str(p.node).replace("{device}", self.dev.name))

            def cb(nodeid: ua.NodeId, attr: ua.AttributeIds, array: bool = p.array) -> ua.DataValue:
                self.values += 1
                return _hostile_value(self.rng, array)

            aspace.set_attribute_value_callback(nid, ua.AttributeIds.Value, cb)

    async def stop(self) -> None:
        """Stop the server."""
        if self.endpoint is not None:
            await self.endpoint.stop()


# ------------------------------------------------------------------------------------------ SNMP

SNMP_MUTATIONS = (
    "valid", "valid", "valid", "valid", "garbage", "truncated", "wrong_reqid", "wrong_type", "no_such",
    "error_status", "wrong_oid", "missing_varbind", "extra_varbind", "not_increasing", "duplicate", "slow", "silent",
)  # fmt: skip
SNMP_TIMEOUT_S = 0.1


def _wrong_type(rng: random.Random) -> Any:
    """A value of a type no PDU sensor reading has."""
    return rng.choice((
        rfc1902.OctetString(b"12"), univ.Null(""), rfc1902.IpAddress("10.0.0.1"),
        rfc1902.ObjectIdentifier((1, 3, 6)), rfc1902.TimeTicks(12345), rfc1902.Bits(b"\x01"),
    ))  # fmt: skip


class HostileSnmp(asyncio.DatagramProtocol):
    """A v2c agent answering GET and GETBULK for the SNMP PDU profile from a fixed table, mutating each response."""

    def __init__(self, farm: SnmpFarm, hostile: bool) -> None:
        self.farm, self.hostile = farm, hostile
        self.transport: asyncio.DatagramTransport | None = None
        self.log: list[str] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def _bulk(self, start: tuple[int, ...], reps: int) -> list[tuple[Any, Any]]:
        out: list[tuple[Any, Any]] = []
        cur = start
        for _ in range(max(1, min(reps, 64))):
            nxt = next((o for o in self.farm.order if o > cur), None)
            if nxt is None:
                out.append((rfc1902.ObjectName(cur), rfc1905.endOfMibView))
                break
            out.append((rfc1902.ObjectName(nxt), self.farm.table[nxt]))
            cur = nxt
        return out

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        t = self.transport
        if t is None:
            return
        try:
            req, _ = ber_decoder.decode(data, asn1Spec=snmp_v2c.Message())
        except Exception:  # not a request of ours: a real agent drops it too
            return
        pdu = snmp_v2c.apiMessage.get_pdu(req)
        rsp = snmp_v2c.apiMessage.get_response(req)
        rsp_pdu = snmp_v2c.apiMessage.get_pdu(rsp)
        asked = [tuple(o) for o, _ in snmp_v2c.apiPDU.get_varbinds(pdu)]
        if pdu.isSameTypeWith(snmp_v2c.GetBulkRequestPDU()):
            bulk = True
            vbs = self._bulk(asked[0], int(snmp_v2c.apiBulkPDU.get_max_repetitions(pdu)))
        else:
            bulk = False
            vbs = [(rfc1902.ObjectName(o), self.farm.table.get(o, rfc1905.noSuchInstance)) for o in asked]
        rng = self.farm.rng
        kind = rng.choice(SNMP_MUTATIONS) if self.hostile else "valid"
        self.farm.replies += 1
        self.farm.kinds[kind] += 1
        self.log.append(kind)
        k = rng.randrange(len(vbs))
        if kind == "wrong_type":
            vbs[k] = (vbs[k][0], _wrong_type(rng))
        elif kind == "no_such":
            vbs[k] = (vbs[k][0], rng.choice((rfc1905.noSuchInstance, rfc1905.noSuchObject, rfc1905.endOfMibView)))
        elif kind == "error_status":
            snmp_v2c.apiPDU.set_error_status(rsp_pdu, rng.choice((1, 2, 5, 13)))
            snmp_v2c.apiPDU.set_error_index(rsp_pdu, k + 1)
        elif kind == "wrong_oid":
            vbs[k] = (rfc1902.ObjectName((*tuple(vbs[k][0])[:-1], rng.randrange(100, 200))), vbs[k][1])
        elif kind == "missing_varbind" and len(vbs) > 1:
            del vbs[k]
        elif kind == "extra_varbind":
            vbs.append((rfc1902.ObjectName((1, 3, 6, 1, 4, 1, 99999, rng.randrange(10))), rfc1902.Gauge32(7)))
        elif kind == "not_increasing" and bulk:
            vbs = [vbs[0], vbs[0], *vbs[1:]]
        elif kind == "wrong_reqid":
            snmp_v2c.apiPDU.set_request_id(rsp_pdu, (int(snmp_v2c.apiPDU.get_request_id(pdu)) + 1) % 2**31)
        snmp_v2c.apiPDU.set_varbinds(rsp_pdu, vbs)
        out = ber_encoder.encode(rsp)
        loop = asyncio.get_running_loop()
        if kind == "garbage":
            t.sendto(rng.randbytes(rng.randrange(1, 200)), addr)
        elif kind == "truncated":
            t.sendto(out[: rng.randrange(1, len(out))], addr)
        elif kind == "duplicate":
            t.sendto(out, addr)
            t.sendto(out, addr)
        elif kind == "slow":
            loop.call_later(SNMP_TIMEOUT_S * 3, _sendto_later, t, out, addr)
        elif kind != "silent":
            t.sendto(out, addr)


def _sendto_later(t: asyncio.DatagramTransport, data: bytes, addr: tuple[str, int]) -> None:
    if not t.is_closing():
        t.sendto(data, addr)


@dataclass
class SnmpFarm:
    """Hostile and clean SNMP agents on loopback UDP, answering from one table of the SNMP PDU profile's OIDs."""

    rng: random.Random
    table: dict[tuple[int, ...], Any] = field(default_factory=dict)
    order: list[tuple[int, ...]] = field(default_factory=list)
    replies: int = 0
    kinds: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    agents: dict[int, HostileSnmp] = field(default_factory=dict)  # by UDP port
    transports: list[asyncio.DatagramTransport] = field(default_factory=list)

    def fill(self, profile: Profile) -> None:
        """One value per point (in its type, sometimes out of the profile's range), plus sysUpTime."""
        for p in profile.points:
            assert p.oid is not None
            lo, hi = p.range or (0.0, 1e6)
            raw = int(self.rng.uniform(lo, hi * 1.1) / p.scale)
            self.table[tuple(int(x) for x in p.oid.split("."))] = rfc1902.Gauge32(max(0, min(raw, 2**32 - 1)))
        self.table[(1, 3, 6, 1, 2, 1, 1, 3, 0)] = rfc1902.TimeTicks(100)
        self.order = sorted(self.table)

    async def serve(self, hostile: bool) -> int:
        """Start one agent; its UDP port."""
        loop = asyncio.get_running_loop()
        agent = HostileSnmp(self, hostile)
        transport, _ = await loop.create_datagram_endpoint(lambda: agent, local_addr=("127.0.0.1", 0))
        self.transports.append(transport)
        port = int(transport.get_extra_info("sockname")[1])
        self.agents[port] = agent
        return port

    def close(self) -> None:
        """Stop every agent."""
        for t in self.transports:
            t.close()


# ------------------------------------------------------------------------------------------ engine run


@dataclass
class PollTrace:
    """Which server replies answered each poll: (device, poll timestamp) -> (reply log, first, end) in that log."""

    farm: ModbusFarm
    polls: dict[tuple[str, int], tuple[list[str], int, int]] = field(default_factory=dict)

    def wrap(self, link: ModbusLink | SnmpLink, logs: dict[int, list[str]] | None = None) -> None:
        """Record the range of server replies of every poll of the link's devices (the bench's own hook).

        ``logs``: the reply logs by port (the Modbus farm's by default; the SNMP agents' for an SNMP link).
        """
        orig = link.poll
        by_port = self.farm.log if logs is None else logs

        async def poll(dev: DeviceRef) -> Batch:
            log = by_port.setdefault(int(dev.config.port or 0), [])
            first = len(log)
            batch = await orig(dev)
            self.polls[(dev.name, int(batch.ts_ns[0]))] = (log, first, len(log))
            return batch

        link.poll = poll  # type: ignore[method-assign]

    def pattern(self, device: str, ts_ns: int) -> tuple[str, set[str]]:
        """The reply pattern of a poll: its hostile reply kinds, after those of the replies just before it."""
        hit = self.polls.get((device, ts_ns))
        if hit is None:
            kind = "opcua" if "opcua" in device else "untraced"
            return kind, {kind}
        log, first, end = hit
        now = [k for k in log[first:end] if k != "valid"] or ["valid"]
        before = [k for k in log[max(0, first - LOOKBACK) : first] if k != "valid"]
        label = "+".join(now) + (f" after {'+'.join(before)}" if before else "")
        return label, set(now) | set(before)


@dataclass
class Tally:
    """What the sink saw."""

    missing: int = 0
    wrong: int = 0
    samples: int = 0
    truth: dict[tuple[str, str], tuple[float, int]] = field(default_factory=dict)
    by_kind: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    patterns: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    examples: dict[str, str] = field(default_factory=dict)

    def lost(self, trace: PollTrace, device: str, ts_ns: int, n: int, what: str) -> None:
        """Attribute ``n`` lost points of one poll to its reply pattern."""
        label, kinds = trace.pattern(device, ts_ns)
        for k in kinds:
            self.by_kind[k] += n
        self.patterns[label] += n
        self.examples.setdefault(label, what)


def _check_batches(batches: list[Batch], expected: dict[str, set[str]], clean_of: dict[str, str],
                   profile_of: dict[str, str], tally: Tally, trace: PollTrace) -> None:  # fmt: skip
    """Every poll's batch covers all of its device's points; GOOD values and clean devices match the truth."""
    for b in batches:
        tally.samples += len(b)
        by_dev: dict[str, list[int]] = defaultdict(list)
        for i, s in enumerate(b.series):
            if str(s).startswith("collector,"):
                continue
            dev = str(s).split("device=", 1)[1].split(",", 1)[0].split(" ", 1)[0]
            by_dev[dev].append(i)
        for dev, idx in by_dev.items():
            want = expected.get(dev)
            if want is None:
                continue
            got = {str(b.series[i]) for i in idx}
            gone = want - got
            if gone:
                tally.missing += len(gone)
                tally.lost(trace, dev, int(b.ts_ns[idx[0]]), len(gone), f"{dev}: {len(gone)} points missing")
            prof = profile_of[dev]
            clean = dev in clean_of.values()
            for i in idx:
                q = int(b.quality[i])
                if q == 2:  # bad with a reason (exception reply, timeout, stale under load): flagged, not lost
                    continue
                key = (prof, str(b.series[i]).rsplit(" ", 1)[1])
                v = float(b.values[i])
                if clean:
                    tally.truth.setdefault(key, (v, q))
                ref = tally.truth.get(key)
                if ref is not None and not _same(ref, (v, q)):
                    tally.wrong += 1  # a value the device never served, published as if it were real
                    tally.lost(trace, dev, int(b.ts_ns[i]), 1, f"{dev} {key[1]} = {v!r} quality {q}, truth {ref}")


def _same(a: tuple[float, int], b: tuple[float, int]) -> bool:
    return a[1] == b[1] and (a[0] == b[0] or (math.isnan(a[0]) and math.isnan(b[0])))


async def run_protocols(args: argparse.Namespace, rng: random.Random, workdir: Path, report: Report,
                        end_at: float) -> None:  # fmt: skip
    """Run the engine against the hostile servers until the reply targets are met (or ``end_at``, monotonic)."""
    farm = ModbusFarm(rng, image=bytes(rng.getrandbits(8) for _ in range(2 * 65536)))
    profiles = [p for p in builtin_profiles().values() if p.protocol == "modbus"]
    devices: list[DeviceRef] = []
    clean_of: dict[str, str] = {}
    for prof in profiles if args.modbus_replies > 0 else []:
        port = await farm.serve(hostile=False)
        clean = _device(f"clean-{prof.name}", prof, port=port)
        devices.append(clean)
        clean_of[prof.name] = clean.name
        for k in range(args.hostile_per_profile):
            devices.append(_device(f"hostile-{prof.name}-{k}", prof, port=await farm.serve(hostile=True)))
    snmp = SnmpFarm(rng)
    if args.snmp_replies > 0:
        pdu = builtin_profiles()["raritan-px3-snmp"]
        snmp.fill(pdu)
        os.environ["AIDC_FUZZ_SNMP_COMMUNITY"] = "fuzz-community"
        for k in range(args.hostile_per_profile + 1):
            dev = _snmp_device(f"{'clean' if k == 0 else 'hostile'}-{pdu.name}-{k}", pdu, await snmp.serve(k > 0))
            devices.append(dev)
            if k == 0:
                clean_of[pdu.name] = dev.name
    opc: HostileOpcUa | None = None
    if args.opcua_values > 0:
        rack = builtin_profiles()["gpu-rack-opcua"]
        sock_port = await farm.serve(hostile=False)  # reserve a free port number, then free it for asyncua
        farm.servers.pop().close()
        dev = _device("hostile-opcua-rack", rack, endpoint=f"opc.tcp://127.0.0.1:{sock_port}/fuzz")
        opc = HostileOpcUa(rng, dev, workdir / "pki")
        await opc.start()
        devices.append(dev)
    http: list[Any] = []
    if args.http_replies > 0:
        from bench.fuzz_http import PASSWORD_ENV, http_peers

        os.environ.setdefault(PASSWORD_ENV, "fuzz-password")
        http, http_devices, http_clean = await http_peers(rng, args.hostile_per_profile)
        devices += http_devices
        clean_of.update(http_clean)
    batches: list[Batch] = []
    engine = Engine(devices, sinks=[batches.append], clock=ScaledClock.starting_now(),
                    options=EngineOptions(link=LinkOptions(min_interval_s=0.005, backoff_initial_s=0.005,
                                                           backoff_max_s=0.05, stuck_polls=10**9,
                                                           timeouts_before_reconnect=3),
                                          pki_dir=workdir / "client-pki"))  # fmt: skip
    trace = PollTrace(farm)
    snmp_logs = {port: agent.log for port, agent in snmp.agents.items()}
    for link in engine.links:
        if isinstance(link, ModbusLink):
            trace.wrap(link)
        elif isinstance(link, SnmpLink):
            trace.wrap(link, snmp_logs)
    expected = {d.name: set(map(str, plan_modbus(d).series)) for d in devices if d.config.protocol == "modbus"}
    for d in devices:  # OPC-UA: every scalar point in every poll (arrays may change length, a new layout)
        if d.config.protocol == "opcua":
            plan = plan_opcua(d)
            expected[d.name] = {str(s) for s, pt in zip(plan.series, plan.points, strict=True) if not pt.array}
        elif d.config.protocol == "snmp":
            expected[d.name] = set(map(str, series_ids(d, d.profile.points)))
        elif d.config.protocol in ("dcgm", "redfish"):  # every rack figure / resource point in every poll
            expected[d.name] = set(map(str, series_ids(d, [p for p in d.profile.points if not p.array])))
    profile_of = {d.name: d.profile.name for d in devices}
    loop = asyncio.get_running_loop()
    loop_errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, ctx: loop_errors.append(ctx))
    tally = report.tally
    engine_stops = 0
    t0 = time.perf_counter()

    def figures() -> None:  # what the watchdog prints should the loop hang
        report.proto = add_figures(report.proto_before, {
            "modbus_replies": farm.replies,
            "opcua_values": opc.values if opc else 0,
            "snmp_replies": snmp.replies,
            "snmp_kinds": dict(snmp.kinds),
            "http_replies": sum(h.replies for h in http),
            "http_kinds": {k: sum(h.kinds.get(k, 0) for h in http) for k in sorted({k for h in http for k in h.kinds})},
            "wall_s": time.perf_counter() - t0,
            "kinds": dict(farm.kinds),
            "unexpected": sum(link.unexpected_errors for link in engine.links),
            "restarts": engine.restarts,
            "loop_errors": len(loop_errors),
            "loop_error_sample": str(loop_errors[0].get("exception") or loop_errors[0].get("message"))
            if loop_errors else "",
            "engine_stops": engine_stops,
            "missing": tally.missing,
            "wrong": tally.wrong,
            "dropped": engine.output.dropped,
            "samples": tally.samples,
            "polls": sum(h.polls for h in engine.health().values()),
            "resyncs": sum(getattr(link.client, "resyncs", 0) for link in engine.links if isinstance(link, ModbusLink)),
        })  # fmt: skip

    task = engine.start()
    try:
        while (
            farm.replies < args.modbus_replies
            or (opc is not None and opc.values < args.opcua_values)
            or snmp.replies < args.snmp_replies
            or sum(h.replies for h in http) < args.http_replies
        ):
            await asyncio.sleep(0.25)
            if task.done():
                engine_stops += 1
                task = engine.start()
            chunk, batches[:] = list(batches), []
            _check_batches(chunk, expected, clean_of, profile_of, tally, trace)
            figures()
            if time.perf_counter() - t0 > args.max_seconds or time.monotonic() > end_at:
                report.cut.append(
                    f"protocols stopped at the deadline ({farm.replies} of {args.modbus_replies} "
                    f"Modbus replies, {opc.values if opc else 0} of {args.opcua_values} OPC-UA values, "
                    f"{snmp.replies} of {args.snmp_replies} SNMP replies, "
                    f"{sum(h.replies for h in http)} of {args.http_replies} DCGM/Redfish replies)"
                )
                break
    finally:
        report.phase = "protocol teardown"
        await engine.stop()
        farm.close()
        snmp.close()
        for h in http:
            h.close()
        if opc is not None:
            await opc.stop()
    _check_batches(batches, expected, clean_of, profile_of, tally, trace)
    figures()


# ------------------------------------------------------------------------------------------ configs

HOSTILE_SCALARS: tuple[Any, ...] = (0, -1, 1, 65536, 70000, 2**63, -(2**63), 1e308, -1e-308, math.nan, math.inf,
                                    "", "x", "0", "☃", " ", "../../etc/passwd", True, False, [], [1, "a"], {},
                                    {"a": 1})  # fmt: skip


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


def mutate_doc(doc: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """A deep copy of ``doc`` with 1-3 random mutations (replace, delete, duplicate, rename a key)."""
    out = copy.deepcopy(doc)
    for _ in range(rng.randrange(1, 4)):
        paths = _paths(out)
        if not paths:
            break
        path = rng.choice(paths)
        parent: Any = out
        for k in path[:-1]:
            parent = parent[k]
        key = path[-1]
        op = rng.randrange(4)
        if op == 0:
            parent[key] = rng.choice(HOSTILE_SCALARS)
        elif op == 1:
            if isinstance(parent, dict):
                del parent[key]
            else:
                parent.pop(key)
        elif op == 2 and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[key]))  # duplicate names, ports, units
        elif isinstance(parent, dict):
            parent[f"{key}_x"] = parent.pop(key)  # an unknown key
    return out


def _toml_text(doc: dict[str, Any], rng: random.Random) -> str:
    try:
        text = tomli_w.dumps(doc)
    except (TypeError, ValueError):  # values TOML cannot hold (NaN inside lists is fine; None is not): skip
        return ""
    if rng.random() < 0.2 and text:  # byte-level damage
        i = rng.randrange(len(text))
        text = text[:i] + rng.choice(("", '"', "[", "=", "\x00", "\n[[x]]\n", "ä")) + text[i + rng.randrange(3) :]
    return text


def run_configs(n: int, rng: random.Random, workdir: Path, report: Report, end_at: float) -> None:
    """``n`` mutated site files and profile files through the loaders ``aidc check`` uses (until ``end_at``)."""
    site_doc = tomllib.loads(render_site(SiteTemplate(racks=2, data_dir=str(workdir / "var"))))
    pdu = site_doc["halls"][0]["racks"][0]["pdu"]  # one SNMP PDU, so [snmp] tables are mutated too
    pdu.update(protocol="snmp", profile="raritan-px3-snmp", snmp={
        "version": "3", "user": "aidc", "auth_key_env": "AIDC_FUZZ_AUTH", "priv_key_env": "AIDC_FUZZ_PRIV"})
    pdu.pop("unit_id", None)
    profile_docs = [tomllib.loads(p.read_text(encoding="utf-8")) for p in sorted(PROFILE_DIR.glob("*.toml"))]
    loaded = refused = tracebacks = 0
    sample = ""
    pdir = workdir / "profiles"
    pdir.mkdir(parents=True, exist_ok=True)
    done = 0
    t0 = time.perf_counter()
    for i in range(n):
        if time.monotonic() > end_at:
            report.cut.append(f"configs stopped at the deadline ({done} of {n})")
            break
        done += 1
        report.cfg = {"configs": done, "loaded": loaded, "refused": refused, "tracebacks": tracebacks,
                      "sample": sample, "wall_s": time.perf_counter() - t0}  # fmt: skip
        try:
            if i % 2 == 0:
                text = _toml_text(mutate_doc(site_doc, rng), rng)
                path = workdir / "site.toml"
                path.write_text(text, encoding="utf-8")
                from aidc.config import load_site

                load_site(path)
            else:
                text = _toml_text(mutate_doc(rng.choice(profile_docs), rng), rng)
                path = pdir / "p.toml"
                path.write_text(text, encoding="utf-8")
                load_profile_file(path)
            loaded += 1
        except AidcError as exc:
            refused += 1
            if "\n" in str(exc).strip():
                tracebacks += 1  # not one clear line
                sample = sample or f"multi-line error: {exc}"
        except Exception as exc:  # exactly what the campaign hunts: a traceback instead of one line
            tracebacks += 1
            sample = sample or f"{type(exc).__name__}: {exc}"
    site_from_dict(site_doc)  # the unmutated document still loads
    report.cfg = {"configs": done, "loaded": loaded, "refused": refused, "tracebacks": tracebacks,
                  "sample": sample, "wall_s": time.perf_counter() - t0}  # fmt: skip


# ------------------------------------------------------------------------------------------ main


class _Tracebacks(logging.Handler):
    """Counts log records that carry a traceback (an exception escaped into the logs)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0
        self.sample = ""

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.levelno >= logging.WARNING:
            self.count += 1
            self.sample = self.sample or record.getMessage()


@dataclass
class Report:
    """The figures gathered so far, shared with the watchdog thread; printed exactly once."""

    logged: _Tracebacks
    tally: Tally = field(default_factory=Tally)
    proto: dict[str, Any] = field(default_factory=dict)
    cfg: dict[str, Any] = field(default_factory=dict)
    cut: list[str] = field(default_factory=list)  # why a phase stopped short of its target
    proto_before: dict[str, Any] = field(default_factory=dict)  # the figures of the protocol groups already run
    phase: str = "start"
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _printed: bool = False

    def emit(self) -> int:
        """Print the figures (the last line is JSON) unless already printed; the exit status."""
        with self._lock:
            if self._printed:
                return 1
            self._printed = True
        proto = {"modbus_replies": 0, "opcua_values": 0, "snmp_replies": 0, "snmp_kinds": {}, "http_replies": 0,
                 "http_kinds": {}, "wall_s": 0.0,
                 "kinds": {}, "unexpected": 0,
                 "restarts": 0, "loop_errors": 0, "loop_error_sample": "", "engine_stops": 0, "missing": 0,
                 "wrong": 0, "dropped": 0, "samples": 0, "polls": 0, "resyncs": 0, **self.proto}  # fmt: skip
        cfg = {"configs": 0, "loaded": 0, "refused": 0, "tracebacks": 0, "sample": "", "wall_s": 0.0, **self.cfg}
        tracebacks = proto["unexpected"] + proto["restarts"] + proto["loop_errors"] + cfg["tracebacks"]
        tracebacks += self.logged.count
        lost = proto["missing"] + proto["wrong"] + proto["dropped"]
        by_kind = dict(sorted(self.tally.by_kind.items(), key=lambda kv: -kv[1]))
        if proto["dropped"]:
            by_kind["output backlog"] = proto["dropped"]
        print(
            f"modbus: {proto['modbus_replies']} hostile/clean replies in {proto['wall_s']:.1f} s, "
            f"{proto['polls']} polls, {proto['samples']} samples, {proto['resyncs']} connections replaced after "
            f"a timeout; mix {json.dumps(proto['kinds'])}"
        )
        print(f"opcua: {proto['opcua_values']} hostile values")
        print(f"snmp: {proto['snmp_replies']} hostile/clean responses; mix {json.dumps(proto['snmp_kinds'])}")
        print(f"dcgm/redfish: {proto['http_replies']} hostile/clean replies; mix {json.dumps(proto['http_kinds'])}")
        print(
            f"configs: {cfg['configs']} mutated site files and profiles in {cfg['wall_s']:.1f} s: "
            f"{cfg['loaded']} loaded, {cfg['refused']} refused with one line"
        )
        print(
            f"tracebacks {tracebacks} (safety net {proto['unexpected']}, supervisor restarts {proto['restarts']}, "
            f"event loop {proto['loop_errors']}, config loaders {cfg['tracebacks']}, logged {self.logged.count})"
            + "".join(f"; e.g. {s}" for s in (proto["loop_error_sample"], cfg["sample"], self.logged.sample) if s)
        )
        print(
            f"engine stops {proto['engine_stops']}; points lost {lost} (missing from a poll {proto['missing']}, "
            f"wrong GOOD values {proto['wrong']}, dropped by the output {proto['dropped']})"
        )
        if lost:
            print(
                f"lost points by reply kind (a point counts for each kind of its poll and the {LOOKBACK} replies "
                f"before it): {json.dumps(by_kind)}"
            )
            for label, n in sorted(self.tally.patterns.items(), key=lambda kv: -kv[1])[:20]:
                print(f"  {n} lost after replies [{label}], e.g. {self.tally.examples[label]}")
        wall = time.monotonic() - _T0
        if self.cut:
            print(f"CUT SHORT after {wall:.0f} s: " + "; ".join(self.cut) + " (figures cover what was measured)")
        print(json.dumps({
            "modbus_replies": proto["modbus_replies"], "opcua_values": proto["opcua_values"],
            "snmp_replies": proto["snmp_replies"], "http_replies": proto["http_replies"], "configs": cfg["configs"],
            "tracebacks": tracebacks, "engine_stops": proto["engine_stops"], "points_lost": lost,
            "wrong_good_values": proto["wrong"], "missing_points": proto["missing"], "lost_by_kind": by_kind,
            "wall_s": round(wall, 1), "cut_short": bool(self.cut),
        }), flush=True)  # fmt: skip
        return 0 if tracebacks == 0 and proto["engine_stops"] == 0 and lost == 0 and not self.cut else 1


def _watchdog(report: Report, at: float) -> None:
    """Print what was measured and end the process if the run is still going at ``at`` (monotonic)."""
    time.sleep(max(0.0, at - time.monotonic()))
    report.cut.append(f"hung in {report.phase}: the watchdog ended the run")
    code = report.emit()
    sys.stdout.flush()
    os._exit(code or 1)


def protocol_groups(args: argparse.Namespace) -> list[argparse.Namespace]:
    """The protocol phase in groups run one after another: Modbus with OPC-UA, then SNMP, then DCGM / Redfish.

    Every link polls as fast as it may (20 ms), all on one event loop beside the hostile servers; together they
    saturate it and OPC-UA's round trips starve (36 of 400 values in 60 s under load), so each group gets the loop.
    """
    zero = {"modbus_replies": 0, "opcua_values": 0, "snmp_replies": 0, "http_replies": 0}
    keep = (("modbus_replies", "opcua_values"), ("snmp_replies",), ("http_replies",))
    groups = [argparse.Namespace(**{**vars(args), **zero, **{k: getattr(args, k) for k in ks}}) for ks in keep]
    return [g for g in groups if any(getattr(g, k) > 0 for k in zero)]


def add_figures(before: dict[str, Any], now: dict[str, Any]) -> dict[str, Any]:
    """One group's protocol figures added to the earlier groups': counts summed, reply mixes merged."""
    out = dict(before)
    for k, v in now.items():
        if isinstance(v, dict):
            merged = dict(out.get(k, {}))
            for kind, n in v.items():
                merged[kind] = merged.get(kind, 0) + n
            out[k] = merged
        elif isinstance(v, str):
            out[k] = out.get(k) or v
        else:
            out[k] = out.get(k, 0) + v
    return out


def main() -> int:
    """Run the campaign and print the figures; the last line is JSON."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--modbus-replies", type=int, default=100_000)
    p.add_argument("--opcua-values", type=int, default=20_000)
    p.add_argument("--snmp-replies", type=int, default=20_000)
    p.add_argument("--http-replies", type=int, default=20_000, help="DCGM and Redfish replies (bench/fuzz_http.py)")
    p.add_argument("--configs", type=int, default=10_000)
    p.add_argument("--hostile-per-profile", type=int, default=3)
    p.add_argument("--max-seconds", type=float, default=900.0, help="cap on the protocol phase")
    p.add_argument("--deadline-s", type=float, default=450.0, help="the whole run ends within this (from start)")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    rng = random.Random(args.seed)
    np.random.seed(args.seed)
    handler = _Tracebacks()
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.WARNING)
    for noisy in ("collectors", "asyncua", "simulators"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL + 1 if noisy == "asyncua" else logging.WARNING)
    logging.getLogger("collectors").propagate = True
    report = Report(handler)
    deadline = _T0 + args.deadline_s
    # The configs need about a minute on a loaded machine; teardown and printing a few seconds.
    proto_end = deadline - min(120.0, 0.3 * args.deadline_s)
    threading.Thread(target=_watchdog, args=(report, deadline + 15.0), daemon=True, name="deadline").start()
    with tempfile.TemporaryDirectory(prefix="aidc-fuzz-") as tmp:
        work = Path(tmp)
        for group in protocol_groups(args):
            report.phase = "protocols"
            asyncio.run(run_protocols(group, rng, work, report, proto_end))
            report.proto_before = dict(report.proto)
        report.phase = "configs"
        run_configs(args.configs, rng, work, report, deadline - 5.0)
        report.phase = "cleanup"
    return report.emit()


if __name__ == "__main__":
    raise SystemExit(main())
