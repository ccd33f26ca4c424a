"""Capacity headroom for job placement: power and cooling, per rack, row, CDU and hall, and the placement query.

Power: rated minus measured, and rated minus the P90 forecast of the next hours (the seasonal empirical P90: the
rack's power over the same hours of day in the past week, which a scheduler can trust for a few hours ahead).
The UPS rating bounds the whole hall's IT load.

Cooling, learned from telemetry only (never from the simulator's equations):

- **CDU heat**: the heat a CDU can still take at its current supply temperature. Its facility-water valve is what
  runs out first: heat moved is about proportional to facility-water flow at the current temperatures, so the
  capacity is heat / valve opening (conservative while the valve sits on its minimum-flow stop). The secondary
  side is also bounded by the coolant rise it may take: ρ·c_p·V̇·(max rise), PG25 properties by default.
- **GPU thermal margin**: how far the hottest GPU of a rack is from its throttle limit now, and after ``N`` kW more,
  from a per-rack linear fit of (hottest GPU − coolant inlet) against rack power over recent history.

:func:`can_place` answers "can N kW more run on these racks for H hours?" with yes/no and the binding constraint:
every constraint's slack is computed and the smallest (most negative) one binds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from aidc.errors import DataError

PG25_RHO_CP = 1020.0 * 3900.0  # J/(m³ K): propylene glycol 25 %, the usual TCS coolant
DEFAULT_GPU_LIMIT_C = 87.0  # throttle onset of current accelerators (high 80s °C)
DEFAULT_GPU_MARGIN_K = 3.0  # keep this far below the limit when placing
DEFAULT_MAX_TCS_RISE_K = 15.0


@dataclass(frozen=True, slots=True)
class RackState:
    """What placement needs to know about one rack, from the latest telemetry and its history."""

    name: str
    hall: str
    row: str
    cdu: str
    rated_kw: float
    power_kw: float | None
    p90_kw: float | None = None  # P90 of the next hours
    gpu_max_c: float | None = None
    inlet_c: float | None = None
    thermal_k_per_kw: float | None = None  # d(hottest GPU − inlet)/d(rack power), learned
    liquid_share: float = 0.88  # share of rack heat the liquid loop takes (the rest goes to the CRAHs)


@dataclass(frozen=True, slots=True)
class CduState:
    """A CDU's latest readings."""

    name: str
    hall: str
    heat_kw: float | None
    valve_pct: float | None
    flow_lpm: float | None
    supply_c: float | None
    return_c: float | None


@dataclass(frozen=True, slots=True)
class Constraint:
    """One limit a placement must respect: its slack in its unit (negative: violated)."""

    name: str
    where: str
    limit: float
    value: float
    unit: str

    @property
    def slack(self) -> float:
        """Limit minus value."""
        return self.limit - self.value


@dataclass(frozen=True, slots=True)
class Placement:
    """The answer to a placement query."""

    ok: bool
    binding: str | None
    constraints: tuple[Constraint, ...]
    unknown: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, object]:
        """JSON form with every constraint's slack."""
        return {
            "ok": self.ok,
            "binding": self.binding,
            "unknown": list(self.unknown),
            "constraints": [{**asdict(c), "slack": c.slack} for c in self.constraints],
        }


def cdu_capacity_kw(cdu: CduState, max_rise_k: float = DEFAULT_MAX_TCS_RISE_K) -> float | None:
    """Heat (kW) the CDU can take at its current supply temperature: the lower of its valve and flow bounds."""
    bounds = []
    if cdu.heat_kw is not None and cdu.valve_pct is not None and cdu.valve_pct > 1.0:
        bounds.append(cdu.heat_kw * 100.0 / min(cdu.valve_pct, 100.0))
    if cdu.flow_lpm is not None and cdu.flow_lpm > 0:
        bounds.append(PG25_RHO_CP * cdu.flow_lpm / 60000.0 * max_rise_k / 1000.0)
    return min(bounds) if bounds else None


def fit_thermal(power_kw: np.ndarray, rise_k: np.ndarray, min_points: int = 24) -> float | None:
    """Slope (K/kW) of hottest-GPU-above-inlet against rack power by least squares; None without enough spread."""
    ok = np.isfinite(power_kw) & np.isfinite(rise_k)
    x, y = power_kw[ok], rise_k[ok]
    if len(x) < min_points or float(np.ptp(x)) < 0.05 * max(float(np.mean(x)), 1.0):
        return None
    slope, _ = np.polyfit(x, y, 1)
    return float(max(slope, 0.0))


def rack_headroom(r: RackState) -> dict[str, float | None]:
    """Power headroom now and against the P90 forecast (kW), and GPU thermal margin (K)."""
    return {
        "rated_kw": r.rated_kw,
        "power_kw": r.power_kw,
        "p90_kw": r.p90_kw,
        "power_headroom_kw": None if r.power_kw is None else r.rated_kw - r.power_kw,
        "p90_headroom_kw": None if r.p90_kw is None else r.rated_kw - r.p90_kw,
        "gpu_max_c": r.gpu_max_c,
    }


