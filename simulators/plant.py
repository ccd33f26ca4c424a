"""One update of the facility's physics, vectorised over N what-if candidates (equations: docs/physics.md).

:func:`advance` takes the previous :class:`PlantState`, the setpoints of each candidate and the conditions of
the instant, and returns the new state. ``Facility.step`` calls it with N = 1; ``Facility.what_if`` with N
candidates, so a what-if with held setpoints is the step itself. Loop temperatures follow exact first-order
lags (``dt_s = inf`` gives the steady state of the lags); the GPU die and cold plate are solved quasi-steady.
"""

from __future__ import annotations

import math

import numpy as np

from simulators import physics as ph
from simulators.degradation import Degradation
from simulators.heat_rejection import condenser_fans, fan_power
from simulators.interface import Setpoints
from simulators.layout import AIR_SUPPLY_C, Layout
from simulators.physics import Arr
from simulators.state import BoolArr, Env, PlantState

Hydraulics = tuple[Arr, Arr, Arr, Arr, BoolArr, Arr, Arr]


def hydraulics(
    lay: Layout, dp_sp: Arr, fault: BoolArr, degradation: Degradation | None = None, t_ns: int = 0
) -> Hydraulics:
    """Flow, achieved dp, pump speed and power, dp-not-reached, rack flow and per-GPU thermal resistance.

    ``degradation`` (slow faults, simulators/degradation.py) wears pumps, clogs strainers and fouls cold plates
    as they stand at ``t_ns``.
    """
    p = lay.params
    flow, dp, speed = ph.cdu_flow(dp_sp, lay.cdu_design_flow, p)
    # The pump also overcomes the CDU's own exchanger and strainer, on the same quadratic curve.
    head = dp + p.cdu_internal_dp_kpa * (flow / lay.cdu_design_flow) ** 2
    wear: Arr | float = 1.0
    if degradation is not None:  # pump wear and strainer clogging
        flow, speed, head, wear = degradation.hydraulics(t_ns, flow, speed, head - dp, dp)
        dp = p.cdu_dp_design_kpa * (flow / lay.cdu_design_flow) ** 2
    pump_w = np.where(fault, 0.0, ph.pump_power(head, flow, p.cdu_pump_eff) / wear)
    flow = np.where(fault, 0.05 * flow, flow)  # a failed pump leaves thermosiphon / standby trickle
    speed = np.where(fault, 0.0, speed)
    dp = np.where(fault, 0.0025 * dp, dp)
    not_reached = dp < dp_sp - 0.5  # full speed (or a failed pump) short of the setpoint by more than 0.5 kPa
    rack_flow = flow[:, lay.rack_cdu] * lay.rack_flow_share
    per_gpu = rack_flow * p.gpu_flow_share / lay.rack_gpus
    g_rth = ph.cold_plate_resistance(per_gpu, p)[:, lay._gpu_rack] * lay._g_rfactor
    if degradation is not None:  # cold-plate fouling
        g_rth = g_rth * degradation.rack_rth_factor(t_ns)[lay._gpu_rack]
    return flow, dp, speed, pump_w, not_reached, rack_flow, g_rth


def advance(lay: Layout, st: PlantState, sp: Setpoints, env: Env, dt_s: float, hyd: Hydraulics) -> PlantState:
    """The state ``dt_s`` seconds after ``st`` with setpoints ``sp`` held (``math.inf``: the lags' steady state)."""
    out = PlantState()
    _cdus_and_racks(lay, st, sp, env, dt_s, hyd, out)
    _it_supply(lay, env, out)
    _plant(lay, st, sp, env, dt_s, out)
    p = lay.params
    out.cooling_power_w = out.plant_cooling_w + out.cdu_pump_w.sum(axis=1)
    before_tx = out.ups_input_w + out.cooling_power_w + env.other_power_w
    out.tx_loss_w = ph.transformer_loss(before_tx, lay.design_it_w * p.tx_rating_frac, p)
    out.facility_power_w = before_tx + out.tx_loss_w
    return out


