"""Device points of the simulated facility: setpoints, heartbeats and the values each profile's points read.

A :class:`DevicePoints` maps the facility's state onto every device of the site by point name (``Point.sim``
when set), validates at start-up that the physics provides every point each profile declares, applies writes
clamped to the profile's min/max, and runs the heartbeat watchdog: once armed by a first heartbeat write, a
device whose heartbeat value has not changed for longer than ``heartbeat.timeout_s`` of simulated time reverts
its writable setpoints to ``safe_default`` and sets ``fallback_active``. While in fallback the device ignores
remote setpoint writes, as real CDUs in local mode do; a changed heartbeat ends the fallback and later writes
apply again (the safe setpoints stay until rewritten).

With ``sensor_noise`` (the simulator process turns it on; in-process evaluations leave it off), temperature
probes that must move (``must_move`` points in °C, e.g. a CDU's TCS supply and the plant's FWS supply) read with
a small deterministic noise, as real RTDs do: a loop holding its setpoint otherwise reads exactly the same tenth of
a degree poll after poll, which the collectors rightly flag as a stuck sensor, and the supervisor holds on it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from aidc.config import DeviceRef, MeterConfig, Site
from aidc.errors import ConfigError
from aidc.profiles import DataType, Point
from aidc.roles import Role
from simulators.facility_state import FacilityState
from simulators.interface import PointValue
from simulators.physics import Arr

log = logging.getLogger(__name__)

DEFAULT_TCS_SP_C = 30.0
DEFAULT_DP_SP_KPA = 120.0
DEFAULT_FWS_SP_C = 24.0
# Sensor noise (standard deviation) of a noisy probe: 1.5 resolution steps of an integer register (0.15 K for
# tenths, so six polls in a row read the same tenth about once in 3000), 0.05 K for a floating-point one.
NOISE_STEPS = 1.5
NOISE_FLOAT_K = 0.05
# Flow meters and power transducers of CDUs and the plant read with a relative noise (standard deviation): a
# magnetic flow meter repeats to about 0.3 % of reading, a power transducer to about 0.5 %; the CDU's heat load is
# computed from flow and two temperatures, so about 1 %. Without it eight identical CDUs read identical figures.
REL_NOISE: dict[str, float] = {"L/min": 0.003, "W": 0.005, "kW": 0.005}
REL_NOISE_POINTS = {"heat_load_kw": 0.01}
# The writable points of a CDU's readings (DevicePoints._cdu), what a write's read-back needs (DevicePoints.held).
_CDU_SETPOINTS = frozenset({"tcs_supply_temp_setpoint_c", "dp_setpoint_kpa", "heartbeat"})

QUANTITIES: dict[str, frozenset[str]] = {
    "pdu": frozenset(
        [f"inlet{i}_{q}" for i in (1, 2) for q in ("voltage_v", "current_a", "active_power_w", "power_factor")]
        + ["active_power_w", "active_energy_wh"]
    ),
    "rack": frozenset(
        "rack_power_w it_energy_wh coolant_inlet_temp_c coolant_outlet_temp_c coolant_flow_lpm leak_detected "
        "gpus_throttled gpu_power_w gpu_temp_c gpu_util_pct gpu_clock_pct condensation_risk".split()
    ),
    "cdu": frozenset(
        "tcs_supply_temp_c tcs_return_temp_c fws_supply_temp_c fws_return_temp_c flow_lpm dp_kpa pump_speed_pct "
        "valve_pct pump_power_w heat_load_kw alarm_word alarm_high_temp alarm_leak alarm_pump_fault fallback_active "
        "alarm_condensation dp_setpoint_not_reached room_dewpoint_temp_c "
        "tcs_supply_temp_setpoint_c dp_setpoint_kpa heartbeat".split()
    ),
    "plant": frozenset(
        "fws_supply_temp_c fws_return_temp_c fws_flow_lpm heat_load_w chiller_power_w chiller_cop "
        "heat_rejection_fan_power_w pump_power_w crah_fan_power_w cooling_power_w free_cooling_state "
        "outdoor_drybulb_c outdoor_wetbulb_c fws_supply_temp_setpoint_c heartbeat chw_supply_temp_c "
        "chw_supply_temp_setpoint_c hall_dewpoint_c free_cooler_fan_speed_pct condenser_fan_speed_pct "
        "fws_class_limit_c fws_above_class fws_above_class_minutes".split()
    ),
    "ups": frozenset(
        "input_power_w output_power_w input_energy_kwh output_energy_kwh load_pct efficiency_pct on_battery".split()
    ),
    "meter": frozenset("voltage_v current_a active_power_w power_factor energy_kwh".split()),
}
SETPOINT_ROLES = {
    Role.TCS_SUPPLY_TEMP_SETPOINT: "tcs_sp",
    Role.TCS_DP_SETPOINT: "dp_sp",
    Role.FWS_SUPPLY_TEMP_SETPOINT: "fws_sp",
    Role.CHW_SUPPLY_TEMP_SETPOINT: "chw_sp",
}


def power_scale_w(unit: str) -> float:
    """Watts per unit of a power point (W, kW or MW)."""
    return {"kw": 1e3, "mw": 1e6}.get(unit.lower(), 1.0)


def _frozen(a: Arr) -> Arr:
    """A read-only view of ``a``: the racks' slices of it are handed out."""
    v = a.view()
    v.flags.writeable = False
    return v


