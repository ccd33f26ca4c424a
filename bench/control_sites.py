"""The supervisory controller on sites it was not developed on: the same code and defaults, no per-site tuning.

aidc's controller was developed on the 32-rack GB200 site of ``aidc init`` (dry-cooler plant, training load) in
Leesburg and Phoenix weather. Each site here changes several of those at once:

* ``chicago-tower``: Chicago O'Hare weather, a cooling-tower plant (free cooling on the wet bulb), inference load,
  GB300 and H100 racks sharing every CDU, leakier silicon and a worse cold plate and CDU exchanger;
* ``phoenix-a100``: Phoenix weather, A100 racks (throttle at 85 °C) sharing CDUs with GB200, ASHRAE W27 (facility
  water capped at 27 °C), weaker free coolers and a less efficient chiller;
* ``leesburg-mixed``: Leesburg weather, a hall of B200 and GB200 on mixed training and inference load, a slower
  TCS loop, and a larger CRAH share;
* ``frankfurt-measured``: the generated GB200 site on MEASURED weather of a year no constant was tuned on (Open-Meteo
  ERA5 hourly, Frankfurt, ``--measured-year``, default 2023), Europe/Berlin.

Each site runs ``evaluate-control`` with all seven controllers on every ``--stride``-th day (default 14: 27 sampled
days, plus the commissioning days every controller runs and counts) under ``--scenario`` (default ``ai-steps``) and
``--telemetry`` (default ``field``), the same code path ``aidc run`` deploys. The table gives aidc's share of the
all-writable oracle's facility-energy saving against fixed, whether aidc uses less facility energy per unit of work
than every baseline, and the safety minutes. The last line is JSON with ``<site>_share``,
``<site>_beats_baselines``, ``<site>_violation_pct``, ``<site>_throttle_minutes`` and ``<site>_hard_minutes`` per
site.

``--controllers`` runs a subset (a first picture in a fraction of the time): ``fixed`` and ``oracle`` are added when
missing (the share needs both), and "beats every baseline" is then judged only over the baselines that ran, which
the table's line names.

    python bench/control_sites.py [--stride 14] [--scenario ai-steps] [--telemetry field]
        [--sites chicago-tower,phoenix-a100,leesburg-mixed,frankfurt-measured] [--controllers fixed,aidc,oracle]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aidc.config import Site, site_from_dict
from aidc.sitegen import SiteTemplate, render_site
from app.evaluation.evaluate import CONTROLLERS, default_jobs, evaluate_all, load_carbon, site_weather
from control.policy import site_limits

ROOT = Path(__file__).resolve().parent.parent
WEATHER = ROOT / "data" / "weather"
CARBON = ROOT / "data" / "carbon"
BASELINES = ("fixed", "best_fixed", "trim_respond", "bin_table", "expert")
MEASURED = WEATHER / "openmeteo_DE-LU_2020-2024_hourly.csv.gz"


def _mix(doc: dict[str, Any], models: list[tuple[str, int, float]], workloads: list[str] | None = None) -> None:
    """Alternate GPU models (and workloads) rack by rack, so every CDU serves more than one model."""
    for i, rack in enumerate(doc["halls"][0]["racks"]):
        model, gpus, kw = models[i % len(models)]
        rack.update(gpu_model=model, gpus=gpus, rated_kw=kw)
        if workloads:
            rack["workload"] = workloads[i % len(workloads)]


def make_site(name: str, data_dir: Path) -> tuple[Site, str, str]:
    """The site file's contents for ``name``, its weather file and its carbon series."""
    if name == "frankfurt-measured":
        weather = MEASURED
        doc = tomllib.loads(render_site(SiteTemplate(racks=32, climate=str(weather), data_dir=str(data_dir),
                                                     timezone="Europe/Berlin", latitude=50.03, longitude=8.57)))
        return site_from_dict(doc), str(weather), "380"  # no bundled German grid series: a constant, said so
    if name == "chicago-tower":
        weather = WEATHER / "USA_IL_Chicago.OHare.epw.gz"
        doc = tomllib.loads(render_site(SiteTemplate(racks=32, climate=str(weather), data_dir=str(data_dir),
                                                     timezone="America/Chicago", latitude=41.98, longitude=-87.9)))
        doc["plant"]["type"] = "chiller_tower"
        doc["simulation"]["workload"] = "inference"
        doc["simulation"]["physics"] = {"leak_beta_per_k": 0.03, "r_cp_ref_k_per_w": 0.021, "cdu_approach_k": 4.0,
                                        "tower_approach_k": 5.0, "fws_tau_s": 300.0}
        _mix(doc, [("GB300", 72, 150.0), ("H100", 32, 45.0)])
        carbon = CARBON / "MISO_hourly_2022.csv.gz"
    elif name == "phoenix-a100":
        weather = WEATHER / "USA_AZ_Phoenix-Sky.Harbor.epw.gz"
        doc = tomllib.loads(render_site(SiteTemplate(racks=32, climate=str(weather), data_dir=str(data_dir),
                                                     timezone="America/Phoenix", latitude=33.43, longitude=-112.0)))
        doc["site"]["ashrae_class"] = "W27"
        doc["simulation"]["physics"] = {"hr_fan_w_per_kw": 30.0, "drycooler_approach_k": 6.5,
                                        "chiller_eta_carnot": 0.42, "gpu_spread": 0.08}
        _mix(doc, [("A100", 32, 26.0), ("GB200", 72, 132.0)])
        carbon = CARBON / "AZPS_hourly_2022.csv.gz"
    elif name == "leesburg-mixed":
        weather = WEATHER / "USA_VA_Leesburg.Exec.epw.gz"
        doc = tomllib.loads(render_site(SiteTemplate(racks=32, climate=str(weather), data_dir=str(data_dir))))
        doc["plant"]["crah_share"] = 0.2
        doc["simulation"]["physics"] = {"cdu_tau_s": 150.0, "cdu_flow_lpm_per_kw": 1.3, "leak_ref_frac": 0.13}
        _mix(doc, [("B200", 64, 120.0), ("GB200", 72, 132.0)], ["training", "inference"])
        carbon = CARBON / "PJM_hourly_2022.csv.gz"
    else:
        raise SystemExit(f"unknown site {name!r}: chicago-tower, phoenix-a100, leesburg-mixed or frankfurt-measured")
    return site_from_dict(doc), str(weather), str(carbon)


