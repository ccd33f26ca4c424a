"""Glue from a site's historian to :mod:`analytics.leasing.headroom`: rack and CDU states by role, P90 and thermal
fit."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from aidc.config import Site
from aidc.model import SeriesKey
from aidc.roles import Role
from analytics.energy.kpi import power_scale
from analytics.historian_adapter import wide_frame
from analytics.leasing.headroom import PG25_RHO_CP, CduState, RackState, fit_thermal
from historian import Historian

HISTORY = pd.Timedelta("7D")
WINDOW = "5m"
ROLES = (
    Role.IT_POWER_PDU_OUTPUT, Role.RACK_POWER, Role.GPU_TEMP, Role.RACK_COOLANT_INLET_TEMP, Role.TCS_SUPPLY_TEMP,
    Role.TCS_RETURN_TEMP, Role.TCS_FLOW, Role.CDU_VALVE,
)  # fmt: skip


def seasonal_p90(power: pd.Series, now: pd.Timestamp, hours: float) -> float | None:
    """P90 of the past values at the same times of day as the next ``hours`` (all history if under a day)."""
    p = power.dropna()
    if p.empty:
        return None
    if p.index[-1] - p.index[0] < pd.Timedelta("1D") or hours >= 24:
        return float(np.percentile(p.to_numpy(), 90))
    idx = pd.DatetimeIndex(p.index)
    minute = (idx.hour * 60 + idx.minute).to_numpy()
    a = now.hour * 60 + now.minute
    b = a + int(hours * 60)
    inside = ((minute >= a) & (minute <= b)) | ((minute + 1440 >= a) & (minute + 1440 <= b))
    values = p.to_numpy()[inside]
    return float(np.percentile(values if len(values) else p.to_numpy(), 90))


def _latest(s: pd.Series) -> float | None:
    v = s.dropna()
    return None if v.empty else float(v.iloc[-1])


def states(
    historian: Historian, site: Site, now: pd.Timestamp, hours: float
) -> tuple[dict[str, RackState], dict[str, CduState], float | None]:
    """Rack and CDU states at ``now`` from the last week of telemetry, and the UPS rating (kW)."""
    wide, roles = wide_frame(historian, site, ROLES, now - HISTORY, now, WINDOW)
    by: dict[tuple[Role, str], list[str]] = {}
    for sid, role in roles.items():
        tags = SeriesKey.parse(sid).tag_dict
        key = tags.get("rack") or tags.get("device", "")
        by.setdefault((role, key), []).append(sid)

    def cols(role: Role, key: str) -> Sequence[str]:
        return by.get((role, key), [])

    def kw(role: Role, key: str) -> pd.Series | None:
        c = cols(role, key)
        if not c:
            return None
        scale = np.array([power_scale(SeriesKey.parse(s).field) for s in c])
        return pd.Series(wide[list(c)].to_numpy() @ scale, index=wide.index)

    cdu_of = {r: c.name for h in site.config.halls for c in h.cdus for r in c.racks}
    crah = site.config.plant.crah_share
    racks: dict[str, RackState] = {}
    for hall, rack in site.racks():
        power = kw(Role.IT_POWER_PDU_OUTPUT, rack.name)
        if power is None:
            power = kw(Role.RACK_POWER, rack.name)
        gpu = wide[list(cols(Role.GPU_TEMP, rack.name))].max(axis=1) if cols(Role.GPU_TEMP, rack.name) else None
        inlet = wide[list(cols(Role.RACK_COOLANT_INLET_TEMP, rack.name))].mean(axis=1) if cols(
            Role.RACK_COOLANT_INLET_TEMP, rack.name) else None  # fmt: skip
        slope = None
        if power is not None and gpu is not None and inlet is not None:
            slope = fit_thermal(power.to_numpy(), (gpu - inlet).to_numpy())
        racks[rack.name] = RackState(
            rack.name, hall.name, rack.row, cdu_of[rack.name], rack.rated_kw,
            None if power is None else _latest(power), None if power is None else seasonal_p90(power, now, hours),
            None if gpu is None else _latest(gpu), None if inlet is None else _latest(inlet), slope, 1.0 - crah,
        )  # fmt: skip
    cdus: dict[str, CduState] = {}
    for hall in site.config.halls:
        for c in hall.cdus:

            def one(role: Role, name: str = c.name) -> float | None:
                cs = cols(role, name)
                return None if not cs else _latest(wide[cs[0]])

            sup, ret, flow = one(Role.TCS_SUPPLY_TEMP), one(Role.TCS_RETURN_TEMP), one(Role.TCS_FLOW)
            heat = None
            if sup is not None and ret is not None and flow is not None:
                heat = PG25_RHO_CP * flow / 60000.0 * max(ret - sup, 0.0) / 1000.0
            cdus[c.name] = CduState(c.name, hall.name, heat, one(Role.CDU_VALVE), flow, sup, ret)
    return racks, cdus, site.config.ups.rated_kw
