"""Facility physics: parameters and the per-component equations, vectorised with numpy.

Every equation here is documented with units in ``docs/physics.md``. The :class:`Facility` in
``simulators/facility.py`` wires them together and holds the state; this module is pure functions and the
:class:`PhysicsParams` dataclass, whose fields can each be overridden from ``[simulation.physics]`` in the site
file (:func:`params_from_overrides`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from aidc.config import Site
from aidc.errors import ConfigError

Arr = npt.NDArray[np.float64]
LEAK_MAX_TEMP_C = 150.0  # leakage is evaluated at no more than this junction temperature
CLOCK_SHARE_MIN = 1e-30  # switching-power share below which the clock counts as stopped (c = 1e-12)


def _p(default: float, lo: float, hi: float, unit: str) -> Any:
    """A parameter field with its allowed range and unit (checked on override)."""
    return field(default=default, metadata={"lo": lo, "hi": hi, "unit": unit})


@dataclass(frozen=True, slots=True)
class PhysicsParams:
    """Physical parameters of the simulated facility; defaults are typical values (sources in docs/physics.md)."""

    # GPU electrical and thermal model.
    leak_ref_frac: float = _p(0.10, 0.0, 0.5, "1")  # leakage share of TDP at the reference temperature
    leak_beta_per_k: float = _p(0.025, 0.0, 0.1, "1/K")  # leakage grows as exp(beta (T - T_ref))
    leak_ref_temp_c: float = _p(65.0, 20.0, 100.0, "°C")
    r_tim_k_per_w: float = _p(0.012, 0.0, 0.2, "K/W")  # die + thermal interface
    r_cp_ref_k_per_w: float = _p(0.018, 0.001, 0.2, "K/W")  # cold-plate convection at the reference flow
    cp_ref_flow_lpm: float = _p(2.0, 0.1, 20.0, "L/min")  # per-GPU cold-plate flow at which r_cp_ref holds
    cp_flow_exponent: float = _p(0.8, 0.3, 1.0, "1")  # Dittus-Boelter-like h ∝ flow^0.8
    gpu_flow_share: float = _p(0.7, 0.1, 1.0, "1")  # share of rack coolant flow through GPU cold plates
    gpu_coolant_rise_frac: float = _p(0.5, 0.0, 1.0, "1")  # GPUs see inlet + this share of the rack ΔT
    gpu_spread: float = _p(0.05, 0.0, 0.3, "1")  # relative spread of per-GPU thermal resistance
    other_idle_frac: float = _p(0.45, 0.0, 1.0, "1")  # non-GPU rack power at idle, share of its full load
    # Board power limit and clocks (DVFS).
    power_limit_frac: float = _p(1.0, 0.3, 1.0, "1")  # enforced power limit / each model's power_limit_w
    clock_power_exponent: float = _p(2.5, 1.0, 4.0, "1")  # dynamic power ∝ clock^γ along the DVFS curve
    # Coolants.
    tcs_density_kg_m3: float = _p(1020.0, 800.0, 1200.0, "kg/m³")  # PG25
    tcs_cp_j_kgk: float = _p(3900.0, 2000.0, 4300.0, "J/(kg K)")
    fws_density_kg_m3: float = _p(997.0, 800.0, 1200.0, "kg/m³")  # water
    fws_cp_j_kgk: float = _p(4180.0, 2000.0, 4300.0, "J/(kg K)")
    air_density_kg_m3: float = _p(1.18, 0.8, 1.4, "kg/m³")
    air_cp_j_kgk: float = _p(1006.0, 900.0, 1100.0, "J/(kg K)")
    # CDU.
    cdu_flow_lpm_per_kw: float = _p(1.5, 0.5, 5.0, "L/(min kW)")  # design flow per rated rack kW
    cdu_dp_design_kpa: float = _p(120.0, 10.0, 400.0, "kPa")  # dp at design flow (system curve)
    cdu_internal_dp_kpa: float = _p(80.0, 0.0, 400.0, "kPa")  # CDU exchanger + strainer drop at design flow
    # Warmer PG25 is thinner: at a held dp the loop passes this much more flow per K of mean TCS temperature.
    tcs_flow_per_k: float = _p(0.0, 0.0, 0.05, "1/K")
    tcs_flow_ref_c: float = _p(35.0, 10.0, 70.0, "°C")  # mean TCS temperature at which the design flow holds
    cdu_design_speed_frac: float = _p(0.8, 0.2, 1.0, "1")  # pump speed at the design point
    cdu_pump_eff: float = _p(0.55, 0.1, 0.95, "1")  # wire-to-water efficiency at the design point
    cdu_approach_k: float = _p(3.0, 0.5, 10.0, "K")  # TCS supply − FWS supply at design heat load
    cdu_approach_min_k: float = _p(1.0, 0.0, 10.0, "K")
    cdu_tau_s: float = _p(60.0, 1.0, 3600.0, "s")  # TCS loop thermal time constant
    cdu_high_temp_alarm_k: float = _p(5.0, 0.5, 30.0, "K")  # TCS supply above setpoint that raises bit 0
    # Plant: facility water.
    fws_design_dt_k: float = _p(10.0, 2.0, 25.0, "K")  # FWS return − supply the pumps aim for
    fws_min_flow_frac: float = _p(0.3, 0.05, 1.0, "1")
    fws_dp_design_kpa: float = _p(250.0, 10.0, 600.0, "kPa")
    fws_pump_eff: float = _p(0.65, 0.1, 0.95, "1")
    fws_tau_s: float = _p(180.0, 1.0, 3600.0, "s")  # FWS loop / plant response time constant
    # Plant: heat rejection and chiller.
    drycooler_approach_k: float = _p(5.0, 0.5, 20.0, "K")  # dry cooler leaving water − dry bulb, design, full fans
    tower_approach_k: float = _p(4.0, 0.5, 20.0, "K")  # tower + plate exchanger leaving water − wet bulb, same
    hr_fan_w_per_kw: float = _p(20.0, 0.0, 100.0, "W/kW")  # heat-rejection fan power at full speed, per design kW
    hr_air_ratio: float = _p(1.3, 1.0, 5.0, "1")  # free-cooler air / water capacity rate at design
    hr_design_margin: float = _p(1.1, 1.0, 3.0, "1")  # free-cooler and condenser size / design heat load
    hr_min_speed: float = _p(0.15, 0.0, 1.0, "1")
    chiller_eta_carnot: float = _p(0.5, 0.1, 0.9, "1")  # second-law efficiency
    chiller_cop_min: float = _p(2.0, 0.5, 10.0, "1")
    chiller_cop_max: float = _p(12.0, 2.0, 30.0, "1")
    chiller_evap_approach_k: float = _p(1.5, 0.0, 10.0, "K")  # evaporating temperature below leaving water
    chiller_cond_approach_k: float = _p(15.0, 0.0, 30.0, "K")  # air-cooled condensing temperature above dry bulb
    chiller_cond_approach_tower_k: float = _p(5.0, 0.0, 30.0, "K")  # water-cooled: above the tower water
    chiller_idle_frac: float = _p(0.1, 0.0, 0.5, "1")  # part-load penalty: P = Q/COP (idle/PLR + 1 − idle)
    chiller_capacity_frac: float = _p(1.1, 0.2, 3.0, "1")  # chiller capacity / design heat load
    condenser_heat_frac: float = _p(1.25, 1.0, 2.0, "1")  # condenser design heat / chiller capacity (Q + W)
    # Air side (CRAH).
    crah_air_dt_k: float = _p(12.0, 3.0, 25.0, "K")  # air ΔT across the CRAH coil
    crah_fan_pa: float = _p(500.0, 50.0, 3000.0, "Pa")  # fan total pressure
    crah_fan_eff: float = _p(0.6, 0.1, 0.95, "1")
    crah_chw_c: float = _p(14.0, 4.0, 25.0, "°C")  # chilled water of the CRAH coils' design point
    crah_chw_dt_k: float = _p(6.0, 2.0, 15.0, "K")
    crah_tau_s: float = _p(120.0, 1.0, 3600.0, "s")
    # Hall humidity and condensation.
    hall_dewpoint_min_c: float = _p(-9.0, -20.0, 25.0, "°C")  # humidifiers keep the hall dew point above this
    hall_dewpoint_max_c: float = _p(15.0, -20.0, 25.0, "°C")  # dehumidification keeps it below this
    dewpoint_margin_k: float = _p(2.0, 0.0, 10.0, "K")  # TCS supply must stay this far above the hall dew point
    # Electrical.
    dist_loss_frac: float = _p(0.005, 0.0, 0.05, "1")  # busway and cabling between UPS and PDUs
    ups_loss_a0: float = _p(0.008, 0.0, 0.1, "1")  # UPS loss / rating = a0 + a1 L + a2 L²
    ups_loss_a1: float = _p(0.015, 0.0, 0.2, "1")
    ups_loss_a2: float = _p(0.012, 0.0, 0.2, "1")
    tx_core_frac: float = _p(0.002, 0.0, 0.05, "1")  # transformer no-load loss / rating
    tx_copper_frac: float = _p(0.008, 0.0, 0.05, "1")  # load loss at rating, ∝ load²
    tx_rating_frac: float = _p(1.6, 0.5, 5.0, "1")  # transformer rating / rated IT power
    lighting_w_per_kw: float = _p(4.0, 0.0, 50.0, "W/kW")  # lighting and offices at day, per rated IT kW
    lighting_night_frac: float = _p(0.35, 0.0, 1.0, "1")
    day_start_h: float = _p(7.0, 0.0, 24.0, "h")
    day_end_h: float = _p(19.0, 0.0, 24.0, "h")
    grid_voltage_v: float = _p(13800.0, 200.0, 36000.0, "V")  # utility meter, line to line
    lv_voltage_v: float = _p(230.0, 180.0, 264.0, "V")  # PDU inlets, line to neutral
    # Solver.
    gpu_iterations: float = _p(3.0, 1.0, 20.0, "1")  # fixed-point passes (contraction ≈ 0.1 each)


def param_info() -> list[tuple[str, float, str, float, float]]:
    """Name, default, unit and allowed range of every parameter (for docs and messages)."""
    defaults = PhysicsParams()
    return [
        (f.name, float(getattr(defaults, f.name)), f.metadata["unit"], f.metadata["lo"], f.metadata["hi"])
        for f in fields(PhysicsParams)
    ]


def params_from_overrides(overrides: dict[str, Any], base: PhysicsParams | None = None) -> PhysicsParams:
    """Apply ``[simulation.physics]`` overrides; an unknown key or bad value raises a one-line ConfigError."""
    known = {f.name: f for f in fields(PhysicsParams)}
    changes: dict[str, float] = {}
    for key, raw in overrides.items():
        where = f"simulation.physics.{key}"
        if key not in known:
            raise ConfigError(f"{where}: unknown parameter (see docs/physics.md for the list)")
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise ConfigError(f"{where}: {raw!r} is not a number")
        value = float(raw)
        meta = known[key].metadata
        if not math.isfinite(value) or not meta["lo"] <= value <= meta["hi"]:
            unit = "" if meta["unit"] == "1" else f" {meta['unit']}"
            raise ConfigError(f"{where}: {raw!r} is outside [{meta['lo']}, {meta['hi']}]{unit}")
        changes[key] = value
    out = replace(base or PhysicsParams(), **changes)
    if out.day_end_h <= out.day_start_h:
        raise ConfigError(f"simulation.physics.day_end_h: {out.day_end_h} must be after day_start_h {out.day_start_h}")
    if out.hall_dewpoint_max_c < out.hall_dewpoint_min_c:
        raise ConfigError(
            f"simulation.physics.hall_dewpoint_max_c: {out.hall_dewpoint_max_c} is below hall_dewpoint_min_c "
            f"{out.hall_dewpoint_min_c}"
        )
    return out


def site_params(site: Site) -> PhysicsParams:
    """The site's ``[simulation.physics]`` applied to the defaults; ConfigError names the site file and the key."""
    try:
        return params_from_overrides(dict(site.config.simulation.physics))
    except ConfigError as exc:
        raise ConfigError(f"{site.path or '<site>'}: {exc}") from None


