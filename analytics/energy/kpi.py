"""The KPI arithmetic of the ISO/IEC 30134 family and The Green Grid, as pure functions of energies.

Every function returns ``None`` when its denominator is missing or zero, so a site without a meter never reports a
made-up figure. Energies are kWh, water is litres, carbon is kg CO2.
"""

from __future__ import annotations

from aidc.roles import Role

# ISO/IEC 30134-2 categories by where IT energy is metered; higher is more accurate.
IT_ENERGY_ROLES: dict[int, Role] = {
    3: Role.IT_ENERGY_EQUIPMENT_INPUT,
    2: Role.IT_ENERGY_PDU_OUTPUT,
    1: Role.IT_ENERGY_UPS_OUTPUT,
}
IT_POWER_ROLES: dict[int, Role] = {
    3: Role.IT_POWER_EQUIPMENT_INPUT,
    2: Role.IT_POWER_PDU_OUTPUT,
    1: Role.IT_POWER_UPS_OUTPUT,
}
CATEGORY_NAMES: dict[int, str] = {1: "basic (UPS output)", 2: "intermediate (PDU output)", 3: "advanced (IT input)"}


def _ratio(num: float | None, den: float | None) -> float | None:
    if num is None or den is None or den <= 0:
        return None
    return num / den


def pue(e_dc: float | None, e_it: float | None) -> float | None:
    """PUE = E_DC / E_IT over the same period (ISO/IEC 30134-2 §6)."""
    return _ratio(e_dc, e_it)


def clf(e_cooling: float | None, e_it: float | None) -> float | None:
    """Cooling load factor = cooling energy / IT energy (The Green Grid WP#49)."""
    return _ratio(e_cooling, e_it)


def plf(e_power_losses: float | None, e_it: float | None) -> float | None:
    """Power load factor = electrical distribution losses / IT energy (The Green Grid WP#49)."""
    return _ratio(e_power_losses, e_it)


def partial_pue(e_subsystem: float | None, e_it: float | None) -> float | None:
    """Partial PUE of a subsystem = (E_subsystem + E_IT) / E_IT (ISO/IEC 30134-2 Annex, The Green Grid pPUE)."""
    if e_subsystem is None:
        return None
    return _ratio(None if e_it is None else e_subsystem + e_it, e_it)


def power_losses(e_dc: float, e_it: float, e_cooling: float | None, e_other: float | None) -> float | None:
    """Electrical distribution losses: facility energy not delivered to IT, cooling or other loads."""
    if e_cooling is None:
        return None
    return e_dc - e_it - e_cooling - (e_other or 0.0)


def wue(water_l: float | None, e_it: float | None) -> float | None:
    """WUE = site water use (L) / IT energy (kWh) (ISO/IEC 30134-9)."""
    return _ratio(water_l, e_it)


def erf(e_reused: float | None, e_dc: float | None) -> float | None:
    """ERF = reused energy / total data-centre energy (ISO/IEC 30134-6)."""
    return _ratio(e_reused, e_dc)


def ref(e_renewable: float | None, e_dc: float | None) -> float | None:
    """REF = renewable energy / total data-centre energy (ISO/IEC 30134-3)."""
    return _ratio(e_renewable, e_dc)


def cue(co2_kg: float | None, e_it: float | None) -> float | None:
    """CUE = CO2 emissions of the data-centre energy (kg) / IT energy (kWh) (ISO/IEC 30134-8)."""
    return _ratio(co2_kg, e_it)


def energy_scale(field: str, unit: str = "") -> float:
    """Factor from a counter's field/unit to kWh (or litres for water): units live in field names."""
    name = field.lower()
    u = unit.lower()
    for suffix, factor in (("_mwh", 1000.0), ("_kwh", 1.0), ("_wh", 0.001), ("_m3", 1000.0), ("_l", 1.0)):
        if name.endswith(suffix):
            return factor
    return {"mwh": 1000.0, "kwh": 1.0, "wh": 0.001, "m3": 1000.0, "m³": 1000.0, "l": 1.0}.get(u, 1.0)


def carbon_scale(field: str, unit: str = "") -> float:
    """Factor from a carbon-intensity point to kg CO2 per kWh (``_g_per_kwh`` fields are grams)."""
    grams = field.lower().endswith("_g_per_kwh") or unit.lower() in ("g/kwh", "gco2/kwh", "g co2/kwh")
    return 0.001 if grams else 1.0


def power_scale(field: str, unit: str = "") -> float:
    """Factor from a power point to kW (``_w`` fields are watts)."""
    name = field.lower()
    if name.endswith("_mw"):
        return 1000.0
    if name.endswith("_kw"):
        return 1.0
    if name.endswith("_w"):
        return 0.001
    return {"mw": 1000.0, "kw": 1.0, "w": 0.001}.get(unit.lower(), 1.0)
