"""Tenant billing speed: a month of a 1,000-rack site with a 100-rack tenant billed from the historian.

Counters are generated directly (no physics: billing reads only energy counters): every rack's PDU counter at a
constant power between 20 and 120 kW, the utility meter at IT + 15 % and the cooling meter at 8 % of IT, at
5-minute samples, with two hours either side of the month. Tenant ``acme`` leases racks 1-100 all month, tenant
``bolt`` racks 101-110 until the 16th and then racks 111-120 (a mid-month move); the rest is unallocated. The
figure is the wall time of :func:`analytics.leasing.billing.report_from_historian` (the call behind ``aidc tenants``,
the
REST API's tenants endpoint and the monthly report's tenant appendix); the last line is JSON with
``tenants_seconds``. The bill is checked against the generated powers, so a fast wrong answer fails.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd

from aidc.config import Site, site_from_dict
from aidc.model import Batch, SeriesKey
from aidc.sitegen import SiteTemplate, render_site
from analytics.leasing.billing import report_from_historian
from historian import open_historian

START, END = pd.Timestamp("2026-10-01T00:00Z"), pd.Timestamp("2026-11-01T00:00Z")
MOVE = pd.Timestamp("2026-10-16T00:00Z")


def _site(racks: int, root: Path) -> tuple[Site, list[str]]:
    doc = tomllib.loads(render_site(SiteTemplate(racks=racks, start=START.isoformat(), data_dir="var")))
    doc["site"]["timezone"] = "UTC"
    doc["historian"] = {"raw_retention_days": 400.0}
    names = [r["name"] for h in doc["halls"] for r in h["racks"]]
    doc["tenants"] = [
        {"name": "acme", "account": "ACME-001", "racks": names[:100], "from": START.date()},
        {"name": "bolt", "racks": names[100:110], "from": START.date(), "until": MOVE.date()},
        {"name": "bolt", "racks": names[110:120], "from": MOVE.date()},
    ]
    doc["carbon"] = {"flat_g_per_kwh": 350.0}
    return site_from_dict(doc, source=str(root / "site.toml"), path=root / "site.toml"), names


def _series(site: Site, device: str, point: str) -> str:
    dev = site.device(device)
    return SeriesKey.of(dev.profile.measurement, point, dev.tags).id


def write_month(site: Site, names: list[str], sample_s: float) -> tuple[dict[str, float], int]:
    """Write the month's counters; returns each rack's kW and the number of points written."""
    ts = pd.date_range(START - pd.Timedelta("2h"), END + pd.Timedelta("2h"), freq=f"{sample_s:g}s")
    hours = ((ts - ts[0]) / pd.Timedelta("1h")).to_numpy()
    rng = np.random.default_rng(14)
    kw = {r: float(k) for r, k in zip(names, rng.uniform(20.0, 120.0, len(names)), strict=True)}
    it_kw = sum(kw.values())
    cols = {_series(site, f"pdu-{r}", "active_energy_wh"): 1e6 + k * 1000.0 * hours for r, k in kw.items()}
    cols[_series(site, "meter-utility", "energy_kwh")] = 1e6 + 1.15 * it_kw * hours
    cols[_series(site, "meter-cooling", "energy_kwh")] = 5e3 + 0.08 * it_kw * hours
    with open_historian(site.config.historian, site.data_dir) as hist:
        for sid, v in cols.items():
            n = len(ts)
            hist.write(Batch(np.full(n, sid, dtype=object), ts.as_unit("ns").asi8.astype(np.int64), v,
                             np.zeros(n, dtype=np.uint8)))  # fmt: skip
        hist.flush()
    return kw, len(cols) * len(ts)


def main() -> None:
    """Generate the month, bill it, check the bill, print the figures and the JSON line."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--racks", type=int, default=1000)
    ap.add_argument("--sample-s", type=float, default=300.0)
    args = ap.parse_args()
    if args.racks < 120:
        ap.error("--racks: at least 120 (the tenants lease racks 1-120)")
    with tempfile.TemporaryDirectory() as tmp:
        site, names = _site(args.racks, Path(tmp))
        t0 = time.perf_counter()
        kw, points = write_month(site, names, args.sample_s)
        t1 = time.perf_counter()
        with open_historian(site.config.historian, site.data_dir) as hist:
            rep = report_from_historian(hist, site, START, END)
        t2 = time.perf_counter()
    hours = (END - START) / pd.Timedelta("1h")
    move_h = (MOVE - START) / pd.Timedelta("1h")
    want = {
        "acme": sum(kw[r] for r in names[:100]) * hours,
        "bolt": sum(kw[r] for r in names[100:110]) * move_h + sum(kw[r] for r in names[110:120]) * (hours - move_h),
    }
    for tenant, kwh in want.items():
        got = rep.line(tenant).it_kwh
        if abs(got - kwh) > 1e-6 * kwh:
            raise SystemExit(f"bench/tenants.py: {tenant} billed {got:.3f} kWh, expected {kwh:.3f} kWh")
    print(f"site: {args.racks} racks, {points:,} counter points at {args.sample_s:g} s samples, {len(rep.lines)} lines")
    print(f"write: {t1 - t0:.1f} s; bill (report_from_historian): {t2 - t1:.2f} s; PUE {rep.pue:.4f}")
    for line in rep.lines:
        racks = f"{len(line.racks):>4} racks"
        print(f"  {line.tenant:<14} {racks}  {line.it_kwh:>14,.1f} kWh IT  peak {line.peak_kw:,.1f} kW")
    print(json.dumps({"tenants_seconds": round(t2 - t1, 2), "write_seconds": round(t1 - t0, 2),
                      "racks": args.racks, "points": points}))  # fmt: skip


if __name__ == "__main__":
    main()
