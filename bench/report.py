"""Monthly-report benchmark: a month of a simulated 1,000-rack facility, stored in DuckDB, reported in HTML + PDF.

The report reads every energy counter (two per rack: PDU output and IT input), the cooling plant's and every CDU's
pump power, wet bulb and free-cooling state, at 5-minute samples. Simulating 1,000 racks with full physics at that
step takes about 15 CPU-minutes here (the point servers' per-device values dominate), so by default a 40-rack block
is simulated (``simulators.telemetry``, the collectors' series ids and counter decoding) and its rack, PDU and CDU
series are repeated to fill the 1,000-rack site, with the site-level meters and plant powers scaled and wrapped at
their register modulus; ``--full-physics`` simulates every rack. The month is written to a DuckDB historian and
:func:`~analytics.report.build.build_month_report` plus :func:`~analytics.report.render.write_report` are timed for
October 2026 (site time, America/New_York). No open tool makes this report, so there is no peer figure. The last
line is JSON with ``report_seconds``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd

from aidc.config import DeviceRef, Site, site_from_dict
from aidc.model import Batch, SeriesKey
from aidc.profiles import Point
from aidc.roles import Role
from aidc.sitegen import SiteTemplate, render_site
from analytics.energy.pue import ENERGY_ROLES
from analytics.report.build import build_month_report
from analytics.report.config import report_config
from analytics.report.period import Month
from analytics.report.render import write_report
from historian import open_historian
from simulators.telemetry import Telemetry, generate

KEEP_ROLES = {
    *ENERGY_ROLES,
    Role.CHILLER_POWER,
    Role.PUMP_POWER,
    Role.HEAT_REJECTION_FAN_POWER,
    Role.OUTDOOR_WETBULB,
    Role.FREE_COOLING_STATE,
}


def _keep(dev: DeviceRef, p: Point) -> bool:
    return not p.array and dev.role_of(p.name) in KEEP_ROLES


def _series_of(site: Site) -> list[tuple[str, DeviceRef, Point]]:
    """(series id, device, point) of every kept point, devices in site order."""
    return [
        (SeriesKey.of(d.profile.measurement, p.name, d.tags).id, d, p)
        for d in site.devices
        for p in d.profile.points
        if _keep(d, p)
    ]


def replicate(small: Telemetry, small_site: Site, big_site: Site) -> tuple[list[str], np.ndarray]:
    """The big site's series from the simulated block: rack, PDU and CDU series copied from the block's device of
    the same position (modulo the block size, each copy's counters offset), site-level meters and plant powers
    scaled by the ratio of racks (and wrapped at their register modulus, as a meter would), weather as is."""
    ratio = sum(1 for _ in big_site.racks()) / sum(1 for _ in small_site.racks())
    col = {sid: k for k, sid in enumerate(small.frame.columns)}
    by_kind: dict[str, list[DeviceRef]] = {}
    for d in small_site.devices:
        by_kind.setdefault(d.kind, []).append(d)
    seen: dict[str, int] = {}
    names: list[str] = []
    src: list[int] = []
    scale: list[float] = []
    offset: list[float] = []
    modulus: list[float] = []
    for sid, d, p in _series_of(big_site):
        k = seen.get(d.kind + p.name, 0)
        seen[d.kind + p.name] = k + 1
        pool = by_kind[d.kind]
        twin = pool[k % len(pool)]
        names.append(sid)
        src.append(col[SeriesKey.of(twin.profile.measurement, p.name, twin.tags).id])
        per_rack = d.kind in ("pdu", "rack", "cdu")
        weather = d.role_of(p.name) in (Role.OUTDOOR_WETBULB, Role.FREE_COOLING_STATE)
        scale.append(1.0 if per_rack or weather else ratio)
        offset.append(1000.0 * (k // len(pool)) if per_rack and p.counter else 0.0)
        modulus.append(float(p.modulus or np.inf))
    block = small.frame.to_numpy(dtype=np.float64)[:, src]
    values = np.mod(block * np.array(scale) + np.array(offset), np.array(modulus))
    return names, values


def _site(racks: int, start: pd.Timestamp, sample_s: float, root: Path) -> Site:
    doc = tomllib.loads(render_site(SiteTemplate(racks=racks, start=start.isoformat(), data_dir="var",
                                                 poll_interval_s=sample_s)))  # fmt: skip
    doc["historian"] = {"raw_retention_days": 400.0}
    doc["report"] = {"pue_target": 1.15}
    return site_from_dict(doc, source=str(root / "site.toml"), path=root / "site.toml")


def main() -> None:
    """Simulate, store, report and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--racks", type=int, default=1000)
    ap.add_argument("--block", type=int, default=40, help="racks simulated with full physics (default 40)")
    ap.add_argument("--full-physics", action="store_true", help="simulate every rack (about 15 CPU-minutes)")
    ap.add_argument("--days", type=float, default=None, help="simulate fewer days (default: the whole month)")
    ap.add_argument("--sample-s", type=float, default=300.0)
    ap.add_argument("--keep", type=Path, help="write the historian and report here instead of a temporary folder")
    args = ap.parse_args()
    month = Month(2026, 10, "America/New_York")
    start = month.start - pd.Timedelta("2h")
    hours = month.hours + 4.0 if args.days is None else 24.0 * args.days
    with tempfile.TemporaryDirectory(prefix="aidc-bench-report-") as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        site = _site(args.racks, start, args.sample_s, root)
        block = site if args.full_physics else _site(min(args.block, args.racks), start, args.sample_s, root)
        t0 = time.perf_counter()
        tel = generate(block, duration_s=hours * 3600.0, sample_s=args.sample_s, schedule=None, keep=_keep)
        names, values = replicate(tel, block, site)
        ts = pd.DatetimeIndex(tel.frame.index).as_unit("ns").asi8
        del tel
        t1 = time.perf_counter()
        points = values.size
        series = np.array(names, dtype=object)
        with open_historian(site.config.historian, site.data_dir) as hist:
            for a in range(0, len(ts), 48):
                chunk = values[a : a + 48]
                n_t = len(chunk)
                hist.write(Batch(np.tile(series, n_t), np.repeat(ts[a : a + 48], len(series)).astype(np.int64),
                                 chunk.reshape(-1), np.zeros(chunk.size, dtype=np.uint8)))  # fmt: skip
            hist.flush()
            t2 = time.perf_counter()
            del values
            r0 = time.perf_counter()
            rep = build_month_report(hist, site, month, report_config(site))
            r1 = time.perf_counter()
            files = write_report(rep, site.data_dir / "reports")
            r2 = time.perf_counter()
        assert files.pdf is not None
        info = subprocess.run(["pdfinfo", str(files.pdf)], capture_output=True, text=True, check=False).stdout
        pages = next((int(line.split()[1]) for line in info.splitlines() if line.startswith("Pages:")), 0)
        how = "every rack simulated" if block is site else (
            f"a {sum(1 for _ in block.racks())}-rack block simulated with full physics, its rack, PDU and CDU series "
            "repeated to fill the site and its site-level meters scaled")
        print(f"site: {args.racks} racks, {len(names)} series, {points:,} points at {args.sample_s:g} s samples")
        print(f"  ({how})")
        print(f"setup: simulate {t1 - t0:.1f} s, store {t2 - t1:.1f} s (not part of the report time)")
        print(f"report {month.label} ({month.tz}): PUE {rep.pue.pue:.4f}, {rep.category_text}")
        print(f"  E_DC {rep.pue.e_dc_kwh:,.0f} kWh, E_IT {rep.pue.e_it_kwh:,.0f} kWh, "
              f"coverage {100 * rep.pue.coverage:.2f} %, wraps {rep.pue.to_dict()['wraps']}")  # fmt: skip
        print(f"  build (historian reads + figures) {r1 - r0:.2f} s, render (charts, HTML, PDF) {r2 - r1:.2f} s")
        print(f"  HTML {files.html.stat().st_size / 1024:.0f} KiB, PDF {files.pdf.stat().st_size / 1024:.0f} KiB, "
              f"{pages} pages: {files.pdf}")  # fmt: skip
        print("peer: none (no open tool produces this report)")
        print(json.dumps({"report_seconds": round(r2 - r0, 2), "build_seconds": round(r1 - r0, 2),
                          "render_seconds": round(r2 - r1, 2), "racks": args.racks, "points": points,
                          "pdf_pages": pages}))  # fmt: skip


if __name__ == "__main__":
    main()
