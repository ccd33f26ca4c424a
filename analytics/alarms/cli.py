"""``aidc faults``: scan a window of the historian for slow faults, against a learnt healthy baseline.

aidc faults --config site.toml --from=-2d                 # baseline learnt automatically, as the main job does
aidc faults --config site.toml --healthy-from 2026-07-01T00:00Z --healthy-to 2026-07-08T00:00Z --from=-7d --write

The main job runs fault prediction continuously (:mod:`analytics.alarms.prediction`) and its alarms go through the
alarm engine. This command is the offline view of the same detectors: without ``--healthy-from``/``--healthy-to``
it learns the baseline the way the job's service does, from the week before ``--from`` less the periods the alarm
log (``<data_dir>/alarms/alarms.jsonl``) had alarms on a subject, device outages and bad data, and says so when
there is not yet enough clean history. Alarms are printed (or JSON with ``--json``); ``--write`` appends them to
``<data_dir>/alarms/predictive.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from aidc.clock import SteppedClock, parse_cli_time
from aidc.config import Site
from aidc.errors import AidcError, ConfigError

if TYPE_CHECKING:  # the command's modules load when it runs, not at every `aidc` start
    from analytics.alarms.faults import FaultDetector
    from historian import Historian

WINDOW = "5m"


def register(sub: Any) -> None:
    """Add the ``faults`` sub-command."""
    p = sub.add_parser("faults", help="predict slow faults (fouling, pump wear, strainer, sensor drift) from telemetry")
    p.add_argument("--config", type=Path, required=True, help="site file")
    p.add_argument("--healthy-from", help="start of a window known healthy (ISO time with zone; default: learnt)")
    p.add_argument("--healthy-to", help="end of that window (at least two days after its start)")
    p.add_argument("--from", dest="start", required=True, help="start of the window to scan (ISO, now, --from=-7d)")
    p.add_argument("--to", dest="end", default="now", help="end of the window to scan (default now)")
    p.add_argument("--write", action="store_true", help="append alarms to <data_dir>/alarms/predictive.jsonl")
    p.add_argument("--json", action="store_true", help="print JSON instead of lines")
    p.set_defaults(func=run)


def _time(text: str, what: str) -> pd.Timestamp:
    return pd.Timestamp(parse_cli_time(text, what), unit="ns", tz="UTC")


def run(args: argparse.Namespace) -> int:
    """Fit on the healthy window (given or learnt), scan the other, print (and optionally record) the alarms."""
    import duckdb

    from aidc.config import load_site
    from analytics.alarms.baseline import read_signals
    from analytics.alarms.faults import ROLES, device_frame, write_alarms
    from historian import open_historian

    if (args.healthy_from is None) != (args.healthy_to is None):
        raise ConfigError("--healthy-from and --healthy-to go together (or give neither to learn the baseline)")
    s0, s1 = _time(args.start, "--from"), _time(args.end, "--to")
    if s1 <= s0:
        raise ConfigError(f"--to {args.end} is not after --from {args.start}")
    site = load_site(args.config)
    try:
        hist = open_historian(site.config.historian, site.data_dir)
    except duckdb.IOException as exc:
        raise AidcError(f"cannot open the historian under {site.data_dir}: {str(exc).splitlines()[0]}") from None
    with hist:
        det = _given(hist, site, args) if args.healthy_from is not None else _learnt(hist, site, s0)
        if det is None:
            return 0
        scan, roles = read_signals(hist, site, ROLES, s0, s1, WINDOW)
    if scan.empty:
        raise AidcError("no telemetry in the scanned window")
    alarms = det.scan(device_frame(scan, roles, _rack_cdu(site)))
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


def _rack_cdu(site: Site) -> dict[str, str]:
    return {r: c.name for h in site.config.halls for c in h.cdus for r in c.racks}


def _given(hist: Historian, site: Site, args: argparse.Namespace) -> FaultDetector:
    """Fit on the window the operator named as healthy."""
    from analytics.alarms.baseline import read_signals
    from analytics.alarms.faults import ROLES, FaultDetector, device_frame

    h0, h1 = _time(args.healthy_from, "--healthy-from"), _time(args.healthy_to, "--healthy-to")
    if h1 - h0 < pd.Timedelta("2D"):
        raise ConfigError(f"--healthy-to {args.healthy_to}: the healthy window needs at least two days")
    healthy, roles = read_signals(hist, site, ROLES, h0, h1, WINDOW)
    if healthy.empty:
        raise AidcError("no telemetry in the healthy window")
    return FaultDetector.fit(device_frame(healthy, roles, _rack_cdu(site)), _rack_cdu(site))


def _learnt(hist: Historian, site: Site, scan_from: pd.Timestamp) -> FaultDetector | None:
    """The baseline the job's service would have learnt when ``scan_from`` was the newest unlearnt time (its status
    on stderr); None, with the learning line printed, while there is too little clean history."""
    from analytics.alarms.engine import AlarmEngine
    from analytics.alarms.prediction import FaultPredictionService, PredictionSettings

    settings = PredictionSettings()
    # Replays the alarm log for the periods to leave out; this engine raises nothing, so it writes nothing.
    engine = AlarmEngine([], store=site.data_dir / "alarms" / "alarms.jsonl")
    svc = FaultPredictionService(site, hist, engine, SteppedClock(scan_from.value), settings)
    status = svc.refit((scan_from + settings.td("guard")).value)
    print(status.message, file=sys.stderr)
    if svc.detector is None:
        print(f"no predictive alarms: {status.message}")
        return None
    return svc.detector
