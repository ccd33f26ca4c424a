"""How much a setpoint optimiser could save: the oracle, the best fixed setpoints and a dry-bulb-bin table.

For Leesburg VA and Phoenix AZ (EnergyPlus typical years, ``data/weather/*.epw.gz``) on the 32-rack site of
``aidc init`` (GB200 racks, dry-cooler plant, W32, training load), over a sampled year (every 3rd day, every 2nd
hour, UTC), the plant is settled at each sample and evaluated at steady state through the what-if interface
(:class:`simulators.interface.WhatIfPlant`):

* fixed defaults: the profiles' safe setpoints (TCS 30 °C, dp 120 kPa, FWS 24 °C, CRAH chilled water 14 °C);
* oracle: per sample, the candidate of least facility power that keeps the hottest GPU ≤ its throttle limit
  − 3 K, no GPU throttling, every TCS supply ≥ hall dew point + margin, FWS supply ≤ the W-class limit and
  every dp setpoint reached. Candidates: FWS supply × TCS supply − FWS supply × CDU dp (one TCS and dp for all
  CDUs), then the chilled-water setpoint searched at the chosen liquid-side point, then a finer local search;
* best fixed: the one candidate of the liquid grid (and one chilled-water setpoint) with least annual facility
  energy among those feasible at every sample;
* bin table: per 2 K dry-bulb bin, the candidate with least energy feasible at every sample in the bin, fitted on
  the samples it is scored on (``bin_table_share``, an upper bound on what such a table gives) and, as a check,
  fitted on alternate sampled days and scored on the others (``bin_table_holdout_share``).

Savings are in % of annual facility (and cooling) energy at the fixed defaults; the bin-table share is its
facility saving over the oracle's. Per dry-bulb band it prints which constraint binds at the oracle's choice.
The last line is JSON.

    python bench/headroom.py [--racks 32] [--day-step 3] [--hour-step 2] [--sites leesburg,phoenix]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aidc.clock import parse_time
from aidc.config import site_from_dict
from aidc.sitegen import SiteTemplate, render_site
from simulators.facility import Facility
from simulators.interface import Arr, Setpoints, WhatIf
from simulators.state import BoolArr

WEATHER = Path(__file__).resolve().parent.parent / "data" / "weather"
SITES = {"leesburg": WEATHER / "USA_VA_Leesburg.Exec.epw.gz", "phoenix": WEATHER / "USA_AZ_Phoenix-Sky.Harbor.epw.gz"}
GPU_MARGIN_K = 3.0
FWS_GRID = np.arange(12.0, 33.0, 2.0)  # the plant profile allows 12-40 °C; W32 caps it at 32
TCS_OFFSET_GRID = np.array([2.5, 4.5, 7.5])  # TCS supply setpoint − FWS supply setpoint (K)
DP_GRID = np.array([80.0, 125.0, 180.0])
CHW_GRID = np.arange(7.0, 20.5, 1.0)
BIN_K = 2.0


@dataclass
class Sample:
    """One sampled instant: the weather, the defaults and the policies' choices evaluated exactly."""

    t_ns: int
    drybulb_c: float
    default: WhatIf
    power: Arr  # facility power of each liquid-grid candidate at chilled water 14 °C
    ok: BoolArr  # its feasibility
    chw_delta: Arr  # facility power at each CHW_GRID value − at 14 °C, liquid side at the defaults
    chw_ok: BoolArr


def liquid_grid(base: Setpoints) -> Setpoints:
    """FWS × (TCS − FWS) × dp candidates, the same TCS and dp for every CDU, bounded to the profiles' ranges."""
    f, o, d = (a.ravel() for a in np.meshgrid(FWS_GRID, TCS_OFFSET_GRID, DP_GRID, indexing="ij"))
    return Setpoints.grid(base, fws_supply_c=f, tcs_supply_c=np.clip(f + o, 18.0, 45.0), dp_kpa=d)