# --- generic -----------------------------------------------------------------------------------------------


def lag_factor(dt_s: float, tau_s: float) -> float:
    """Exact first-order lag weight: x ← target + (x − target)·exp(−dt/τ); stable for any dt."""
    return math.exp(-dt_s / tau_s)


def lpm_to_m3s(flow_lpm: Any) -> Any:
    """Litres per minute to m³/s."""
    return flow_lpm / 60000.0


# --- GPUs and racks ----------------------------------------------------------------------------------------


def cold_plate_resistance(flow_per_gpu_lpm: Arr, p: PhysicsParams) -> Arr:
    """Junction-to-coolant thermal resistance (K/W): R = R_tim + R_cp,ref·(q_ref / q)^n."""
    q = np.maximum(flow_per_gpu_lpm, 1e-3)
    return p.r_tim_k_per_w + p.r_cp_ref_k_per_w * (p.cp_ref_flow_lpm / q) ** p.cp_flow_exponent


class GpuSolution(NamedTuple):
    """Operating point of each GPU: arrays of the shape of the coolant temperatures passed in."""

    power_w: Arr  # board power
    temp_c: Arr  # junction temperature
    throttled: npt.NDArray[np.bool_]  # thermal slowdown: held at the throttle temperature
    power_capped: npt.NDArray[np.bool_]  # held at the board power limit (and not thermally throttled)
    # Clock fraction of the maximum (1: full clocks); work rate = utilisation · clock. float32 (good to ~1e-7, far
    # below what it models); a read-only broadcast of 1 when no GPU is slowed.
    clock: npt.NDArray[np.float32]


