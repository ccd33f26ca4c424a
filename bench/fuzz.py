"""Fuzz campaign: hostile Modbus servers, hostile OPC-UA values and mutated site files / profiles.

Modbus: in-process hostile servers answer the real collector engine (``collectors.engine.Engine``, real
``ModbusLink`` over loopback TCP) with a random mix of valid replies, malformed MBAP headers (protocol id,
length field), wrong byte counts and truncated PDUs, wrong transaction ids, wrong function codes and unit ids,
random exception codes, garbage, extra unsolicited frames, fragmented frames, slow replies (past the timeout),
silence (half-open connections) and connections closed mid-frame. One clean server per profile gives the truth.

OPC-UA: an asyncua server exposes the GPU rack profile's nodes, and every read of every node returns a random
hostile DataValue: wrong variant types (String, ByteString, Boolean, LocalizedText, DateTime, null), arrays of
the wrong length or element type, nested arrays, NaN / inf / huge integers, and Bad / Uncertain status codes.

Configs: mutated site documents (keys deleted, values replaced by zeros, negatives, huge, NaN, strings, lists,
nested tables) and mutated profile files (the same, plus byte-level damage to the TOML text) go through the
path ``aidc check`` uses; each must load or fail with one ConfigError line.

Figures: ``tracebacks`` counts exceptions outside every designed error channel (the links' safety net,
supervisor restarts, the event loop's handler, any exception escaping the config loaders); ``engine_stops``
counts collector engine tasks that died; ``points_lost`` counts points missing from a poll's batch, points
the output dropped, and GOOD samples whose value differs from the truth. All three must be 0.

    python bench/fuzz.py                      # >= 10^5 replies, >= 10^4 configs (a few minutes)
    python bench/fuzz.py --modbus-replies 3000 --opcua-values 500 --configs 300   # seconds
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import logging
import math
import random
import struct
import sys
import tempfile
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

from aidc.clock import ScaledClock
from aidc.config import DeviceConfig, DeviceRef, site_from_dict
from aidc.errors import AidcError
from aidc.model import Batch
from aidc.profiles import PROFILE_DIR, Profile, builtin_profiles, load_profile_file
from aidc.sitegen import SiteTemplate, render_site
from collectors.engine import Engine, EngineOptions
from collectors.link import LinkOptions
from collectors.plan import plan_modbus, plan_opcua

MUTATIONS = (
    "valid", "valid", "valid", "valid", "split", "mbap_protocol", "mbap_length", "byte_count", "truncated",
    "wrong_tid", "wrong_fc", "wrong_unit", "exception", "garbage", "extra_frame", "slow", "silent", "close_mid",
)  # fmt: skip
TIMEOUT_S = 0.05


# ------------------------------------------------------------------------------------------ Modbus


class HostileModbus(asyncio.Protocol):
    """A Modbus TCP server connection that answers each read with a mutation drawn from ``MUTATIONS``."""

    def __init__(self, farm: ModbusFarm, hostile: bool) -> None:
        self.farm, self.hostile = farm, hostile
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

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


# ------------------------------------------------------------------------------------------ engine run


@dataclass
class Tally:
    """What the sink saw."""

    missing: int = 0
    wrong: int = 0
    samples: int = 0
    truth: dict[tuple[str, str], tuple[float, int]] = field(default_factory=dict)


def _check_batches(batches: list[Batch], expected: dict[str, set[str]], clean_of: dict[str, str],
                   profile_of: dict[str, str], tally: Tally) -> None:  # fmt: skip
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
            tally.missing += len(want - got)
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


def _same(a: tuple[float, int], b: tuple[float, int]) -> bool:
    return a[1] == b[1] and (a[0] == b[0] or (math.isnan(a[0]) and math.isnan(b[0])))


async def run_protocols(args: argparse.Namespace, rng: random.Random, workdir: Path) -> dict[str, Any]:
    """Run the engine against the hostile servers until the reply targets are met (or the time limit)."""
    farm = ModbusFarm(rng, image=bytes(rng.getrandbits(8) for _ in range(2 * 65536)))
    profiles = [p for p in builtin_profiles().values() if p.protocol == "modbus"]
    devices: list[DeviceRef] = []
    clean_of: dict[str, str] = {}
    for prof in profiles:
        port = await farm.serve(hostile=False)
        clean = _device(f"clean-{prof.name}", prof, port=port)
        devices.append(clean)
        clean_of[prof.name] = clean.name
        for k in range(args.hostile_per_profile):
            devices.append(_device(f"hostile-{prof.name}-{k}", prof, port=await farm.serve(hostile=True)))
    opc: HostileOpcUa | None = None
    if args.opcua_values > 0:
        rack = builtin_profiles()["gpu-rack-opcua"]
        sock_port = await farm.serve(hostile=False)  # reserve a free port number, then free it for asyncua
        farm.servers.pop().close()
        dev = _device("hostile-opcua-rack", rack, endpoint=f"opc.tcp://127.0.0.1:{sock_port}/fuzz")
        opc = HostileOpcUa(rng, dev, workdir / "pki")
        await opc.start()
        devices.append(dev)
    batches: list[Batch] = []
    engine = Engine(devices, sinks=[batches.append], clock=ScaledClock.starting_now(),
                    options=EngineOptions(link=LinkOptions(min_interval_s=0.005, backoff_initial_s=0.005,
                                                           backoff_max_s=0.05, stuck_polls=10**9,
                                                           timeouts_before_reconnect=3),
                                          pki_dir=workdir / "client-pki"))  # fmt: skip
    expected = {d.name: set(map(str, plan_modbus(d).series)) for d in devices if d.config.protocol == "modbus"}
    for d in devices:  # OPC-UA: every scalar point in every poll (arrays may change length, a new layout)
        if d.config.protocol == "opcua":
            plan = plan_opcua(d)
            expected[d.name] = {str(s) for s, pt in zip(plan.series, plan.points, strict=True) if not pt.array}
    profile_of = {d.name: d.profile.name for d in devices}
    loop = asyncio.get_running_loop()
    loop_errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, ctx: loop_errors.append(ctx))
    tally = Tally()
    engine_stops = 0
    t0 = time.perf_counter()
    task = engine.start()
    try:
        while farm.replies < args.modbus_replies or (opc is not None and opc.values < args.opcua_values):
            await asyncio.sleep(0.25)
            if task.done():
                engine_stops += 1
                task = engine.start()
            chunk, batches[:] = list(batches), []
            _check_batches(chunk, expected, clean_of, profile_of, tally)
            if time.perf_counter() - t0 > args.max_seconds:
                break
    finally:
        await engine.stop()
        farm.close()
        if opc is not None:
            await opc.stop()
    _check_batches(batches, expected, clean_of, profile_of, tally)
    wall = time.perf_counter() - t0
    unexpected = sum(link.unexpected_errors for link in engine.links)
    return {
        "modbus_replies": farm.replies,
        "opcua_values": opc.values if opc else 0,
        "wall_s": wall,
        "kinds": dict(farm.kinds),
        "unexpected": unexpected,
        "restarts": engine.restarts,
        "loop_errors": len(loop_errors),
        "loop_error_sample": str(loop_errors[0].get("exception") or loop_errors[0].get("message")) if loop_errors
        else "",
        "engine_stops": engine_stops,
        "missing": tally.missing,
        "wrong": tally.wrong,
        "dropped": engine.output.dropped,
        "samples": tally.samples,
        "polls": sum(h.polls for h in engine.health().values()),
    }


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
        text = text[:i] + rng.choice(("", "\"", "[", "=", "\x00", "\n[[x]]\n", "ä")) + text[i + rng.randrange(3):]
    return text


def run_configs(n: int, rng: random.Random, workdir: Path) -> dict[str, Any]:
    """``n`` mutated site files and profile files through the loaders ``aidc check`` uses."""
    site_doc = tomllib.loads(render_site(SiteTemplate(racks=2, data_dir=str(workdir / "var"))))
    profile_docs = [tomllib.loads(p.read_text(encoding="utf-8")) for p in sorted(PROFILE_DIR.glob("*.toml"))]
    loaded = refused = tracebacks = 0
    sample = ""
    pdir = workdir / "profiles"
    pdir.mkdir(parents=True, exist_ok=True)
    for i in range(n):
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
    return {"configs": n, "loaded": loaded, "refused": refused, "tracebacks": tracebacks, "sample": sample}


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


def main() -> int:
    """Run the campaign and print the figures; the last line is JSON."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--modbus-replies", type=int, default=100_000)
    p.add_argument("--opcua-values", type=int, default=20_000)
    p.add_argument("--configs", type=int, default=10_000)
    p.add_argument("--hostile-per-profile", type=int, default=3)
    p.add_argument("--max-seconds", type=float, default=900.0)
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
    with tempfile.TemporaryDirectory(prefix="aidc-fuzz-") as tmp:
        work = Path(tmp)
        proto = asyncio.run(run_protocols(args, rng, work))
        t0 = time.perf_counter()
        cfg = run_configs(args.configs, rng, work)
        cfg_s = time.perf_counter() - t0
    tracebacks = proto["unexpected"] + proto["restarts"] + proto["loop_errors"] + cfg["tracebacks"] + handler.count
    lost = proto["missing"] + proto["wrong"] + proto["dropped"]
    print(f"modbus: {proto['modbus_replies']} hostile/clean replies in {proto['wall_s']:.1f} s, "
          f"{proto['polls']} polls, {proto['samples']} samples; mix {json.dumps(proto['kinds'])}")
    print(f"opcua: {proto['opcua_values']} hostile values")
    print(f"configs: {cfg['configs']} mutated site files and profiles in {cfg_s:.1f} s: {cfg['loaded']} loaded, "
          f"{cfg['refused']} refused with one line")
    print(f"tracebacks {tracebacks} (safety net {proto['unexpected']}, supervisor restarts {proto['restarts']}, "
          f"event loop {proto['loop_errors']}, config loaders {cfg['tracebacks']}, logged {handler.count})"
          + "".join(f"; e.g. {s}" for s in (proto["loop_error_sample"], cfg["sample"], handler.sample) if s))
    print(f"engine stops {proto['engine_stops']}; points lost {lost} (missing from a poll {proto['missing']}, "
          f"wrong GOOD values {proto['wrong']}, dropped by the output {proto['dropped']})")
    print(json.dumps({
        "modbus_replies": proto["modbus_replies"], "opcua_values": proto["opcua_values"], "configs": cfg["configs"],
        "tracebacks": tracebacks, "engine_stops": proto["engine_stops"], "points_lost": lost,
    }))  # fmt: skip
    return 0 if tracebacks == 0 and proto["engine_stops"] == 0 and lost == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
