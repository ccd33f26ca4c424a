"""``aidc tenants``: the monthly billing export per tenant (energy, overhead, peak demand, carbon) as CSV or JSON."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from aidc.errors import AidcError
from analytics.ask import Ask, answerer, rebuild
from analytics.leasing.tenants import CSV_COLUMNS, TenantLine, TenantReport, csv_rows


def register(sub: Any) -> None:
    """Add the ``tenants`` sub-command."""
    p = sub.add_parser("tenants", help="per-tenant energy, overhead, peak and carbon for a month (billing export)")
    p.add_argument("--config", type=Path, required=True, help="site file with [[tenants]] (and [carbon])")
    p.add_argument("--month", required=True, help="calendar month in the site's time zone, YYYY-MM")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table", help="output (default table)")
    p.add_argument("-o", "--output", type=Path, help="write here instead of standard output")
    p.set_defaults(func=run)


def render(report: TenantReport, fmt: str) -> str:
    """The report as CSV, JSON or a readable table."""
    if fmt == "json":
        return json.dumps(report.to_dict(), indent=2) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(CSV_COLUMNS)
        w.writerows(csv_rows(report))
        return buf.getvalue()
    lines = [
        f"tenants {report.start.isoformat()} .. {report.end.isoformat()}: E_DC {report.e_dc_kwh:.1f} kWh, "
        f"E_IT (PDU) {report.e_it_kwh:.1f} kWh, PUE {report.pue or float('nan'):.4f}",
        f"{'tenant':<16} {'IT kWh':>12} {'overhead':>10} {'total kWh':>12} {'peak kW':>9} {'cover%':>7} "
        f"{'loc kgCO2':>11} {'mkt kgCO2':>11} {'CUE loc':>8}",
    ]

    def f(x: float | None, w: int, p: int) -> str:
        return f"{'-':>{w}}" if x is None else f"{x:>{w}.{p}f}"

    for ln in report.lines:
        lines.append(
            f"{ln.tenant:<16} {ln.it_kwh:>12.1f} {f(ln.overhead_kwh, 10, 1)} {f(ln.total_kwh, 12, 1)} "
            f"{ln.peak_kw:>9.1f} {100 * ln.coverage:>7.1f} {f(ln.location_kgco2, 11, 1)} "
            f"{f(ln.market_kgco2, 11, 1)} {f(ln.cue_location, 8, 4)}"
        )
    lines.append(f"method: {report.method}")
    if report.intensity_note:
        lines.append(f"grid intensity: {report.intensity_note}")
    if report.market_note:
        lines.append(f"market-based factor: {report.market_note}")
    lines.extend(f"note: {n}" for n in report.notes)
    return "\n".join(lines) + "\n"


def report_of(answer: dict[str, Any]) -> TenantReport:
    """A :class:`TenantReport` back from its JSON form (``TenantReport.to_dict`` plus ``month``)."""
    return rebuild(
        TenantReport,
        answer,
        start=pd.Timestamp(answer["start"]),
        end=pd.Timestamp(answer["end"]),
        lines=tuple(rebuild(TenantLine, t, racks=tuple(t["racks"])) for t in answer["tenants"]),
        notes=tuple(answer["notes"]),
    )


def run(args: argparse.Namespace) -> int:
    """Compute the month's tenant report (here or by the running job) and write it."""
    from aidc.config import load_site
    from analytics import answers
    from analytics.leasing.billing import month_bounds

    site = load_site(args.config)
    if not site.config.tenants:
        raise AidcError(f"{args.config}: no [[tenants]] in the site file")
    month: str = args.month
    month_bounds(month, site.config.site.timezone)  # a bad month is refused before reaching for the data
    ask = Ask("GET", "/tenants", lambda h: answers.tenants(h, site, month), {"month": month})
    text = render(report_of(answerer(args)(site, ask)), args.format)
    if args.output is not None:
        args.output.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0
