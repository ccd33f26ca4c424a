"""Where each controller's energy goes (issue 22 diagnosis): setpoints and cooling power by load and outdoor bin.

Runs the named controllers as ``evaluate-control`` does (the generated 32-rack site, ``--scenario``,
``--telemetry``, the commissioning days counted) and samples the facility every decision interval: per controller,
per half (idle: hall utilisation below 50 %, full) and per outdoor dry-bulb bin, the mean TCS, dp and FWS
setpoints, the hottest GPU and the chiller, CDU pump, heat-rejection fan and non-IT power. ``oracle_causal`` is
the all-writable oracle without load foresight: every candidate must hold at full load at every decision, as a
controller that knows the hall can step (but not when) must; it bounds what a causal controller can reach.

    python bench/control_breakdown.py --weather data/weather/USA_AZ_Phoenix-Sky.Harbor.epw.gz --stride 182 \\
        --controllers fixed,expert,bin_table,aidc,oracle,oracle_causal
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

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
    evaluate,
    load_carbon,
    site_weather,
)
from app.evaluation.oracle import _objective, _rows, whatif_ok
from control.baselines import BinTableController, ExpertController, FixedController
from control.policy import site_limits
from control.types import Controller, Decision, Snapshot
from simulators.facility import Facility
from simulators.interface import Setpoints as SimSetpoints
from simulators.scenarios import scenario_workload

BINS = ((-50.0, 10.0), (10.0, 20.0), (20.0, 30.0), (30.0, 60.0))
COLS = ("util", "drybulb", "tcs", "dp", "fws", "gpu", "chiller_kw", "pump_kw", "fan_kw", "nonit_kw", "facility_kw")
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


class _Sampler:
    """Samples the bound facility every ``every_ns``."""

    def __init__(self, every_ns: int) -> None:
        self.every_ns = every_ns
        self.fac: Facility | None = None
        self.next_ns = 0
        self.rows: list[tuple[float, ...]] = []

    def bind(self, fac: Facility) -> None:
        """Sample this facility from now on."""
        self.fac, self.next_ns = fac, fac.t_ns

    def sample(self) -> None:
        """One row if due."""
        f = self.fac
        if f is None or f.t_ns < self.next_ns:
            return
        self.next_ns = f.t_ns + self.every_ns
        self.rows.append(
            (
                float(np.mean(f.workload.rack_util(f.t_ns))),
                float(f.drybulb_c),
                float(f.tcs_sp.mean()),
                float(f.dp_sp.mean()),
                float(f.fws_sp),
                float(f.gpu_temp_c.max()),
                f.chiller_w / 1e3,
                float(f.cdu_pump_w.sum()) / 1e3,
                f.hr_fan_w / 1e3,
                (f.facility_power_w - f.it_power_w) / 1e3,
                f.facility_power_w / 1e3,
            )
        )


class _Sampled:
    """A controller whose every decision first samples the facility."""

    def __init__(self, ctl: Controller, sampler: _Sampler) -> None:
        self.ctl, self.sampler, self.name = ctl, sampler, ctl.name

    def decide(self, snap: Snapshot) -> Decision:
        self.sampler.sample()
        return self.ctl.decide(snap)


def run(setup: EvalSetup, name: str) -> tuple[Kpis, list[tuple[float, ...]]]:
    """KPIs and samples of one controller."""
    s = _Sampler(int(setup.limits.cfg.interval_s * 1e9))
    lim, plant = setup.limits, setup.site.config.plant.type
    if name == "aidc":
        sup = SupervisedRun(setup)

        def hook(f: Facility) -> None:
            if s.fac is not f:
                s.bind(f)
            s.sample()

        try:
            k = Kpis()
            for start, days, warm in setup.spans():
                sup.run_day(start, k, warmup_h=warm, days=days, hook=hook)
        finally:
            sup.close()
        return k, s.rows
    bind: Callable[[Facility], None] = s.bind
    ctl: Controller
    if name in ("oracle", "oracle_causal"):
        o = (CausalOracle if name == "oracle_causal" else OracleController)(setup)

        def bind(f: Facility) -> None:
            o.bind(f)
            s.bind(f)

        ctl = o
    elif name == "expert":
        ctl = ExpertController(lim, plant)
    elif name == "bin_table":
        ctl = BinTableController(lim, commission_bin_table(setup))
    elif name == "fixed":
        ctl = FixedController(lim)
    else:
        raise SystemExit(f"--controllers: {name!r} is not one of fixed, expert, bin_table, aidc, oracle, oracle_causal")
    return evaluate(setup, _Sampled(ctl, s), bind), s.rows


def main() -> None:
    """Run the controllers and print the breakdown; the last line is JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weather", default="data/weather/USA_AZ_Phoenix-Sky.Harbor.epw.gz")
    ap.add_argument("--stride", type=int, default=182)
    ap.add_argument("--scenario", default="ai-steps")
    ap.add_argument("--telemetry", default="field", choices=("field", "exact"))
    ap.add_argument("--controllers", default="fixed,expert,bin_table,aidc,oracle,oracle_causal")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        site = site_from_dict(tomllib.loads(render_site(SiteTemplate(racks=32, base_port=30000, data_dir=tmp))))
        lim, seed = site_limits(site), site.config.simulation.seed
        setup = EvalSetup(
            site,
            lim,
            site_weather(site, args.weather),
            2026,
            365,
            args.stride,
            0,
            6.0,
            60.0,
            load_carbon(default_carbon(args.weather)),
            telemetry=args.telemetry,
            workload=scenario_workload(args.scenario, site, seed=seed),
            seed=seed,
        )
        out: dict[str, Any] = {}
        for name in args.controllers.split(","):
            k, rows = run(setup, name)
            a = np.array(rows)
            out[name] = {
                "facility_kwh": round(k.facility_kwh, 1),
                "kwh_per_work": k.as_dict()["kwh_per_work"],
                "throttle_minutes": k.throttle_minutes,
                "violation_minutes": k.violation_minutes,
            }
            print(f"{name}: facility {k.facility_kwh:.0f} kWh, {k.throttle_minutes:.0f} throttle min", flush=True)
            for lo, hi in BINS:
                for half, sel in (("idle", a[:, 0] < 0.5), ("full", a[:, 0] >= 0.5)):
                    m = sel & (a[:, 1] >= lo) & (a[:, 1] < hi)
                    if m.any():
                        mean = dict(zip(COLS, a[m].mean(axis=0), strict=True))
                        out[name][f"{half} {lo:g}-{hi:g} C"] = {c: round(float(v), 2) for c, v in mean.items()}
                        print(
                            f"  {half} dry bulb {lo:g}-{hi:g} °C ({m.sum()} samples): TCS {mean['tcs']:.1f} dp "
                            f"{mean['dp']:.0f} FWS {mean['fws']:.1f} GPU {mean['gpu']:.1f} | chiller "
                            f"{mean['chiller_kw']:.0f} pumps {mean['pump_kw']:.0f} fans {mean['fan_kw']:.0f} non-IT "
                            f"{mean['nonit_kw']:.0f} facility {mean['facility_kw']:.0f} kW",
                            flush=True,
                        )
        print(json.dumps(out))


if __name__ == "__main__":
    main()