def _cdus_and_racks(
    lay: Layout, st: PlantState, sp: Setpoints, env: Env, dt: float, hyd: Hydraulics, out: PlantState
) -> None:
    p = lay.params
    flow, dp, speed, pump_w, not_reached, rack_flow, r_th = hyd
    # The racks' load warms the loop and warmer coolant flows more at a held dp. The loop's mean temperature is
    # taken as supply setpoint + half the design rise at the CDU's load: from setpoints and load only, so a
    # what-if and the step it predicts see the same flow (docs/physics.md, "CDU hydraulics").
    load = (env.rack_util * lay.rack_rated_w) @ lay.rack_to_cdu / lay.cdu_rated_w
    rise = lay.cdu_design_heat_w / (p.tcs_density_kg_m3 * p.tcs_cp_j_kgk * ph.lpm_to_m3s(lay.cdu_design_flow))
    visc = ph.viscosity_flow_factor(sp.tcs_supply_c + 0.5 * rise * load, p)
    flow, pump_w, rack_flow = flow * visc, pump_w * visc, rack_flow * visc[:, lay.rack_cdu]
    speed = np.minimum(speed * visc, 1.0)
    out.cdu_flow_lpm, out.cdu_dp_kpa, out.cdu_speed, out.cdu_pump_w = flow, dp, speed, pump_w
    out.dp_not_reached, out.rack_flow_lpm = not_reached, rack_flow
    inlet = st.tcs_supply_c[:, lay.rack_cdu]
    coolant = (inlet + p.gpu_coolant_rise_frac * st.rack_rise_c)[:, lay._gpu_rack]
    other = lay.rack_other_full_w * (p.other_idle_frac + (1.0 - p.other_idle_frac) * env.rack_util)
    gpu = ph.gpu_power_and_temp(
        env.gpu_util,
        coolant,
        r_th,
        idle_w=lay._g_idle,
        tdp_w=lay._g_tdp,
        min_w=lay._g_min,
        limit_c=lay._g_limit,
        power_limit_w=_gpu_power_limits(lay, other),
        p=p,
        guess_c=st.gpu_temp_c if hasattr(st, "gpu_temp_c") else None,
    )
    power = gpu.power_w
    out.gpu_power_w, out.gpu_temp_c, out.gpu_clock = power, gpu.temp_c, gpu.clock
    _work(lay, env, gpu, out)
    out.rack_power_w = np.add.reduceat(power, lay.rack_offsets, axis=1) + other
    liquid = out.rack_power_w * (1.0 - lay.crah_share)
    out.rack_rise_c = ph.coolant_rise(liquid, rack_flow, p.tcs_density_kg_m3, p.tcs_cp_j_kgk)
    out.rack_inlet_c = inlet
    out.rack_outlet_c = inlet + out.rack_rise_c
    # CDU heat exchanger: supply cannot go below FWS supply + approach.
    fws_supply = st.fws_supply_c[:, None]
    q_in = liquid @ lay.rack_to_cdu + pump_w
    approach = ph.cdu_approach(q_in / lay.cdu_design_heat_w, p)
    out.cdu_approach_c = approach
    target = np.maximum(sp.tcs_supply_c, fws_supply + approach)
    k = ph.lag_factor(dt, p.cdu_tau_s)
    out.tcs_supply_c = target + (st.tcs_supply_c - target) * k
    ret_target = out.tcs_supply_c + ph.coolant_rise(q_in, flow, p.tcs_density_kg_m3, p.tcs_cp_j_kgk)
    out.tcs_return_c = ret_target + (st.tcs_return_c - ret_target) * k
    # Heat the CDU passes to the FWS, from its own flow and temperatures.
    rho_cp_tcs = p.tcs_density_kg_m3 * p.tcs_cp_j_kgk
    out.cdu_heat_w = np.maximum(rho_cp_tcs * ph.lpm_to_m3s(flow) * (out.tcs_return_c - out.tcs_supply_c), 0.0)
    # FWS side: the valve throttles facility water until its return comes within the approach of the TCS
    # return (counterflow exchanger), between a minimum flow and the fully open valve.
    rho_cp_fws = p.fws_density_kg_m3 * p.fws_cp_j_kgk
    f_max = 1.2 * lay.cdu_fws_design_lpm
    dt_fws = np.maximum(out.tcs_return_c - approach - fws_supply, 0.5)
    demand = out.cdu_heat_w / (rho_cp_fws * dt_fws) * 6e4
    out.cdu_fws_flow_lpm = np.minimum(np.maximum(demand, p.fws_min_flow_frac * lay.cdu_fws_design_lpm), f_max)
    out.cdu_valve_pct = 100.0 * out.cdu_fws_flow_lpm / f_max
    out.cdu_fws_return_c = fws_supply + ph.coolant_rise(
        out.cdu_heat_w, out.cdu_fws_flow_lpm, p.fws_density_kg_m3, p.fws_cp_j_kgk
    )
    # Condensation: TCS pipework and cold plates colder than the hall's dew point plus a margin sweat.
    out.dewpoint_margin_k = out.tcs_supply_c - env.hall_dewpoint_c
    out.condensation_risk = out.dewpoint_margin_k < p.dewpoint_margin_k


