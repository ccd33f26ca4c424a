"""``aidc query``: latest values and series over a range, from the historian or the running job that holds it.

aidc query --config site.toml latest 'pdu,*,active_power_w'
aidc query --config site.toml range 'cdu,device=cdu-1,flow_lpm' --from=-1h --to now --window 1m --agg mean
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd

from aidc.clock import site_clock
from aidc.config import Site, load_site
from aidc.errors import DataError
from analytics import answers, limits
from analytics.ask import Ask, answerer
from historian.base import AGGS


def register(subparsers: Any) -> None:
    """Add ``query latest`` and ``query range``."""
    p = subparsers.add_parser("query", help="read the historian: latest values or a series over a range")
    p.add_argument("--config", type=Path, required=True, help="site file (TOML)")
    p.add_argument("--json", action="store_true", help="print JSON records instead of a table")
    sub = p.add_subparsers(dest="query_command", metavar="WHAT", required=True)
    lat = sub.add_parser("latest", help="latest value of each matching series")
    lat.add_argument("selector", help="e.g. 'pdu,*,active_power_w' or 'pdu,rack=r03-* active_power_w'")
    rng = sub.add_parser(
        "range",
        help=f"samples or windowed aggregates over a time range (at most {answers.MAX_ROWS:,} rows: a larger raw "
        "range is refused at once with its count and how to narrow it)",
    )
    rng.add_argument("selector")
    rng.add_argument("--from", dest="start", required=True, help="ISO time with zone, 'now' or relative: --from=-1h")
    rng.add_argument("--to", dest="end", default="now", help="ISO time with zone, 'now' or relative: --to=-15m")
    rng.add_argument("--window", help="aggregation window, e.g. 1m, 15m, 1h")
    rng.add_argument("--agg", choices=AGGS, help="aggregation (default mean when --window is given)")
    for what in (lat, rng):
        # --json is accepted after the sub-command too; SUPPRESS keeps the sub-parser from resetting it to False.
        what.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON records")
    p.set_defaults(func=run)


def parse_time(text: str, now: pd.Timestamp, what: str = "time") -> pd.Timestamp:
    """``now``, ``-<window>`` (relative to now) or an ISO time with a zone; one line for anything else."""
    return limits.parse_time(text, what, int(now.value))


def build_ask(args: argparse.Namespace, now: pd.Timestamp | None = None) -> Ask:
    """The question: the same selector, range and limits on the job's API and on a local store."""
    text = args.selector
    answers.selector(text)  # a bad selector is refused before reaching for the store or the job
    if args.query_command == "latest":
        return Ask("GET", "/series/latest", lambda h: answers.series_latest(h, text), {"selector": text})
    now = pd.Timestamp.now(tz="UTC") if now is None else now
    # Relative times are resolved here, once, so the job answers for the same instants.
    start, end = parse_time(args.start, now, "--from"), parse_time(args.end, now, "--to")
    window, agg = args.window, args.agg
    params = {"selector": text, "from": start.isoformat(), "to": end.isoformat(), "window": window, "agg": agg}
    # limits.series_range counts a raw range in the store first and refuses it, naming the count and how to narrow,
    # when it holds more than MAX_ROWS samples: the rows are never loaded (the job's route does the same).
    return Ask("GET", "/series", lambda h: limits.series_range(h, text, start, end, window, agg), params)


def run(args: argparse.Namespace) -> int:
    """Answer the query and print it; a store that holds nothing for the site is an error naming its folder."""
    site = load_site(args.config)
    # `now` is the facility's (a simulated site runs on simulated time), as the job that stores the data keeps it
    ask = build_ask(args, pd.Timestamp(site_clock(site.data_dir).now_ns(), unit="ns", tz="UTC"))
    answer = answerer(args)
    records = answer(site, ask)
    if not records and not answer(site, probe(site)):
        # A typo'd data_dir opens a new, empty historian: say where we looked rather than a quiet "no data".
        raise DataError(f"no data in {site.data_dir}: the historian there holds nothing for site {site.name} "
                        f"(check [site] data_dir in {args.config})")  # fmt: skip
    print_records(records, as_json=args.json)
    return 0


def probe(site: Site) -> Ask:
    """Whether the store holds anything for the site: the latest values of the measurement with the fewest devices
    (a meter or the plant: a handful of series, however large the site)."""
    counts = Counter(d.profile.measurement for d in site.devices)
    text = f"{min(counts, key=lambda m: (counts[m], m))},site={site.name},*" if counts else f"*,site={site.name},*"
    return Ask("GET", "/series/latest", lambda h: answers.series_latest(h, text), {"selector": text})


def print_records(records: list[dict[str, Any]], as_json: bool) -> None:
    """A plain table (series, ts, value, quality) or JSON records."""
    if as_json:
        json.dump(records, sys.stdout, indent=1)
        sys.stdout.write("\n")
    elif not records:
        print("no data")
    else:
        frame = pd.DataFrame.from_records(records, columns=["series", "ts", "value", "quality"])
        frame["value"] = frame["value"].astype("float64")  # null (NaN in the store) prints as NaN, as before
        print(frame.to_string(index=False))
