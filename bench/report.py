"""Monthly-report benchmark: a month of a simulated 1,000-rack facility, stored in DuckDB, reported in HTML + PDF.

Simulates the facility in-process (``simulators.telemetry``) at 5-minute samples, keeping the points the report
reads (every energy counter, the cooling-plant and CDU pump powers, wet bulb and free-cooling state), writes them to
a DuckDB historian, then times :func:`analytics.report.schedule.write_month_report` for October 2026 (site time,
America/New_York). There is no open tool that makes this report, so there is no peer figure. The last line is JSON
with ``report_seconds``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
import tomllib
from pathlib import Path

import pandas as pd

from aidc.config import DeviceRef, site_from_dict
from aidc.profiles import Point
from aidc.roles import Role
from aidc.sitegen import SiteTemplate, render_site
from analytics.pue import ENERGY_ROLES
from analytics.report.build import build_month_report
from analytics.report.config import report_config
from analytics.report.period import Month
from analytics.report.render import write_report
from historian import open_historian
from simulators.telemetry import generate

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


def main() -> None:
    """Simulate, store, report and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--racks", type=int, default=1000)
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
        doc = tomllib.loads(render_site(SiteTemplate(racks=args.racks, start=start.isoformat(), data_dir="var",
                                                     poll_interval_s=args.sample_s)))  # fmt: skip
        doc["historian"] = {"raw_retention_days": 400.0}
        doc["report"] = {"pue_target": 1.15}
        site = site_from_dict(doc, source=str(root / "site.toml"), path=root / "site.toml")
        t0 = time.perf_counter()
        tel = generate(site, duration_s=hours * 3600.0, sample_s=args.sample_s, schedule=None, keep=_keep)
        t1 = time.perf_counter()
        points = tel.frame.size
        with open_historian(site.config.historian, site.data_dir) as hist:
            for batch in tel.batches(rows_per_batch=48):
                hist.write(batch)
            hist.flush()
            t2 = time.perf_counter()
            del tel
            r0 = time.perf_counter()
            rep = build_month_report(hist, site, month, report_config(site))
            r1 = time.perf_counter()
            files = write_report(rep, site.data_dir / "reports")
            r2 = time.perf_counter()
        assert files.pdf is not None
        info = subprocess.run(["pdfinfo", str(files.pdf)], capture_output=True, text=True, check=False).stdout
        pages = next((int(line.split()[1]) for line in info.splitlines() if line.startswith("Pages:")), 0)
        n_series = sum(1 for d in site.devices for p in d.profile.points if _keep(d, p))
        print(f"site: {args.racks} racks, {n_series} series kept, {points:,} points at {args.sample_s:g} s samples")
        print(f"setup: simulate {t1 - t0:.1f} s, store {t2 - t1:.1f} s (not part of the report time)")
        print(f"report {month.label} ({month.tz}): PUE {rep.pue.pue:.4f}, {rep.category_text}")
        print(f"  E_DC {rep.pue.e_dc_kwh:,.0f} kWh, E_IT {rep.pue.e_it_kwh:,.0f} kWh, "
              f"coverage {100 * rep.pue.coverage:.2f} %")  # fmt: skip
        print(f"  build (historian reads + figures) {r1 - r0:.2f} s, render (charts, HTML, PDF) {r2 - r1:.2f} s")
        print(f"  HTML {files.html.stat().st_size / 1024:.0f} KiB, PDF {files.pdf.stat().st_size / 1024:.0f} KiB, "
              f"{pages} pages")  # fmt: skip
        print("peer: none (no open tool produces this report)")
        print(json.dumps({"report_seconds": round(r2 - r0, 2), "build_seconds": round(r1 - r0, 2),
                          "render_seconds": round(r2 - r1, 2), "racks": args.racks, "points": points,
                          "pdf_pages": pages}))  # fmt: skip


if __name__ == "__main__":
    main()
