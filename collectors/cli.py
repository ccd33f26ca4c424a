"""``aidc collect``: commissioning (``--once``, like ``telegraf --test``) and continuous collection."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from aidc import loop as aidc_loop
from aidc.clock import Clock, ScaledClock
from aidc.config import Site, load_site
from aidc.live import LiveState
from aidc.model import Batch, Quality, SeriesKey
from collectors.engine import Engine, Summary, parse_shard
from collectors.link import HEALTH_MEASUREMENT


def register(sub: Any) -> None:
    """Add ``collect``."""
    p = sub.add_parser("collect", help="collect telemetry from the site's devices (--once to commission)")
    p.add_argument("--config", type=Path, required=True, help="site file")
    p.add_argument("--once", action="store_true", help="poll every device once, print every point and exit")
    p.add_argument("--json", action="store_true", help="with --once: machine-readable output")
    p.add_argument("--shard", default=None, metavar="I/N", help="collect only the stable share I of N of the devices")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds (default: run forever)")
    p.add_argument("--summary-every", type=float, default=5.0, help="seconds between summary lines (default 5)")
    p.set_defaults(func=cmd_collect)


def site_clock(site: Site) -> Clock:
    """The simulator's shared clock when it publishes one, else real time."""
    path = site.data_dir / "clock.json"
    return ScaledClock.load(path) if path.is_file() else ScaledClock.starting_now()


def cmd_collect(args: argparse.Namespace) -> int:
    """Run the command."""
    site = load_site(args.config)
    shard = parse_shard(args.shard) if args.shard else None
    if args.once:
        return aidc_loop.run(_once(site, shard, as_json=args.json))
    aidc_loop.run(_run(site, shard, args.duration, args.summary_every))
    return 0


def _rows(site: Site, batch: Batch) -> list[dict[str, Any]]:
    out = []
    for s in batch.samples():
        key = SeriesKey.parse(s.series)
        if key.measurement == HEALTH_MEASUREMENT:
            continue
        dev = site.device(key.tag_dict["device"])
        point = dev.profile.point(key.field)
        label = key.field + "".join(f"[{v}]" for k, v in key.tags if k == point.array_tag and point.array)
        out.append({"series": s.series, "point": label, "value": s.value, "unit": point.unit,
                    "quality": s.quality.label, "reason": s.reason})
    return out


async def _once(site: Site, shard: tuple[int, int] | None, *, as_json: bool) -> int:
    engine = Engine.from_site(site, clock=site_clock(site), shard_spec=shard)
    results = await engine.collect_once()
    report = []
    for dev in engine.devices:
        res = results.get(dev.name, "not polled")
        entry: dict[str, Any] = {"device": dev.name, "kind": dev.kind, "address": dev.config.address,
                                 "profile": dev.profile.name}
        if isinstance(res, Batch):
            entry.update(status="ok", points=_rows(site, res))
        else:
            entry.update(status="unreachable", error=res, points=[])
        report.append(entry)
    if as_json:
        json.dump({"site": site.name, "devices": report}, sys.stdout, indent=1)
        print()
    else:
        for e in report:
            if e["status"] != "ok":
                print(f"{e['device']} ({e['address']}): UNREACHABLE: {e['error']}")
                continue
            print(f"{e['device']} ({e['address']}, {e['profile']}): {len(e['points'])} points")
            for r in e["points"]:
                v = "-" if r["value"] is None else f"{r['value']:.6g}"
                why = f"  ({r['reason']})" if r["reason"] else ""
                print(f"  {r['point']:<32} {v:>14} {r['unit']:<6} {r['quality']}{why}")
    down = sum(e["status"] != "ok" for e in report)
    bad = sum(r["quality"] != Quality.GOOD.label for e in report for r in e["points"])
    print(f"{len(report) - down}/{len(report)} devices answered, {bad} points not good", file=sys.stderr)
    return 1 if down else 0


async def _run(site: Site, shard: tuple[int, int] | None, duration: float | None, every: float) -> None:
    live = LiveState()
    engine = Engine.from_site(site, sinks=[live.update], clock=site_clock(site), shard_spec=shard)
    summary = Summary(engine, live)
    loop = asyncio.get_running_loop()
    end = None if duration is None else loop.time() + duration
    async with engine:
        while end is None or loop.time() < end:
            await asyncio.sleep(every if end is None else max(0.0, min(every, end - loop.time())))
            print(summary.line(), flush=True)
