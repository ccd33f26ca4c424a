"""Collector benchmark: client CPU per Modbus poll and per OPC-UA value against independent peers, and the hall.

    python bench/collect.py
    python bench/collect.py --modbus-only [--modbus-rounds N] [--profile FILE]   # modbus_ratio alone

Starts ``aidc simulate`` in its own process (devices are separate from the manager) on free loopback ports,
with the tests' deterministic stand-in physics sized to GB200 racks (72 values per GPU array node). Then, one
after the other against the same devices and the same number of polls:

* Modbus: our collector (``ModbusLink.poll``: request, framing, decode, quality checks, the batch with its health
  fields, handed to the historian's ``HistorianWriter`` queue; the clean poll in C where ``collectors/_fastpoll`` is
  built, in Python with ``AIDC_NO_FASTPOLL=1``) against a libmodbus C client reading the same
  100 registers and decoding them into doubles (``tests/peers/modbus_peer.c``): back to back in alternating
  blocks (median of each side), then our real ``Engine`` against the C peer both paced at 400 polls/s.
  The bench profile is one contiguous block of 100 holding registers
  of mixed types (FLOAT32 ABCD and CDAB, INT16 scaled, UINT32 and UINT64 counters, UINT16): 61 points.
* DCGM and Redfish (our collector only, no peer): ``DcgmLink.poll`` over two GB200 racks whose 18 hosts each serve
  an exporter page of 4 GPUs (18 HTTP GETs and Prometheus-text parses per rack, per-GPU arrays and rack figures,
  quality), per GPU; ``RedfishLink.poll`` over two rack chassis and a CoolingUnit on one HTTPS service with a session
  (one GET and JSON parse per resource), per resource read.
* OPC-UA: our collector (``OpcUaLink.poll``: batched reads split to MaxNodesPerRead, arrays unpacked, quality,
  the batch handed to the historian queue) against node-opcua (``tests/node/client.js``) reading the same nodes in
  the same groups; a value is one scalar delivered, so a 72-GPU array node counts 72.

CPU is process user+system time around the measured loop only (getrusage here, clock_gettime /
process.cpuUsage in the peers); server CPU is in the simulator process and counted for nobody. After the loops
the queued batches are written to a DuckDB historian (not timed) to show they arrive. The last line is JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import functools
import json
import math
import os
import resource
import sys
import tempfile
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))  # _peers, also for the simulator's physics spec

import _peers  # noqa: E402 - after the path set-up above

from aidc import loop as aidc_loop  # noqa: E402
from aidc.clock import ScaledClock  # noqa: E402
from aidc.config import DeviceRef, Site, load_site  # noqa: E402
from aidc.sitegen import SiteTemplate, render_site  # noqa: E402
from collectors import fastpoll  # noqa: E402
from collectors.dcgm import DcgmLink  # noqa: E402
from collectors.engine import Engine, EngineOptions  # noqa: E402
from collectors.link import HEALTH_FIELDS, LinkOptions  # noqa: E402
from collectors.opcua import OpcUaLink  # noqa: E402
from historian import HistorianConfig, open_historian  # noqa: E402
from historian.writer import HistorianWriter  # noqa: E402
from simulators.process import SimulatorProcess  # noqa: E402
from tests.sim_helpers import free_port_block, write_site  # noqa: E402

RACKS = 8  # one hall endpoint with 8 GPU rack controllers, 8 PDUs, 2 CDUs
BENCH_DEVICES = 8  # bench Modbus devices, one port each
HALL_RACKS, HALL_INTERVAL_S, HALL_POINTS = 1000, 10.0, 300_000
MIN_MODBUS, MIN_OPCUA, GOAL_RATIO, GOAL_CORES = 3.0, 3.0, 2.0, 0.5  # Modbus: issue 25 (was 4)
NOT_STUCK = 10**9  # polls here come milliseconds apart, far faster than the values change: no stuck flags
PACED_INTERVAL_S = 0.02  # engine run: each bench device every 20 ms, 8 devices = 400 polls/s, phases spread
BLOCKS = 5  # back-to-back Modbus runs alternate ours / the C peer in this many blocks
HTTP_HOSTS = 18  # DCGM bench racks: 18 compute trays of 4 GPUs (NVL72), one exporter page each
REDFISH_PASSWORD_ENV = "AIDC_BENCH_REDFISH_PASSWORD"  # noqa: S105 - the variable's name, not a password
NOT_STALE = 50  # intervals: a scheduling hiccup on a loaded 2-core box must not emit stale batches mid-count


def cpu_s() -> float:
    """User + system CPU seconds of this process so far."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