def _gpu_power_limits(lay: Layout, other_w: Arr) -> Arr:
    """Each GPU's board power limit: its model's, or lower where its rack is capped.

    A capped rack's GPUs share what its limit leaves after the rack's other equipment, equally (the rack
    controller's power brake), never below their clock floor ``min_w``: the GPUs' power controllers then hold
    the rack at its limit by lowering clocks, so a capped rack draws at most its limit.
    """
    limits = lay.rack_power_limit_w
    if not np.isfinite(limits).any():
        return lay._g_power_limit
    per_gpu = (limits - other_w) / lay.rack_gpus  # (N, racks); inf for an uncapped rack
    return np.minimum(lay._g_power_limit, np.maximum(per_gpu[..., lay._gpu_rack], lay._g_min))


def _work(lay: Layout, env: Env, gpu: ph.GpuSolution, out: PlantState) -> None:
    """Thermally throttled GPUs and the work rate (Σ u·c, full-clock GPU equivalents) per rack, and in all.

    The per-rack power-capped counts and mean clocks are summed only for the facility's own state, when read
    (:class:`simulators.facility_state.FacilityState`): what-if candidates do not need them.
    """
    out.gpu_power_capped = gpu.power_capped
    offsets = lay.rack_offsets
    throttled = bool(gpu.throttled.any())
    if throttled:
        out.rack_throttled = np.add.reduceat(gpu.throttled, offsets, axis=-1, dtype=np.int64)
    else:
        out.rack_throttled = np.zeros((*gpu.clock.shape[:-1], lay.n_racks), dtype=np.int64)
    if throttled or gpu.power_capped.any():
        out.rack_work = np.add.reduceat(env.gpu_util * gpu.clock, offsets, axis=-1)
    else:  # full clocks everywhere (the common case below the limits): work is the utilisation
        full = np.add.reduceat(env.gpu_util, offsets)
        out.rack_work = np.broadcast_to(full, out.rack_throttled.shape).copy()
    out.work_rate = out.rack_work.sum(axis=-1)


def _it_supply(lay: Layout, env: Env, out: PlantState) -> None:
    """IT power through distribution and UPS."""
    p = lay.params
    out.it_power_w = out.rack_power_w.sum(axis=1)
    out.ups_output_w = out.it_power_w * (1.0 + p.dist_loss_frac)
    out.ups_loss_w = ph.ups_loss(out.ups_output_w, lay.ups_rated_w, p)
    out.ups_input_w = out.ups_output_w + out.ups_loss_w


def _plant(lay: Layout, st: PlantState, sp: Setpoints, env: Env, dt: float, out: PlantState) -> None:
    p = lay.params
    k = ph.lag_factor(dt, p.fws_tau_s)
    out.fws_supply_c = sp.fws_supply_c + (st.fws_supply_c - sp.fws_supply_c) * k
    out.fws_above_class = out.fws_supply_c > lay.fws_class_limit_c
    out.fws_flow_lpm = out.cdu_fws_flow_lpm.sum(axis=1)
    q_fws = out.cdu_heat_w.sum(axis=1)
    ret_target = out.fws_supply_c + ph.coolant_rise(q_fws, out.fws_flow_lpm, p.fws_density_kg_m3, p.fws_cp_j_kgk)
    out.fws_return_c = ret_target + (st.fws_return_c - ret_target) * k
    rho_cp_fws = p.fws_density_kg_m3 * p.fws_cp_j_kgk
    c_fws = rho_cp_fws * out.fws_flow_lpm / 6e4  # W/K
    out.fws_heat_w = np.maximum(c_fws * (out.fws_return_c - out.fws_supply_c), 0.0)
    ratio = out.fws_flow_lpm / lay.fws_design_flow
    out.fws_pump_w = ph.pump_power(p.fws_dp_design_kpa * ratio * ratio, out.fws_flow_lpm, p.fws_pump_eff)
    _air_side(lay, st, sp, dt, env, out)
    _heat_rejection(lay, env, c_fws, out)


