"""The simulated facility: state across racks, GPUs, CDUs and the plant, advanced in place by ``step``.

Implements :class:`simulators.interface.FacilityPhysics` and :class:`simulators.interface.WhatIfPlant`. The
physics of one update is :func:`simulators.plant.advance`, vectorised over what-if candidates; the facility holds
its own state as one candidate (:class:`simulators.state.PlantState`, N = 1) and exposes it as plain attributes
(``fac.gpu_temp_c``, ``fac.fws_supply_c``, ...). GPUs are flattened over racks (``_gpu_rack`` maps each GPU to
its rack), so one step over 32 racks × 72 GPUs costs a fraction of a millisecond and a simulated year runs
in-process in well under a minute. Equations: ``docs/physics.md``.
"""

from __future__ import annotations

import math
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np

from aidc.config import Site
from simulators import physics as ph
from simulators import plant
from simulators.degradation import Degradation
from simulators.facility_points import DevicePoints
from simulators.facility_state import FacilityState
from simulators.interface import PointValue, Setpoints, WhatIf
from simulators.layout import AIR_SUPPLY_C
from simulators.physics import PhysicsParams, site_params
from simulators.state import Env, PlantState
from simulators.weather import Weather, load_weather
from simulators.workload import UtilisationSource, workload_for_site

_NS_PER_HOUR = 3_600_000_000_000
WHAT_IF_CHUNK = 48  # candidates per vectorised pass
__all__ = ["AIR_SUPPLY_C", "Facility"]


