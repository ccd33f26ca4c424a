"""Hostile HTTP peers of the fuzz campaign (bench/fuzz.py): dcgm-exporter pages and a Redfish service.

Each peer serves one fixed set of resources (a page of four GPUs on two hosts; a rack chassis and a CDU built from
the Redfish profiles) and, when hostile, answers every request with a random mix of: valid replies; bytes that are
not HTTP; error statuses (401, 404, 500, 503); a Content-Length longer than the body, then a close; a close after
the headers; a reply after the collector's timeout; no reply at all; and valid HTTP carrying a damaged body: random
garbage, a body cut short, a value of the wrong type or a non-number, NaN / ±inf / integers beyond any float, a
sample or property removed, a sample given twice with another value, a ``gpu`` label that is no GPU index, a JSON
array or a JSON nested 100 000 deep. No mutation serves a different but valid number: whatever the collector
publishes GOOD must be the clean peer's value.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from aidc.config import DeviceConfig, DeviceRef
from aidc.profiles import DataType, Profile, builtin_profiles

HTTP_MUTATIONS = (
    "valid", "valid", "valid", "valid", "valid", "garbage", "status", "short_length", "close_mid", "slow", "silent",
    "body_garbage", "body_cut", "body_type", "body_nan", "body_missing", "body_dup", "body_label", "body_deep",
)  # fmt: skip
TIMEOUT_S = 0.3
USERNAME, PASSWORD_ENV = "fuzz", "AIDC_FUZZ_REDFISH_PASSWORD"


def dcgm_page() -> str:
    """A fixed exporter page: four GPUs on two hosts, every field the DCGM profile reads."""
    fields = {"DCGM_FI_DEV_POWER_USAGE": "gauge", "DCGM_FI_DEV_GPU_TEMP": "gauge", "DCGM_FI_DEV_MEMORY_TEMP": "gauge",
              "DCGM_FI_DEV_GPU_UTIL": "gauge", "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": "counter",
              "DCGM_FI_DEV_XID_ERRORS": "gauge", "DCGM_FI_DEV_CLOCKS_EVENT_REASONS": "gauge",
              "DCGM_FI_DEV_SM_CLOCK": "gauge", "DCGM_FI_DEV_MAX_SM_CLOCK": "gauge"}  # fmt: skip
    lines = []
    for n, (f, kind) in enumerate(fields.items()):
        lines += [f"# HELP {f} {f}.", f"# TYPE {f} {kind}"]
        for h in (0, 1):
            for g in (0, 1):
                # One value per field (the campaign's truth is per field), but for the clock-event bits.
                v = (650.5, 61, 66, 93, 123456789, 0, 0x20 * (h == g == 0), 1800, 1980)[n]
                lines.append(f'{f}{{gpu="{g}",UUID="GPU-{h}{g}",pci_bus_id="00000000:1{g}:00.0",device="nvidia{g}",'
                             f'modelName="NVIDIA GB200",Hostname="host-{h}"}} {v}')  # fmt: skip
    return "\n".join(lines) + "\n"


def redfish_docs(devices: list[DeviceRef]) -> dict[str, Any]:
    """Resources holding every point of the devices, with fixed values (status properties "OK")."""
    docs: dict[str, Any] = {}
    for d in devices:
        rid = d.config.redfish.id or d.name
        for i, p in enumerate(d.profile.points):
            path, _, pointer = str(p.node).replace("{id}", rid).partition("#")
            cur = docs.setdefault(path, {"@odata.id": path, "Id": path.rsplit("/", 1)[1]})
            keys = pointer.split("/")[1:]
            for k in keys[:-1]:
                cur = cur.setdefault(k, {})
            cur[keys[-1]] = ("OK" if keys[-1] in ("Health", "DetectorState") else False) if p.type is DataType.BOOL \
                else 10.0 + i * 1.5  # fmt: skip
    return docs


def _damage_text(rng: random.Random, text: str, kind: str) -> str:
    lines = text.splitlines()
    samples = [i for i, x in enumerate(lines) if x and not x.startswith("#")]
    i = rng.choice(samples)
    name_labels, value = lines[i].rsplit(" ", 1)
    if kind == "body_cut":
        return text[: rng.randrange(1, len(text) - 1)]
    if kind == "body_type":
        mask = name_labels.startswith("DCGM_FI_DEV_CLOCKS_EVENT_REASONS")  # a number, but no bit mask
        lines[i] = f"{name_labels} {rng.choice(['-32', '2.5', '1e30'] if mask else ['abc', '0x1F', '1,5', '', '--1'])}"
    elif kind == "body_nan":
        lines[i] = f"{name_labels} {rng.choice(['NaN', '+Inf', '-Inf', '1e999'])}"
    elif kind == "body_missing":
        del lines[rng.choice(samples)]
    elif kind == "body_dup":
        lines.insert(i, f"{name_labels} {float(value) + 1.0}")
    elif kind == "body_label":
        lines[i] = name_labels.replace('gpu="', rng.choice(['gpu="x', 'gpux="', 'gpu="-'])) + f" {value}"
    elif kind == "body_deep":
        lines[i] = name_labels + "{" * 2000 + f" {value}"
    return "\n".join(lines) + "\n"


def _damage_json(rng: random.Random, doc: dict[str, Any], kind: str) -> bytes:
    if kind == "body_cut":
        raw = json.dumps(doc).encode()
        return raw[: rng.randrange(1, len(raw) - 1)]
    if kind == "body_deep":
        return b"[" * 100_000 + b"]" * 100_000
    if kind == "body_dup":
        return b"[" + json.dumps(doc).encode() + b"]"
    doc = json.loads(json.dumps(doc))
    leaves: list[tuple[dict[str, Any], str]] = []

    def walk(node: Any) -> None:
        for k, v in node.items():
            if isinstance(v, dict):
                walk(v)
            elif not k.startswith("@") and k != "Id":
                leaves.append((node, k))

    walk(doc)
    node, key = rng.choice(leaves)
    if kind == "body_missing":
        del node[key]
    elif kind == "body_nan":
        node[key] = rng.choice([float("nan"), float("inf"), float("-inf"), 10**400])
    else:  # body_type, body_label: a type no point reads
        node[key] = rng.choice(["12.5", None, [1], {"Reading": 1}, "", "Unknown"])
    return json.dumps(doc).encode()


Serve = Callable[[str, str, bytes], tuple[int, bytes, dict[str, str]]]  # (method, path, body) -> reply


class HostileHttp:
    """One HTTP peer (DCGM page or Redfish service), clean or hostile."""

    def __init__(self, rng: random.Random, hostile: bool, serve: Serve,
                 damage: Callable[[str, bytes, str], bytes]) -> None:  # fmt: skip
        self.rng, self.hostile, self.serve, self.damage = rng, hostile, serve, damage
        self.replies = 0
        self.kinds: dict[str, int] = defaultdict(int)
        self.server: asyncio.Server | None = None
        self.port = 0
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> int:
        """Listen on a free loopback port."""
        self.server = await asyncio.start_server(self._conn, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self.port

    def close(self) -> None:
        """Stop listening and hang up."""
        if self.server is not None:
            self.server.close()
        for w in list(self._writers):
            w.close()

    async def _conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                first, *hdrs = head.decode("latin-1").split("\r\n")
                method, path = first.split(" ")[:2]
                length = next((int(h.split(":", 1)[1]) for h in hdrs if h.lower().startswith("content-length:")), 0)
                body = await reader.readexactly(length) if length else b""
                status, payload, extra = self.serve(method, path, body)
                kind = self.rng.choice(HTTP_MUTATIONS) if self.hostile else "valid"
                self.replies += 1
                self.kinds[kind] += 1
                if kind == "body_garbage" and status == 200:
                    payload = bytes(self.rng.getrandbits(8) for _ in range(self.rng.randrange(1, 400)))
                elif kind.startswith("body_") and status == 200:
                    payload = self.damage(path, payload, kind)
                out = _reply(status, payload, extra)
                if kind == "garbage":
                    out = bytes(self.rng.getrandbits(8) for _ in range(self.rng.randrange(1, 200)))
                elif kind == "status":
                    out = _reply(self.rng.choice([401, 404, 500, 503]), b'{"error": {}}', {})
                elif kind == "short_length":
                    out = _reply(status, payload, extra).replace(
                        f"Content-Length: {len(payload)}".encode(), f"Content-Length: {len(payload) + 50}".encode()
                    )
                    writer.write(out)
                    await writer.drain()
                    return
                elif kind == "close_mid":
                    writer.write(out[: out.index(b"\r\n\r\n") + 4 + len(payload) // 2])
                    await writer.drain()
                    return
                elif kind == "slow":
                    await asyncio.sleep(TIMEOUT_S * 1.5)
                elif kind == "silent":
                    await asyncio.sleep(3600)
                writer.write(out)
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError, IndexError,
                asyncio.CancelledError):  # fmt: skip
            return
        finally:
            self._writers.discard(writer)
            writer.close()


def _reply(status: int, body: bytes, extra: dict[str, str]) -> bytes:
    head = f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in extra.items())
    return (head + "\r\n").encode() + body


def _ref(name: str, profile: Profile, **cfg: Any) -> DeviceRef:
    conf = DeviceConfig.model_validate({"name": name, "profile": profile.name, "protocol": profile.protocol,
                                        "poll_interval_s": 0.02, "timeout_s": TIMEOUT_S, **cfg})  # fmt: skip
    return DeviceRef("rack", "fuzz", conf, profile, {"site": "fuzz", "device": name})


async def http_peers(
    rng: random.Random, hostile_per_kind: int
) -> tuple[list[HostileHttp], list[DeviceRef], dict[str, str]]:
    """Clean and hostile DCGM and Redfish peers and their devices: (peers, devices, clean device by profile)."""
    page = dcgm_page().encode()
    peers: list[HostileHttp] = []
    devices: list[DeviceRef] = []
    clean_of: dict[str, str] = {}
    dcgm = builtin_profiles()["gpu-rack-dcgm"]
    for k in range(hostile_per_kind + 1):
        peer = HostileHttp(rng, k > 0, lambda m, p, b: (200, page, {}) if m == "GET" else (405, b"", {}),
                           lambda p, body, kind: _damage_text(rng, body.decode(), kind).encode())  # fmt: skip
        port = await peer.start()
        name = f"{'hostile' if k else 'clean'}-dcgm-{k}"
        devices.append(_ref(name, dcgm, dcgm={"urls": [f"http://127.0.0.1:{port}/metrics"]}))
        peers.append(peer)
        if not k:
            clean_of[dcgm.name] = name
    for prof in (builtin_profiles()["rack-redfish"], builtin_profiles()["cdu-redfish"]):
        for k in range(hostile_per_kind + 1):
            name = f"{'hostile' if k else 'clean'}-{prof.name}-{k}"
            dev = _ref(name, prof, endpoint="http://127.0.0.1:1", redfish={
                "username": USERNAME, "password_env": PASSWORD_ENV, "allow_insecure": True, "id": "X1"})  # fmt: skip
            docs = redfish_docs([dev])
            bodies = {p: json.dumps(d).encode() for p, d in docs.items()}

            def serve(
                method: str, path: str, body: bytes, bodies: dict[str, bytes] = bodies
            ) -> tuple[int, bytes, dict[str, str]]:
                if method == "POST" and path.endswith("/Sessions"):
                    return 201, b"{}", {"X-Auth-Token": "t0k", "Location": "/redfish/v1/SessionService/Sessions/1"}
                if method == "DELETE":
                    return 204, b"", {}
                got = bodies.get(path)
                return (200, got, {}) if got is not None else (404, b"{}", {})

            peer = HostileHttp(rng, k > 0, serve,
                               lambda p, body, kind: _damage_json(rng, json.loads(body), kind))  # fmt: skip
            port = await peer.start()
            dev = _ref(name, prof, endpoint=f"http://127.0.0.1:{port}", redfish={
                "username": USERNAME, "password_env": PASSWORD_ENV, "allow_insecure": True, "id": "X1"})  # fmt: skip
            devices.append(dev)
            peers.append(peer)
            if not k:
                clean_of[prof.name] = name
    return peers, devices, clean_of
