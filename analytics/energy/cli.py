"""``aidc pue`` and ``aidc backtest``: the standards-exact PUE report and forecast backtests on any time series."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pandas as pd
from pandas.tseries.frequencies import to_offset
from threadpoolctl import threadpool_limits

from aidc.clock import site_clock
from aidc.datasets import infer_step, read_series
from aidc.errors import ConfigError, DataError
from analytics.ask import Ask, answerer, rebuild
from analytics.energy.pue import PERIOD_FREQ, PueReport, format_report
from analytics.forecast.backtest import DEFAULT_HORIZONS, backtest, format_results
from analytics.limits import parse_time


def register(sub: Any) -> None:
    """Add the ``pue`` and ``backtest`` sub-commands."""
    p = sub.add_parser("pue", help="PUE (ISO/IEC 30134-2) and companion KPIs from the historian's energy counters")
    p.add_argument("--config", type=Path, required=True, help="site file")
    p.add_argument("--from", dest="start", required=True, help="period start: 2026-07-01T00:00Z or --from=-30d")
    p.add_argument("--to", dest="end", required=True, help="period end (exclusive): ISO time, now or --to=-1d")
    p.add_argument("--period", choices=sorted(PERIOD_FREQ), help="one row per calendar hour/day/month/year")
    p.add_argument("--category", type=int, choices=(1, 2, 3), help="force the IT metering point (default: best)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run_pue)

    b = sub.add_parser("backtest", help="rolling-origin backtest of the load forecaster on a CSV time series")
    b.add_argument("--data", type=Path, required=True, help="CSV or TSV file")
    b.add_argument(
        "--horizon",
        help=f"comma-separated horizons (default {','.join(DEFAULT_HORIZONS)}, less those shorter than the step)",
    )
    b.add_argument("--column", help="value column (default: auto-detect)")
    b.add_argument("--time-column", help="timestamp column (default: auto-detect)")
    b.add_argument("--step", help="sample step for files without timestamps, e.g. 5min")
    b.add_argument("--start", help="time of the first row for files without timestamps")
    b.add_argument("--folds", type=int, default=3, help="rolling-origin folds (default 3)")
    b.add_argument("--json", action="store_true", help="print JSON instead of a table")
    b.add_argument("--threads", type=int, default=1, help="threads for model fitting (default 1; see docs)")
    b.set_defaults(func=run_backtest)


def run_pue(args: argparse.Namespace) -> int:
    """Compute and print PUE for the period (or each calendar period in it), here or by the running job, within
    the limits the job's API states (:mod:`analytics.limits`)."""
    from aidc.config import load_site
    from analytics.limits import PUE_TIME_BUDGET_S, check_pue, pue_rows

    start, end = parse_time(args.start, "--from"), parse_time(args.end, "--to")
    if end <= start:
        raise ConfigError(f"--to {args.end} is not after --from {args.start}")
    site = load_site(args.config)
    now = site_clock(site.data_dir).now_ns()  # `now` is the facility's (a simulated site runs on simulated time)
    start, end = parse_time(args.start, "--from", now), parse_time(args.end, "--to", now)
    period, category = args.period, args.category
    check_pue(start, end, period)  # refused here, before the store or the job is asked
    ask = Ask(
        "GET",
        "/pue",
        lambda h: pue_rows(h, site, start, end, period, category),
        {"from": start.isoformat(), "to": end.isoformat(), "period": period, "category": category},
        timeout_s=PUE_TIME_BUDGET_S + 30,  # the job stops a question at its budget and says so: wait for that
    )
    rows: list[dict[str, Any]] = answerer(args)(site, ask)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(format_report([report_of(r) for r in rows]))
    return 0


def report_of(row: dict[str, Any]) -> PueReport:
    """A :class:`PueReport` back from its JSON form, for the table (per-meter energies are not carried)."""
    return rebuild(
        PueReport, row, start=pd.Timestamp(row["start"]), end=pd.Timestamp(row["end"]), missing=tuple(row["missing"])
    )


def run_backtest(args: argparse.Namespace) -> int:
    """Load the series, backtest each horizon and print the table."""
    try:
        step = pd.Timedelta(args.step) if args.step else None
    except ValueError:
        raise ConfigError(f"--step {args.step!r}: not a duration (e.g. 5min, 1h)") from None
    # Bad readings (inf, -1e300: logger sentinels) are excluded as missing, and every output states how many.
    y, excluded = read_series(args.data, column=args.column, time_column=args.time_column, step=step, start=args.start)
    note = f"; {excluded}" if excluded is not None else ""
    step = infer_step(y)
    if args.horizon is None:
        horizons = [h for h in DEFAULT_HORIZONS if pd.Timedelta(h) >= step]
    else:
        horizons = [h.strip() for h in args.horizon.split(",") if h.strip()]
    for h in horizons:
        try:
            if pd.Timedelta(h) < step:
                raise ConfigError(f"--horizon {h}: shorter than the series step {step}")
        except ValueError:
            raise ConfigError(f"--horizon {h!r}: not a duration (e.g. 1h, 24h)") from None
    if y.notna().sum() < 100:
        raise DataError(f"{args.data}: only {int(y.notna().sum())} values; need at least 100 to backtest{note}")
    if args.threads < 1:
        raise ConfigError(f"--threads {args.threads}: need at least 1")
    # One thread by default: on a busy machine OpenMP's spinning threads make gradient boosting many times slower
    # (seen here: 9 min instead of 20 s for an hourly 3-year trace); fitting is small enough for one core.
    with threadpool_limits(args.threads):
        results = [backtest(y, h, step, folds=args.folds)[0] for h in horizons]
    if args.json:
        n_bad = excluded.count if excluded is not None else 0
        print(json.dumps([{**r.to_dict(), "excluded_values": n_bad} for r in results], indent=2))
    else:
        step_text = to_offset(step).freqstr
        print(format_results(f"{args.data} ({y.name}, step {step_text}, {len(y)} steps{note})", results))
    return 0
