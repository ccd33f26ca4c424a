"""``aidc forecast``: facility power and PUE for the next hours, with P10/P50/P90, from the historian's telemetry."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pandas as pd
from threadpoolctl import threadpool_limits

from aidc.clock import parse_cli_time
from aidc.errors import ConfigError, DataError


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
    """Read telemetry, fit the workload and plant models, forecast and print."""
    from aidc.config import load_site
    from analytics.forecast.live import plant_history
    from analytics.forecast.pue import FacilityForecaster, format_forecast, read_open_meteo
    from historian import open_historian

    try:
        horizon = pd.Timedelta(args.horizon)
    except ValueError:
        raise ConfigError(f"--horizon {args.horizon!r}: not a duration (e.g. 24h, 48h)") from None
    hours = int(horizon / pd.Timedelta("1h"))
    if not 1 <= hours <= 48 or horizon % pd.Timedelta("1h"):
        raise ConfigError(f"--horizon {args.horizon}: need whole hours from 1h to 48h")
    if args.days < 7:
        raise ConfigError(f"--days {args.days:g}: need at least 7 days of telemetry")
    if args.every < 1:
        raise ConfigError(f"--every {args.every}: need at least 1")
    if args.weather:
        read_open_meteo(args.weather)  # a bad file is reported now, not after reading and fitting a month
    end = pd.Timestamp(parse_cli_time(args.end, "--to"), unit="ns", tz="UTC")
    start = end - pd.Timedelta(days=args.days)
    site = load_site(args.config)
    with open_historian(site.config.historian, site.data_dir) as hist:
        data = plant_history(hist, site, start, end)
    if data.empty:
        raise DataError(f"{args.config}: no complete plant telemetry in the historian between {start} and {end}")
    weather = read_open_meteo(args.weather, origin=pd.Timestamp(data.index[-1]).floor("1h")) if args.weather else None
    with threadpool_limits(1):
        model = FacilityForecaster.fit(data)
        fc = model.predict(data, weather, hours=hours)
    if args.json:
        rows = fc.reset_index()
        rows["ts"] = rows["ts"].map(lambda t: t.isoformat())
        print(json.dumps(rows.round(4).to_dict(orient="records"), indent=2))
    else:
        src = f"Open-Meteo file {args.weather}" if args.weather else "now + the recent daily cycle (no --weather file)"
        print(f"forecast from {data.index[-1]} (history from {data.index[0]}); weather: {src}")
        print(format_forecast(fc, args.every))
    return 0