def _air_side(lay: Layout, st: PlantState, sp: Setpoints, dt: float, env: Env, out: PlantState) -> None:
    """CRAH units: the air share of rack heat, busway and UPS losses, lighting and their own fan heat."""
    p = lay.params
    kc = ph.lag_factor(dt, p.crah_tau_s)
    out.chw_supply_c = sp.chw_supply_c + (st.chw_supply_c - sp.chw_supply_c) * kc
    q_air0 = out.it_power_w * (lay.crah_share + p.dist_loss_frac) + out.ups_loss_w + env.other_power_w
    x = lay.crah_coil.airflow(q_air0, out.chw_supply_c, lay.crah_coil_ua)
    air_m3s = x * lay.air_design_m3s
    out.crah_air_m3s = air_m3s
    out.crah_fan_w = lay.air_design_m3s * p.crah_fan_pa / p.crah_fan_eff * x**3
    # The hall air is a heat store of capacity C (crah_tau_s at design airflow): its temperature relaxes with
    # τ = C/(ρ·c_p·V̇) and the coils remove the heat that came in less what the store took up over the step,
    # so the air side conserves energy however fast the airflow changes.
    rho_cp_v = p.air_density_kg_m3 * p.air_cp_j_kgk * np.maximum(air_m3s, 1e-6)
    q_in = q_air0 + out.crah_fan_w
    cap = p.crah_tau_s * p.air_density_kg_m3 * p.air_cp_j_kgk * lay.air_design_m3s
    target = AIR_SUPPLY_C + q_in / rho_cp_v
    out.air_return_c = target + (st.air_return_c - target) * np.exp(-dt * rho_cp_v / cap)
    out.air_heat_w = q_in - cap * (out.air_return_c - st.air_return_c) / dt


