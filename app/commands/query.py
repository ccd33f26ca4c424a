"""``aidc query``: latest values and series over a range, from the configured historian.

aidc query --config site.toml latest 'pdu,*,active_power_w'
aidc query --config site.toml range 'cdu,device=cdu-1,flow_lpm' --from=-1h --to now --window 1m --agg mean
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from aidc.clock import parse_cli_time
from aidc.config import load_site
from aidc.errors import AidcError
from historian.base import AGGS, SeriesSelector


def register(subparsers: Any) -> None:
    """Add ``query latest`` and ``query range``."""
    p = subparsers.add_parser("query", help="read the historian: latest values or a series over a range")
    p.add_argument("--config", type=Path, required=True, help="site file (TOML)")
    p.add_argument("--json", action="store_true", help="print JSON records instead of a table")
    sub = p.add_subparsers(dest="query_command", metavar="WHAT", required=True)
    lat = sub.add_parser("latest", help="latest value of each matching series")
    lat.add_argument("selector", help="e.g. 'pdu,*,active_power_w' or 'pdu,rack=r03-* active_power_w'")
    rng = sub.add_parser("range", help="samples or windowed aggregates over a time range")
    rng.add_argument("selector")
    rng.add_argument("--from", dest="start", required=True, help="ISO time with zone, 'now' or relative: --from=-1h")
    rng.add_argument("--to", dest="end", default="now", help="ISO time with zone, 'now' or relative: --to=-15m")
    rng.add_argument("--window", help="aggregation window, e.g. 1m, 15m, 1h")
    rng.add_argument("--agg", choices=AGGS, help="aggregation (default mean when --window is given)")
    for what in (lat, rng):
        # --json is accepted after the sub-command too; SUPPRESS keeps the sub-parser from resetting it to False.
        what.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON records")
    p.set_defaults(func=run)


def parse_time(text: str, now: pd.Timestamp) -> pd.Timestamp:
    """``now``, ``-<window>`` (relative to now) or an ISO time with a zone."""
    return pd.Timestamp(parse_cli_time(text, "time", int(now.value)), unit="ns", tz="UTC")


def run(args: argparse.Namespace) -> int:
    """Answer the query and print it."""
    from historian import open_historian

    site = load_site(args.config)
    cfg, data_dir = site.config.historian, site.data_dir
    selector = SeriesSelector.parse(args.selector)
    try:
        h = open_historian(cfg, data_dir)
    except duckdb.IOException as exc:
        raise AidcError(f"cannot open the historian under {data_dir}: {str(exc).splitlines()[0]}") from None
    try:
        if args.query_command == "latest":
            frame = h.latest(selector)
        else:
            now = pd.Timestamp.now(tz="UTC")
            start, end = parse_time(args.start, now), parse_time(args.end, now)
            frame = h.query(selector, start, end, args.window, args.agg)
    finally:
        h.close()
    print_frame(frame, as_json=args.json)
    return 0


def print_frame(frame: pd.DataFrame, as_json: bool) -> None:
    """A plain table (series, ts, value, quality) or JSON records."""
    out = frame.copy()
    out["ts"] = out["ts"].map(lambda t: t.isoformat())
    out["quality"] = out["quality"].map(lambda q: ("good", "uncertain", "bad")[min(int(q), 2)])
    if as_json:
        records = out.astype(object).where(out.notna(), None).to_dict(orient="records")
        json.dump(records, sys.stdout, indent=1)
        sys.stdout.write("\n")
    elif out.empty:
        print("no data")
    else:
        print(out[["series", "ts", "value", "quality"]].to_string(index=False))