def gpu_power_and_temp(
    util: Arr,
    coolant_c: Arr,
    r_th: Arr,
    *,
    idle_w: Arr | float,
    tdp_w: Arr | float,
    min_w: Arr | float,
    limit_c: Arr | float,
    power_limit_w: Arr | float,
    p: PhysicsParams,
    guess_c: Arr | None = None,
) -> GpuSolution:
    """GPU power (W), junction temperature (°C), slowdown flags and clock fraction, solved together.

    At full clocks P = P_idle + (P_tdp − P_idle)·u + L·(exp(β(T − T_ref)) − 1) with L = leak_ref_frac·P_tdp, and
    T = T_coolant + P·R_th. The GPU's power controller holds P at the board limit ``power_limit_w`` by lowering
    clocks (power capping); where T would still exceed the throttle limit it caps P at (T_limit − T_coolant)/R_th,
    not below the clock floor ``min_w`` (thermal throttling). Either way the clock fraction c solves
    P = P_idle + (P_tdp − P_idle)·u·c^γ + leakage(T) at the held power (:func:`clock_fraction`).
    Power, held at the limit, and temperature are iterated by fixed point, which contracts by
    β·R_th·∂P_leak/∂T ≈ 0.1 per pass; starting from ``guess_c`` (the previous step's temperatures) two or three
    passes leave well under 0.1 % error in power.
    """
    leak = p.leak_ref_frac * tdp_w
    dyn = (tdp_w - idle_w) * util  # switching power at full clocks
    # P = (base − L) + L·e^(−β·T_ref)·e^(β·T) and T = T_c + P·R, iterated in place over all GPUs.
    offset = idle_w - leak + dyn
    # (A nW floor keeps the clamp below finite without leakage, leak_ref_frac = 0.)
    scale = np.maximum(leak, 1e-9) * math.exp(-p.leak_beta_per_k * p.leak_ref_temp_c)
    # The power controller holds P ≤ limit: the same as e^(β·T) ≤ (limit − offset)/scale, one clamp on the float32
    # exponential (negative where the limit is below the leakage-free power: P is then exactly the limit).
    e_max = np.asarray((power_limit_w - offset) / scale, dtype=np.float32)
    temp = coolant_c + (offset + leak) * r_th if guess_c is None else guess_c.copy()
    power = np.empty_like(temp)
    # The leakage factor is evaluated in float32 (relative error ~1e-7 on a term of ~100 W): SIMD exp is ~3x faster.
    work = np.empty(temp.shape, dtype=np.float32)
    held = np.empty_like(work)  # the clamped exponential; ``work`` keeps the full-clock one for the clock below
    leak_cap = p.leak_beta_per_k * LEAK_MAX_TEMP_C
    for _ in range(int(p.gpu_iterations)):
        np.multiply(temp, p.leak_beta_per_k, out=work, casting="same_kind")
        np.minimum(work, leak_cap, out=work)  # starved of coolant the die would burn; leakage stops growing
        np.exp(work, out=work)
        np.minimum(work, e_max, out=held)
        np.multiply(held, scale, out=power)
        power += offset
        np.multiply(power, r_th, out=temp)
        temp += coolant_c
    capped = work > e_max
    throttled = temp > limit_c
    if not (capped.any() or throttled.any()):  # the common case below both limits: full clocks
        return GpuSolution(power, temp, throttled, capped, np.broadcast_to(np.float32(1.0), power.shape))
    # At the limit the switching power gives up what the full-clock power exceeds the limit by:
    # c^γ = 1 − (P_full − P_limit)/P_dyn = 1 − scale·(e − e_max)/P_dyn, which is 1 where not capped (e ≤ e_max).
    # Dense and in place (at full load most GPUs are at the limit), in float32 for SIMD log/exp.
    np.maximum(work, e_max, out=work)
    work -= e_max
    work *= (scale / np.maximum(dyn, 1e-9)).astype(np.float32)
    np.subtract(1.0, work, out=work)
    np.maximum(work, CLOCK_SHARE_MIN, out=work)  # leakage alone takes all the power: c ≈ 0 (no log(0) warning)
    np.log(work, out=work)
    work *= 1.0 / p.clock_power_exponent
    clock = np.exp(work, out=work)
    if throttled.any():  # rare (a failed pump, a hot loop): worked on where it happens
        th = np.nonzero(throttled)
        shape = power.shape
        cool, r = np.broadcast_to(coolant_c, shape)[th], np.broadcast_to(r_th, shape)[th]
        lim, floor = np.broadcast_to(limit_c, shape)[th], np.broadcast_to(min_w, shape)[th]
        power[th] = np.minimum(power[th], np.maximum((lim - cool) / r, floor))
        temp[th] = cool + power[th] * r
        clock[th] = clock_fraction(
            power[th],
            temp[th],
            np.broadcast_to(util, shape)[th],
            idle_w=np.broadcast_to(idle_w, shape)[th],
            tdp_w=np.broadcast_to(tdp_w, shape)[th],
            p=p,
        )
        capped &= ~throttled
    return GpuSolution(power, temp, throttled, capped, clock)