def _heat_rejection(lay: Layout, env: Env, c_fws: Arr, out: PlantState) -> None:
    """Free coolers meet the supply setpoints where they can, chillers trim, condenser fans follow the load."""
    p = lay.params
    tower = lay.plant_type == "chiller_tower"
    sink = env.wetbulb_c if tower else env.drybulb_c
    # The CRAH chilled-water loop: its valves hold the water ΔT.
    c_chw = np.maximum(out.air_heat_w, 0.0) / p.crah_chw_dt_k
    out.chw_return_c = out.chw_supply_c + p.crah_chw_dt_k
    if lay.plant_type == "chiller_only":
        zeros = np.zeros_like(out.fws_supply_c)
        out.free_cooler_speed, out.chw_cooler_speed = zeros, zeros.copy()
        fws_leave, chw_leave = out.fws_return_c, out.chw_return_c
    else:
        out.free_cooler_speed, fws_leave = lay.fws_cooler.run(
            out.fws_return_c, out.fws_supply_c, sink, c_fws, lay.fws_cooler_ua
        )
        out.chw_cooler_speed, chw_leave = lay.chw_cooler.run(
            out.chw_return_c, out.chw_supply_c, sink, c_chw, lay.chw_cooler_ua
        )
    q_ch_liq = np.minimum(np.maximum(c_fws * (fws_leave - out.fws_supply_c), 0.0), out.fws_heat_w)
    q_ch_air = np.minimum(np.maximum(c_chw * (chw_leave - out.chw_supply_c), 0.0), out.air_heat_w)
    out.free_share = np.where(out.fws_heat_w > 0, 1.0 - q_ch_liq / np.maximum(out.fws_heat_w, 1e-9), 1.0)
    out.chw_free_share = np.where(out.air_heat_w > 0, 1.0 - q_ch_air / np.maximum(out.air_heat_w, 1e-9), 1.0)
    full = out.free_share >= 1.0 - 1e-6
    none = out.free_share <= 1e-3
    out.free_cooling_state = np.where(full, 2, np.where(none, 0, 1)).astype(np.int64)
    # Chillers: evaporating below the water they make, condensing above the sink; two passes settle the
    # condenser fans, which set the condensing approach.
    if tower:
        cond_sink, cond_approach = env.wetbulb_c, p.tower_approach_k + p.chiller_cond_approach_tower_k
    else:
        cond_sink, cond_approach = env.drybulb_c, p.chiller_cond_approach_k
    w_liq, s_liq = _chiller(
        lay, q_ch_liq, out.fws_supply_c, cond_sink, cond_approach, lay.chiller_cap_liq_w, lay.fws_condenser_w
    )
    w_air, s_air = _chiller(
        lay, q_ch_air, out.chw_supply_c, cond_sink, cond_approach, lay.chiller_cap_air_w, lay.chw_condenser_w
    )
    out.condenser_speed, out.chw_condenser_speed = s_liq, s_air
    out.chiller_w = w_liq + w_air
    out.chiller_load_w = q_ch_liq + q_ch_air
    out.chiller_cop = np.where(out.chiller_w > 0, out.chiller_load_w / np.maximum(out.chiller_w, 1e-9), 0.0)
    kw = p.hr_fan_w_per_kw / 1000.0
    out.hr_fan_w = (
        fan_power(lay.fws_cooler.fan_w, out.free_cooler_speed)
        + fan_power(lay.chw_cooler.fan_w, out.chw_cooler_speed)
        + fan_power(kw * lay.fws_condenser_w, s_liq)
        + fan_power(kw * lay.chw_condenser_w, s_air)
    )
    out.plant_cooling_w = out.chiller_w + out.hr_fan_w + out.fws_pump_w + out.crah_fan_w


def _chiller(
    lay: Layout, load: Arr, leaving_c: Arr, sink_c: float, approach_k: float, capacity_w: float, cond_w: float
) -> tuple[Arr, Arr]:
    """Compressor power and condenser fan speed of a chiller making ``leaving_c`` water for ``load``."""
    p = lay.params
    if not load.any():  # free cooling carries it all: compressor and condenser fans off
        return np.zeros_like(load), np.zeros_like(load)
    evap = leaving_c - p.chiller_evap_approach_k
    cop = ph.chiller_cop(evap, sink_c + approach_k, p)
    power = ph.chiller_power(load, cop, capacity_w, p)
    speed, per_air = condenser_fans(load + power, cond_w, p.hr_min_speed)
    if np.any((per_air != 1.0) & (load > 0.0)):  # fans at a limit: the condensing approach moved, settle once more
        cop = ph.chiller_cop(evap, sink_c + approach_k * per_air, p)
        power = ph.chiller_power(load, cop, capacity_w, p)
        speed, per_air = condenser_fans(load + power, cond_w, p.hr_min_speed)
    return power, speed


def steady(
    lay: Layout,
    st: PlantState,
    sp: Setpoints,
    env: Env,
    fault: BoolArr,
    passes: int = 2,
    degradation: Degradation | None = None,
) -> PlantState:
    """The steady state at ``sp`` under ``env``: the lags settled, the GPU / coolant coupling iterated.

    The loop temperatures the setpoints fix are placed first, so that the passes only settle the coupling of
    GPU power, rack ΔT and CDU approach (each pass contracts it by about ten).
    """
    hyd = hydraulics(lay, sp.dp_kpa, fault, degradation, env.t_ns)
    if hasattr(st, "cdu_approach_c"):
        st = st.shallow()
        st.fws_supply_c = sp.fws_supply_c.copy()
        st.chw_supply_c = sp.chw_supply_c.copy()
        st.tcs_supply_c = np.maximum(sp.tcs_supply_c, sp.fws_supply_c[:, None] + st.cdu_approach_c)
    for _ in range(passes):
        st = advance(lay, st, sp, env, math.inf, hyd)
    return st