@dataclass
class Result:
    """CPU of one measured loop."""

    us_per_poll: float
    us_per_value: float
    polls: int
    values: int


def build_site(tmp: Path) -> Path:
    """A generated 8-rack site on free ports plus the bench Modbus devices (meters with the bench profile)."""
    profiles = tmp / "profiles"
    profiles.mkdir()
    (profiles / f"{_peers.BENCH_PROFILE}.toml").write_text(_peers.bench_profile_toml(), encoding="utf-8")
    base, opcua = free_port_block(RACKS * 2 + 8), free_port_block(4)
    text = render_site(SiteTemplate(racks=RACKS, base_port=base, opcua_port=opcua, data_dir=str(tmp / "var")))
    doc = tomllib.loads(text)
    doc["site"]["profile_dirs"] = [str(profiles)]
    http = free_port_block(2)  # the DCGM pages' port, the Redfish service's port
    redfish = {"username": "bench", "password_env": REDFISH_PASSWORD_ENV}
    racks = [
        {"name": f"hb-{i + 1:02d}", "row": "rb", "controller": {
            "name": f"rack-hb-{i + 1:02d}", "protocol": "dcgm", "profile": "gpu-rack-dcgm",
            "dcgm": {"urls": [f"http://127.0.0.1:{http}/hb-{i + 1:02d}/n{h:02d}/metrics" for h in range(HTTP_HOSTS)]}}}
        for i in range(2)
    ] + [
        {"name": f"hb-{i + 1:02d}", "row": "rb", "controller": {
            "name": f"rack-hb-{i + 1:02d}", "protocol": "redfish", "profile": "rack-redfish",
            "endpoint": f"https://127.0.0.1:{http + 1}", "redfish": redfish}}
        for i in range(2, 4)
    ]  # fmt: skip
    cdu = {"name": "cdu-hb-01", "protocol": "redfish", "profile": "cdu-redfish", "redfish": redfish,
           "endpoint": f"https://127.0.0.1:{http + 1}", "racks": [r["name"] for r in racks]}  # fmt: skip
    doc["halls"].append({"name": "hb", "racks": racks, "cdus": [cdu]})
    bench_base = free_port_block(BENCH_DEVICES)
    doc.setdefault("meters", []).extend(
        {
            "name": f"bench-{i + 1:02d}",
            "protocol": "modbus",
            "profile": _peers.BENCH_PROFILE,
            "host": "127.0.0.1",
            "port": bench_base + i,
            "unit_id": 1,
            "poll_interval_s": PACED_INTERVAL_S,
            "purpose": "other",
        }
        for i in range(BENCH_DEVICES)
    )
    return write_site(tmp, doc)


class _Countdown:
    """A sink that sets ``done`` once it has seen a given number of batches."""

    def __init__(self, n: int) -> None:
        self.left, self.done = n, asyncio.Event()

    def restart(self, n: int) -> None:
        self.left = n
        self.done.clear()

    def __call__(self, batch: object) -> None:
        self.left -= 1
        if self.left == 0:
            self.done.set()


