"""``aidc forecast``: facility power and PUE for the next hours, with P10/P50/P90, from the historian's telemetry."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from aidc.clock import parse_cli_time, site_clock
from aidc.errors import ConfigError
from analytics.ask import Ask, answerer

if TYPE_CHECKING:
    from historian import Historian


def register(sub: Any) -> None:
    """Add the ``forecast`` sub-command."""
    p = sub.add_parser("forecast", help="facility power and PUE forecast (P10/P50/P90) from the historian")
    p.add_argument("--config", type=Path, required=True, help="site file")
    p.add_argument("--horizon", default="48h", help="how far ahead, whole hours up to 48h (default 48h)")
    p.add_argument(
        "--weather", type=Path, help="Open-Meteo hourly forecast (JSON or CSV); default: now + the recent daily cycle"
    )
    p.add_argument("--to", dest="end", default="now", help="forecast origin: end of the history used (default now)")
    p.add_argument("--days", type=float, default=28.0, help="days of telemetry to learn from (default 28, min 7)")
    p.add_argument("--every", type=int, default=3, help="print every N hours (default 3)")
    p.add_argument("--json", action="store_true", help="print JSON rows instead of a table")
    p.set_defaults(func=run_forecast)


def run_forecast(args: argparse.Namespace) -> int:
    """Read telemetry, fit the workload and plant models, forecast and print (here or by the running job)."""
    from aidc.config import load_site
    from analytics import answers
    from analytics.forecast.pue import format_forecast, read_open_meteo

    try:
        horizon = pd.Timedelta(args.horizon)
    except ValueError:
        raise ConfigError(f"--horizon {args.horizon!r}: not a duration (e.g. 24h, 48h)") from None
    hours = int(horizon / pd.Timedelta("1h"))
    if not 1 <= hours <= answers.FORECAST_MAX_HOURS or horizon % pd.Timedelta("1h"):
        raise ConfigError(f"--horizon {args.horizon}: need whole hours from 1h to {answers.FORECAST_MAX_HOURS}h")
    if args.days < answers.FORECAST_MIN_DAYS:
        raise ConfigError(f"--days {args.days:g}: need at least {answers.FORECAST_MIN_DAYS:g} days of telemetry")
    if args.every < 1:
        raise ConfigError(f"--every {args.every}: need at least 1")
    weather: Path | None = args.weather
    if weather is not None:
        read_open_meteo(weather)  # a bad file is reported now, not after reading and fitting a month
    parse_cli_time(args.end, "--to")  # a bad time is refused before the site file is read
    days = float(args.days)
    site = load_site(args.config)
    # `now` is the facility's (a simulated site runs on simulated time)
    end = pd.Timestamp(parse_cli_time(args.end, "--to", site_clock(site.data_dir).now_ns()), unit="ns", tz="UTC")

    def local(hist: Historian) -> dict[str, Any]:
        return answers.facility_forecast(answers.forecast_history(hist, site, end, days), hours, weather)

    body: dict[str, Any] = {"to": end.isoformat(), "days": days, "hours": hours}
    if weather is not None:
        # The job may not see this file (another working directory, user or host): its text travels instead.
        body["weather"] = {"name": weather.name, "text": weather.read_text(encoding="utf-8")}
    ask = Ask("POST", "/forecast/facility", local, body=body, timeout_s=600.0)
    fc: dict[str, Any] = answerer(args)(site, ask)
    rows = pd.DataFrame.from_records(fc["rows"])
    rows["ts"] = pd.to_datetime(rows["ts"], utc=True)
    if args.json:
        rows["ts"] = rows["ts"].map(lambda t: t.isoformat())
        print(json.dumps(rows.round(4).to_dict(orient="records"), indent=2))
    else:
        src = f"Open-Meteo file {weather}" if weather else "now + the recent daily cycle (no --weather file)"
        origin, first = pd.Timestamp(fc["origin"]), pd.Timestamp(fc["history_from"])
        print(f"forecast from {origin} (history from {first}); weather: {src}")
        print(format_forecast(rows.set_index("ts"), args.every))
    return 0