def clock_fraction(
    power_w: Arr, temp_c: Arr, util: Arr, *, idle_w: Arr | float, tdp_w: Arr | float, p: PhysicsParams
) -> npt.NDArray[np.float32]:
    """Clock fraction c ∈ [0, 1] at which a GPU at ``temp_c`` and utilisation ``util`` draws ``power_w``.

    Solves P = P_idle + (P_tdp − P_idle)·u·c^γ + L·(exp(β(T − T_ref)) − 1) for c, γ = ``clock_power_exponent``:
    dynamic power C·V²·f falls faster than the clock because the voltage comes down with it (DVFS). Where leakage
    alone uses up the allowed power (a GPU starved of coolant) c is 0; an idle GPU (u = 0) keeps c = 1 unless so.
    """
    leak = p.leak_ref_frac * tdp_w
    expo = p.leak_beta_per_k * (np.minimum(temp_c, LEAK_MAX_TEMP_C) - p.leak_ref_temp_c)
    room = power_w - idle_w - leak * (np.exp(expo) - 1.0)  # power left for switching
    dyn = (tdp_w - idle_w) * util
    share = np.where(dyn > 0.0, room / np.maximum(dyn, 1e-9), np.where(room >= 0.0, 1.0, 0.0))
    return np.asarray(np.clip(share, 0.0, 1.0) ** (1.0 / p.clock_power_exponent), dtype=np.float32)


