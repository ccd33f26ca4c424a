"""``aidc report``: the monthly PUE report (HTML + PDF) or, with ``--format eed``, the annual EU export."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from aidc.errors import ConfigError

if TYPE_CHECKING:
    from aidc.config import Site
    from historian import Historian


def register(sub: Any) -> None:
    """Add the ``report`` sub-command."""
    p = sub.add_parser("report", help="monthly PUE report (HTML + PDF) or the annual EU EED export (--format eed)")
    p.add_argument("--config", type=Path, default=Path("site.toml"), help="site file (default ./site.toml)")
    p.add_argument("--month", help="calendar month YYYY-MM in the site's time zone (monthly report)")
    p.add_argument("--year", help="calendar year YYYY (with --format eed)")
    p.add_argument(
        "--format", choices=("html", "eed"), default="html", help="html: HTML + PDF (default); eed: JSON + CSV"
    )
    p.add_argument("--site", help="site name; must be the one the site file describes")
    p.add_argument("--out", type=Path, help="output folder (default <data_dir>/reports)")
    p.add_argument("--no-pdf", action="store_true", help="write the HTML only")
    p.set_defaults(func=run_report)


def _year(text: str) -> int:
    if not re.fullmatch(r"\d{4}", text.strip()):
        raise ConfigError(f"--year {text!r}: expected a year as YYYY, e.g. 2025")
    return int(text)


def _open(site: Site) -> Historian:
    """The site's historian; a DuckDB file held by the running main job is one clear line, not a traceback."""
    import duckdb

    from historian import open_historian

    try:
        return open_historian(site.config.historian, site.data_dir)
    except duckdb.IOException as exc:
        raise ConfigError(
            f"historian of site {site.name} cannot be opened ({str(exc).splitlines()[0]}); the running main job "
            "writes last month's report itself, or stop it to report by hand"
        ) from None


def run_report(args: argparse.Namespace) -> int:
    """Write the requested report and print where its files are."""
    from aidc.config import load_site
    from analytics.report.config import report_config
    from analytics.report.eed import build_eed, check_year, write_eed
    from analytics.report.period import check_complete, parse_month
    from analytics.report.schedule import reports_dir, write_month_report

    if args.format == "eed":
        if args.month:
            raise ConfigError("--month: the EED export is annual; give --year YYYY instead")
        if not args.year:
            raise ConfigError("--format eed needs --year YYYY")
    elif not args.month:
        raise ConfigError("give --month YYYY-MM (or --format eed --year YYYY)")
    elif args.year:
        raise ConfigError("--year goes with --format eed; the monthly report takes --month only")
    site = load_site(args.config)
    if args.site is not None and args.site != site.name:
        raise ConfigError(f"--site {args.site!r}: unknown site; {args.config} describes site {site.name!r}")
    tz = site.config.site.timezone
    now = pd.Timestamp.now(tz="UTC")
    cfg = report_config(site)
    out = args.out or reports_dir(site)
    if args.format == "eed":
        year = _year(args.year)
        check_year(year, now, tz)
        with _open(site) as hist:
            exp = build_eed(hist, site, year, cfg)
        paths = write_eed(exp, out)
        print(exp.obligation)
        missing = [i.key for i in exp.items if i.status == "missing"]
        if missing:
            print(f"missing ({len(missing)}): {', '.join(missing)}")
        for p in paths:
            print(p)
        return 0
    month = parse_month(args.month, tz)
    check_complete(month, now)  # before opening the historian: a bad month is refused at once
    with _open(site) as hist:
        files = write_month_report(hist, site, month, now=now, out_dir=out, pdf=not args.no_pdf)
    for f in (files.html, files.pdf, files.json):
        if f is not None:
            print(f)
    return 0
