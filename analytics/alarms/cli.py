"""``aidc faults``: learn healthy behaviour from a window of the historian, scan a later window, raise alarms.

aidc faults --config site.toml --healthy-from 2026-07-01T00:00Z --healthy-to 2026-07-08T00:00Z --from=-7d --write

Alarms are printed (or JSON with ``--json``); ``--write`` appends them to ``<data_dir>/alarms/predictive.jsonl``,
which the REST API serves at ``/api/v1/alarms``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pandas as pd

from aidc.clock import parse_cli_time
from aidc.errors import AidcError, ConfigError

WINDOW = "5m"


def register(sub: Any) -> None:
    """Add the ``faults`` sub-command."""
    p = sub.add_parser("faults", help="predict slow faults (fouling, pump wear, strainer, sensor drift) from telemetry")
    p.add_argument("--config", type=Path, required=True, help="site file")
    p.add_argument("--healthy-from", required=True, help="start of a window known healthy (ISO time with zone)")
    p.add_argument("--healthy-to", required=True, help="end of that window (at least two days after its start)")
    p.add_argument("--from", dest="start", required=True, help="start of the window to scan (ISO, now, --from=-7d)")
    p.add_argument("--to", dest="end", default="now", help="end of the window to scan (default now)")
    p.add_argument("--write", action="store_true", help="append alarms to <data_dir>/alarms/predictive.jsonl")
    p.add_argument("--json", action="store_true", help="print JSON instead of lines")
    p.set_defaults(func=run)


def _time(text: str, what: str) -> pd.Timestamp:
    return pd.Timestamp(parse_cli_time(text, what), unit="ns", tz="UTC")


def run(args: argparse.Namespace) -> int:
    """Fit on the healthy window, scan the other, print (and optionally record) the alarms."""
    import duckdb

    from aidc.config import load_site
    from analytics.alarms.faults import ROLES, FaultDetector, device_frame, write_alarms
    from analytics.historian_adapter import wide_frame
    from historian import open_historian

    h0, h1 = _time(args.healthy_from, "--healthy-from"), _time(args.healthy_to, "--healthy-to")
    s0, s1 = _time(args.start, "--from"), _time(args.end, "--to")
    if h1 - h0 < pd.Timedelta("2D"):
        raise ConfigError(f"--healthy-to {args.healthy_to}: the healthy window needs at least two days")
    if s1 <= s0:
        raise ConfigError(f"--to {args.end} is not after --from {args.start}")
    site = load_site(args.config)
    rack_cdu = {r: c.name for h in site.config.halls for c in h.cdus for r in c.racks}
    try:
        hist = open_historian(site.config.historian, site.data_dir)
    except duckdb.IOException as exc:
        raise AidcError(f"cannot open the historian under {site.data_dir}: {str(exc).splitlines()[0]}") from None
    with hist:
        healthy, roles = wide_frame(hist, site, ROLES, h0, h1, WINDOW)
        scan, roles2 = wide_frame(hist, site, ROLES, s0, s1, WINDOW)
    if healthy.empty or scan.empty:
        raise AidcError(f"no telemetry in {'the healthy window' if healthy.empty else 'the scanned window'}")
    det = FaultDetector.fit(device_frame(healthy, roles, rack_cdu), rack_cdu)
    alarms = det.scan(device_frame(scan, {**roles, **roles2}, rack_cdu))
    if args.write and alarms:
        write_alarms(site.data_dir / "alarms" / "predictive.jsonl", alarms)
    if args.json:
        print(json.dumps([a.to_dict() for a in alarms], indent=2))
    elif not alarms:
        print(f"no predictive alarms between {s0.isoformat()} and {s1.isoformat()}")
    else:
        for a in alarms:
            print(f"{a.ts}  {a.device:<14} {a.kind:<13} {a.cause} (shift {a.shift:.3g} {a.unit})")
    return 0