class Facility(FacilityState):
    """A whole facility's physics for a :class:`Site`, stepped in simulated time."""

    def __init__(
        self,
        site: Site,
        *,
        params: PhysicsParams | None = None,
        weather: Weather | None = None,
        workload: UtilisationSource | None = None,
        start_ns: int | None = None,
        sensor_noise: bool = False,
    ) -> None:
        cfg = site.config
        sim = cfg.simulation
        site_dir = site.path.parent if site.path is not None else None
        super().__init__(site, params if params is not None else site_params(site))
        self.t_ns = start_ns if start_ns is not None else sim.start_ns()
        self.weather = weather or load_weather(cfg.site.weather, site_dir, cfg.site.elevation_m)
        self.tz = ZoneInfo(cfg.site.timezone)
        self.workload = workload or workload_for_site(
            self.rack_kinds, self.t_ns, sim.seed, cfg.site.timezone, sim.trace, site_dir
        )
        self.chw_sp = self.params.crah_chw_c
        self.points = DevicePoints(site, self, sensor_noise=sensor_noise)
        self.degradation: Degradation | None = None  # slow physical faults (simulators/degradation.py)
        self._init_state()

    def _init_state(self) -> None:
        nc = len(self.cdu_names)
        p = self.params
        st = PlantState()
        st.tcs_supply_c = self.tcs_sp[None, :].copy()
        st.tcs_return_c = st.tcs_supply_c + 8.0
        st.fws_supply_c = np.array([self.fws_sp])
        st.fws_return_c = st.fws_supply_c + p.fws_design_dt_k
        st.air_return_c = np.array([AIR_SUPPLY_C + p.crah_air_dt_k])
        st.chw_supply_c = np.array([self.chw_sp])
        st.rack_rise_c = np.full((1, self.n_racks), 8.0)
        self.state = st
        self.cdu_pump_fault = np.zeros(nc, dtype=bool)
        self._hyd_key: tuple[bytes, ...] | None = None
        self._hyd: plant.Hydraulics | None = None
        self._local_hour_key, self._local_hour = -1, 0.0
        self._peak_env: tuple[tuple[int, float], Env, Env] | None = None  # what_if's last peak conditions
        self.rack_energy_wh = np.zeros(self.n_racks)
        self.work_gpu_h = 0.0
        self.rack_work_gpu_h = np.zeros(self.n_racks)
        self.energy_wh: dict[str, float] = dict.fromkeys(
            ("it", "ups_in", "ups_out", "facility", "cooling", "other", "chiller", "cdu_pumps"), 0.0
        )
        self.free_cooling_s = {"full": 0.0, "partial": 0.0, "none": 0.0}
        self.fws_above_class_s = 0.0  # time with FWS supply above the site's W-class limit
        self.elapsed_s = 0.0
        self._env = self.env_at(self.t_ns)
        # Start in steady state without advancing time or energy.
        self.state = plant.steady(
            self, self.state, self.setpoints(), self._env, self.cdu_pump_fault, passes=4, degradation=self.degradation
        )

    # --- stepping ----------------------------------------------------------------------------------------

    def step(self, dt_s: float) -> None:
        """Advance the facility by ``dt_s`` simulated seconds."""
        if not dt_s > 0:
            raise ValueError(f"step: dt_s must be positive, got {dt_s!r}")
        self.t_ns += round(dt_s * 1e9)
        self.points.check_heartbeats()
        self._env = self.env_at(self.t_ns)
        self.state = plant.advance(self, self.state, self.setpoints(), self._env, dt_s, self._hydraulics())
        self._accumulate(dt_s)

    def env_at(self, t_ns: int) -> Env:
        """Weather, hall humidity, load and lighting at ``t_ns``: what no setpoint changes."""
        p = self.params
        db, wb = self.weather.at(t_ns)
        dew = self.weather.dewpoint_at(t_ns)
        util = self.workload.rack_util(t_ns)
        g_util = np.minimum(util[self._gpu_rack] * self._g_ufactor, 1.0)
        hour = t_ns // _NS_PER_HOUR
        if hour != self._local_hour_key:  # the local hour changes at most once an hour (DST included)
            local = datetime.fromtimestamp(hour * 3600, tz=self.tz)
            self._local_hour_key, self._local_hour = hour, float(local.hour)
        # Humidity control: outdoor air brings its moisture in; humidifiers and dehumidification hold the hall
        # dew point inside [hall_dewpoint_min_c, hall_dewpoint_max_c] (ASHRAE's recommended envelope by default).
        hall_dew = min(max(dew, p.hall_dewpoint_min_c), p.hall_dewpoint_max_c)
        other = ph.lighting_power(self._local_hour, self.design_it_w, p)
        return Env(t_ns, db, wb, dew, hall_dew, util, g_util, other)

    def _hydraulics(self) -> plant.Hydraulics:
        """The step's hydraulics, recomputed only when dp setpoints, pump faults or slow faults change."""
        key: tuple[bytes, ...] = (self.dp_sp.tobytes(), self.cdu_pump_fault.tobytes())
        deg = self.degradation
        if deg is not None:
            key += (deg.hydraulic_key(self.t_ns), np.round(deg.rack_rth_factor(self.t_ns), 4).tobytes())
        if key != self._hyd_key or self._hyd is None:
            self._hyd_key = key
            self._hyd = plant.hydraulics(self, self.dp_sp[None, :], self.cdu_pump_fault, deg, self.t_ns)
        return self._hyd

    def _accumulate(self, dt: float) -> None:
        h = dt / 3600.0
        self.elapsed_s += dt
        self.rack_energy_wh += self.rack_power_w * h
        # Work done in full-clock GPU-hours: utilisation · clock, so clocks lost to the power cap or to thermal
        # throttling count here, at the step's end state like the energies.
        self.rack_work_gpu_h += self.rack_work * h
        self.work_gpu_h += self.work_rate * h
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
        if self.fws_above_class:
            self.fws_above_class_s += dt

    # --- what-if -----------------------------------------------------------------------------------------

    def setpoints(self) -> Setpoints:
        """The setpoints in force now, as one candidate."""
        return Setpoints(
            self.tcs_sp[None, :].copy(), self.dp_sp[None, :].copy(), np.array([self.fws_sp]), np.array([self.chw_sp])
        )

    def what_if(self, sp: Setpoints, *, dt_s: float | None = None, peak_s: float = 0.0) -> WhatIf:
        """The plant at each candidate of ``sp``: one step of ``dt_s`` from now, or the steady state when None.

        ``peak_s`` (steady state only): each rack and GPU at its highest load of the next ``peak_s`` seconds
        (sampled every minute) and the warmest weather of that span, the worst case a decision held that long meets.
        Nothing of the facility changes: not time, energy, setpoints, heartbeats or its state.
        """
        nc = len(self.cdu_names)
        if sp.tcs_supply_c.shape[1] != nc:
            raise ValueError(f"what_if: setpoints for {sp.tcs_supply_c.shape[1]} CDUs, the facility has {nc}")
        if dt_s is not None and not dt_s > 0:
            raise ValueError(f"what_if: dt_s must be positive, got {dt_s!r}")
        if not peak_s >= 0 or (peak_s > 0 and dt_s is not None):
            raise ValueError(f"what_if: peak_s must be ≥ 0 and only with the steady state, got {peak_s!r}")
        env = self._env
        saved = self._local_hour_key, self._local_hour
        if dt_s is not None:
            env = self.env_at(self.t_ns + round(dt_s * 1e9))
        elif peak_s > 0:
            # The same instant's peak is asked for again and again (an optimiser scores many candidate sets per
            # decision): kept for the conditions it was built from (they are replaced, never changed, by a step).
            key = (self.t_ns, peak_s)
            hit = self._peak_env
            if hit is not None and hit[0] == key and hit[1] is env:
                return self._what_if_chunks(sp, hit[2], dt_s)
            base = env
            ahead = [self.env_at(self.t_ns + round(s * 1e9)) for s in np.arange(60.0, peak_s + 1e-9, 60.0)]
            for e in ahead:
                env = Env(env.t_ns, max(env.drybulb_c, e.drybulb_c), max(env.wetbulb_c, e.wetbulb_c),
                          max(env.outdoor_dewpoint_c, e.outdoor_dewpoint_c),
                          max(env.hall_dewpoint_c, e.hall_dewpoint_c),
                          np.maximum(env.rack_util, e.rack_util), np.maximum(env.gpu_util, e.gpu_util),
                          max(env.other_power_w, e.other_power_w))
            self._peak_env = (key, base, env)
        self._local_hour_key, self._local_hour = saved
        return self._what_if_chunks(sp, env, dt_s)

    def _what_if_chunks(self, sp: Setpoints, env: Env, dt_s: float | None) -> WhatIf:
        # Candidates go through in chunks whose per-GPU arrays stay in cache (a few MB): faster than all at once.
        parts = [self._what_if_chunk(sp.take(i, i + WHAT_IF_CHUNK), env, dt_s) for i in range(0, sp.n, WHAT_IF_CHUNK)]
        return parts[0] if len(parts) == 1 else WhatIf.concat(parts)

    def _what_if_chunk(self, sp: Setpoints, env: Env, dt_s: float | None) -> WhatIf:
        start = self.state.repeat(sp.n)
        if dt_s is None:
            st = plant.steady(self, start, sp, env, self.cdu_pump_fault, degradation=self.degradation)
        else:
            hyd = plant.hydraulics(self, sp.dp_kpa, self.cdu_pump_fault, self.degradation, env.t_ns)
            st = plant.advance(self, start, sp, env, dt_s, hyd)
        return self._what_if_result(st)

    def settle_at(self, t_ns: int) -> None:
        """Jump to ``t_ns`` and settle to the steady state there at the current setpoints (no energy is counted).

        For sampled-year studies: each sample starts from the plant settled at its own weather and load.
        """
        self.t_ns = t_ns
        self._env = self.env_at(t_ns)
        self.state = plant.steady(
            self, self.state, self.setpoints(), self._env, self.cdu_pump_fault, passes=3, degradation=self.degradation
        )

    def _what_if_result(self, st: PlantState) -> WhatIf:
        hottest = np.maximum.reduceat(st.gpu_temp_c, self.rack_offsets, axis=1)
        return WhatIf(
            facility_power_w=st.facility_power_w,
            it_power_w=st.it_power_w,
            cooling_power_w=st.cooling_power_w,
            chiller_power_w=st.chiller_w,
            hr_fan_power_w=st.hr_fan_w,
            cdu_pump_power_w=st.cdu_pump_w.sum(axis=1),
            gpu_temp_max_c=hottest,
            gpu_limit_c=self._g_limit[self.rack_offsets],
            gpus_throttled=st.rack_throttled,
            work_rate=st.work_rate,
            fws_supply_c=st.fws_supply_c,
            tcs_supply_c=st.tcs_supply_c,
            dp_kpa=st.cdu_dp_kpa,
            dewpoint_margin_k=st.dewpoint_margin_k,
            condensation_risk=st.condensation_risk,
            dp_not_reached=st.dp_not_reached,
            above_class=st.fws_above_class,
            free_cooling_state=st.free_cooling_state,
        )

    # --- the server contract -----------------------------------------------------------------------------

    def device_values(self, device: str) -> dict[str, PointValue]:
        """Current values of every point of ``device`` keyed by point name (or its ``sim`` name)."""
        values = self.points.values(device)
        return values if self.degradation is None else self.degradation.readings(device, values, self.t_ns)

    def device_arrays(self, device: str) -> dict[str, PointValue]:
        """:meth:`device_values` with array points as read-only numpy arrays (the same numbers), for in-process
        readers such as the evaluation's field telemetry, which would convert lists back into arrays."""
        values = self.points.values(device, arrays=True)
        return values if self.degradation is None else self.degradation.readings(device, values, self.t_ns)

    def device_held(self, device: str) -> dict[str, PointValue]:
        """The writable points of ``device`` as :meth:`device_values` serves them (the same numbers), for in-process
        writers that read a setpoint back around each write without computing every reading."""
        values = self.points.held(device)
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
            "gpus_power_capped": float(self.rack_power_capped.sum()),
            "gpu_clock_mean_pct": 100.0 * float(self.gpu_clock.mean(dtype=np.float64)),
            "work_rate": self.work_rate,
            "work_gpu_h": self.work_gpu_h,
            "tcs_supply_mean_c": float(self.tcs_supply_c.mean()),
            "fws_supply_c": self.fws_supply_c,
            "fws_return_c": self.fws_return_c,
            "free_cooling_state": float(self.free_cooling_state),
            "drybulb_c": self.drybulb_c,
            "wetbulb_c": self.wetbulb_c,
            "hall_dewpoint_c": self.hall_dewpoint_c,
            "chw_supply_c": self.chw_supply_c,
            "free_cooler_speed": self.free_cooler_speed,
            "condenser_speed": self.condenser_speed,
            "fws_above_class_minutes": self.fws_above_class_s / 60.0,
        }
