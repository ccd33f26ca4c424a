"""Supervisory control benchmark: aidc's decision time on a 32-rack and a 1,000-rack site, and the wall time of
``aidc evaluate-control`` with all seven controllers.

Decision time is one full decision of the live :class:`control.supervisor.Supervisor` in advisory mode: snapshot
from the live state (every GPU series of the site), input checks, the learning core's vectorised candidate scoring,
the hard-limit check and the audit line; the core is trained first by commissioning on simulated telemetry. The
evaluation runs in-process (``--days 365 --stride 7`` by default, ``--scenario ai-steps --telemetry field``: the
deployed supervisor on decoded telemetry; ``--stride`` makes a quicker run). The last line is JSON with
``decision_ms_32``, ``decision_ms_1000``, ``evaluate_s`` and aidc's share of the all-writable oracle's saving;
each controller's seconds go to stderr. The evaluation runs one worker process per CPU: aidc (its learning core
carries from day to day) and each baseline whole, the oracle one job per day (it starts each afresh).

    python bench/control.py [--stride 7] [--scenario ai-steps] [--telemetry field]
        [--weather data/weather/USA_VA_Leesburg.Exec.epw.gz] [--skip-evaluate]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aidc.clock import SteppedClock
from aidc.config import Site, site_from_dict
from aidc.live import LiveState
from aidc.sitegen import SiteTemplate, render_site
from app.commands.evaluate_control import default_carbon, print_report
from app.evaluation.evaluate import (
    CONTROLLERS,
    DAY_NS,
    EvalSetup,
    default_jobs,
    evaluate_all,
    feed_live,
    load_carbon,
    run_day,
    site_weather,
)
from control.learner import LearningController
from control.policy import site_limits
from control.supervisor import Supervisor

ROOT = Path(__file__).resolve().parent.parent


def _site(racks: int, data_dir: Path) -> Site:
    doc = tomllib.loads(render_site(SiteTemplate(racks=racks, base_port=30000, data_dir=str(data_dir))))
    doc["control"] = {"mode": "advisory", "commissioning_days": 2.0}
    return site_from_dict(doc)


def decision_ms(racks: int, weather: str, repeats: int) -> tuple[float, float, int]:
    """Median and p95 ms of one supervisor decision on a trained core, and the number of candidates scored."""
    with tempfile.TemporaryDirectory() as tmp:
        site = _site(racks, Path(tmp))
        lim = site_limits(site)
        setup = EvalSetup(site, lim, site_weather(site, weather), warmup_h=0.0, step_s=300.0)
        core = LearningController(lim)
        day0 = setup.year_start_ns + 180 * DAY_NS
        for d in range(3):
            run_day(setup, core, day0 + d * DAY_NS, None, warmup_h=0.0)
        fac = setup.facility(day0 + 3 * DAY_NS)
        clock = SteppedClock(fac.t_ns)
        live = LiveState()
        sup = Supervisor(site, live, None, clock, limits=lim, core=core, audit_dir=Path(tmp) / "audit")
        times: list[float] = []
        cands = 0

        async def decide_all() -> int:
            """Every decision inside one running event loop, as in the live service."""
            n = 0
            for _ in range(repeats):
                fac.step(300.0)
                clock.t_ns = fac.t_ns
                feed_live(live, site, fac, sup.sink)
                t0 = time.perf_counter()
                rec = await sup.decide_once()
                times.append(1000 * (time.perf_counter() - t0))
                n = int(rec.get("candidates", 0) or 0)  # type: ignore[call-overload]
            return n

        cands = asyncio.run(decide_all())
        times.sort()
        return statistics.median(times), times[int(0.95 * (len(times) - 1))], cands


def main() -> None:
    """Run the benchmark and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weather", default=str(ROOT / "data/weather/USA_VA_Leesburg.Exec.epw.gz"))
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--stride", type=int, default=7)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--skip-evaluate", action="store_true")
    ap.add_argument("--scenario", default="ai-steps")
    ap.add_argument("--telemetry", default="field", choices=("field", "exact"))
    args = ap.parse_args()
    out: dict[str, float | None] = {}
    for racks in (32, 1000):
        med, p95, cands = decision_ms(racks, args.weather, args.repeats if racks == 32 else max(5, args.repeats // 3))
        print(f"{racks:>5} racks: supervisor decision {med:.1f} ms median, {p95:.1f} ms p95 "
              f"({cands} candidates in one vectorised model call; goal ≤ {20 if racks == 32 else 200} ms)")
        out[f"decision_ms_{racks}"] = round(med, 2)
    out["evaluate_s"] = None
    if not args.skip_evaluate:
        with tempfile.TemporaryDirectory() as tmp:
            site = site_from_dict(tomllib.loads(render_site(SiteTemplate(racks=32, base_port=30000, data_dir=tmp))))
            lim = site_limits(site)
            t0 = time.perf_counter()
            res = evaluate_all(site, lim, site_weather(site, args.weather), list(CONTROLLERS), days=args.days,
                               stride=args.stride, warmup_h=6.0, jobs=default_jobs(),
                               carbon=load_carbon(default_carbon(args.weather)), year=2026,
                               scenario=args.scenario, telemetry=args.telemetry, seed=site.config.simulation.seed,
                               progress=sys.stderr)  # each controller's seconds (the oracle's summed over its spans)
            out["evaluate_s"] = round(time.perf_counter() - t0, 1)
        res["evaluate_s"] = out["evaluate_s"]
        res["carbon"] = load_carbon(default_carbon(args.weather)).source
        ctl = res["controllers"]
        base = ctl["fixed"]["facility_kwh"]
        if base > ctl["oracle"]["facility_kwh"]:
            out["aidc_share_of_oracle"] = round((base - ctl["aidc"]["facility_kwh"])
                                                / (base - ctl["oracle"]["facility_kwh"]), 4)
        print_report(res, site, lim, args.weather, args.stride, args.days, 6.0)
        print(f"evaluate-control --days {args.days} --stride {args.stride} --scenario {args.scenario} --telemetry "
              f"{args.telemetry}, seven controllers: "
              f"{out['evaluate_s']:.0f} s wall with {default_jobs()} worker processes (goal ≤ 1200 s)")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
