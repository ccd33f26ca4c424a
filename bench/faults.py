"""Fault-prediction benchmark: slow physical faults injected into the simulated facility, detected from telemetry.

Two runs of an 8-rack, 2-CDU site with safe setpoint exploration throughout (so the detector must tell setpoint
changes from faults). Each run starts with a healthy commissioning week the detector learns from.

- **Clean run**: a further 30 healthy days; every alarm is a false alarm (``false_alarms_per_month``).
- **Fault run**: four slow faults start on days 9-12 on different devices: cold-plate fouling (rack thermal
  resistance +60 % over 20 days), pump wear (CDU pump efficiency −40 % over 20 days), strainer clogging (CDU
  internal pressure drop ×5 over 20 days) and a drifting rack-inlet sensor (+5 K over 20 days).

For each fault, the *threshold time* is the earlier of a throttling GPU on an affected rack and the conventional
alarm: fouling, the rack's hottest GPU at 85 °C (2 K under throttling); pump wear, the pump drawing 30 % more than
new for the same duty (the specific-power alarm); strainer, the CDU's internal pressure drop at twice its clean
value (the strainer's dp switch); sensor drift, the reading 3 K off (a high-inlet alarm at setpoint + 3 K misfires).
Lead time = threshold time − alarm time; a fault whose right device-and-cause alarm comes later, or never, is
missed. Alarms naming a healthy device or the wrong cause in the fault run are listed as wrong.

The last line is JSON: ``detected``, ``missed``, ``median_lead_h``, ``false_alarms_per_month``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import tomllib

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from aidc.config import DeviceRef, Site, site_from_dict
from aidc.profiles import Point
from aidc.roles import Role
from aidc.sitegen import SiteTemplate, render_site
from analytics.alarms.faults import FaultDetector, PredictiveAlarm, device_frame
from simulators.degradation import DAY_NS, Degradation, SlowFault
from simulators.facility import Facility
from simulators.telemetry import ExplorationSchedule, Telemetry, generate

START = pd.Timestamp("2026-07-01T00:00Z")
TRAIN_DAYS = 7.0
ROLES = {
    Role.GPU_TEMP, Role.GPU_POWER, Role.RACK_COOLANT_INLET_TEMP, Role.RACK_COOLANT_FLOW, Role.TCS_SUPPLY_TEMP,
    Role.PUMP_POWER, Role.TCS_FLOW, Role.TCS_DP, Role.CDU_PUMP_SPEED,
}  # fmt: skip
GPU_ALARM_C = 85.0
PUMP_POWER_ALARM = 1.3
DRIFT_ALARM_K = 3.0
STRAINER_DP_ALARM = 2.0  # the strainer's dp switch: internal pressure drop at twice its clean value


def _keep(dev: DeviceRef, p: Point) -> bool:
    return dev.role_of(p.name) in ROLES or p.name == "gpus_throttled"


def _site(racks: int) -> Site:
    return site_from_dict(tomllib.loads(render_site(SiteTemplate(racks=racks, start=START.isoformat()))))


def _run(site: Site, days: float, faults: list[SlowFault], seed: int) -> Telemetry:
    fac = Facility(site, start_ns=START.value)
    if faults:
        fac.degradation = Degradation.for_facility(fac, site, faults)
    return generate(site, duration_s=days * 86400, sample_s=300, schedule=ExplorationSchedule(seed=seed),
                    keep=_keep, facility=fac)  # fmt: skip


def _detect(site: Site, tel: Telemetry) -> list[PredictiveAlarm]:
    rack_cdu = {r: c.name for h in site.config.halls for c in h.cdus for r in c.racks}
    signals = device_frame(tel.frame, tel.roles, rack_cdu)
    split = signals.index[0] + pd.Timedelta(days=TRAIN_DAYS)
    det = FaultDetector.fit(signals[signals.index < split], rack_cdu)
    return det.scan(signals[signals.index >= split])


def _ground_truth(f: SlowFault, level: float) -> pd.Timestamp:
    """When the fault's own level reaches ``level`` (linear growth)."""
    return pd.Timestamp(f.start_ns + int(level / f.severity * f.ramp_days * DAY_NS), unit="ns", tz="UTC")


def _first(hit: pd.Series, f: SlowFault) -> pd.Timestamp | None:
    hit = hit[hit.index >= pd.Timestamp(f.start_ns, unit="ns", tz="UTC")]
    return pd.Timestamp(hit.index[int(np.argmax(hit.to_numpy()))]) if hit.any() else None


