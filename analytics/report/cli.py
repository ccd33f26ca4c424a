"""``aidc report``: the monthly PUE report (HTML + PDF) or, with ``--format eed``, the annual EU export."""

from __future__ import annotations

import argparse
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from aidc.errors import ConfigError
from analytics.ask import Ask, answerer

if TYPE_CHECKING:
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


def _copy_to(files: list[str], out: Path | None) -> list[str]:
    """The files where ``--out`` wants them: the running job writes under its data directory, the command copies."""
    if out is None:
        return files
    try:
        out.mkdir(parents=True, exist_ok=True)
        moved = []
        for f in files:
            dest = out / Path(f).name
            if Path(f).resolve() != dest.resolve():
                shutil.copy2(f, dest)
            moved.append(str(dest))
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot copy the report there: {exc.strerror}") from None
    return moved


def run_report(args: argparse.Namespace) -> int:
    """Write the requested report (here, or by the running job) and print where its files are."""
    from aidc.config import load_site
    from analytics import answers
    from analytics.report.eed import check_year
    from analytics.report.period import check_complete, parse_month

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
    out: Path | None = args.out
    ask = answerer(args)
    if args.format == "eed":
        year = _year(args.year)
        check_year(year, now, tz)  # before reaching for the data: a bad year is refused at once
        eed_ask = Ask(
            "POST", f"/reports/eed/{year}", lambda h: answers.eed_export(h, site, year, now, out), timeout_s=600.0
        )
        eed = ask(site, eed_ask)
        print(eed["obligation"])
        if eed["missing"]:
            print(f"missing ({len(eed['missing'])}): {', '.join(eed['missing'])}")
        for p in _copy_to(eed["files"], out):
            print(p)
        return 0
    month = parse_month(args.month, tz)
    check_complete(month, now)  # before reaching for the data: a bad month is refused at once
    text, pdf = month.label, not args.no_pdf

    def local(hist: Historian) -> dict[str, Any]:
        return answers.month_report(hist, site, text, now, out, pdf)

    rep = ask(site, Ask("POST", f"/reports/month/{text}", local, {"pdf": pdf}, timeout_s=600.0))
    for f in _copy_to(rep["files"], out):
        print(f)
    return 0
