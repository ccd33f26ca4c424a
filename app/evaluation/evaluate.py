"""In-process evaluation of supervisory controllers on the simulated facility (``aidc evaluate-control``).

Runs every named controller on the same days through :mod:`app.evaluation.harness` (the facility seen as
collectors see it, the KPIs) and returns the ``--json`` document; the hindsight and foresight references are in
:mod:`app.evaluation.oracle`. Names the benches and tests use are re-exported here.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from aidc.config import Site
from aidc.errors import DataError
from app.evaluation.harness import (
    DAY_NS,
    Carbon,
    EvalSetup,
    KpiLog,
    Kpis,
    SimPlant,
    SupervisedRun,
    evaluate,
    feed_live,
    load_carbon,
    run_day,
    site_weather,
)
from app.evaluation.oracle import (
    OracleController,
    best_fixed,
    coarse_grid,
    neighbourhood,
    uniform_candidates,
    uniform_setpoints,
    whatif_ok,
)
from control.policy import Limits
from simulators.scenarios import scenario_workload
from simulators.weather import Weather

__all__ = [
    "CONTROLLERS", "DAY_NS", "Carbon", "EvalSetup", "KpiLog", "Kpis", "OracleController", "SimPlant",
    "SupervisedRun", "best_fixed", "coarse_grid", "default_jobs", "evaluate", "evaluate_all", "feed_live",
    "load_carbon", "neighbourhood", "oracle_span", "run_controller", "run_day", "site_weather", "span_job",
    "uniform_candidates", "uniform_setpoints", "whatif_ok",
]


TELEMETRY = ("field", "exact")
CONTROLLERS = ("fixed", "best_fixed", "trim_respond", "bin_table", "expert", "aidc", "oracle")
_LONGEST_FIRST = ("oracle", "aidc", "best_fixed", "bin_table", "trim_respond", "expert", "fixed")


def run_controller(setup: EvalSetup, name: str, say: Callable[[str], None]) -> tuple[dict[str, Any], dict[str, Any]]:
    """KPIs of one named controller on the setup's days, and what goes on the document's top level (aidc's
    commissioning)."""
    from app.evaluation.commissioning import commission_bin_table, commissioned_trim_respond
    from control.baselines import BinTableController, ExpertController, FixedController

    site, limits = setup.site, setup.limits
    extra: dict[str, Any] = {}
    if name == "fixed":
        k = evaluate(setup, FixedController(limits))
    elif name == "best_fixed":
        sp, k = best_fixed(setup, say)
        chw = {"chw_c": sp[3]} if math.isfinite(sp[3]) else {}
        return {**k.as_dict(), "setpoints": {"tcs_c": sp[0], "dp_kpa": sp[1], "fws_c": sp[2], **chw}}, extra
    elif name == "trim_respond":  # commissioned: its dp range ends where the pump test found the pumps' reach
        tr = commissioned_trim_respond(setup)
        k = evaluate(setup, tr)
        extra["trim_respond_dp_range_kpa"] = list(tr.dp)
    elif name == "bin_table":  # commissioned on the site's own (typical-year) weather file, not the scored one
        table = commission_bin_table(setup)
        k = evaluate(setup, BinTableController(limits, table))
        extra["bin_table"] = table.as_dict()
    elif name == "expert":
        k = evaluate(setup, ExpertController(limits, site.config.plant.type))
    elif name == "aidc":
        # The deployed supervisor in the loop (app.evaluation.harness.SupervisedRun); its commissioning days count.
        run = SupervisedRun(setup)
        try:
            k = run.evaluate()
        finally:
            run.close()
        extra["commissioning"] = {"days": setup.commissioning_days, "counted": True}
    elif name == "oracle":
        o = OracleController(setup)
        k = evaluate(setup, o, o.bind)
        extra["oracle_scope"] = o.scope
    else:
        raise DataError(f"--controllers: unknown controller {name!r} ({', '.join(CONTROLLERS)})")
    return k.as_dict(), extra


_JOB: dict[str, Any] = {}  # the setup handed to forked workers (fork shares it without pickling)
Unit = tuple[str, int]  # a worker's job: a controller, and the span it runs (-1: every span, in one go)


SPLIT = ("oracle", "fixed")  # controllers that start every span afresh: their spans may run apart


def oracle_span(setup: EvalSetup, i: int) -> tuple[KpiLog, str]:
    """The oracle over span ``i`` of the setup alone, every step logged, and its scope. The oracle starts every
    span afresh (:meth:`OracleController.bind`), so its spans run apart count the same as in one go."""
    o = OracleController(setup)
    start, days, warm = setup.spans()[i]
    log = KpiLog()
    run_day(setup, o, start, log, o.bind, warmup_h=warm, days=days)
    return log, o.scope


def span_job(setup: EvalSetup, name: str, i: int) -> tuple[KpiLog, dict[str, Any]]:
    """Span ``i`` of a controller in :data:`SPLIT` alone, every step logged, and what goes on the document's top
    level."""
    if name == "oracle":
        log, scope = oracle_span(setup, i)
        return log, {"oracle_scope": scope}
    from control.baselines import FixedController

    start, days, warm = setup.spans()[i]
    log = KpiLog()
    run_day(setup, FixedController(setup.limits), start, log, warmup_h=warm, days=days)
    return log, {}


def _job(unit: Unit) -> tuple[Unit, Any, float, list[str]]:
    said: list[str] = []
    t0 = time.perf_counter()
    name, span = unit
    out = run_controller(_JOB["setup"], name, said.append) if span < 0 else span_job(_JOB["setup"], name, span)
    return unit, out, time.perf_counter() - t0, said


def _units(setup: EvalSetup, order: Sequence[str]) -> list[Unit]:
    """The workers' jobs, longest first so that they end together: every controller in one job, but those in
    :data:`SPLIT` one job a span (the commissioning days after the longest whole controller; single days last, to
    fill in)."""
    spans = setup.spans()
    whole: list[Unit] = [(n, -1) for n in order if n not in SPLIT]
    split = [n for n in order if n in SPLIT]
    long = [(n, i) for n in split for i, s in enumerate(spans) if s[1] > 1]
    short = [(n, i) for n in split for i, s in enumerate(spans) if s[1] <= 1]
    return whole[:1] + long + whole[1:] + short


def default_jobs() -> int:
    """Worker processes for the evaluation: one per CPU this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def evaluate_all(site: Site, limits: Limits, weather: Weather, names: Sequence[str], *, days: int, stride: int,
                 warmup_h: float, carbon: Carbon, year: int, progress: object = None,
                 jobs: int = 1, telemetry: str = "exact", step_s: float = 60.0, seed: int = 0,
                 scenario: str = "steady") -> dict[str, Any]:
    """KPIs of every named controller on the same days, as the ``--json`` document.

    ``scenario`` names the load (:mod:`simulators.scenarios`; ``steady`` is the site's own workload) and ``seed``
    draws it and the field telemetry's noise and lost polls. ``jobs`` > 1 runs the controllers in that many forked
    worker processes (each controller is independent: its own facility, the same days); the document is the same,
    in the order of ``names``.
    """
    for name in names:
        if name not in CONTROLLERS:
            raise DataError(f"--controllers: unknown controller {name!r} ({', '.join(CONTROLLERS)})")
    if telemetry not in TELEMETRY:
        raise DataError(f"--telemetry: {telemetry!r} is not one of {', '.join(TELEMETRY)}")
    workload = scenario_workload(scenario, site, seed=seed)
    setup = EvalSetup(site, limits, weather, year, days, stride, 0, warmup_h, step_s, carbon, telemetry=telemetry,
                      workload=workload, seed=seed)
    # Refused before any controller runs: a short weather file is never repeated to fill the days (issue 21, item 7).
    weather.check_span(*setup.weather_span(names), f"the evaluation ({len(setup.day_starts())} days of {year})")

    def say(msg: str) -> None:
        if progress is not None:
            print(msg, file=progress, flush=True)  # type: ignore[call-overload]

    results: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    order = sorted(dict.fromkeys(names), key=lambda n: _LONGEST_FIRST.index(n))
    units = _units(setup, order)
    if jobs > 1 and len(units) > 1 and "fork" in mp.get_all_start_methods():
        _JOB["setup"] = setup
        logs: dict[str, dict[int, KpiLog]] = {}
        tops: dict[str, dict[str, Any]] = {}
        spent_s: dict[str, float] = {}
        try:
            with ProcessPoolExecutor(min(jobs, len(units)), mp_context=mp.get_context("fork")) as pool:
                for (name, span), out, spent, said in pool.map(_job, units):
                    for line in said:
                        say(line)
                    if span < 0:
                        say(f"{name}: {spent:.0f} s")
                        results[name] = out
                    else:
                        logs.setdefault(name, {})[span], tops[name] = out
                        spent_s[name] = spent_s.get(name, 0.0) + spent
        finally:
            _JOB.clear()
        for name, by_span in logs.items():  # the spans counted in their order: the sums of one run
            k = Kpis()
            for i in sorted(by_span):
                by_span[i].replay(k)
            results[name] = (k.as_dict(), tops[name])
            say(f"{name}: {spent_s[name]:.0f} s over {len(by_span)} spans")
    else:
        for name in order:
            t0 = time.perf_counter()
            results[name] = run_controller(setup, name, say)
            say(f"{name}: {time.perf_counter() - t0:.0f} s")
    out = {name: results[name][0] for name in dict.fromkeys(names)}
    top: dict[str, Any] = {}
    for _, ex in results.values():
        top.update(ex)
    return {"controllers": out, "evaluated_minutes": setup.counted_minutes(), "telemetry": telemetry,
            "scenario": scenario, "seed": seed, **top}