def coolant_rise(heat_w: Any, flow_lpm: Any, density: float, cp: float) -> Any:
    """Temperature rise (K) of a liquid stream: ΔT = Q / (ρ·c_p·V̇)."""
    return heat_w / (density * cp * np.maximum(lpm_to_m3s(flow_lpm), 1e-9))


# --- CDU -----------------------------------------------------------------------------------------------------


def cdu_flow(dp_setpoint_kpa: Arr, design_flow_lpm: Arr, p: PhysicsParams) -> tuple[Arr, Arr, Arr]:
    """Flow (L/min), achieved dp (kPa) and pump speed (0-1) of a pump holding dp on a quadratic system curve.

    System curve dp = dp_d·(V̇/V̇_d)²; the pump runs at speed s_d at the design point and, by the affinity laws,
    delivers the same curve point scaled by s, so V̇ = V̇_d·s/s_d, capped at full speed.
    """
    flow = design_flow_lpm * np.sqrt(dp_setpoint_kpa / p.cdu_dp_design_kpa)
    speed = p.cdu_design_speed_frac * flow / design_flow_lpm
    capped = np.minimum(speed, 1.0)
    flow = flow * capped / speed
    dp = p.cdu_dp_design_kpa * (flow / design_flow_lpm) ** 2
    return flow, dp, capped


