"""Simulate a 32-rack facility for a year in-process and print its annual PUE and how long that took.

The site is what ``aidc init --racks 32`` writes: GB200 NVL72 racks on Leesburg VA weather, a dry-cooler plant,
training workload, fixed default setpoints (the profiles' safe defaults: TCS 30 °C, dp 120 kPa, FWS 24 °C).
The facility steps through a calendar year at 5-minute steps with no sockets. Annual PUE is the ratio of
energies (facility / IT at the rack inputs, category 3); the category 1 figure uses UPS output energy.
The last line printed is JSON.

    python bench/sim_year.py [--racks 32] [--step 300] [--weather builtin:leesburg | path.epw]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aidc.clock import parse_time
from aidc.config import site_from_dict
from aidc.errors import AidcError
from aidc.sitegen import SiteTemplate, render_site
from simulators.facility import Facility


def run(racks: int, step_s: float, weather: str, year: int) -> dict[str, float]:
    """Simulate ``year`` and return the annual figures."""
    site = site_from_dict(tomllib.loads(render_site(SiteTemplate(racks=racks, climate=weather))))
    start = parse_time(f"{year}-01-01T00:00:00Z")
    end = parse_time(f"{year + 1}-01-01T00:00:00Z")
    build0 = time.perf_counter()
    fac = Facility(site, start_ns=start)
    fac.weather.check_span(start, end, f"the simulated year {year}")
    build_s = time.perf_counter() - build0
    steps = round((end - start) / 1e9 / step_s)
    gpu_max = 0.0
    throttled_gpu_h = 0.0
    t0 = time.perf_counter()
    for _ in range(steps):
        fac.step(step_s)
        gpu_max = max(gpu_max, float(fac.gpu_temp_c.max()))
        throttled_gpu_h += float(fac.rack_throttled.sum()) * step_s / 3600.0
    wall = time.perf_counter() - t0
    e = fac.energy_wh
    hours = fac.elapsed_s / 3600.0
    return {
        "annual_pue": e["facility"] / e["it"],
        "annual_pue_cat1_ups_output": e["facility"] / e["ups_out"],
        "sim_year_seconds": wall,
        "build_seconds": build_s,
        "steps": float(steps),
        "step_s": step_s,
        "us_per_step": wall / steps * 1e6,
        "free_cooling_hours": fac.free_cooling_s["full"] / 3600.0,
        "partial_free_cooling_hours": fac.free_cooling_s["partial"] / 3600.0,
        "chiller_only_hours": fac.free_cooling_s["none"] / 3600.0,
        "it_mwh": e["it"] / 1e6,
        "facility_mwh": e["facility"] / 1e6,
        "avg_it_kw": e["it"] / hours / 1000.0,
        "avg_facility_kw": e["facility"] / hours / 1000.0,
        "avg_cooling_kw": e["cooling"] / hours / 1000.0,
        "avg_chiller_kw": e["chiller"] / hours / 1000.0,
        "avg_cdu_pumps_kw": e["cdu_pumps"] / hours / 1000.0,
        "avg_ups_loss_kw": (e["ups_in"] - e["ups_out"]) / hours / 1000.0,
        "gpu_temp_max_c": gpu_max,
        "throttled_gpu_hours": throttled_gpu_h,
    }


def main() -> None:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--racks", type=int, default=32)
    ap.add_argument("--step", type=float, default=300.0, help="step in simulated seconds")
    ap.add_argument("--weather", default="builtin:leesburg")
    ap.add_argument("--year", type=int, default=2026)
    args = ap.parse_args()
    try:
        r = run(args.racks, args.step, args.weather, args.year)
    except AidcError as exc:  # a weather file too short for the year, a bad file: one line, no traceback
        sys.exit(f"sim_year: {exc}")
    print(f"site: {args.racks} GB200 racks, {args.weather}, fixed default setpoints, {args.step:g} s steps")
    print(f"annual PUE (facility / IT at rack input, cat. 3): {r['annual_pue']:.3f}")
    print(f"annual PUE (facility / UPS output, cat. 1):       {r['annual_pue_cat1_ups_output']:.3f}")
    print(
        f"free cooling: {r['free_cooling_hours']:.0f} h full, {r['partial_free_cooling_hours']:.0f} h partial, "
        f"{r['chiller_only_hours']:.0f} h chiller only"
    )
    print(
        f"average power: IT {r['avg_it_kw']:.0f} kW, facility {r['avg_facility_kw']:.0f} kW, cooling "
        f"{r['avg_cooling_kw']:.0f} kW (chiller {r['avg_chiller_kw']:.0f}, CDU pumps {r['avg_cdu_pumps_kw']:.0f}), "
        f"UPS losses {r['avg_ups_loss_kw']:.0f} kW"
    )
    print(f"hottest GPU {r['gpu_temp_max_c']:.1f} °C, {r['throttled_gpu_hours']:.0f} throttled GPU-hours")
    print(
        f"simulated year: {r['sim_year_seconds']:.1f} s wall ({r['us_per_step']:.0f} µs per step, "
        f"{r['steps']:.0f} steps; goal ≤ 60 s), facility built in {r['build_seconds']:.2f} s"
    )
    print(json.dumps({k: round(v, 4) for k, v in r.items()}))


if __name__ == "__main__":
    main()