class _RackRows(NamedTuple):
    """Every rack's values as Python lists, for one facility state (:meth:`DevicePoints.rack_rows`)."""

    state: object
    env: object
    t_ns: int
    stop: list[int]
    start: list[int]
    power: list[float]
    energy: list[float]
    inlet: list[float]
    outlet: list[float]
    flow: list[float]
    condensation: list[bool]
    throttled: list[int]
    gpu_power: Arr  # the GPU arrays read-only, sliced per rack (lists only for the servers)
    gpu_temp: Arr
    gpu_util: Arr
    clock_pct: list[float]


@dataclass
class HeartbeatWatch:
    """Heartbeat watchdog state of one device."""

    point: str
    timeout_ns: int
    value: float = math.nan
    last_change_ns: int | None = None  # None until the first write arms the watchdog
    fallback: bool = False


def _noise_sigma(p: Point) -> float:
    return NOISE_FLOAT_K if p.type in (DataType.FLOAT32, DataType.FLOAT64) else NOISE_STEPS * abs(p.scale)


class DevicePoints:
    """Setpoints, heartbeats and per-device point values of a facility (:class:`FacilityState`)."""

    def __init__(self, site: Site, fac: FacilityState, *, sensor_noise: bool = False) -> None:
        self.fac = fac
        self.seed = site.config.simulation.seed
        self.devices = {d.name: d for d in site.devices}
        self.device_no = {d.name: i for i, d in enumerate(site.devices)}
        self.keys = {d.name: [p.sim or p.name for p in d.profile.points] for d in site.devices}
        self.watch: dict[str, HeartbeatWatch] = {}
        self.extra: dict[tuple[str, str], float] = {}
        self.leaks: set[str] = set()  # CDU device names and "rack:<rack name>" keys with an active leak
        self._rows: _RackRows | None = None  # every rack's values for the current state (rack_rows)
        self._setpoints_cover: dict[str, bool] = {}  # CDU -> whether _cdu_setpoints serves its writable points
        # device -> (keys, standard deviations) of its noisy temperature probes
        self.noisy: dict[str, tuple[list[str], np.ndarray]] = {}
        # device -> (keys, relative standard deviations) of its flow meters and power transducers
        self.noisy_rel: dict[str, tuple[list[str], np.ndarray]] = {}
        if sensor_noise:
            for dev in site.devices:
                probes = [(k, _noise_sigma(p)) for k, p in zip(self.keys[dev.name], dev.profile.points, strict=True)
                          if p.must_move and not p.array and p.unit in ("°C", "K")]
                if probes:
                    self.noisy[dev.name] = ([k for k, _ in probes], np.array([s for _, s in probes]))
                meters = [(k, REL_NOISE_POINTS.get(k, REL_NOISE.get(p.unit, 0.0)))
                          for k, p in zip(self.keys[dev.name], dev.profile.points, strict=True)
                          if dev.kind in ("cdu", "plant") and not p.array and not p.writable and not p.counter]
                meters = [(k, r) for k, r in meters if r > 0]
                if meters:
                    self.noisy_rel[dev.name] = ([k for k, _ in meters], np.array([r for _, r in meters]))
        for dev in site.devices:
            missing = [
                k
                for k, p in zip(self.keys[dev.name], dev.profile.points, strict=True)
                if k not in QUANTITIES[dev.kind] and not p.writable
            ]
            if missing:
                raise ConfigError(
                    f"{dev.path}: profile {dev.profile.name!r} has points the simulator cannot produce for a "
                    f"{dev.kind}: {missing} (set 'sim' to one of {sorted(QUANTITIES[dev.kind])})"
                )
            hb = dev.profile.heartbeat
            if hb is not None:
                self.watch[dev.name] = HeartbeatWatch(hb.point, int(hb.timeout_s * 1e9))
        n = len(fac.cdu_names)
        fac.tcs_sp = np.full(n, DEFAULT_TCS_SP_C)
        fac.dp_sp = np.full(n, DEFAULT_DP_SP_KPA)
        fac.fws_sp = DEFAULT_FWS_SP_C
        for dev in site.devices:
            self.revert_to_safe(dev)
        rng = np.random.default_rng(site.config.simulation.seed + 104729)
        self.pdu_share = rng.uniform(0.48, 0.52, fac.n_racks)
        self.phase = rng.uniform(0.0, 2 * math.pi, len(site.devices))

    # --- writes and heartbeats --------------------------------------------------------------------------

    def revert_to_safe(self, dev: DeviceRef) -> None:
        """Set every writable setpoint of ``dev`` to its profile's safe default."""
        for p in dev.profile.points:
            if p.writable and p.safe_default is not None and not self._is_heartbeat(dev, p.name):
                self._apply(dev, p.name, p.safe_default)

    def _is_heartbeat(self, dev: DeviceRef, point: str) -> bool:
        return dev.profile.heartbeat is not None and dev.profile.heartbeat.point == point

    def _apply(self, dev: DeviceRef, point: str, value: float) -> None:
        role = dev.role_of(point)
        attr = SETPOINT_ROLES.get(role) if role is not None else None
        if attr == "fws_sp" and dev.kind == "plant":
            self.fac.fws_sp = value
        elif attr == "chw_sp" and dev.kind == "plant":
            self.fac.chw_sp = value
        elif attr in ("tcs_sp", "dp_sp") and dev.kind == "cdu":
            getattr(self.fac, attr)[self.fac.cdu_index[dev.name]] = value
        else:
            self.extra[(dev.name, point)] = value
            if role is Role.RACK_POWER_LIMIT and "rack" in dev.tags:  # read back as written; the physics caps the rack
                self.fac.set_rack_power_limit(dev.tags["rack"], value * power_scale_w(dev.profile.point(point).unit))

    def write(self, device: str, point: str, value: float) -> None:
        """Apply a client write: clamp to the point's min/max; heartbeats feed the watchdog."""
        dev = self.devices.get(device)
        if dev is None:
            raise KeyError(f"no device {device!r} in this facility")
        p = dev.profile.point(point)
        if not p.writable or p.min is None or p.max is None:
            raise ValueError(f"{device}.{point} is not writable")
        v = float(value)
        if not math.isfinite(v):
            raise ValueError(f"{device}.{point}: {value!r} is not a finite number")
        v = min(max(v, p.min), p.max)
        watch = self.watch.get(device)
        if watch is not None and watch.point == point:
            if watch.last_change_ns is None or v != watch.value:
                watch.last_change_ns = self.fac.t_ns
                if watch.fallback:
                    log.info("%s: heartbeat resumed, leaving local fallback", device)
                watch.fallback = False
            watch.value = v
            return
        if watch is not None and watch.fallback:
            log.debug("%s: in local fallback, ignoring remote write %s=%s", device, point, v)
            return
        self._apply(dev, point, v)

    def check_heartbeats(self) -> None:
        """Revert devices whose armed heartbeat has not changed for longer than their timeout."""
        now = self.fac.t_ns
        for name, w in self.watch.items():
            if w.fallback or w.last_change_ns is None:
                continue
            if now - w.last_change_ns > w.timeout_ns:
                log.warning(
                    "%s: heartbeat %s unchanged for %.0f s, reverting to safe setpoints",
                    name,
                    w.point,
                    (now - w.last_change_ns) / 1e9,
                )
                w.fallback = True
                self.revert_to_safe(self.devices[name])

    def fallback_active(self, device: str) -> bool:
        """Whether ``device`` is in local fallback after a heartbeat loss."""
        w = self.watch.get(device)
        return bool(w and w.fallback)

    # --- values -----------------------------------------------------------------------------------------

    def values(self, device: str, *, arrays: bool = False) -> dict[str, PointValue]:
        """Every point of ``device`` keyed by ``Point.sim`` or the point name; array points as lists, or with
        ``arrays`` as read-only numpy arrays (for in-process readers, which would convert the lists back)."""
        dev = self.devices.get(device)
        if dev is None:
            raise KeyError(f"no device {device!r} in this facility")
        q = self._rack(dev, arrays) if dev.kind == "rack" else getattr(self, f"_{dev.kind}")(dev)
        out: dict[str, PointValue] = {}
        for key, p in zip(self.keys[device], dev.profile.points, strict=True):
            if key in q:
                out[key] = q[key]
            elif p.writable:
                out[key] = self.extra.get((device, p.name), p.safe_default if p.safe_default is not None else 0.0)
        noisy, rel = self.noisy.get(device), self.noisy_rel.get(device)
        if noisy is not None or rel is not None:
            # Keyed on the simulated second, so every server and the control API show the same reading.
            rng = np.random.default_rng([self.seed, self.device_no[device], self.fac.t_ns // 1_000_000_000])
            if noisy is not None:
                for key, dv in zip(noisy[0], rng.normal(0.0, noisy[1]).tolist(), strict=True):
                    v = out.get(key)
                    if isinstance(v, float) and math.isfinite(v):
                        out[key] = v + dv
            if rel is not None:
                for key, dr in zip(rel[0], rng.normal(0.0, rel[1]).tolist(), strict=True):
                    v = out.get(key)
                    if isinstance(v, float) and math.isfinite(v):
                        out[key] = v * (1.0 + dr)
        return out

    def held(self, device: str) -> dict[str, PointValue]:
        """The writable points of ``device`` (setpoints, heartbeat) as :meth:`values` serves them: what a write's
        read-back reads, without the noise draws and array slices of every reading (a write reads the device twice)."""
        dev = self.devices.get(device)
        if dev is None:
            raise KeyError(f"no device {device!r} in this facility")
        keys = [(k, p) for k, p in zip(self.keys[device], dev.profile.points, strict=True) if p.writable]
        noisy = set(self.noisy.get(device, ((), None))[0]) | set(self.noisy_rel.get(device, ((), None))[0])
        if any(k in noisy for k, _ in keys):  # a noisy setpoint reads as values() draws it
            every = self.values(device)
            return {k: every[k] for k, _ in keys if k in every}
        if dev.kind == "cdu" and self._cdu_setpoints_cover(dev, keys):
            q = self._cdu_setpoints(dev)  # a write reads its CDU twice: the setpoints, not its 25 readings
        else:
            q = self._rack(dev) if dev.kind == "rack" else getattr(self, f"_{dev.kind}")(dev)
        return {k: q[k] if k in q else self.extra.get((device, p.name), p.safe_default if p.safe_default is not None
                                                        else 0.0) for k, p in keys}  # fmt: skip

    def _cdu_setpoints_cover(self, dev: DeviceRef, keys: list[tuple[str, Point]]) -> bool:
        """Whether :meth:`_cdu_setpoints` holds every writable point of ``dev`` that :meth:`_cdu` serves (checked
        once per device against the full readings, so a profile with another writable point reads them all)."""
        ok = self._setpoints_cover.get(dev.name)
        if ok is None:
            served = self._cdu(dev)
            ok = self._setpoints_cover[dev.name] = all(k in _CDU_SETPOINTS for k, _ in keys if k in served)
        return ok

    def _cdu_setpoints(self, dev: DeviceRef) -> dict[str, PointValue]:
        """The writable points of :meth:`_cdu` (the same expressions), for :meth:`held`."""
        f = self.fac
        c = f.cdu_index[dev.name]
        watch = self.watch.get(dev.name)
        return {
            "tcs_supply_temp_setpoint_c": float(f.tcs_sp[c]),
            "dp_setpoint_kpa": float(f.dp_sp[c]),
            "heartbeat": 0.0 if watch is None or math.isnan(watch.value) else watch.value,
        }

    def ripple(self, dev: DeviceRef, amplitude: float) -> float:
        """Small deterministic wobble so 'must_move' readings move, as real voltages do."""
        i = self.device_no[dev.name]
        return 1.0 + amplitude * math.sin(2 * math.pi * self.fac.t_ns / 9e11 + float(self.phase[i]))

    def _pdu(self, dev: DeviceRef) -> dict[str, PointValue]:
        f = self.fac
        r = f.rack_index[dev.tags["rack"]]
        total = float(f.rack_power_w[r])
        load = total / float(f.rack_rated_w[r])
        out: dict[str, PointValue] = {"active_power_w": total, "active_energy_wh": float(f.rack_energy_wh[r])}
        for i, share in ((1, float(self.pdu_share[r])), (2, 1.0 - float(self.pdu_share[r]))):
            v = f.params.lv_voltage_v * (1.0 - 0.01 * load) * self.ripple(dev, 0.002 * i)
            pf = min(0.95 + 0.045 * load, 0.995)
            out |= {
                f"inlet{i}_voltage_v": v,
                f"inlet{i}_current_a": total * share / (3.0 * v * pf),  # per phase of a three-phase inlet
                f"inlet{i}_active_power_w": total * share,
                f"inlet{i}_power_factor": pf,
            }
        return out

    def rack_rows(self) -> _RackRows:
        """Every rack's values as Python lists, converted once per facility state (a step or a settle replaces the
        state and the conditions): each rack then slices them, where converting rack by rack cost more than the
        physics step itself. The same numbers as converting each rack's own slice."""
        f = self.fac
        c = self._rows
        if c is not None and c.state is f.state and c.env is f._env and c.t_ns == f.t_ns:
            return c
        off = f.rack_offsets
        gpus = f.rack_gpus
        clock = f.gpu_clock
        n = len(gpus)
        if n and bool((gpus == gpus[0]).all()) and len(clock) == n * int(gpus[0]):
            # One mean per row of equal racks: the same pairwise sums as each rack's own mean.
            clock_pct = (100.0 * clock.reshape(n, int(gpus[0])).mean(axis=1, dtype=np.float64)).tolist()
        else:
            clock_pct = [100.0 * float(clock[a : a + g].mean(dtype=np.float64)) for a, g in zip(off, gpus, strict=True)]
        c = self._rows = _RackRows(
            f.state,
            f._env,
            f.t_ns,
            (off + gpus).tolist(),
            off.tolist(),
            f.rack_power_w.tolist(),
            f.rack_energy_wh.tolist(),
            f.rack_inlet_c.tolist(),
            f.rack_outlet_c.tolist(),
            f.rack_flow_lpm.tolist(),
            np.asarray(f.condensation_risk)[f.rack_cdu].tolist(),
            f.rack_throttled.tolist(),
            _frozen(f.gpu_power_w),
            _frozen(f.gpu_temp_c),
            _frozen(100.0 * f.gpu_util),
            clock_pct,
        )
        return c

    def _rack(self, dev: DeviceRef, arrays: bool = False) -> dict[str, PointValue]:
        f = self.fac
        r = f.rack_index[dev.tags["rack"]]
        c = self.rack_rows()
        a, b = c.start[r], c.stop[r]
        gpu: Callable[[Arr], Any] = (lambda x: x[a:b]) if arrays else (lambda x: x[a:b].tolist())
        return {
            "rack_power_w": c.power[r],
            "it_energy_wh": c.energy[r],
            "coolant_inlet_temp_c": c.inlet[r],
            "coolant_outlet_temp_c": c.outlet[r],
            "coolant_flow_lpm": c.flow[r],
            "leak_detected": f"rack:{dev.tags['rack']}" in self.leaks,
            "condensation_risk": c.condensation[r],
            "gpus_throttled": c.throttled[r],
            "gpu_power_w": gpu(c.gpu_power),
            "gpu_temp_c": gpu(c.gpu_temp),
            "gpu_util_pct": gpu(c.gpu_util),
            "gpu_clock_pct": c.clock_pct[r],
        }

    def _cdu(self, dev: DeviceRef) -> dict[str, PointValue]:
        f = self.fac
        c = f.cdu_index[dev.name]
        high = bool(f.tcs_supply_c[c] > f.tcs_sp[c] + f.params.cdu_high_temp_alarm_k)
        leak = bool(self.leaks) and (  # no leak anywhere (the usual case): no rack to look through
            dev.name in self.leaks
            or any(f"rack:{n}" in self.leaks for n, cc in zip(f.rack_names, f.rack_cdu, strict=True) if cc == c)
        )
        fault = bool(f.cdu_pump_fault[c])
        fallback = self.fallback_active(dev.name)
        condensation = bool(f.condensation_risk[c])
        not_reached = bool(f.dp_not_reached[c])
        watch = self.watch.get(dev.name)
        return {
            "tcs_supply_temp_c": float(f.tcs_supply_c[c]),
            "tcs_return_temp_c": float(f.tcs_return_c[c]),
            "fws_supply_temp_c": f.fws_supply_c,
            "fws_return_temp_c": float(f.cdu_fws_return_c[c]),
            "flow_lpm": float(f.cdu_flow_lpm[c]),
            "dp_kpa": float(f.cdu_dp_kpa[c]),
            "pump_speed_pct": 0.0 if fault else 100.0 * float(f.cdu_speed[c]),
            "valve_pct": float(f.cdu_valve_pct[c]),
            "pump_power_w": float(f.cdu_pump_w[c]),
            "heat_load_kw": float(f.cdu_heat_w[c]) / 1000.0,
            "alarm_word": int(high)
            | int(leak) << 1
            | int(fault) << 2
            | int(fallback) << 3
            | int(condensation) << 4
            | int(not_reached) << 5,
            "alarm_high_temp": high,
            "alarm_leak": leak,
            "alarm_pump_fault": fault,
            "fallback_active": fallback,
            "alarm_condensation": condensation,
            "dp_setpoint_not_reached": not_reached,
            "room_dewpoint_temp_c": f.hall_dewpoint_c,
            "tcs_supply_temp_setpoint_c": float(f.tcs_sp[c]),
            "dp_setpoint_kpa": float(f.dp_sp[c]),
            "heartbeat": 0.0 if watch is None or math.isnan(watch.value) else watch.value,
        }

    def _plant(self, dev: DeviceRef) -> dict[str, PointValue]:
        f = self.fac
        watch = self.watch.get(dev.name)
        return {
            "fws_supply_temp_c": f.fws_supply_c,
            "fws_return_temp_c": f.fws_return_c,
            "fws_flow_lpm": f.fws_flow_lpm,
            "heat_load_w": f.fws_heat_w + f.air_heat_w,
            "chiller_power_w": f.chiller_w,
            "chiller_cop": f.chiller_cop,
            "heat_rejection_fan_power_w": f.hr_fan_w,
            "pump_power_w": f.fws_pump_w,
            "crah_fan_power_w": f.crah_fan_w,
            "cooling_power_w": f.plant_cooling_w,
            "free_cooling_state": f.free_cooling_state,
            "outdoor_drybulb_c": f.drybulb_c,
            "outdoor_wetbulb_c": f.wetbulb_c,
            "fws_supply_temp_setpoint_c": f.fws_sp,
            "chw_supply_temp_c": f.chw_supply_c,
            "chw_supply_temp_setpoint_c": f.chw_sp,
            "hall_dewpoint_c": f.hall_dewpoint_c,
            "free_cooler_fan_speed_pct": 100.0 * f.free_cooler_speed,
            "condenser_fan_speed_pct": 100.0 * f.condenser_speed,
            "fws_class_limit_c": f.fws_class_limit_c if math.isfinite(f.fws_class_limit_c) else 0.0,
            "fws_above_class": f.fws_above_class,
            "fws_above_class_minutes": f.fws_above_class_s / 60.0,
            "heartbeat": 0.0 if watch is None or math.isnan(watch.value) else watch.value,
        }

    def _ups(self, dev: DeviceRef) -> dict[str, PointValue]:
        f = self.fac
        return {
            "input_power_w": f.ups_input_w,
            "output_power_w": f.ups_output_w,
            "input_energy_kwh": f.energy_wh["ups_in"] / 1000.0,
            "output_energy_kwh": f.energy_wh["ups_out"] / 1000.0,
            "load_pct": 100.0 * f.ups_output_w / f.ups_rated_w,
            "efficiency_pct": 100.0 * f.ups_output_w / f.ups_input_w if f.ups_input_w > 0 else 0.0,
            "on_battery": False,
        }

    def _meter(self, dev: DeviceRef) -> dict[str, PointValue]:
        f = self.fac
        purpose = dev.config.purpose if isinstance(dev.config, MeterConfig) else "utility"
        power, energy, volts, pf = {
            "utility": (f.facility_power_w, f.energy_wh["facility"], f.params.grid_voltage_v, 0.98),
            "cooling": (f.cooling_power_w, f.energy_wh["cooling"], 400.0, 0.95),
            "other": (f.other_power_w, f.energy_wh["other"], 400.0, 0.9),
        }[purpose]
        v = volts * self.ripple(dev, 0.003)
        return {
            "voltage_v": v,
            "current_a": power / (math.sqrt(3.0) * v * pf),
            "active_power_w": power,
            "power_factor": pf,
            "energy_kwh": energy / 1000.0,
        }
