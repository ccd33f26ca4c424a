"""``aidc evaluate-control``: every controller on the same simulated days, one KPI table (or ``--json``)."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from aidc.config import Site, load_site
from aidc.errors import ConfigError
from control.policy import Limits, site_limits

# Grid-intensity files bundled in data/carbon, by a keyword of the weather file's name (eGRID balancing areas).
CARBON_BY_CLIMATE = {"leesburg": "PJM", "phoenix": "AZPS", "chicago": "MISO"}
COLUMNS = (
    ("facility_kwh", "facility kWh", "{:,.0f}"),
    ("cooling_kwh", "cooling kWh", "{:,.0f}"),
    ("it_kwh", "IT kWh", "{:,.0f}"),
    ("pue", "PUE", "{:.4f}"),
    ("work_done", "work GPU·h", "{:,.0f}"),
    ("kwh_per_work", "kWh/GPU·h", "{:.5f}"),
    ("saving_pct", "saving %", "{:+.2f}"),
    ("violation_kh", "K·h>lim−m", "{:.2f}"),
    ("violation_minutes", "min>lim−m", "{:.0f}"),
    ("at_limit_minutes", "min≥lim", "{:.0f}"),
    ("throttle_minutes", "thr min", "{:.0f}"),
    ("above_class_minutes", ">W min", "{:.0f}"),
    ("below_dew_minutes", "<dew min", "{:.0f}"),
    ("peak_facility_kw", "peak kW", "{:,.0f}"),
    ("kgco2", "kg CO2", "{:,.0f}"),
    ("setpoint_changes", "changes", "{:.0f}"),
    ("decision_ms", "ms/dec", "{:.2f}"),
)


def register(sub: Any) -> None:
    """Add ``evaluate-control``."""
    p = sub.add_parser("evaluate-control", help="evaluate supervisory controllers on the simulated facility")
    p.add_argument("--config", required=True, help="site file")
    p.add_argument("--weather", help="weather file (.epw[.gz] typical year, or an Open-Meteo hourly .csv[.gz] of "
                   "measured years: pick one with --year); default: the site's")
    p.add_argument("--days", type=int, default=365)
    p.add_argument("--stride", type=int, default=7, help="evaluate every K-th day")
    p.add_argument("--warmup-h", type=float, default=6.0, help="uncounted warm-up before each day (default 6 h)")
    p.add_argument("--jobs", type=int, default=0,
                   help="worker processes, one controller each (default: one per CPU; 1 runs them in turn)")
    p.add_argument("--carbon", help="g CO2/kWh constant or an hourly CSV with avg_CI (default: by climate)")
    p.add_argument("--controllers", default="fixed,best_fixed,trim_respond,bin_table,expert,aidc,oracle")
    p.add_argument("--scenario", default="steady",
                   help="load scenario: steady (the site's own workload), ai-steps, checkpoint-stalls, mixed, "
                        "trace-replay (docs/control-scenarios.md)")
    p.add_argument("--telemetry", default="field", choices=("field", "exact"),
                   help="field: what collectors decode (register resolution, noise, poll latency, missing polls); "
                        "exact: the physics' own values, for diagnosis")
    p.add_argument("--seed", type=int, default=None, help="scenario and telemetry seed (default: the site's)")
    p.add_argument("--year", type=int, default=2026)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def default_carbon(weather: str) -> str:
    name = Path(weather).name.lower()
    root = Path(__file__).resolve().parent.parent / "data" / "carbon"
    for key, ba in CARBON_BY_CLIMATE.items():
        if key in name and (root / f"{ba}_hourly_2022.csv.gz").is_file():
            return str(root / f"{ba}_hourly_2022.csv.gz")
    return "400"


def run(args: argparse.Namespace) -> int:
    """Run the evaluation and print the table or JSON."""
    # the simulators: only for this command
    from app.evaluation.evaluate import default_jobs, evaluate_all, load_carbon, site_weather

    site = load_site(args.config)
    if args.days < 1 or args.stride < 1:
        raise ConfigError(f"--days {args.days} / --stride {args.stride}: both must be at least 1")
    if args.jobs < 0:
        raise ConfigError(f"--jobs {args.jobs}: must be at least 1 (0: one per CPU)")
    limits = site_limits(site)
    spec = str(Path(args.weather).resolve()) if args.weather else site.config.site.weather
    weather = site_weather(site, spec)
    carbon = load_carbon(args.carbon or default_carbon(spec))
    names = [n.strip() for n in args.controllers.split(",") if n.strip()]
    t0 = time.perf_counter()
    out = evaluate_all(site, limits, weather, names, days=args.days, stride=args.stride, warmup_h=args.warmup_h,
                       carbon=carbon, year=args.year, progress=None if args.json else sys.stderr,
                       jobs=args.jobs or default_jobs(), telemetry=args.telemetry, scenario=args.scenario,
                       seed=args.seed if args.seed is not None else site.config.simulation.seed)
    out["evaluate_s"] = round(time.perf_counter() - t0, 1)
    out["weather"] = spec
    out["carbon"] = carbon.source
    if args.json:
        print(json.dumps(out))
        return 0
    print_report(out, site, limits, spec, args.stride, args.days, args.warmup_h)
    return 0


def print_report(out: dict[str, Any], site: Site, limits: Limits, spec: str, stride: int, days: int,
                 warmup_h: float) -> None:
    """The evaluation as the KPI table, the best fixed setpoints, aidc's commissioning and its share of the oracle."""
    print(f"site {site.name}: {len(limits.cdu_names)} CDUs, weather {spec}, carbon {out.get('carbon')}; scenario "
          f"{out.get('scenario', 'steady')}, {out.get('telemetry', 'exact')} telemetry, seed {out.get('seed')}; "
          f"oracle scope {out.get('oracle_scope', '-')}")
    print(f"evaluated {out['evaluated_minutes'] / 1440:.0f} days ({out['evaluated_minutes']:.0f} min), every "
          f"{stride}th of {days}, each after {warmup_h:g} h warm-up; margin "
          f"{limits.cfg.gpu_margin_k:g} K below throttle; {out['evaluate_s']:.0f} s")
    ctl = out["controllers"]
    base = ctl.get("fixed", {}).get("facility_kwh")
    head = f"{'controller':<13}" + "".join(f"{h:>13}" for _, h, _ in COLUMNS)
    print(head)
    for name, k in ctl.items():
        k = dict(k)
        k["saving_pct"] = 100 * (base - k["facility_kwh"]) / base if base else 0.0
        print(f"{name:<13}" + "".join(f"{fmt.format(k.get(key, 0.0)):>13}" for key, _, fmt in COLUMNS))
    if "best_fixed" in ctl:
        print(f"best fixed setpoints (hindsight): {ctl['best_fixed'].get('setpoints')}")
    if "commissioning" in out:
        c = out["commissioning"]
        print(f"commissioning: {c['days']:g} days before the evaluated days, run and counted for every controller")
    if "oracle" in ctl and "aidc" in ctl and base:
        o, a = base - ctl["oracle"]["facility_kwh"], base - ctl["aidc"]["facility_kwh"]
        if o > 0:
            print(f"aidc gets {100 * a / o:.0f} % of the oracle's facility-energy saving against fixed")
    if "aidc" in ctl:
        mine = ctl["aidc"].get("kwh_per_work", math.nan)
        worse = [n for n, k in ctl.items()
                 if n not in ("aidc", "oracle") and not mine < k.get("kwh_per_work", math.nan)]
        print("aidc uses less facility energy per unit of work than every baseline" if not worse
              else f"aidc does NOT use less energy per unit of work than: {', '.join(worse)}")
