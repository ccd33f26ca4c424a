"""The simulated facility: state across racks, GPUs, CDUs and the plant, advanced in place by ``step``.

Implements :class:`simulators.interface.FacilityPhysics`. All per-GPU and per-rack quantities are numpy arrays
(GPUs flattened over racks, ``_gpu_rack`` maps each GPU to its rack), so one step over 32 racks × 72 GPUs costs
a fraction of a millisecond and a simulated year runs in-process in well under a minute. Temperatures of the
TCS, FWS and CRAH air loops follow exact first-order lags, stable for 1 s ticks and 300 s steps alike; the GPU
die and cold plate (time constants of seconds) are solved quasi-steady. Equations: ``docs/physics.md``.
"""

from __future__ import annotations

import math
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np

from aidc.config import Site
from simulators import physics as ph
from simulators.degradation import Degradation
from simulators.facility_points import DevicePoints
from simulators.interface import PointValue
from simulators.layout import Layout
from simulators.physics import Arr, PhysicsParams, params_from_overrides
from simulators.weather import Weather, load_weather
from simulators.workload import UtilisationSource, workload_for_site

_NS_PER_HOUR = 3_600_000_000_000
AIR_SUPPLY_C = 24.0  # CRAH supply air, inside the ASHRAE recommended 18-27 °C