def _threshold_time(site: Site, tel: Telemetry, f: SlowFault) -> pd.Timestamp | None:
    """When the conventional alarm (or a throttling GPU on the affected racks) would have fired for this fault."""
    frame = tel.frame
    racks = [f.device]
    if f.kind in ("pump_wear", "strainer"):
        racks = [r for h in site.config.halls for c in h.cdus if c.name == f.device for r in c.racks]
    temps = [c for c in frame.columns if tel.roles.get(c) is Role.GPU_TEMP and any(f"rack={r}," in c for r in racks)]
    thr = [c for c in frame.columns if c.endswith(" gpus_throttled") and any(f"rack={r}," in c for r in racks)]
    throttle = _first(frame[thr].max(axis=1) > 0, f)
    if f.kind == "fouling":
        alarm = _first(frame[temps].max(axis=1) >= GPU_ALARM_C, f)
    elif f.kind == "pump_wear":
        alarm = _ground_truth(f, 1.0 - 1.0 / PUMP_POWER_ALARM)
    elif f.kind == "strainer":
        alarm = _ground_truth(f, STRAINER_DP_ALARM - 1.0)
    else:
        alarm = _ground_truth(f, DRIFT_ALARM_K)
    times = [t for t in (alarm, throttle) if t is not None]
    return min(times) if times else None


def main() -> None:
    """Run both simulations, detect, score and print."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--racks", type=int, default=8)
    ap.add_argument("--days", type=float, default=30.0, help="days monitored after the commissioning week")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    site = _site(args.racks)
    racks = [r.name for _, r in site.racks()]
    cdus = [c.name for h in site.config.halls for c in h.cdus]
    day = DAY_NS
    t0 = START.value + int(TRAIN_DAYS * day)
    faults = [
        SlowFault("fouling", racks[1], t0 + 2 * day, 20.0, 0.6),
        SlowFault("pump_wear", cdus[0], t0 + 3 * day, 20.0, 0.4),
        SlowFault("strainer", cdus[-1], t0 + 4 * day, 20.0, 4.0),
        SlowFault("sensor_drift", racks[2], t0 + 5 * day, 20.0, 5.0),
    ]
    total = TRAIN_DAYS + args.days
    clock = time.perf_counter()
    with threadpool_limits(1):
        clean = _run(site, total, [], args.seed)
        false_alarms = _detect(site, clean)
        del clean
        faulty = _run(site, total, faults, args.seed + 1)
        alarms = _detect(site, faulty)
    elapsed = time.perf_counter() - clock
    print(f"site: {len(racks)} racks, {len(cdus)} CDUs; commissioning {TRAIN_DAYS:g} days, monitored {args.days:g} "
          f"days per run, 5-minute telemetry, setpoint exploration on; {elapsed:.0f} s")  # fmt: skip
    print(f"{'fault':<13} {'device':<11} {'starts':<17} {'threshold at':<17} {'alarm at':<17} {'lead h':>7}")
    leads, detected, missed = [], 0, 0
    used: set[int] = set()
    for f in faults:
        thr = _threshold_time(site, faulty, f)
        hits = [i for i, a in enumerate(alarms) if a.device == f.device and a.kind == f.kind]
        alarm = alarms[hits[0]] if hits else None
        used.update(hits)
        at = None if alarm is None else pd.Timestamp(alarm.ts)
        ok = at is not None and (thr is None or at <= thr)
        lead = None if at is None or thr is None else (thr - at) / pd.Timedelta("1h")
        if ok:
            detected += 1
            if lead is not None:
                leads.append(lead)
        else:
            missed += 1

        def fmt(t: pd.Timestamp | None) -> str:
            return "-" if t is None else t.strftime("%m-%d %H:%M")

        start = pd.Timestamp(f.start_ns, unit="ns", tz="UTC")
        lead_text = "-" if lead is None else f"{lead:.1f}"
        print(f"{f.kind:<13} {f.device:<11} {fmt(start):<17} {fmt(thr):<17} {fmt(at):<17} {lead_text:>7}"
              f"{'' if ok else '  MISSED'}")  # fmt: skip
    wrong = [a for i, a in enumerate(alarms) if i not in used]
    for a in wrong:
        print(f"wrong alarm in the fault run: {a.device} {a.kind} at {a.ts}")
    for a in false_alarms:
        print(f"false alarm in the clean run: {a.device} {a.kind} at {a.ts} (shift {a.shift:.3g} {a.unit})")
    per_month = len(false_alarms) * 30.0 / args.days
    median = statistics.median(leads) if leads else None
    print(f"detected {detected}/{len(faults)}, median lead {median if median is None else round(median, 1)} h, "
          f"false alarms {per_month:.2f} per month (clean run), wrong alarms in the fault run {len(wrong)}")
    print(json.dumps({
        "detected": detected, "missed": missed, "median_lead_h": None if median is None else round(median, 1),
        "false_alarms_per_month": round(per_month, 2), "wrong_alarms_fault_run": len(wrong),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