def evaluate_site(name: str, racks: int, day_step: int, hour_step: int) -> dict[str, float]:
    """Sample the year for one site and score the defaults, the oracle, the best fixed and the bin table."""
    text = render_site(SiteTemplate(racks=racks, climate=str(SITES[name]), start="2026-01-01T00:00:00Z"))
    fac = Facility(site_from_dict(tomllib.loads(text)))
    base = fac.setpoints()
    grid = liquid_grid(base)
    chw = Setpoints.grid(base, chw_supply_c=CHW_GRID)
    i14 = int(np.argmin(abs(CHW_GRID - base.chw_supply_c[0])))
    year0 = parse_time("2026-01-01T00:00:00Z")
    samples: list[Sample] = []
    t0 = time.perf_counter()
    for day in range(0, 365, day_step):
        for hour in range(0, 24, hour_step):
            t = year0 + (day * 24 + hour) * 3_600_000_000_000
            fac.settle_at(t)
            d = fac.what_if(base)
            lw = fac.what_if(grid)
            cw = fac.what_if(chw)
            delta = cw.facility_power_w - cw.facility_power_w[i14]
            feasible = lw.feasible(GPU_MARGIN_K)
            samples.append(Sample(t, fac.drybulb_c, d, lw.facility_power_w, feasible, delta, cw.feasible(GPU_MARGIN_K)))
    search_s = time.perf_counter() - t0
    n = len(samples)
    hours_per_sample = 8760.0 / n
    power = np.stack([s.power for s in samples])  # (samples, candidates)
    ok = np.stack([s.ok for s in samples])
    chw_delta = np.stack([s.chw_delta for s in samples])
    chw_ok = np.stack([s.chw_ok for s in samples])
    db = np.array([s.drybulb_c for s in samples])

    def choose_chw(rows: np.ndarray) -> int:
        """The chilled-water setpoint with least energy over the rows, feasible at all of them."""
        cost = np.where(chw_ok[rows].all(axis=0), chw_delta[rows].sum(axis=0), np.inf)
        return int(np.argmin(cost))

    def choose_liquid(rows: np.ndarray) -> int:
        cost = np.where(ok[rows].all(axis=0), power[rows].sum(axis=0), np.inf)
        if not np.isfinite(cost).any():  # nothing on the grid is feasible everywhere: least infeasible
            cost = power[rows].sum(axis=0) + 1e12 * (~ok[rows]).sum(axis=0)
        return int(np.argmin(cost))

    # Oracle: per sample, liquid side then chilled water, then a local refinement around the choice.
    oracle_sp: list[Setpoints] = []
    for k, s in enumerate(samples):
        c = choose_liquid(np.array([k]))
        h = choose_chw(np.array([k]))
        oracle_sp.append(refine(fac, s.t_ns, grid.take(c, c + 1), CHW_GRID[h]))
    # Best fixed and the bin table.
    every = np.arange(n)
    fixed_c, fixed_h = choose_liquid(every), choose_chw(every)
    bins = np.floor(db / BIN_K).astype(int)
    table: dict[int, tuple[int, int]] = {}
    for b in np.unique(bins):
        in_bin = np.flatnonzero(bins == b)
        table[int(b)] = (choose_liquid(in_bin), choose_chw(in_bin))
    # The same table fitted on alternate sampled days only and scored on the others (out of sample); a bin the
    # fitting days never saw falls back to their best fixed setpoints.
    day_no = np.array([(s.t_ns - year0) // 86_400_000_000_000 // day_step for s in samples])
    fit_rows, test_rows = np.flatnonzero(day_no % 2 == 0), np.flatnonzero(day_no % 2 == 1)
    fallback = (choose_liquid(fit_rows), choose_chw(fit_rows))
    holdout: dict[int, tuple[int, int]] = {}
    for b in np.unique(bins[fit_rows]):
        in_bin = fit_rows[bins[fit_rows] == b]
        holdout[int(b)] = (choose_liquid(in_bin), choose_chw(in_bin))

    def with_chw(c: int, h: int) -> Setpoints:
        one = grid.take(c, c + 1)
        return Setpoints(one.tcs_supply_c, one.dp_kpa, one.fws_supply_c, np.array([CHW_GRID[h]]))

    # Score every policy exactly (one what-if per sample at its chosen setpoints).
    scored: dict[str, list[WhatIf]] = {"default": [], "oracle": [], "fixed": [], "table": []}
    holdout_w: dict[int, WhatIf] = {}
    test_set = set(test_rows.tolist())
    for k, s in enumerate(samples):
        fac.settle_at(s.t_ns)
        scored["default"].append(s.default)
        scored["oracle"].append(fac.what_if(oracle_sp[k]))
        scored["fixed"].append(fac.what_if(with_chw(fixed_c, fixed_h)))
        scored["table"].append(fac.what_if(with_chw(*table[int(bins[k])])))
        if k in test_set:
            holdout_w[k] = fac.what_if(with_chw(*holdout.get(int(bins[k]), fallback)))

    def on_test(ws: list[WhatIf] | dict[int, WhatIf]) -> float:
        return float(sum(float(ws[int(k)].facility_power_w[0]) for k in test_rows))

    base_test, oracle_test = on_test(scored["default"]), on_test(scored["oracle"])
    energy = {
        p: {
            "facility": sum(float(w.facility_power_w[0]) for w in ws) * hours_per_sample / 1e6,
            "cooling": sum(float(w.cooling_power_w[0]) for w in ws) * hours_per_sample / 1e6,
            "it": sum(float(w.it_power_w[0]) for w in ws) * hours_per_sample / 1e6,
            "infeasible_h": sum(not bool(w.feasible(GPU_MARGIN_K)[0]) for w in ws) * hours_per_sample,
        }
        for p, ws in scored.items()
    }
    base_e = energy["default"]

    def saving(policy: str, part: str) -> float:
        return 100.0 * (base_e[part] - energy[policy][part]) / base_e[part]

    fixed = with_chw(fixed_c, fixed_h)
    out = {
        "samples": float(n),
        "day_step": float(day_step),
        "hour_step": float(hour_step),
        "search_s": search_s,
        "default_facility_mwh": base_e["facility"],
        "default_cooling_mwh": base_e["cooling"],
        "default_it_mwh": base_e["it"],
        "default_pue": base_e["facility"] / base_e["it"],
        "oracle_facility_pct": saving("oracle", "facility"),
        "oracle_cooling_pct": saving("oracle", "cooling"),
        "best_fixed_pct": saving("fixed", "facility"),
        "best_fixed_cooling_pct": saving("fixed", "cooling"),
        "bin_table_pct": saving("table", "facility"),
        "fixed_fws_c": float(fixed.fws_supply_c[0]),
        "fixed_tcs_c": float(fixed.tcs_supply_c[0, 0]),
        "fixed_dp_kpa": float(fixed.dp_kpa[0, 0]),
        "fixed_chw_c": float(fixed.chw_supply_c[0]),
        "oracle_infeasible_h": energy["oracle"]["infeasible_h"],
        "default_infeasible_h": energy["default"]["infeasible_h"],
    }
    out["bin_table_share"] = out["bin_table_pct"] / out["oracle_facility_pct"] if out["oracle_facility_pct"] else 0.0
    out["bin_table_holdout_share"] = (
        (base_test - on_test(holdout_w)) / (base_test - oracle_test) if base_test > oracle_test else 0.0
    )
    print_site(name, out, samples, oracle_sp, scored["oracle"], fac)
    return out


def refine(fac: Facility, t_ns: int, liquid: Setpoints, chw_c: float) -> Setpoints:
    """A finer search around a grid choice: FWS ±1 K, TCS ±1 K, dp ±20 kPa, CHW ±0.5 K (81 candidates)."""
    fac.settle_at(t_ns)
    f0, t0, d0 = float(liquid.fws_supply_c[0]), float(liquid.tcs_supply_c[0, 0]), float(liquid.dp_kpa[0, 0])
    f, t, d, c = (
        a.ravel()
        for a in np.meshgrid(
            np.clip(f0 + np.array([-1.0, 0.0, 1.0]), 12.0, 40.0),
            np.clip(t0 + np.array([-1.0, 0.0, 1.0]), 18.0, 45.0),
            np.clip(d0 + np.array([-20.0, 0.0, 20.0]), 40.0, 250.0),
            np.clip(chw_c + np.array([-0.5, 0.0, 0.5]), 7.0, 20.0),
            indexing="ij",
        )
    )
    cand = Setpoints.grid(fac.setpoints(), fws_supply_c=f, tcs_supply_c=t, dp_kpa=d, chw_supply_c=c)
    w = fac.what_if(cand)
    ok = w.feasible(GPU_MARGIN_K)
    start = int(np.flatnonzero((f == f0) & (t == t0) & (d == d0) & (c == chw_c))[0])
    cost = np.where(ok, w.facility_power_w, np.inf)
    k = int(np.argmin(cost)) if np.isfinite(cost).any() else start
    return cand.take(k, k + 1)


def binding(w: WhatIf, sp: Setpoints, fac: Facility) -> str:
    """Which limit the oracle's choice sits on (within a small tolerance), or 'interior'."""
    if (w.gpu_temp_max_c[0] >= w.gpu_limit_c - GPU_MARGIN_K - 0.5).any():
        return "gpu"
    if w.fws_supply_c[0] >= fac.fws_class_limit_c - 0.51:
        return "w-class"
    if (w.dewpoint_margin_k[0] <= fac.params.dewpoint_margin_k + 0.51).any():
        return "dew point"
    if sp.fws_supply_c[0] <= FWS_GRID[0] + 0.01 or (sp.tcs_supply_c[0] <= 18.01).any():
        return "setpoint floor"
    return "interior"


def print_site(
    name: str, r: dict[str, float], samples: list[Sample], sps: list[Setpoints], ws: list[WhatIf], fac: Facility
) -> None:
    """The site's figures and the per-band summary of the oracle's choices."""
    print(
        f"\n== {name}: {int(r['samples'])} samples (every {int(r['day_step'])}. day, every "
        f"{int(r['hour_step'])}. hour), search {r['search_s']:.0f} s"
    )
    print(
        f"fixed defaults: facility {r['default_facility_mwh']:.0f} MWh, cooling {r['default_cooling_mwh']:.0f} MWh, "
        f"IT {r['default_it_mwh']:.0f} MWh a year (PUE {r['default_pue']:.3f}); "
        f"infeasible {r['default_infeasible_h']:.0f} h"
    )
    print(
        f"oracle:      facility −{r['oracle_facility_pct']:.2f} %, cooling −{r['oracle_cooling_pct']:.1f} % "
        f"(infeasible {r['oracle_infeasible_h']:.0f} h)"
    )
    print(
        f"best fixed:  facility −{r['best_fixed_pct']:.2f} %, cooling −{r['best_fixed_cooling_pct']:.1f} % at FWS "
        f"{r['fixed_fws_c']:.0f} °C, TCS {r['fixed_tcs_c']:.0f} °C, dp {r['fixed_dp_kpa']:.0f} kPa, CHW "
        f"{r['fixed_chw_c']:.0f} °C"
    )
    print(
        f"bin table:   facility −{r['bin_table_pct']:.2f} %, {100 * r['bin_table_share']:.0f} % of the oracle's saving "
        f"fitted on all samples; {100 * r['bin_table_holdout_share']:.0f} % fitted on alternate days, scored on the "
        "others"
    )
    bands = [(-99.0, 10.0), (10.0, 20.0), (20.0, 27.0), (27.0, 99.0)]
    print("dry bulb band   share   FWS    TCS    dp     CHW   binding (share of samples)")
    db = np.array([s.drybulb_c for s in samples])
    for lo, hi in bands:
        idx = np.flatnonzero((db >= lo) & (db < hi))
        if not len(idx):
            continue
        kinds: dict[str, int] = {}
        for i in idx:
            k = binding(ws[i], sps[i], fac)
            kinds[k] = kinds.get(k, 0) + 1
        fws, tcs, dp, chw = (
            float(np.mean([a[i] for i in idx]))
            for a in (
                [s.fws_supply_c[0] for s in sps],
                [s.tcs_supply_c[0, 0] for s in sps],
                [s.dp_kpa[0, 0] for s in sps],
                [s.chw_supply_c[0] for s in sps],
            )
        )
        label = f"< {hi:.0f} °C" if lo <= -99 else (f">= {lo:.0f} °C" if hi >= 99 else f"{lo:.0f}..{hi:.0f} °C")
        ranked = sorted(kinds.items(), key=lambda kv: -kv[1])
        summary = ", ".join(f"{k} {100 * v / len(idx):.0f} %" for k, v in ranked)
        print(
            f"{label:<14} {100 * len(idx) / len(db):5.0f} %  {fws:5.1f}  {tcs:5.1f}  {dp:5.0f}  {chw:5.1f}  {summary}"
        )


def whatif_speed(racks: int) -> dict[str, float]:
    """CPU µs per candidate of the what-if interface (256 candidates, steady state and one 300 s step)."""
    text = render_site(SiteTemplate(racks=racks, climate=str(SITES["leesburg"]), start="2026-07-01T12:00:00Z"))
    fac = Facility(site_from_dict(tomllib.loads(text)))
    sp = Setpoints.grid(
        fac.setpoints(), fws_supply_c=np.linspace(18.0, 32.0, 256), tcs_supply_c=np.linspace(24, 38, 256)
    )
    out = {}
    for key, dt in (("whatif_steady_us", None), ("whatif_step_us", 300.0)):
        fac.what_if(sp, dt_s=dt)
        t0 = time.process_time()
        for _ in range(3):
            fac.what_if(sp, dt_s=dt)
        out[key] = (time.process_time() - t0) / 3 / sp.n * 1e6
    print(
        f"what-if on {racks} racks: {out['whatif_steady_us']:.0f} µs CPU per candidate at steady state, "
        f"{out['whatif_step_us']:.0f} µs for one step (goal ≤ 100)"
    )
    return out


def main() -> None:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--racks", type=int, default=32)
    ap.add_argument("--day-step", type=int, default=3)
    ap.add_argument("--hour-step", type=int, default=2)
    ap.add_argument("--sites", default="leesburg,phoenix")
    args = ap.parse_args()
    t0 = time.perf_counter()
    speed = whatif_speed(args.racks)
    results = {s: evaluate_site(s, args.racks, args.day_step, args.hour_step) for s in args.sites.split(",")}
    print(f"\nwall time {time.perf_counter() - t0:.0f} s (goal ≤ 900 s)")
    out: dict[str, float] = {}
    for s, r in results.items():
        out[f"{s}_oracle_facility_pct"] = round(r["oracle_facility_pct"], 3)
        out[f"{s}_best_fixed_pct"] = round(r["best_fixed_pct"], 3)
        out[f"{s}_bin_table_share"] = round(r["bin_table_share"], 3)
    for s, r in results.items():
        out[f"{s}_oracle_cooling_pct"] = round(r["oracle_cooling_pct"], 2)
        out[f"{s}_bin_table_holdout_share"] = round(r["bin_table_holdout_share"], 3)
        out[f"{s}_default_pue"] = round(r["default_pue"], 4)
    out |= {k: round(v, 1) for k, v in speed.items()}
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
