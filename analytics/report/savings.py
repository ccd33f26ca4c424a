"""What the supervisory controller saved in a month, against a counterfactual of fixed setpoints.

The counterfactual is the learned plant model's prediction (:mod:`analytics.plant_model`) for the same hours, the
same IT load and the same weather, with the cooling setpoints held at the baseline (each writable point's safe
default from its profile, or ``[report] baseline_setpoints``). Both terms come from the same model, so its bias
cancels: savings = Σ (P_baseline − P_actual) × 1 h over the hours with complete telemetry.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from aidc.config import Site
from aidc.errors import DataError
from aidc.model import SeriesKey
from aidc.roles import Role
from analytics.energy.kpi import IT_POWER_ROLES
from analytics.historian_adapter import wide_frame
from analytics.plant_model import FEATURES, PlantModel, plant_frame
from analytics.report.config import ReportConfig
from analytics.report.model import Savings
from analytics.report.period import Month
from historian import Historian, SeriesSelector

SETPOINT_FEATURES = {
    "tcs_supply_sp_c": Role.TCS_SUPPLY_TEMP_SETPOINT,
    "tcs_dp_sp_kpa": Role.TCS_DP_SETPOINT,
    "fws_supply_sp_c": Role.FWS_SUPPLY_TEMP_SETPOINT,
}
PLANT_ROLES = (
    Role.GPU_UTIL,
    Role.OUTDOOR_DRYBULB,
    Role.OUTDOOR_WETBULB,
    *SETPOINT_FEATURES.values(),
    Role.GPU_TEMP,
    Role.RACK_COOLANT_OUTLET_TEMP,
    Role.FACILITY_POWER,
    Role.COOLING_POWER,
    *IT_POWER_ROLES.values(),
)
MIN_HOURS = 100
METHOD = (
    "Plant model (analytics/plant_model.py, gradient-boosted trees) fitted on this month's hourly telemetry; "
    "facility power predicted for every hour at the setpoints in force and at the fixed baseline setpoints, with "
    "the same GPU load and weather; savings = Σ(P_baseline − P_actual) × 1 h. Range: the model's P10/P90 residual "
    "offsets (last 20 % of the month held out) summed as if fully correlated, which overstates the spread."
)


def controller_active(hist: Historian, site: Site, month: Month) -> bool:
    """True when the historian holds controller decisions (measurement ``controller``) in the month."""
    df = hist.query(SeriesSelector("controller", {"site": site.name}, None), month.start, month.end, "1d", "count")
    return bool(len(df)) and bool((df["value"].fillna(0) > 0).any())


def device_roles(site: Site, columns: Iterable[object]) -> dict[str, Role]:
    """Role of each series id by its device and point.

    ``wide_frame``'s map is keyed by measurement and field, so the three meters (one profile, roles set per device
    by their purpose) would all get the last meter's role; the device tag tells them apart.
    """
    by_device: dict[tuple[str, str, str], Role] = {}
    for d in site.devices:
        for p in d.profile.points:
            role = d.role_of(p.name)
            if role is not None:
                by_device[(d.profile.measurement, p.name, d.name)] = role
    out: dict[str, Role] = {}
    for col in columns:
        key = SeriesKey.parse(str(col))
        role = by_device.get((key.measurement, key.field, key.tag_dict.get("device", "")))
        if role is not None:
            out[str(col)] = role
    return out


def baseline_setpoints(site: Site, cfg: ReportConfig) -> dict[str, float]:
    """Fixed setpoints of the counterfactual per plant-model feature: configured, else the profiles' safe defaults."""
    out: dict[str, float] = {}
    for feat, role in SETPOINT_FEATURES.items():
        if role in cfg.baseline_setpoints:
            out[feat] = cfg.baseline_setpoints[role]
            continue
        defaults = [
            float(p.safe_default)
            for d in site.devices
            for p in d.profile.points
            if p.writable and p.safe_default is not None and d.role_of(p.name) is role
        ]
        if defaults:
            out[feat] = float(np.mean(defaults))
    return out


def estimate_savings(hist: Historian, site: Site, month: Month, cfg: ReportConfig) -> Savings:
    """Savings of the month against fixed setpoints, or a statement of why there is no estimate."""
    if not controller_active(hist, site, month):
        return Savings(False, "no controller active this month")
    wide, _ = wide_frame(hist, site, PLANT_ROLES, month.start, month.end, "1h")
    try:
        data = plant_frame(wide, device_roles(site, wide.columns))
    except DataError as exc:
        return Savings(True, f"controller active, but no savings estimate: {exc}", method=METHOD)
    if len(data) < MIN_HOURS:
        text = (f"controller active, but only {len(data)} hours of complete plant telemetry "
                f"(at least {MIN_HOURS} needed for the plant model): no savings estimate")  # fmt: skip
        return Savings(True, text, method=METHOD)
    baseline = baseline_setpoints(site, cfg)
    if len(baseline) < len(SETPOINT_FEATURES):
        missing = sorted(set(SETPOINT_FEATURES) - set(baseline))
        return Savings(True, f"controller active, but no baseline setpoint for {missing}", method=METHOD)
    with threadpool_limits(1):  # deterministic and quiet on a shared machine
        model = PlantModel.fit(data, max_iter=150)
        actual = model.predict(data[list(FEATURES)])
        cf = data[list(FEATURES)].copy()
        for feat, value in baseline.items():
            cf[feat] = value
        base = model.predict(cf)
    a50 = actual["facility_power_kw_p50"].to_numpy()
    saved = float((base["facility_power_kw_p50"].to_numpy() - a50).sum())
    low = float((base["facility_power_kw_p10"].to_numpy() - actual["facility_power_kw_p90"].to_numpy()).sum())
    high = float((base["facility_power_kw_p90"].to_numpy() - actual["facility_power_kw_p10"].to_numpy()).sum())
    base_kwh = float(base["facility_power_kw_p50"].sum())
    extrap = float(np.mean(base["extrapolating"].to_numpy()))
    sp = ", ".join(f"{k} {v:g}" for k, v in baseline.items())
    pct = 100 * saved / base_kwh if base_kwh else 0.0
    text = (
        f"estimated saving {saved:,.0f} kWh ({pct:.1f} % of the fixed-setpoint counterfactual, "
        f"range {low:,.0f} to {high:,.0f} kWh) over {len(data)} hours against fixed setpoints {sp}"
    )
    if extrap > 0.2:
        text += (
            f"; the baseline setpoints lie outside the month's training range in {100 * extrap:.0f} % of hours, "
            "where trees cannot extrapolate: treat the figure as indicative"
        )
    return Savings(
        True,
        text,
        saved_kwh=saved,
        low_kwh=low,
        high_kwh=high,
        baseline_kwh=base_kwh,
        actual_kwh=float(pd.Series(a50).sum()),
        hours=len(data),
        extrapolating_share=extrap,
        baseline=baseline,
        method=METHOD,
    )
