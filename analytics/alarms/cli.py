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
from typing import Any

import pandas as pd

from aidc.clock import parse_cli_time, site_clock
from aidc.errors import ConfigError
from analytics.ask import Ask, answerer, rebuild


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


def _time(text: str, what: str, now_ns: int | None = None) -> pd.Timestamp:
    return pd.Timestamp(parse_cli_time(text, what, now_ns), unit="ns", tz="UTC")


def run(args: argparse.Namespace) -> int:
    """Fit on the healthy window (given or learnt), scan the other (here or by the running job), print and
    optionally record the alarms."""
    from aidc.config import load_site
    from analytics import answers
    from analytics.alarms.faults import PredictiveAlarm, write_alarms

    if (args.healthy_from is None) != (args.healthy_to is None):
        raise ConfigError("--healthy-from and --healthy-to go together (or give neither to learn the baseline)")
    healthy = None
    params = {}
    if args.healthy_from is not None:
        h0, h1 = _time(args.healthy_from, "--healthy-from"), _time(args.healthy_to, "--healthy-to")
        if h1 - h0 < pd.Timedelta("2D"):
            raise ConfigError(f"--healthy-to {args.healthy_to}: the healthy window needs at least two days")
        healthy = (h0, h1)
        params = {"healthy_from": h0.isoformat(), "healthy_to": h1.isoformat()}
    s0, s1 = _time(args.start, "--from"), _time(args.end, "--to")
    if s1 <= s0:
        raise ConfigError(f"--to {args.end} is not after --from {args.start}")
    site = load_site(args.config)
    now = site_clock(site.data_dir).now_ns()  # `now` is the facility's (a simulated site runs on simulated time)
    s0, s1 = _time(args.start, "--from", now), _time(args.end, "--to", now)
    params |= {"from": s0.isoformat(), "to": s1.isoformat()}
    ask = Ask("GET", "/faults/scan", lambda h: answers.faults(h, site, healthy, (s0, s1)), params, timeout_s=600.0)
    answer: dict[str, Any] = answerer(args)(site, ask)
    if answer.get("status"):
        print(answer["status"], file=sys.stderr)
    if answer.get("learning"):
        print(f"no predictive alarms: {answer['status']}")
        return 0
    alarms: list[dict[str, Any]] = answer["alarms"]
    if args.write and alarms:
        write_alarms(site.data_dir / "alarms" / "predictive.jsonl", [rebuild(PredictiveAlarm, a) for a in alarms])
    if args.json:
        print(json.dumps(alarms, indent=2))
    elif not alarms:
        print(f"no predictive alarms between {s0.isoformat()} and {s1.isoformat()}")
    else:
        for a in alarms:
            print(f"{a['ts']}  {a['device']:<14} {a['kind']:<13} {a['cause']} (shift {a['shift']:.3g} {a['unit']})")
    return 0
