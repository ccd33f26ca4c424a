"""Helpers for bench/collect.py: the bench device profile, the simulator physics, and the independent peers.

The peers are clients nobody here wrote: a libmodbus C client (``tests/peers/modbus_peer.c``) and a node-opcua
client (``tests/node/client.js``). Each polls the same devices as our collector and reports the CPU of its own
measured loop (getrusage-style process CPU), so start-up is excluded on both sides.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aidc.config import Site
from tests.fake_physics import FakePhysics

ROOT = Path(__file__).resolve().parents[1]
PEER_C = ROOT / "tests" / "peers" / "modbus_peer.c"
NODE_CLIENT = ROOT / "tests" / "node" / "client.js"
GPUS_PER_RACK = 72  # GB200 NVL72: the rack controller's array nodes hold 72 values each
BENCH_PROFILE = "bench-100reg"

# A contiguous block of 100 holding registers with the mix real power and cooling devices expose:
# (count, type, byte order, registers each, scale, counter).
_MIX: tuple[tuple[int, str, str, int, float, bool], ...] = (
    (20, "FLOAT32", "ABCD", 2, 1.0, False),
    (10, "FLOAT32", "CDAB", 2, 1.0, False),
    (20, "INT16", "ABCD", 1, 0.1, False),
    (6, "UINT32", "ABCD", 2, 1.0, True),
    (1, "UINT64", "ABCD", 4, 1.0, True),
    (4, "UINT16", "ABCD", 1, 1.0, False),
)
BENCH_REGISTERS = sum(n * regs for n, _, _, regs, _, _ in _MIX)
# The same layout for the C peer's decode (``-d``): f float32, F float32 word-swapped, h int16, I uint32, ...
_PEER_TYPE = {("FLOAT32", "ABCD"): "f", ("FLOAT32", "CDAB"): "F", ("INT16", "ABCD"): "h", ("UINT16", "ABCD"): "H",
              ("UINT32", "ABCD"): "I", ("UINT64", "ABCD"): "Q"}  # fmt: skip
BENCH_DECODE_SPEC = ",".join(
    f"{n}{_PEER_TYPE[(dtype, order)]}" + (f"*{scale:g}" if scale != 1.0 else "")
    for n, dtype, order, _, scale, _ in _MIX
)
BENCH_POINTS = sum(n for n, *_ in _MIX)


def bench_profile_toml() -> str:
    """TOML of the bench-only Modbus profile: 61 points in holding registers 0..99, one read per poll."""
    lines = [
        f'name = "{BENCH_PROFILE}"',
        'protocol = "modbus"',
        'measurement = "bench"',
        'description = "Bench device: 100 contiguous holding registers of mixed types"',
        "",
        "[workarounds]",
        "max_registers_per_read = 125",
    ]
    address = 0
    for n, dtype, order, regs, scale, counter in _MIX:
        for i in range(n):
            lines += [
                "",
                "[[points]]",
                f'name = "{dtype.lower()}_{order.lower()}_{i:02d}"',
                'table = "holding"',
                f"address = {address}",
                f'type = "{dtype}"',
                f'byte_order = "{order}"',
                f"scale = {scale}",
            ]
            lines.append("counter = true" if counter else "range = [-1000000.0, 1000000.0]")
            address += regs
    assert address == BENCH_REGISTERS == 100
    return "\n".join(lines) + "\n"


class BenchPhysics(FakePhysics):
    """The tests' deterministic stand-in physics with GB200-sized GPU arrays (72 values per array node)."""

    def __init__(self, site: Site, **kwargs: Any) -> None:
        super().__init__(site, **kwargs)
        for dev in site.devices:
            vals = self.values[dev.name]
            for p in dev.profile.points:
                key = p.sim or p.name
                cur = vals.get(key)
                if p.array and isinstance(cur, list) and cur:
                    vals[key] = [float(cur[0]) + 0.01 * g for g in range(GPUS_PER_RACK)]


def build_modbus_peer(out_dir: Path) -> tuple[Path | None, str]:
    """Compile the libmodbus peer; (binary, "") or (None, why not)."""
    gcc = shutil.which("gcc")
    if gcc is None:
        return None, "gcc not found"
    if not Path("/usr/include/modbus/modbus.h").is_file():
        return None, "libmodbus headers not found (Debian package libmodbus-dev)"
    binary = out_dir / "modbus_peer"
    cmd = [gcc, "-O2", "-I/usr/include/modbus", str(PEER_C), "-lmodbus", "-o", str(binary)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return None, f"gcc failed: {done.stderr.strip()[-500:]}"
    return binary, ""


def _run(cmd: list[str], prefix: str = "") -> str:
    """Run a peer; its last stdout line starting with ``prefix``, without the prefix."""
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=300)
    lines = [ln[len(prefix) :].strip() for ln in done.stdout.splitlines() if ln.startswith(prefix) and ln.strip()]
    if done.returncode != 0 or not lines:
        why = done.stderr.strip()[-1000:] or done.stdout.strip()[-1000:]
        raise RuntimeError(f"{Path(cmd[0]).name} {Path(cmd[1]).name} failed ({done.returncode}): {why}")
    return lines[-1]


def run_modbus_peer(
    binary: Path,
    rounds: int,
    unit: int,
    address: int,
    count: int,
    ports: Sequence[int],
    *,
    decode_spec: str = "",
    interval_s: float = 0.0,
) -> float:
    """CPU µs per poll of the libmodbus client (its own clock_gettime(CLOCK_PROCESS_CPUTIME_ID) around the loop).

    ``decode_spec``: also decode every poll into doubles; ``interval_s``: pace each port's polls at this interval,
    spread over it, sleeping in between (0: back to back).
    """
    cmd = [str(binary), "-u", str(unit)]
    if decode_spec:
        cmd += ["-d", decode_spec]
    if interval_s > 0:
        cmd += ["-i", f"{interval_s * 1e6:.0f}"]
    return float(_run([*cmd, str(rounds), str(address), str(count), *map(str, ports)]))


def node_opcua_missing() -> str:
    """Why the node-opcua peer cannot run, or "" when it can."""
    if shutil.which("node") is None:
        return "node not found (Debian package nodejs)"
    if not (NODE_CLIENT.parent / "node_modules" / "node-opcua").is_dir():
        return "node-opcua not installed (run `npm install` in tests/node)"
    return ""


def run_node_opcua(endpoint: str, rounds: int, max_nodes: int, groups: Sequence[Sequence[str]]) -> tuple[float, int]:
    """CPU µs per value of the node-opcua client and the values it read; one read group per device, as ours."""
    node = shutil.which("node")
    assert node is not None
    args: list[str] = []
    for g in groups:
        if args:
            args.append("|")  # group separator: reads never span two devices, as in our collector
        args.extend(g)
    us, values = _run([node, str(NODE_CLIENT), endpoint, str(rounds), str(max_nodes), *args], "result ").split()[:2]
    return float(us), int(values)