def controller_list(text: str) -> list[str]:
    """The ``--controllers`` names in evaluation order, with ``fixed`` and ``oracle`` added (the share needs both)."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONTROLLERS]
    if unknown:
        raise SystemExit(f"--controllers: unknown {', '.join(unknown)} (one of {', '.join(CONTROLLERS)})")
    wanted = set(names) | {"fixed", "oracle"}
    return [n for n in CONTROLLERS if n in wanted]


def verdict(ctl: dict[str, dict[str, Any]]) -> tuple[bool, list[str]]:
    """Whether aidc uses less energy per unit of work than every baseline that ran, and those baselines."""
    ran = [b for b in BASELINES if b in ctl]
    return all(ctl["aidc"]["kwh_per_work"] < ctl[b]["kwh_per_work"] for b in ran), ran


def run_site(name: str, stride: int, jobs: int, scenario: str, telemetry: str, measured_year: int,
             controllers: list[str] | None = None) -> dict[str, Any]:
    """Evaluate the controllers (default all seven) on one site; print its table."""
    names = controllers or list(CONTROLLERS)
    with tempfile.TemporaryDirectory() as tmp:
        site, weather, carbon = make_site(name, Path(tmp))
        lim = site_limits(site)
        t0 = time.perf_counter()
        year = measured_year if name == "frankfurt-measured" else 2026
        res = evaluate_all(site, lim, site_weather(site, weather), names, days=365, stride=stride,
                           warmup_h=6.0, carbon=load_carbon(carbon), year=year, jobs=jobs, scenario=scenario,
                           telemetry=telemetry, seed=site.config.simulation.seed)
        spent = time.perf_counter() - t0
    ctl = res["controllers"]
    base = ctl["fixed"]["facility_kwh"]
    oracle_saving = base - ctl["oracle"]["facility_kwh"]
    print(f"{name}: {len(lim.cdu_names)} CDUs, every {stride}th day of {year} ({res['evaluated_minutes'] / 1440:.0f} "
          f"days counted with commissioning), {scenario}, {telemetry} telemetry, oracle {res.get('oracle_scope')}, "
          f"{spent:.0f} s")
    for cname, k in ctl.items():
        saving = base - k["facility_kwh"]
        share = saving / oracle_saving if oracle_saving > 0 else float("nan")
        print(f"  {cname:<13} facility {k['facility_kwh']:,.0f} kWh  saving {100 * saving / base:+6.3f} %  "
              f"share of oracle {share:6.3f}  "
              f"kWh/GPU·h {k['kwh_per_work']:.5f}  "
              f"violation {k['violation_minutes']:5.0f} min  at/over limit {k['at_limit_minutes']:.0f}  "
              f"throttle {k['throttle_minutes']:.0f}  FWS>class {k['above_class_minutes']:.0f}  "
              f"TCS<dew {k['below_dew_minutes']:.0f}")
    if "aidc" not in ctl:
        return {f"{name}_evaluate_s": round(spent, 1)}
    a = ctl["aidc"]
    # The supervisor's counters (holds, guard actions, feed-forwards at load steps, lock-outs), beside the KPIs.
    counters = {c: v for c, v in a.items() if c not in ctl["fixed"]}
    print("  aidc supervisor: " + ", ".join(f"{c} {v:g}" for c, v in counters.items()))
    share = (base - a["facility_kwh"]) / oracle_saving if oracle_saving > 0 else float("nan")
    beats, ran = verdict(ctl)
    over = "every baseline" if len(ran) == len(BASELINES) else f"every baseline that ran ({', '.join(ran)})"
    viol = 100 * a["violation_minutes"] / res["evaluated_minutes"]
    hard = a["throttle_minutes"] + a["at_limit_minutes"] + a["above_class_minutes"] + a["below_dew_minutes"]
    print(f"  aidc: {100 * share:.0f} % of the all-writable oracle's saving (goal ≥ 85 %), "
          f"{'beats' if beats else 'does NOT beat'} {over} on energy per unit of work, violation "
          f"{viol:.3f} % of the time (goal ≤ 0.1 %), throttle minutes {a['throttle_minutes']:.0f} (goal 0), "
          f"hard-limit minutes {hard:.0f}")
    return {f"{name}_share": round(share, 4), f"{name}_beats_baselines": beats,
            f"{name}_violation_pct": round(viol, 4), f"{name}_throttle_minutes": a["throttle_minutes"],
            f"{name}_hard_minutes": hard, f"{name}_baselines_compared": ran, f"{name}_evaluate_s": round(spent, 1)}


def main() -> None:
    """Run every named site and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stride", type=int, default=14)
    ap.add_argument("--sites", default="chicago-tower,phoenix-a100,leesburg-mixed,frankfurt-measured")
    ap.add_argument("--scenario", default="ai-steps")
    ap.add_argument("--telemetry", default="field", choices=("field", "exact"))
    ap.add_argument("--measured-year", type=int, default=2023,
                    help="year of the measured Frankfurt weather (2020-2024)")
    ap.add_argument("--jobs", type=int, default=0, help="worker processes (default: one per CPU)")
    ap.add_argument("--controllers", default=",".join(CONTROLLERS),
                    help="comma list (default all seven); fixed and oracle are always run")
    args = ap.parse_args()
    controllers = controller_list(args.controllers)
    out: dict[str, Any] = {}
    for name in [s.strip() for s in args.sites.split(",") if s.strip()]:
        out.update(run_site(name, args.stride, args.jobs or default_jobs(), args.scenario, args.telemetry,
                            args.measured_year, controllers))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