def summary(
    racks: Sequence[RackState], cdus: Sequence[CduState], ups_rated_kw: float | None, gpu_limit_c: float
) -> dict[str, object]:
    """Headroom per rack, row, CDU and hall."""

    def add(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else a + b

    out_racks = {}
    for r in racks:
        h = rack_headroom(r)
        h["gpu_margin_k"] = None if r.gpu_max_c is None else gpu_limit_c - r.gpu_max_c
        out_racks[r.name] = h
    rows: dict[str, dict[str, float | None]] = {}
    halls: dict[str, dict[str, float | None]] = {}
    for r in racks:
        h = out_racks[r.name]
        for key, group in ((f"{r.hall}/{r.row}", rows), (r.hall, halls)):
            g = group.setdefault(key, {"rated_kw": 0.0, "power_kw": 0.0, "p90_kw": 0.0})
            g["rated_kw"] = add(g["rated_kw"], r.rated_kw)
            g["power_kw"] = add(g["power_kw"], h["power_kw"])
            g["p90_kw"] = add(g["p90_kw"], h["p90_kw"])
    for g in (*rows.values(), *halls.values()):
        rated = g["rated_kw"]
        g["power_headroom_kw"] = None if g["power_kw"] is None or rated is None else rated - g["power_kw"]
        g["p90_headroom_kw"] = None if g["p90_kw"] is None or rated is None else rated - g["p90_kw"]
    if ups_rated_kw is not None:
        for g in halls.values():
            g["ups_rated_kw"] = ups_rated_kw
            g["ups_headroom_kw"] = None if g["power_kw"] is None else ups_rated_kw - g["power_kw"]
    out_cdus = {}
    for c in cdus:
        cap = cdu_capacity_kw(c)
        out_cdus[c.name] = {
            "heat_kw": c.heat_kw,
            "capacity_kw": cap,
            "heat_headroom_kw": None if cap is None or c.heat_kw is None else cap - c.heat_kw,
            "supply_c": c.supply_c,
            "valve_pct": c.valve_pct,
        }
    return {"racks": out_racks, "rows": rows, "cdus": out_cdus, "halls": halls}


def can_place(
    racks: Mapping[str, RackState],
    cdus: Mapping[str, CduState],
    names: Sequence[str],
    extra_kw: float,
    hours: float,
    *,
    ups_rated_kw: float | None = None,
    gpu_limit_c: float = DEFAULT_GPU_LIMIT_C,
    gpu_margin_k: float = DEFAULT_GPU_MARGIN_K,
) -> Placement:
    """Can ``extra_kw`` more (spread evenly over ``names``) run for ``hours``? Yes/no and the binding constraint."""
    if not names:
        raise DataError("placement: give at least one rack")
    if not extra_kw >= 0 or not hours > 0:
        raise DataError(f"placement: kw {extra_kw} must be >= 0 and hours {hours} > 0")
    missing = [n for n in names if n not in racks]
    if missing:
        raise DataError(f"placement: unknown rack {missing[0]!r}")
    share = extra_kw / len(names)
    cons: list[Constraint] = []
    unknown: list[str] = []
    added_heat: dict[str, float] = {}
    for n in names:
        r = racks[n]
        if r.power_kw is None:
            unknown.append(f"rack {n}: no power reading")
        else:
            cons.append(Constraint("rack power", n, r.rated_kw, r.power_kw + share, "kW"))
        if r.p90_kw is None:
            unknown.append(f"rack {n}: no P90 forecast for the next {hours:g} h")
        else:
            cons.append(Constraint(f"rack power P90 next {hours:g} h", n, r.rated_kw, r.p90_kw + share, "kW"))
        if r.gpu_max_c is None or r.thermal_k_per_kw is None:
            unknown.append(f"rack {n}: no learned GPU thermal response")
        else:
            predicted = r.gpu_max_c + r.thermal_k_per_kw * share
            cons.append(Constraint("GPU thermal margin", n, gpu_limit_c - gpu_margin_k, predicted, "°C"))
        added_heat[r.cdu] = added_heat.get(r.cdu, 0.0) + share * r.liquid_share
    for cdu_name, heat in added_heat.items():
        c = cdus.get(cdu_name)
        cap = None if c is None else cdu_capacity_kw(c)
        if c is None or cap is None or c.heat_kw is None:
            unknown.append(f"CDU {cdu_name}: no heat, valve or flow reading")
        else:
            cons.append(Constraint("CDU heat capacity", cdu_name, cap, c.heat_kw + heat, "kW"))
    if ups_rated_kw is not None:
        hall_p90 = [r.p90_kw if r.p90_kw is not None else r.power_kw for r in racks.values()]
        if all(v is not None for v in hall_p90):
            total = float(sum(v for v in hall_p90 if v is not None))
            cons.append(Constraint("UPS rating (site IT P90)", "ups", ups_rated_kw, total + extra_kw, "kW"))
        else:
            unknown.append("ups: IT power of some racks unknown")
    # Slack relative to each limit so kW and °C constraints compare; the tightest one binds.
    worst = min(cons, key=lambda c: c.slack / max(abs(c.limit), 1.0), default=None)
    ok = not unknown and all(c.slack >= 0 for c in cons)
    binding = None if worst is None else f"{worst.name} at {worst.where}"
    if unknown and all(c.slack >= 0 for c in cons):
        binding = f"unknown: {unknown[0]}"
    return Placement(ok, binding, tuple(cons), tuple(unknown))
