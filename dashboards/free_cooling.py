"""The cooling plant's free-cooling state in words, derived from the points the plant publishes.

``free_cooling_state`` speaks for the facility-water (liquid) loop only: 2 when the free cooler alone meets the FWS
setpoint, 1 when the chiller trims what it cannot, 0 when the chiller carries it all (docs/physics.md, "Local loop:
free cooling first, the chiller trims"). The CRAH chilled-water loop has its own free cooler and chiller, so "full
free cooling" beside chiller power is the air side being trimmed; the explanation says which and how much, from
``chiller_power_w`` × ``chiller_cop`` (the heat the chiller moves) against ``heat_load_w`` (all the site's heat).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from dashboards.fmt import FREE_COOLING_STATES, number

CHILLER_OFF_W = 500.0  # below this the chiller's meter reads standby, not trim
SINKS = {"chiller_drycooler": "dry cooler", "chiller_tower": "cooling tower", "chiller_only": "free cooler"}


@dataclass(frozen=True, slots=True)
class FreeCooling:
    """The plant's mode name and the sentence that explains it."""

    mode: str
    reason: str


def _get(row: Mapping[str, object], key: str) -> float | None:
    v = row.get(key)
    return float(v) if isinstance(v, int | float) and v == v else None


def explain(row: Mapping[str, object], *, liquid_kw: float | None = None, plant_type: str = "") -> FreeCooling:
    """Mode and reason from one plant row (its points by name) and the CDUs' heat (kW) when known."""
    state, power_w = _get(row, "free_cooling_state"), _get(row, "chiller_power_w")
    cop, load_w = _get(row, "chiller_cop"), _get(row, "heat_load_w")
    sink = SINKS.get(plant_type, "free cooler")
    if state is None or load_w is None or power_w is None:
        return FreeCooling("—", "no plant readings yet")
    mode = FREE_COOLING_STATES.get(int(state), f"state {state:g}")
    trim_kw = power_w * (cop or 0.0) / 1000.0  # heat the chiller moves
    load_kw = load_w / 1000.0
    share = 100.0 * max(0.0, min(1.0, 1.0 - trim_kw / load_kw)) if load_kw > 0 else 0.0
    elec = f"{number(power_w / 1000.0, 'kW')} kW electric"
    drybulb = _get(row, "outdoor_drybulb_c")
    fws_sp = _get(row, "fws_supply_temp_setpoint_c")
    outside = "" if drybulb is None else f" at {number(drybulb, '°C')} °C outdoors"
    target = "" if fws_sp is None else f" the {number(fws_sp, '°C')} °C facility-water setpoint"
    trim, load = number(trim_kw, "kW", digits=0), number(load_kw, "kW", digits=0)  # heat to the kW
    if plant_type == "chiller_only":
        return FreeCooling("mechanical (no free cooler)", f"the chiller carries {trim} kW ({elec})")
    if int(state) == 2:
        if power_w < CHILLER_OFF_W:
            return FreeCooling(mode, f"the {sink} carries all {load} kW{outside}; the chiller is off")
        liquid = "" if liquid_kw is None else f" ({number(liquid_kw, 'kW', digits=0)} kW from the CDUs)"
        return FreeCooling(
            mode,
            f"the {sink} carries the facility-water loop alone{liquid}; the chiller trims the air side (CRAH chilled "
            f"water), {trim} kW of heat for {elec}: free cooling covers {number(share, '%')} % "
            f"of {load} kW",
        )
    if int(state) == 1:
        return FreeCooling(
            mode,
            f"the {sink} covers {number(share, '%')} % of {load} kW, the chiller trims "
            f"{trim} kW ({elec}){outside}: too warm to reach{target or ' the setpoint'} by free "
            "cooling alone",
        )
    return FreeCooling(
        mode,
        f"the chiller carries {trim} kW ({elec}){outside}: the {sink} cannot cool below{target or ' the setpoint'}",
    )