class Harness:
    """An engine over some devices whose batches go to the app's historian writer."""

    def __init__(self, devices: Sequence[DeviceRef], data_dir: Path) -> None:
        self.clock = ScaledClock.starting_now()
        self.historian = open_historian(HistorianConfig(), data_dir)
        self.writer = HistorianWriter(self.historian, self.clock)
        link = LinkOptions(stuck_polls=NOT_STUCK, stale_intervals=NOT_STALE, min_interval_s=PACED_INTERVAL_S)
        opts = EngineOptions(link=link)
        self.engine = Engine(devices, sinks=[self.writer], clock=self.clock, options=opts, data_dir=data_dir)

    async def measure(self, rounds: int, started: Callable[[], None] | None = None) -> Result:
        """Connect, one untimed warm-up round, then ``rounds`` rounds over every device, sequentially
        (``started`` is called after the warm-up, just before the timed rounds)."""
        pairs = [(link, dev) for link in self.engine.links for dev in link.devices]
        publish = self.engine.output.publish
        for link in self.engine.links:
            await link.connect()
        for link, dev in pairs:
            publish(await link.poll(dev))
        self.writer._pending.clear()
        health = len(HEALTH_FIELDS)
        values = 0
        if started is not None:
            started()
        t0 = cpu_s()
        for _ in range(rounds):
            for link, dev in pairs:
                batch = await link.poll(dev)
                values += len(batch) - health
                publish(batch)
        used = cpu_s() - t0
        for link in self.engine.links:
            await link.close()
        polls = rounds * len(pairs)
        return Result(1e6 * used / polls, 1e6 * used / max(values, 1), polls, values)

    async def measure_engine(self, polls: int) -> Result:
        """The real engine (a supervisor per connection, phase-spread poll loops, stale watchdog) for ``polls`` polls.

        CPU is counted from after every device's first two polls until ``polls`` more batches reached the sinks;
        it includes everything the process does in that time (the loop's idle wake-ups and timers too).
        """
        out, counter = self.engine.output, _Countdown(2 * len(self.engine.devices))
        self.engine.add_sink(counter)  # one more (trivial) sink call per poll, counted against us
        self.engine.start()
        await counter.done.wait()  # warm-up: every device's first two polls
        self.writer._pending.clear()
        health = len(HEALTH_FIELDS)
        b0, s0, t0 = out.batches, out.samples, cpu_s()
        counter.restart(polls)
        await counter.done.wait()
        used, n, samples = cpu_s() - t0, out.batches - b0, out.samples - s0
        await self.engine.stop()
        values = samples - health * n
        return Result(1e6 * used / n, 1e6 * used / max(values, 1), n, values)

    async def store(self) -> int:
        """Write the queued batches to the historian (untimed); points stored."""
        await self.writer.drain()
        await asyncio.to_thread(self.historian.close)
        return self.writer.points_written


def _devices(site: Site, kind: str, profile: str | None = None) -> list[DeviceRef]:
    return [d for d in site.devices if d.kind == kind and (profile is None or d.profile.name == profile)]


async def run_ours(site: Site, tmp: Path, rounds: dict[str, int]) -> tuple[dict[str, Result], dict[str, int]]:
    """Our collector over the PDUs, the CDUs and the rack controllers (the bench devices: :func:`run_modbus`)."""
    groups = {"pdu": _devices(site, "pdu"), "cdu": _devices(site, "cdu", "vertiv-xdu-cdu"),
              "rack": _devices(site, "rack", "gpu-rack-opcua")}  # fmt: skip
    out: dict[str, Result] = {}
    stored: dict[str, int] = {}
    for name, devs in groups.items():
        h = Harness(devs, tmp / f"hist-{name}")
        out[name] = await h.measure(rounds[name])
        stored[name] = await h.store()
    return out, stored


async def run_http(site: Site, tmp: Path, rounds: int) -> dict[str, float]:
    """CPU per GPU (DCGM) and per resource read (Redfish): every poll scrapes its pages or GETs its resources."""
    out: dict[str, float] = {}
    for proto in ("dcgm", "redfish"):
        devs = [d for d in site.devices if d.config.protocol == proto]
        h = Harness(devs, tmp / f"hist-{proto}")
        for link in h.engine.links:
            if isinstance(link, DcgmLink):
                link.fresh_s = 0.0  # no page shared between polls: each poll is a scrape
        links = h.engine.links
        before: list[int] = []
        res = await h.measure(rounds, started=functools.partial(lambda b, ls: b.append(_http_reads(ls)), before, links))
        reads = _http_reads(links) - before[0]
        if proto == "dcgm":
            gpus = sum(len(lk.rt[d.name].known) for lk in h.engine.links if isinstance(lk, DcgmLink)
                       for d in lk.devices)  # fmt: skip
            out["dcgm_us_per_gpu"] = res.us_per_poll * res.polls / max(1, rounds * gpus)
            out["dcgm_pages"] = reads
        else:
            out["redfish_us_per_resource"] = res.us_per_poll * res.polls / max(1, reads)
            out["redfish_resources"] = reads
        await h.store()
    return out