def viscosity_flow_factor(mean_tcs_c: Arr, p: PhysicsParams) -> Arr:
    """Flow at a held dp relative to design flow, from the loop's mean temperature (coolant viscosity).

    PG25's viscosity falls about 2.5 %/K near 30-45 °C; the cold plates' laminar microchannels and the turbulent
    manifolds give the loop a resistance ∝ μ^0.5, so at a held dp V̇ ∝ μ^-0.25: about 0.6 %/K (``tcs_flow_per_k``).
    """
    return np.exp(p.tcs_flow_per_k * (mean_tcs_c - p.tcs_flow_ref_c))


def pump_power(dp_kpa: Any, flow_lpm: Any, eff: float) -> Any:
    """Shaft power (W) = dp·V̇/η; on a quadratic system curve this is the affinity law P ∝ V̇³."""
    return dp_kpa * 1000.0 * lpm_to_m3s(flow_lpm) / eff


def cdu_approach(load_frac: Arr, p: PhysicsParams) -> Arr:
    """Heat-exchanger approach (K) at a load fraction: proportional to load at fixed UA, with a floor."""
    return np.maximum(p.cdu_approach_k * load_frac, p.cdu_approach_min_k)


# --- plant ---------------------------------------------------------------------------------------------------


def chiller_cop(evap_c: Any, cond_c: Any, p: PhysicsParams) -> Any:
    """Full-load COP: η·T_evap/(T_cond − T_evap) in kelvin, bounded to [cop_min, cop_max] (arrays or floats)."""
    lift = np.maximum(cond_c - evap_c, 1.0)
    return np.minimum(np.maximum(p.chiller_eta_carnot * (evap_c + 273.15) / lift, p.chiller_cop_min), p.chiller_cop_max)


def chiller_power(load_w: Any, cop: Any, capacity_w: float, p: PhysicsParams) -> Any:
    """Compressor power (W) with a part-load penalty: P = Q/COP·(idle/PLR + 1 − idle), PLR = Q/capacity."""
    plr = np.minimum(np.maximum(load_w / capacity_w, 0.05), 1.0)
    power = load_w / cop * (p.chiller_idle_frac / plr + 1.0 - p.chiller_idle_frac)
    return np.where(load_w > 0.0, power, 0.0)


def dew_point(drybulb_c: Any, rh_pct: Any) -> Any:
    """Dew point (°C) from dry bulb and relative humidity: Magnus form with Sonntag's constants (±0.1 K, −45-60 °C)."""
    b, c = 17.62, 243.12
    gamma = np.log(np.clip(rh_pct, 1.0, 100.0) / 100.0) + b * drybulb_c / (c + drybulb_c)
    return c * gamma / (b - gamma)


def ups_loss(out_w: Any, rated_w: float, p: PhysicsParams) -> Any:
    """UPS losses (W) from its efficiency curve: rated·(a0 + a1·L + a2·L²) with L = output/rated."""
    load = out_w / rated_w
    return rated_w * (p.ups_loss_a0 + p.ups_loss_a1 * load + p.ups_loss_a2 * load * load)


def transformer_loss(load_w: Any, rated_w: float, p: PhysicsParams) -> Any:
    """Transformer losses (W): core (no-load) plus copper ∝ (load/rating)²."""
    frac = load_w / rated_w
    return rated_w * (p.tx_core_frac + p.tx_copper_frac * frac * frac)


def lighting_power(local_hour: float, design_it_w: float, p: PhysicsParams) -> float:
    """Lighting and office power (W): full during the working day, a fraction at night."""
    day = p.day_start_h <= local_hour < p.day_end_h
    return design_it_w / 1000.0 * p.lighting_w_per_kw * (1.0 if day else p.lighting_night_frac)
