"""Where each controller's energy goes (issue 22 diagnosis): setpoints and energy by load and outdoor bin.

Runs the named controllers as ``evaluate-control`` does (``--scenario``, ``--telemetry``, the commissioning days
counted) on the generated 32-rack site in ``--weather``, or with ``--site`` on one of ``bench/control_sites.py``'s
unseen sites (its own weather, carbon and year). Every counted facility step goes to a bin: commissioning or
evaluated day, idle (hall utilisation below 50 %) or full, outdoor dry-bulb bin. Per controller and bin: the
time-weighted TCS, dp, FWS and CRAH chilled-water setpoints, the smallest GPU headroom (K below limit − margin), and
the facility energy split into IT, chiller, CDU pumps, heat-rejection fans, FWS pump, CRAH fans and the rest (UPS,
transformer, lighting). With ``oracle`` among the controllers, each other controller's energy against the oracle bin
by bin and part: where the gap is. Every step above limit − margin or throttled is kept, joined into episodes (when,
which racks, the hall's load and the setpoints). ``oracle_causal`` is the all-writable oracle without load foresight:
every candidate must hold at full load at every decision, as a controller that knows the hall can step (but not
when) must; it bounds what a causal controller can reach.

    python bench/control_breakdown.py --weather data/weather/USA_AZ_Phoenix-Sky.Harbor.epw.gz --stride 182 \\
        --controllers fixed,expert,bin_table,aidc,oracle,oracle_causal
    python bench/control_breakdown.py --site phoenix-a100 --stride 91 --controllers fixed,aidc,oracle
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aidc.config import site_from_dict
from aidc.sitegen import SiteTemplate, render_site
from app.commands.evaluate_control import default_carbon
from app.evaluation.commissioning import commission_bin_table
from app.evaluation.evaluate import (
    EvalSetup,
    Kpis,
    OracleController,
    SupervisedRun,
    load_carbon,
    site_weather,
)
from app.evaluation.harness import Minute, run_day
from app.evaluation.oracle import _objective, _rows, whatif_ok
from control.baselines import BinTableController, ExpertController, FixedController
from control.policy import site_limits
from control.types import Controller
from simulators.facility import Facility
from simulators.interface import Setpoints as SimSetpoints
from simulators.scenarios import scenario_workload

BINS = ((-50.0, 10.0), (10.0, 20.0), (20.0, 30.0), (30.0, 60.0))
FULL_AHEAD = 0.975  # the scenario's full load (0.95) with its per-rack gain and jitter at their highest


class _FullAhead:
    """A utilisation source at least at full load after ``now`` (the causal oracle's feasibility test)."""

    def __init__(self, real: Any, now_ns: int) -> None:
        self.real, self.now_ns = real, now_ns

    def rack_util(self, t_ns: int) -> np.ndarray:
        u = np.asarray(self.real.rack_util(t_ns))
        return u if t_ns <= self.now_ns else np.maximum(u, FULL_AHEAD)


class CausalOracle(OracleController):
    """The all-writable oracle whose candidates must hold at full load now (no load foresight)."""

    def _score(self, cands: SimSetpoints, dew: float, headroom_k: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        fac = self.fac
        assert fac is not None
        assert self.rack_lim is not None
        real = fac.workload
        fac.workload = _FullAhead(real, fac.t_ns)
        fac._peak_env = None
        try:
            peak = fac.what_if(cands, peak_s=60.0)
        finally:
            fac.workload = real
            fac._peak_env = None
        ok = whatif_ok(peak, self.rack_lim, self.lim, dew, headroom_k)
        cost, power = np.full(cands.n, np.inf), np.full(cands.n, np.nan)
        idx = np.flatnonzero(ok)
        if len(idx):
            w = fac.what_if(_rows(cands, idx))
            cost[idx], power[idx] = _objective(w), w.facility_power_w
        return cost, (peak.gpu_temp_max_c - self.rack_lim).max(axis=1), power


PARTS = ("it", "chiller", "pumps", "fans", "fws_pump", "crah_fan", "rest")  # facility energy, by where it goes
MEANS = ("util", "drybulb", "tcs", "dp", "fws", "chw", "tcs_out", "fws_out", "gpu_room")


def _key(phase: str, util: float, drybulb: float) -> str:
    """The bin of one facility step: commissioning or evaluated day, idle or full hall, outdoor dry-bulb bin."""
    lo, hi = next(((lo, hi) for lo, hi in BINS if lo <= drybulb < hi), BINS[-1])
    return f"{phase} {'idle' if util < 0.5 else 'full'} {lo:g}-{hi:g} C"


class Recorder(Kpis):
    """Kpis that also bin every counted facility step: energy by part, time-weighted setpoints and conditions, and
    every minute above limit − margin or throttled (which racks, what the hall and the setpoints were doing)."""

    def __init__(self, setup: EvalSetup) -> None:
        super().__init__()
        self.setup = setup
        self.fac: Facility | None = None
        self.rack_lim = np.zeros(0)
        self.comm_end_ns = setup.day_starts()[0] - int(setup.warmup_h * 3.6e12)
        self.bins: dict[str, dict[str, float]] = {}
        self.events: list[dict[str, Any]] = []
        self.mode: Callable[[], str] | None = None  # aidc: what its core is doing (commissioning, rule, model...)
        self.modes: dict[str, float] = {}

    def bind(self, fac: Facility) -> None:
        """Record this facility's steps from now on."""
        if self.fac is not fac:
            self.fac, self.rack_lim = fac, self.setup.rack_limits(fac)

    def count(self, m: Minute) -> None:
        """Add one facility step to the KPIs and to its bin."""
        super().count(m)
        f = self.fac
        assert f is not None
        util = float(np.mean(f.rack_util))
        hot = np.maximum.reduceat(f.gpu_temp_c, f.rack_offsets)
        room = self.rack_lim - self.setup.limits.cfg.gpu_margin_k - hot
        h = m.minutes / 60.0
        kw = {"it": f.it_power_w, "chiller": f.chiller_w, "pumps": float(f.cdu_pump_w.sum()), "fans": f.hr_fan_w,
              "fws_pump": f.fws_pump_w, "crah_fan": f.crah_fan_w}
        kw["rest"] = f.facility_power_w - sum(kw.values())
        means = {"util": util, "drybulb": f.drybulb_c, "tcs": float(f.tcs_sp.mean()), "dp": float(f.dp_sp.mean()),
                 "fws": float(f.fws_sp), "chw": float(f.chw_sp), "tcs_out": float(f.tcs_supply_c.mean()),
                 "fws_out": float(f.fws_supply_c), "gpu_room": float(room.min())}
        phase = "comm" if f.t_ns <= self.comm_end_ns else "eval"
        if self.mode is not None:
            mk = f"{phase} {'idle' if util < 0.5 else 'full'} {self.mode()}"
            self.modes[mk] = self.modes.get(mk, 0.0) + m.minutes
        b = self.bins.setdefault(_key(phase, util, f.drybulb_c),
                                 dict.fromkeys(("minutes", "facility_kwh", *PARTS, *MEANS), 0.0))
        b["minutes"] += m.minutes
        b["facility_kwh"] += m.facility_kwh
        for part, w in kw.items():
            b[part] += w * h / 1e3
        for c, v in means.items():
            b[c] += v * m.minutes
        if m.worst_k > 0 or m.throttled:
            over = [f.rack_names[i] for i in np.flatnonzero(room < 0)]
            self.events.append({"t": str(pd.Timestamp(f.t_ns, tz="UTC")), "util": round(util, 3),
                                "worst_k": round(m.worst_k, 2), "throttled": m.throttled, "racks": over,
                                "step_min": m.minutes,
                                "tcs": round(float(f.tcs_sp.mean()), 2), "dp": round(float(f.dp_sp.mean()), 1),
                                "fws": round(float(f.fws_sp), 2), "tcs_out": round(float(f.tcs_supply_c.max()), 2)})

    def table(self) -> dict[str, dict[str, float]]:
        """Each bin's energies (kWh) and its time-weighted means."""
        out = {}
        for key in sorted(self.bins):
            b = self.bins[key]
            row = {c: round(b[c], 1) for c in ("minutes", "facility_kwh", *PARTS)}
            row.update({c: round(b[c] / b["minutes"], 2) for c in MEANS})
            out[key] = row
        return out


def _mode(d: Any) -> str:
    """The aidc core's last decision in a word: its state, and whether the rule prior or the model chose."""
    if d is None:
        return "none"
    if d.state != "deciding":
        return str(d.state)
    return "rule" if any("rule prior" in b for b in d.binding) else "model"


def run(setup: EvalSetup, name: str) -> Recorder:
    """One controller's KPIs, binned."""
    rec = Recorder(setup)
    lim, plant = setup.limits, setup.site.config.plant.type
    if name == "aidc":
        sup = SupervisedRun(setup)
        rec.mode = lambda: _mode(sup.core.last)
        try:
            for start, days, warm in setup.spans():
                sup.run_day(start, rec, warmup_h=warm, days=days, hook=rec.bind)
        finally:
            sup.close()
        return rec
    bind: Callable[[Facility], None] = rec.bind
    ctl: Controller
    if name in ("oracle", "oracle_causal"):
        o = (CausalOracle if name == "oracle_causal" else OracleController)(setup)

        def bind(f: Facility) -> None:
            o.bind(f)
            rec.bind(f)

        ctl = o
    elif name == "expert":
        ctl = ExpertController(lim, plant)
    elif name == "bin_table":
        ctl = BinTableController(lim, commission_bin_table(setup))
    elif name == "fixed":
        ctl = FixedController(lim)
    else:
        raise SystemExit(f"--controllers: {name!r} is not one of fixed, expert, bin_table, aidc, oracle, oracle_causal")
    for start, days, warm in setup.spans():
        run_day(setup, ctl, start, rec, bind, warmup_h=warm, days=days)
    return rec


def episodes(events: list[dict[str, Any]], step_s: float) -> list[dict[str, Any]]:
    """Minutes above limit − margin or throttled, joined into episodes (no more than a step apart)."""
    out: list[dict[str, Any]] = []
    for e in events:
        t = pd.Timestamp(e["t"])
        last = out[-1] if out else None
        if last is not None and (t - pd.Timestamp(last["end"])).total_seconds() <= step_s + 1:
            last["end"], last["minutes"] = e["t"], last["minutes"] + e["step_min"]
            last["worst_k"] = max(last["worst_k"], e["worst_k"])
            last["throttled"] = last["throttled"] or e["throttled"]
            last["racks"] = sorted(set(last["racks"]) | set(e["racks"]))
        else:
            out.append({**e, "start": e["t"], "end": e["t"], "minutes": e["step_min"]})
    return out


def load_setup(args: argparse.Namespace, tmp: Path) -> EvalSetup:
    """The evaluation's setup: the generated site in ``--weather``, or one of bench/control_sites.py's sites."""
    if args.site == "generated":
        site = site_from_dict(tomllib.loads(render_site(SiteTemplate(racks=32, base_port=30000, data_dir=str(tmp)))))
        weather, carbon, year = args.weather, default_carbon(args.weather), 2026
    else:
        from bench.control_sites import make_site

        site, weather, carbon = make_site(args.site, tmp)
        year = args.measured_year if args.site == "frankfurt-measured" else 2026
    lim, seed = site_limits(site), site.config.simulation.seed
    return EvalSetup(site, lim, site_weather(site, weather), year, 365, args.stride, 0, 6.0, 60.0, load_carbon(carbon),
                     telemetry=args.telemetry, workload=scenario_workload(args.scenario, site, seed=seed), seed=seed)


def gap(recs: dict[str, Recorder], ref: str) -> None:
    """Each controller's facility energy against ``ref`` bin by bin, by part (kWh; positive: more than ``ref``)."""
    base = recs[ref].table()
    for name, rec in recs.items():
        if name == ref:
            continue
        tab = rec.table()
        total = sum(tab[k]["facility_kwh"] - base[k]["facility_kwh"] for k in tab if k in base)
        print(f"{name} − {ref}: {total:+.0f} kWh facility over the binned steps")
        for key in sorted(set(tab) & set(base)):
            d = {c: tab[key][c] - base[key][c] for c in ("facility_kwh", *PARTS)}
            parts = " ".join(f"{c} {d[c]:+.0f}" for c in PARTS)
            print(f"  {key:<22} {tab[key]['minutes']:6.0f} min  facility {d['facility_kwh']:+7.0f} kWh "
                  f"({100 * d['facility_kwh'] / total if total else 0:+5.0f} % of the gap) | {parts} | "
                  f"TCS {tab[key]['tcs']:.1f}/{base[key]['tcs']:.1f} dp {tab[key]['dp']:.0f}/{base[key]['dp']:.0f} "
                  f"FWS {tab[key]['fws']:.1f}/{base[key]['fws']:.1f} CHW {tab[key]['chw']:.1f}/{base[key]['chw']:.1f}"
                  f" GPU room {tab[key]['gpu_room']:.1f}/{base[key]['gpu_room']:.1f} K", flush=True)


def main() -> None:
    """Run the controllers and print the breakdown; the last line is JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--site", default="generated",
                    help="generated (the 32-rack site of aidc init in --weather) or a bench/control_sites.py site")
    ap.add_argument("--weather", default="data/weather/USA_AZ_Phoenix-Sky.Harbor.epw.gz")
    ap.add_argument("--measured-year", type=int, default=2023, help="frankfurt-measured's weather year")
    ap.add_argument("--stride", type=int, default=182)
    ap.add_argument("--scenario", default="ai-steps")
    ap.add_argument("--telemetry", default="field", choices=("field", "exact"))
    ap.add_argument("--controllers", default="fixed,expert,bin_table,aidc,oracle,oracle_causal")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        setup = load_setup(args, Path(tmp))
        out: dict[str, Any] = {}
        recs: dict[str, Recorder] = {}
        for name in args.controllers.split(","):
            t0 = time.perf_counter()
            rec = recs[name] = run(setup, name)
            eps = episodes(rec.events, setup.step_s)
            out[name] = {"facility_kwh": round(rec.facility_kwh, 1), "kwh_per_work": rec.as_dict()["kwh_per_work"],
                         "throttle_minutes": rec.throttle_minutes, "violation_minutes": rec.violation_minutes,
                         "bins": rec.table(), "episodes": eps, "run_s": round(time.perf_counter() - t0, 1)}
            print(f"{name}: facility {rec.facility_kwh:.0f} kWh, kWh per GPU·h {out[name]['kwh_per_work']}, "
                  f"{rec.throttle_minutes:.0f} throttle min, {rec.violation_minutes:.0f} min above limit − margin, "
                  f"{out[name]['run_s']:.0f} s", flush=True)
            for key, row in rec.table().items():
                print(f"  {key:<22} ({row['minutes']:.0f} min): TCS {row['tcs']:.1f} dp {row['dp']:.0f} FWS "
                      f"{row['fws']:.1f} CHW {row['chw']:.1f} | GPU room {row['gpu_room']:.1f} K | facility "
                      f"{row['facility_kwh']:.0f} kWh: " + " ".join(f"{c} {row[c]:.0f}" for c in PARTS), flush=True)
            if rec.modes:
                print("  aidc core: " + ", ".join(f"{k} {v:.0f} min" for k, v in sorted(rec.modes.items())))
                out[name]["modes"] = {k: round(v) for k, v in sorted(rec.modes.items())}
            for e in eps[:20]:
                print(f"  episode {e['start']} .. {e['end']} ({e['minutes']:.1f} min): worst {e['worst_k']} K, "
                      f"hall util {e['util']}, throttled {e['throttled']}, racks {','.join(e['racks'])}, TCS "
                      f"{e['tcs']} dp {e['dp']} FWS {e['fws']}", flush=True)
        if "oracle" in recs:
            gap(recs, "oracle")
        print(json.dumps(out))


if __name__ == "__main__":
    main()