class Facility(Layout):
    """A whole facility's physics for a :class:`Site`, stepped in simulated time."""

    # Current setpoints (set from the profiles' safe defaults and by writes through :class:`DevicePoints`).
    tcs_sp: Arr  # per CDU, °C
    dp_sp: Arr  # per CDU, kPa
    fws_sp: float  # plant, °C

    def __init__(
        self,
        site: Site,
        *,
        params: PhysicsParams | None = None,
        weather: Weather | None = None,
        workload: UtilisationSource | None = None,
        start_ns: int | None = None,
    ) -> None:
        cfg = site.config
        sim = cfg.simulation
        site_dir = site.path.parent if site.path is not None else None
        super().__init__(site, params if params is not None else params_from_overrides(dict(sim.physics)))
        self.t_ns = start_ns if start_ns is not None else sim.start_ns()
        self.weather = weather or load_weather(cfg.site.weather, site_dir, cfg.site.elevation_m)
        self.tz = ZoneInfo(cfg.site.timezone)
        self.workload = workload or workload_for_site(
            self.rack_kinds, self.t_ns, sim.seed, cfg.site.timezone, sim.trace, site_dir
        )
        self.points = DevicePoints(site, self)
        self.degradation: Degradation | None = None  # slow physical faults (simulators/degradation.py)
        self._init_state()

    def _init_state(self) -> None:
        nc = len(self.cdu_names)
        self.tcs_supply_c = self.tcs_sp.copy()
        self.tcs_return_c = self.tcs_sp + 8.0
        self.fws_supply_c = self.fws_sp
        self.fws_return_c = self.fws_sp + self.params.fws_design_dt_k
        self.air_return_c = AIR_SUPPLY_C + self.params.crah_air_dt_k
        self.rack_rise_c = np.full(self.n_racks, 8.0)
        self.cdu_pump_fault = np.zeros(nc, dtype=bool)
        self._hyd_key: tuple[bytes, ...] | None = None
        self._no_throttle = np.zeros(self.n_racks, dtype=np.int64)
        self._local_hour_key, self._local_hour = -1, 0.0
        self.rack_energy_wh = np.zeros(self.n_racks)
        self.energy_wh: dict[str, float] = dict.fromkeys(
            ("it", "ups_in", "ups_out", "facility", "cooling", "other", "chiller", "cdu_pumps"), 0.0
        )
        self.free_cooling_s = {"full": 0.0, "partial": 0.0, "none": 0.0}
        self.elapsed_s = 0.0
        # Start in steady state: large lag steps without advancing time or energy.
        for _ in range(4):
            self._update(1e5, accumulate=False)

    # --- stepping ----------------------------------------------------------------------------------------

    def step(self, dt_s: float) -> None:
        """Advance the facility by ``dt_s`` simulated seconds."""
        if not dt_s > 0:
            raise ValueError(f"step: dt_s must be positive, got {dt_s!r}")
        self.t_ns += round(dt_s * 1e9)
        self.points.check_heartbeats()
        self._update(dt_s, accumulate=True)

    def _update(self, dt: float, *, accumulate: bool) -> None:
        self.drybulb_c, self.wetbulb_c = self.weather.at(self.t_ns)
        self.rack_util = self.workload.rack_util(self.t_ns)
        self._update_cdus_and_racks(dt)
        self._update_it_supply()
        self._update_plant(dt)
        self._update_totals()
        if accumulate:
            self._accumulate(dt)

    def _update_hydraulics(self) -> None:
        """Pump speeds, flows, pump power and cold-plate resistances; recomputed only when dp or faults change."""
        key: tuple[bytes, ...] = (self.dp_sp.tobytes(), self.cdu_pump_fault.tobytes())
        if self.degradation is not None:
            key += (self.degradation.hydraulic_key(self.t_ns),)
        if key == self._hyd_key:
            return
        self._hyd_key = key
        p = self.params
        flow, dp, speed = ph.cdu_flow(self.dp_sp, self.cdu_design_flow, p)
        fault = self.cdu_pump_fault
        # The pump also overcomes the CDU's own exchanger and strainer, on the same quadratic curve.
        head = dp + p.cdu_internal_dp_kpa * (flow / self.cdu_design_flow) ** 2
        wear: Arr | float = 1.0
        if self.degradation is not None:  # pump wear and strainer clogging
            flow, speed, head, wear = self.degradation.hydraulics(self.t_ns, flow, speed, head - dp, dp)
            dp = p.cdu_dp_design_kpa * (flow / self.cdu_design_flow) ** 2
        self.cdu_pump_w = np.where(fault, 0.0, ph.pump_power(head, flow, p.cdu_pump_eff) / wear)
        flow = np.where(fault, 0.05 * flow, flow)  # a failed pump leaves thermosiphon / standby trickle
        self.cdu_flow_lpm, self.cdu_speed = flow, np.where(fault, 0.0, speed)
        self.cdu_dp_kpa = np.where(fault, 0.0025 * dp, dp)
        self.rack_flow_lpm = flow[self.rack_cdu] * self.rack_flow_share
        per_gpu = self.rack_flow_lpm * p.gpu_flow_share / self.rack_gpus
        self._g_rth = ph.cold_plate_resistance(per_gpu, p)[self._gpu_rack] * self._g_rfactor

    def _update_cdus_and_racks(self, dt: float) -> None:
        p = self.params
        self._update_hydraulics()
        flow, rack_flow, r_th, g = self.cdu_flow_lpm, self.rack_flow_lpm, self._g_rth, self._gpu_rack
        if self.degradation is not None:  # cold-plate fouling
            r_th = r_th * self.degradation.rack_rth_factor(self.t_ns)[g]
        inlet = self.tcs_supply_c[self.rack_cdu]
        coolant = (inlet + p.gpu_coolant_rise_frac * self.rack_rise_c)[g]
        util = self.rack_util[g] * self._g_ufactor
        np.minimum(util, 1.0, out=util)
        power, temp, throttled = ph.gpu_power_and_temp(
            util,
            coolant,
            r_th,
            idle_w=self._g_idle,
            tdp_w=self._g_tdp,
            min_w=self._g_min,
            limit_c=self._g_limit,
            p=p,
            guess_c=getattr(self, "gpu_temp_c", None),
        )
        self.gpu_util, self.gpu_power_w, self.gpu_temp_c = util, power, temp
        if throttled.any():
            self.rack_throttled = np.add.reduceat(throttled.astype(np.int64), self.rack_offsets)
        else:
            self.rack_throttled = self._no_throttle
        other = self.rack_other_full_w * (p.other_idle_frac + (1.0 - p.other_idle_frac) * self.rack_util)
        self.rack_power_w = np.add.reduceat(power, self.rack_offsets) + other
        liquid = self.rack_power_w * (1.0 - self.crah_share)
        self.rack_rise_c = ph.coolant_rise(liquid, rack_flow, p.tcs_density_kg_m3, p.tcs_cp_j_kgk)
        self.rack_inlet_c = inlet
        self.rack_outlet_c = inlet + self.rack_rise_c
        # CDU heat exchanger: supply cannot go below FWS supply + approach.
        nc = len(self.cdu_names)
        q_in = np.bincount(self.rack_cdu, liquid, nc) + self.cdu_pump_w
        approach = ph.cdu_approach(q_in / self.cdu_design_heat_w, p)
        self.cdu_approach_c = approach
        target = np.maximum(self.tcs_sp, self.fws_supply_c + approach)
        k = ph.lag_factor(dt, p.cdu_tau_s)
        self.tcs_supply_c = target + (self.tcs_supply_c - target) * k
        ret_target = self.tcs_supply_c + ph.coolant_rise(q_in, flow, p.tcs_density_kg_m3, p.tcs_cp_j_kgk)
        self.tcs_return_c = ret_target + (self.tcs_return_c - ret_target) * k
        # Heat the CDU passes to the FWS, from its own flow and temperatures.
        rho_cp_tcs = p.tcs_density_kg_m3 * p.tcs_cp_j_kgk
        self.cdu_heat_w = np.maximum(rho_cp_tcs * ph.lpm_to_m3s(flow) * (self.tcs_return_c - self.tcs_supply_c), 0.0)
        # FWS side: the valve throttles facility water until its return comes within the approach of the TCS
        # return (counterflow exchanger), between a minimum flow and the fully open valve.
        rho_cp_fws = p.fws_density_kg_m3 * p.fws_cp_j_kgk
        f_max = 1.2 * self.cdu_fws_design_lpm
        dt_fws = np.maximum(self.tcs_return_c - approach - self.fws_supply_c, 0.5)
        demand = self.cdu_heat_w / (rho_cp_fws * dt_fws) * 6e4
        self.cdu_fws_flow_lpm = np.minimum(np.maximum(demand, p.fws_min_flow_frac * self.cdu_fws_design_lpm), f_max)
        self.cdu_valve_pct = 100.0 * self.cdu_fws_flow_lpm / f_max
        self.cdu_fws_return_c = self.fws_supply_c + ph.coolant_rise(
            self.cdu_heat_w, self.cdu_fws_flow_lpm, p.fws_density_kg_m3, p.fws_cp_j_kgk
        )

    def _update_plant(self, dt: float) -> None:
        p = self.params
        k = ph.lag_factor(dt, p.fws_tau_s)
        self.fws_supply_c = self.fws_sp + (self.fws_supply_c - self.fws_sp) * k
        self.fws_flow_lpm = float(self.cdu_fws_flow_lpm.sum())
        q_fws = float(self.cdu_heat_w.sum())
        ret_target = self.fws_supply_c + ph.coolant_rise(q_fws, self.fws_flow_lpm, p.fws_density_kg_m3, p.fws_cp_j_kgk)
        self.fws_return_c = float(ret_target + (self.fws_return_c - ret_target) * k)
        rho_cp_fws = p.fws_density_kg_m3 * p.fws_cp_j_kgk
        self.fws_heat_w = max(rho_cp_fws * self.fws_flow_lpm / 6e4 * (self.fws_return_c - self.fws_supply_c), 0.0)
        ratio = self.fws_flow_lpm / self.fws_design_flow
        self.fws_pump_w = ph.pump_power(p.fws_dp_design_kpa * ratio * ratio, self.fws_flow_lpm, p.fws_pump_eff)
        # Air side: CRAH units remove the air-side share of rack heat, distribution and UPS losses, lighting and
        # office heat, and their own fan heat.
        q_air0 = self.it_power_w * (self.crah_share + p.dist_loss_frac) + self.ups_loss_w + self.other_power_w
        air_m3s = q_air0 / (p.air_density_kg_m3 * p.air_cp_j_kgk * p.crah_air_dt_k)
        fan_design_w = self.air_design_m3s * p.crah_fan_pa / p.crah_fan_eff
        self.crah_fan_w = fan_design_w * (air_m3s / self.air_design_m3s) ** 3
        self.crah_air_m3s = air_m3s
        air_target = AIR_SUPPLY_C + (q_air0 + self.crah_fan_w) / (
            p.air_density_kg_m3 * p.air_cp_j_kgk * max(air_m3s, 1e-6)
        )
        self.air_return_c = float(air_target + (self.air_return_c - air_target) * ph.lag_factor(dt, p.crah_tau_s))
        self.air_heat_w = p.air_density_kg_m3 * p.air_cp_j_kgk * air_m3s * (self.air_return_c - AIR_SUPPLY_C)
        # Free cooling and chillers.
        if self.plant_type == "chiller_tower":
            sink, free_at = self.wetbulb_c, self.wetbulb_c + p.tower_approach_k
        else:
            sink, free_at = self.drybulb_c, self.drybulb_c + p.drycooler_approach_k
        if self.plant_type == "chiller_only":
            share, share_air = 0.0, 0.0
        else:
            share = ph.free_cooling_share(self.fws_return_c, self.fws_supply_c, free_at)
            share_air = ph.free_cooling_share(p.crah_chw_c + p.crah_chw_dt_k, p.crah_chw_c, free_at)
        self.free_share = share
        self.free_cooling_state = 2 if share >= 1.0 else (1 if share > 0.0 else 0)
        if self.plant_type == "chiller_tower":
            cond = self.wetbulb_c + p.tower_approach_k + p.chiller_cond_approach_tower_k
        else:
            cond = self.drybulb_c + p.chiller_cond_approach_k
        cop_liq = ph.chiller_cop(self.fws_supply_c - p.chiller_evap_approach_k, cond, p)
        cop_air = ph.chiller_cop(p.crah_chw_c - p.chiller_evap_approach_k, cond, p)
        q_ch_liq, q_ch_air = (1.0 - share) * self.fws_heat_w, (1.0 - share_air) * self.air_heat_w
        self.chiller_w = ph.chiller_power(q_ch_liq, cop_liq, self.chiller_cap_liq_w, p) + ph.chiller_power(
            q_ch_air, cop_air, self.chiller_cap_air_w, p
        )
        self.chiller_load_w = q_ch_liq + q_ch_air
        self.chiller_cop = self.chiller_load_w / self.chiller_w if self.chiller_w > 0 else 0.0
        # Heat rejection fans: full speed while a chiller runs, else just what the free cooler needs.
        q_rej = self.fws_heat_w + self.air_heat_w + self.chiller_w + self.fws_pump_w
        if self.chiller_w > 0 or self.plant_type == "chiller_only":
            speed = 1.0
            if self.plant_type == "chiller_only":  # condenser fans only, staged with the rejected heat
                speed = min(max(q_rej / self.hr_design_w, p.hr_min_speed), 1.0)
        else:
            speed = ph.fan_speed(q_rej, self.hr_design_w, self.fws_return_c - sink, p.hr_design_dt_k, p.hr_min_speed)
        self.hr_fan_w = p.hr_fan_w_per_kw * self.hr_design_w / 1000.0 * speed**3
        self.plant_cooling_w = self.chiller_w + self.hr_fan_w + self.fws_pump_w + self.crah_fan_w

    def _update_it_supply(self) -> None:
        """IT power through distribution and UPS, and the lighting / office load."""
        p = self.params
        self.it_power_w = float(self.rack_power_w.sum())
        self.ups_output_w = self.it_power_w * (1.0 + p.dist_loss_frac)
        self.ups_loss_w = ph.ups_loss(self.ups_output_w, self.ups_rated_w, p)
        self.ups_input_w = self.ups_output_w + self.ups_loss_w
        hour = self.t_ns // _NS_PER_HOUR
        if hour != self._local_hour_key:  # the local hour changes at most once an hour (DST included)
            local = datetime.fromtimestamp(hour * 3600, tz=self.tz)
            self._local_hour_key, self._local_hour = hour, float(local.hour)
        self.other_power_w = ph.lighting_power(self._local_hour, self.design_it_w, p)

    def _update_totals(self) -> None:
        """Cooling total, transformer losses and the whole-facility draw."""
        p = self.params
        self.cooling_power_w = self.plant_cooling_w + float(self.cdu_pump_w.sum())
        before_tx = self.ups_input_w + self.cooling_power_w + self.other_power_w
        self.tx_loss_w = ph.transformer_loss(before_tx, self.design_it_w * p.tx_rating_frac, p)
        self.facility_power_w = before_tx + self.tx_loss_w

    def _accumulate(self, dt: float) -> None:
        h = dt / 3600.0
        self.elapsed_s += dt
        self.rack_energy_wh += self.rack_power_w * h
        e = self.energy_wh
        e["it"] += self.it_power_w * h
        e["ups_in"] += self.ups_input_w * h
        e["ups_out"] += self.ups_output_w * h
        e["facility"] += self.facility_power_w * h
        e["cooling"] += self.cooling_power_w * h
        e["other"] += self.other_power_w * h
        e["chiller"] += self.chiller_w * h
        e["cdu_pumps"] += float(self.cdu_pump_w.sum()) * h
        self.free_cooling_s[("none", "partial", "full")[self.free_cooling_state]] += dt

    # --- the server contract -----------------------------------------------------------------------------

    def device_values(self, device: str) -> dict[str, PointValue]:
        """Current values of every point of ``device`` keyed by point name (or its ``sim`` name)."""
        values = self.points.values(device)
        return values if self.degradation is None else self.degradation.readings(device, values, self.t_ns)

    def write_point(self, device: str, point: str, value: float) -> None:
        """A client wrote a writable point (setpoint or heartbeat): clamped to the profile's min/max."""
        self.points.write(device, point, value)

    def set_fault(self, device: str, fault: str, active: bool = True) -> None:
        """Physical faults: ``leak`` on a rack or CDU, ``pump_fault`` on a CDU (flow collapses to 5 %)."""
        dev = self.points.devices.get(device)
        if dev is None:
            raise KeyError(f"no device {device!r} in this facility")
        if fault == "leak" and dev.kind in ("rack", "pdu", "cdu"):
            key = f"rack:{dev.tags['rack']}" if dev.kind != "cdu" else device
            (self.points.leaks.add if active else self.points.leaks.discard)(key)
        elif fault == "pump_fault" and device in self.cdu_index:
            self.cdu_pump_fault[self.cdu_index[device]] = active
        else:
            raise ValueError(f"{device}: unknown physical fault {fault!r} (leak on a rack or CDU, pump_fault on a CDU)")

    # --- reporting ---------------------------------------------------------------------------------------

    def heat_rejected_w(self) -> float:
        """Heat leaving the site, from loop flows and temperatures plus the losses that go straight to air.

        FWS and CRAH-coil heat come from ρ·c_p·V̇·ΔT of the lagged loop temperatures; compressor, FWS pump and
        heat-rejection fan power leave through the condenser and fans; the (outdoor) transformers lose their heat
        straight to outdoor air.
        """
        return self.fws_heat_w + self.air_heat_w + self.chiller_w + self.fws_pump_w + self.hr_fan_w + self.tx_loss_w

    def snapshot(self) -> dict[str, float]:
        """Scalar totals and extremes of the current state, for tests, benches and logs."""
        return {
            "t_ns": float(self.t_ns),
            "it_power_w": self.it_power_w,
            "facility_power_w": self.facility_power_w,
            "cooling_power_w": self.cooling_power_w,
            "chiller_power_w": self.chiller_w,
            "cdu_pump_power_w": float(self.cdu_pump_w.sum()),
            "fws_pump_power_w": self.fws_pump_w,
            "hr_fan_power_w": self.hr_fan_w,
            "crah_fan_power_w": self.crah_fan_w,
            "ups_loss_w": self.ups_loss_w,
            "tx_loss_w": self.tx_loss_w,
            "other_power_w": self.other_power_w,
            "heat_rejected_w": self.heat_rejected_w(),
            "pue_instant": self.facility_power_w / self.it_power_w if self.it_power_w > 0 else math.nan,
            "gpu_temp_max_c": float(self.gpu_temp_c.max()),
            "gpu_temp_mean_c": float(self.gpu_temp_c.mean()),
            "gpus_throttled": float(self.rack_throttled.sum()),
            "tcs_supply_mean_c": float(self.tcs_supply_c.mean()),
            "fws_supply_c": self.fws_supply_c,
            "fws_return_c": self.fws_return_c,
            "free_cooling_state": float(self.free_cooling_state),
            "drybulb_c": self.drybulb_c,
            "wetbulb_c": self.wetbulb_c,
        }