def _http_reads(links: Sequence[object]) -> int:
    """Pages scraped plus resources read by the links so far."""
    return sum(getattr(lk, "scrapes", 0) + getattr(lk, "gets", 0) for lk in links)


def _median(results: Sequence[Result]) -> Result:
    """The block with the median CPU per poll, with the polls and values of all blocks."""
    mid = sorted(results, key=lambda r: r.us_per_poll)[len(results) // 2]
    return Result(mid.us_per_poll, mid.us_per_value, sum(r.polls for r in results), sum(r.values for r in results))


async def run_modbus(
    devs: Sequence[DeviceRef],
    tmp: Path,
    rounds: int,
    peer_bin: Path | None,
    *,
    paced: bool = True,
    profile: Path | None = None,
) -> tuple[dict[str, Result], dict[str, float], int]:
    """Ours and the C peer on the bench devices: back to back in alternating blocks (medians), then paced.

    The box is shared and its speed drifts by 2x within a minute; alternating short blocks lets both sides see
    the same conditions, and the median block of each side is compared. ``paced=False`` skips the paced runs;
    ``profile``: cProfile our back-to-back blocks into that file (the figures then include the profiler's cost).
    """
    h = Harness(devs, tmp / "hist-bench")
    ports = [d.config.port for d in devs if d.config.port is not None]
    regs, spec = _peers.BENCH_REGISTERS, _peers.BENCH_DECODE_SPEC
    per = max(1, rounds // BLOCKS)
    ours: list[Result] = []
    raw: list[float] = []
    dec: list[float] = []
    prof = cProfile.Profile() if profile is not None else None
    for _ in range(BLOCKS):
        if prof is not None:
            prof.enable()
        ours.append(await h.measure(per))
        if prof is not None:
            prof.disable()
        if peer_bin is not None:
            raw.append(_peers.run_modbus_peer(peer_bin, per, 1, 0, regs, ports))
            dec.append(_peers.run_modbus_peer(peer_bin, per, 1, 0, regs, ports, decode_spec=spec))
    if prof is not None and profile is not None:
        prof.dump_stats(profile)
    out = {"bench": _median(ours)}
    if paced:
        out["bench-engine"] = await h.measure_engine(rounds * len(devs))
    peer: dict[str, float] = {}
    if peer_bin is not None:
        peer["raw"], peer["decode"] = sorted(raw)[len(raw) // 2], sorted(dec)[len(dec) // 2]
    if peer_bin is not None and paced:
        peer["paced"] = _peers.run_modbus_peer(
            peer_bin, rounds, 1, 0, regs, ports, decode_spec=spec, interval_s=PACED_INTERVAL_S
        )
    return out, peer, await h.store()


def opcua_groups(site: Site) -> tuple[str, int, list[list[str]]]:
    """Endpoint, read split and per-device node ids of the rack controllers, as our link plans them."""
    racks = _devices(site, "rack", "gpu-rack-opcua")
    link = OpcUaLink("peer", racks, clock=ScaledClock.starting_now(), emit=lambda b: None, options=LinkOptions())
    groups = [list(link.rt[d.name].plan.node_ids) for d in racks]
    own = min((d.profile.workarounds.max_nodes_per_read or 0) for d in racks) or max(map(len, groups))
    endpoint = racks[0].config.endpoint
    assert endpoint is not None
    return endpoint, min(own, max(map(len, groups))), groups


def ratio(ours: float, peer: float | None) -> float | None:
    """ours / peer, or None without a peer figure."""
    return None if peer is None or peer <= 0 else ours / peer


def _r(x: float | None, digits: int = 2) -> float | None:
    return None if x is None else round(x, digits)


def verdict(r: float | None, minimum: float, goal: float) -> str:
    """Pass/fail text against the minimum and the goal."""
    if r is None:
        return "n/a (no peer)"
    return f"{r:.2f}x: minimum {minimum:g}x {'PASS' if r <= minimum else 'FAIL'}, goal {goal:g}x " + (
        "PASS" if r <= goal else "FAIL"
    )


def hall(ours: dict[str, Result], rack_values: float) -> tuple[float, float, list[str]]:
    """Cores for a 1,000-rack hall at 10 s: from the measured device mix, and scaled to 300k points."""
    pdus, racks, cdus = HALL_RACKS, HALL_RACKS, -(-HALL_RACKS // 4)
    pdu_pts = ours["pdu"].values / ours["pdu"].polls
    cdu_pts = ours["cdu"].values / ours["cdu"].polls
    cpu_us = pdus * ours["pdu"].us_per_poll + cdus * ours["cdu"].us_per_poll + racks * ours["rack"].us_per_poll
    points = pdus * pdu_pts + cdus * cdu_pts + racks * rack_values
    mix_cores = cpu_us / 1e6 / HALL_INTERVAL_S
    us_per_point = cpu_us / points
    cores = us_per_point * HALL_POINTS / HALL_INTERVAL_S / 1e6
    notes = [
        f"hall mix per 10 s cycle: {racks} GPU rack controllers (OPC-UA, {rack_values:.0f} values each: scalars + "
        f"3 arrays x {_peers.GPUS_PER_RACK} GPUs), {pdus} PDUs (Modbus, {pdu_pts:.0f} points), {cdus} CDUs "
        f"(Modbus, {cdu_pts:.0f} points); plant, UPS and meters (< 50 points) left out",
        f"measured per poll: rack {ours['rack'].us_per_poll:.0f} us, PDU {ours['pdu'].us_per_poll:.1f} us, "
        f"CDU {ours['cdu'].us_per_poll:.1f} us (each includes its 5 health fields, not counted as points)",
        f"mix: {points:,.0f} points, {cpu_us / 1e6:.3f} CPU s per cycle = {mix_cores:.3f} cores, "
        f"{us_per_point:.2f} us/point",
        f"scaled to the issue's {HALL_POINTS:,} points at {HALL_INTERVAL_S:g} s ({HALL_POINTS / HALL_INTERVAL_S:,.0f} "
        f"points/s) at that us/point: {cores:.3f} cores",
    ]
    return cores, mix_cores, notes


def poll_path() -> str:
    """Which path our clean Modbus polls took: ``C`` (collectors/_fastpoll built) or ``python``."""
    return "C" if fastpoll.available() else "python"


def modbus_only(b: Result, peer: dict[str, float], peer_why: str) -> dict[str, float | str | None]:
    """Report of ``--modbus-only``: the back-to-back Modbus figures alone."""
    rm = ratio(b.us_per_poll, peer.get("decode"))
    dec, raw, load = peer.get("decode", math.nan), peer.get("raw", math.nan), os.getloadavg()[0]
    print(f"Modbus 100 regs, ours, back to back: {b.us_per_poll:.1f} us/poll over {b.polls} polls; "
          f"libmodbus + decode: {dec:.1f} us/poll; read only: {raw:.1f}; load average {load:.2f}")  # fmt: skip
    if not peer:
        print(f"libmodbus peer not run: {peer_why}")
    print(f"Modbus  ours/libmodbus back to back (headline): {verdict(rm, MIN_MODBUS, GOAL_RATIO)}")
    print(f"Modbus  clean poll path: {poll_path()}")
    return {
        "modbus_poll_path": poll_path(),
        "modbus_us_per_poll": round(b.us_per_poll, 2),
        "modbus_peer_us_per_poll": _r(peer.get("decode")),
        "modbus_ratio": _r(rm, 3),
        "modbus_libmodbus_raw_us_per_poll": _r(peer.get("raw")),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


async def bench(args: argparse.Namespace) -> dict[str, float | str | None]:
    """Run everything against one simulator process and print the report."""
    paths = [str(ROOT), str(ROOT / "bench"), os.environ.get("PYTHONPATH", "")]
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, paths))
    os.environ.setdefault(REDFISH_PASSWORD_ENV, "bench-only-password")  # the simulator and the collector share it
    with tempfile.TemporaryDirectory(prefix="aidc-bench-collect-") as tmp_name:
        tmp = Path(tmp_name)
        path = build_site(tmp)
        site = load_site(path)
        peer_bin, peer_why = _peers.build_modbus_peer(tmp)
        node_why = _peers.node_opcua_missing()
        rounds = {"pdu": args.modbus_rounds // 2, "cdu": args.modbus_rounds, "rack": args.opcua_rounds}
        with SimulatorProcess(path, physics="_peers:BenchPhysics"):
            bench_devs = _devices(site, "meter", _peers.BENCH_PROFILE)
            if args.modbus_only:
                mb, peer, _ = await run_modbus(
                    bench_devs, tmp, args.modbus_rounds, peer_bin, paced=False, profile=args.profile
                )
                return modbus_only(mb["bench"], peer, peer_why)
            mb, peer, stored_bench = await run_modbus(bench_devs, tmp, args.modbus_rounds, peer_bin)
            ours, stored = await run_ours(site, tmp, rounds)
            http = await run_http(site, tmp, args.http_rounds)
            ours.update(mb)
            stored = {"bench": stored_bench, **stored}
            opcua_peer: float | None = None
            peer_values = 0
            if not node_why:
                endpoint, max_nodes, groups = opcua_groups(site)
                opcua_peer, peer_values = _peers.run_node_opcua(endpoint, args.opcua_rounds, max_nodes, groups)
    b, r = ours["bench"], ours["rack"]
    rack_values = r.values / r.polls
    cores, mix_cores, notes = hall(ours, rack_values)
    be = ours["bench-engine"]
    paced = f"{1 / PACED_INTERVAL_S:.0f} polls/s per device ({len(bench_devs) / PACED_INTERVAL_S:.0f} in all)"
    print(f"Collector CPU per poll, client side only (process user+sys around the measured loop); {os.cpu_count()} "
          "cores, simulator in another process, one client at a time")  # fmt: skip
    print(f"{'measurement':<60} {'polls':>7} {'values':>9} {'us/poll':>9} {'us/value':>9}")
    rows = [
        ("Modbus 100 regs, ours, back to back (see below)", b, b.values),
        (f"Modbus 100 regs, ours, real Engine paced at {PACED_INTERVAL_S * 1e3:g} ms", be, be.values),
        ("Modbus PDU (raritan-px3, 24 regs), ours, back to back", ours["pdu"], ours["pdu"].values),
        ("Modbus CDU (vertiv-xdu), ours, back to back", ours["cdu"], ours["cdu"].values),
        ("OPC-UA rack read (10 nodes, 3x72 arrays), ours", r, r.values),
    ]
    for label, res, vals in rows:
        print(f"{label:<60} {res.polls:>7} {vals:>9} {res.us_per_poll:>9.1f} {res.us_per_value:>9.3f}")
    peer_rows = [
        ("raw", "Modbus 100 regs, libmodbus C peer, back to back, read only"),
        ("decode", "Modbus 100 regs, libmodbus C peer, back to back, + decode"),
        ("paced", f"Modbus 100 regs, libmodbus C peer, paced at {PACED_INTERVAL_S * 1e3:g} ms, + decode"),
    ]
    for key, label in peer_rows:
        v = peer.get(key)
        print(f"{label:<60} {b.polls:>7} {'':>9} {'n/a' if v is None else f'{v:.1f}':>9}")
    op = "n/a" if opcua_peer is None else f"{opcua_peer:.3f}"
    print(f"{'OPC-UA rack read, node-opcua peer (same reads)':<60} {'':>7} {peer_values:>9} {'':>9} {op:>9}")
    if not peer:
        print(f"libmodbus peer not run: {peer_why}")
    if opcua_peer is None:
        print(f"node-opcua peer not run: {node_why}")
    print(f"{'DCGM rack (18 exporter pages, 72 GPUs), ours, per GPU':<60} {http['dcgm_pages']:>7} "
          f"{'':>9} {'':>9} {http['dcgm_us_per_gpu']:>9.3f}")
    print(f"{'Redfish chassis + CoolingUnit (HTTPS session), ours, per GET':<60} {http['redfish_resources']:>7} "
          f"{'':>9} {'':>9} {http['redfish_us_per_resource']:>9.3f}")  # fmt: skip
    print(f"stored in DuckDB after the timed loops (incl. warm-up and health fields): {stored}")
    print(
        "Modbus, what each side includes. Ours: request framing, the asyncio event loop, reply checks, the "
        "decode of 61 points and quality checks (range, counters, stuck, sentinels; one C call on a clean poll where "
        "collectors/_fastpoll is built), the 5 health fields, the batch handed to the historian's HistorianWriter "
        "queue. C peer: libmodbus request and reply "
        "(blocking sockets, no event loop); '+ decode' also turns the 100 registers into 61 scaled doubles."
    )
    print(
        f"Back to back: one device after the other, next request as soon as the last batch is queued. Paced: "
        f"our real Engine (supervisor per connection, phase-spread poll loops, timers, stale watchdog) and the C "
        f"peer sleeping between polls, both at {paced}: every poll wakes the process up (cold caches)."
    )
    print("OPC-UA figures are batched polling reads (subscriptions not compared: the stand-in physics changes "
          "values once per second, so a subscription delivers almost nothing to measure)")  # fmt: skip
    print()
    rm = ratio(b.us_per_poll, peer.get("decode"))
    rp = ratio(be.us_per_poll, peer.get("paced"))
    ro = ratio(r.us_per_value, opcua_peer)
    print(f"Modbus  ours/libmodbus back to back (headline): {verdict(rm, MIN_MODBUS, GOAL_RATIO)}")
    print(f"Modbus  ours/libmodbus paced at {paced}: {verdict(rp, MIN_MODBUS, GOAL_RATIO)}")
    print(f"Modbus  clean poll path: {poll_path()}")
    print(f"OPC-UA  ours/node-opcua: {verdict(ro, MIN_OPCUA, GOAL_RATIO)}")
    for n in notes:
        print(f"hall: {n}")
    print(
        f"hall 1,000 racks: {cores:.3f} cores: goal <= {GOAL_CORES:g} core {'PASS' if cores <= GOAL_CORES else 'FAIL'}"
    )
    return {
        "modbus_poll_path": poll_path(),
        "modbus_us_per_poll": round(b.us_per_poll, 2),
        "modbus_peer_us_per_poll": _r(peer.get("decode")),
        "modbus_ratio": _r(rm, 3),
        "modbus_libmodbus_raw_us_per_poll": _r(peer.get("raw")),
        "modbus_paced_us_per_poll": round(be.us_per_poll, 2),
        "modbus_paced_peer_us_per_poll": _r(peer.get("paced")),
        "modbus_paced_ratio": _r(rp, 3),
        "opcua_us_per_value": round(r.us_per_value, 4),
        "opcua_peer_us_per_value": None if opcua_peer is None else round(opcua_peer, 4),
        "opcua_ratio": None if ro is None else round(ro, 3),
        "opcua_mode": "poll",
        "pdu_us_per_poll": round(ours["pdu"].us_per_poll, 2),
        "cdu_us_per_poll": round(ours["cdu"].us_per_poll, 2),
        "hall_1000_mix_cores": round(mix_cores, 4),
        "hall_1000_cores": round(cores, 4),
        "dcgm_us_per_gpu": round(http["dcgm_us_per_gpu"], 3),
        "redfish_us_per_resource": round(http["redfish_us_per_resource"], 2),
    }


def main() -> None:
    """Parse arguments, run the bench, print the JSON line last."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--modbus-rounds", type=int, default=400, help="rounds over the 8 bench devices (default 400)")
    p.add_argument("--opcua-rounds", type=int, default=100, help="rounds over the 8 rack controllers (default 100)")
    p.add_argument("--http-rounds", type=int, default=50, help="rounds over the DCGM racks and Redfish devices")
    p.add_argument("--loop", choices=("auto", "asyncio"), default="auto",
                   help="event loop: auto = what the app runs on (uvloop when installed), or plain asyncio")
    p.add_argument("--modbus-only", action="store_true",
                   help="only the back-to-back Modbus runs against the libmodbus peer (modbus_ratio)")
    p.add_argument("--profile", type=Path, default=None, metavar="FILE",
                   help="with --modbus-only: cProfile our Modbus blocks into FILE (figures include the profiler)")
    args = p.parse_args()
    loop = aidc_loop.loop_name() if args.loop == "auto" else "asyncio"
    print(f"event loop: {loop} (the app's collectors run on the same)")
    result = aidc_loop.run(bench(args)) if args.loop == "auto" else asyncio.run(bench(args))
    result["event_loop"] = loop
    print(json.dumps(result))


if __name__ == "__main__":
    main()
