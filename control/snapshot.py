"""Build a :class:`control.types.Snapshot` from device point values, found by role (never by device name).

The same builder serves the live supervisor (values from :class:`aidc.live.LiveState`) and the in-process
evaluation (values a collector would read from the simulated devices), so a controller sees identical inputs in
both. Which devices and points feed which field is resolved once from the site; each snapshot is then a few array
reductions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from aidc.config import CduConfig, DeviceRef, Site
from aidc.roles import Role
from control.policy import Limits
from control.types import Setpoints, Snapshot

PointValue = float | int | bool | Sequence[float] | npt.NDArray[np.float64] | None
# device name -> point name -> latest value (None where missing or not good)
Readings = Mapping[str, Mapping[str, PointValue]]


def _point(dev: DeviceRef, role: Role) -> str | None:
    for p in dev.profile.points:
        if dev.role_of(p.name) is role:
            return p.name
    return None


def _scalar(v: PointValue) -> float:
    if v is None or isinstance(v, Sequence | np.ndarray):
        return math.nan
    return float(v)


_MAX, _SUM = np.maximum.reduce, np.add.reduce  # what ndarray.max and .mean reduce with, without their wrappers


def _array_max(v: PointValue) -> float:
    if v is None:
        return math.nan
    a = np.asarray(v, dtype=np.float64).ravel()
    return float(_MAX(a)) if a.size else math.nan


def _array_max_mean(v: PointValue) -> tuple[float, float, int]:
    if v is None:
        return math.nan, math.nan, 0
    a = np.asarray(v, dtype=np.float64).ravel()
    n = a.size
    if n == 0:
        return math.nan, math.nan, 0
    # ndarray.mean is the same sum divided by the count; called directly it costs a fifth (a snapshot takes ~100).
    return float(_MAX(a)), float(_SUM(a)) / n, n


@dataclass(frozen=True)
class _Src:
    device: str
    point: str


class SnapshotBuilder:
    """Resolves, once per site, which device point feeds each snapshot field."""

    def __init__(self, site: Site, limits: Limits) -> None:
        self.limits = limits
        by_rack: dict[str, DeviceRef] = {}
        for d in site.devices:
            if d.kind == "rack":
                by_rack[d.tags["rack"]] = d
        self.cdu_racks: list[list[_Src]] = []
        self.cdu_util: list[list[_Src]] = []
        self.cdu_clock: list[list[_Src]] = []  # optional (Role.GPU_CLOCK): not every site reports clocks
        self.cdu_points: list[dict[str, str | None]] = []
        devs = {d.name: d for d in site.devices}
        for name in limits.cdu_names:
            cdu = devs[name]
            assert isinstance(cdu.config, CduConfig)
            temps, utils, clocks = [], [], []
            for r in cdu.config.racks:
                rd = by_rack.get(r)
                if rd is None:
                    continue
                t, u, c = _point(rd, Role.GPU_TEMP), _point(rd, Role.GPU_UTIL), _point(rd, Role.GPU_CLOCK)
                if t is not None:
                    temps.append(_Src(rd.name, t))
                if u is not None:
                    utils.append(_Src(rd.name, u))
                if c is not None:
                    clocks.append(_Src(rd.name, c))
            self.cdu_racks.append(temps)
            self.cdu_util.append(utils)
            self.cdu_clock.append(clocks)
            self.cdu_points.append(
                {
                    "tcs": _point(cdu, Role.TCS_SUPPLY_TEMP),
                    "valve": _point(cdu, Role.CDU_VALVE),
                    "heat": "heat_load_kw" if any(p.name == "heat_load_kw" for p in cdu.profile.points) else None,
                    "alarm": _point(cdu, Role.ALARM),
                }
            )
        plant = devs[limits.plant_device]
        self.plant = {
            "fws": _point(plant, Role.FWS_SUPPLY_TEMP),
            "db": _point(plant, Role.OUTDOOR_DRYBULB),
            "wb": _point(plant, Role.OUTDOOR_WETBULB),
            "free": _point(plant, Role.FREE_COOLING_STATE),  # optional: the rule measures its approach with it
            "fan": _point(plant, Role.FREE_COOLER_FAN_SPEED),  # optional, likewise
        }
        self.facility = [_Src(d.name, p) for d in site.devices if (p := _point(d, Role.FACILITY_POWER)) is not None]
        self.cooling = [_Src(d.name, p) for d in site.devices if (p := _point(d, Role.COOLING_POWER)) is not None]
        self.it = [_Src(d.name, p) for d in site.devices if (p := _point(d, Role.IT_POWER_UPS_OUTPUT)) is not None]
        self.scales = {
            s.device + "." + s.point: _kw_scale(devs[s.device], s.point) for s in self.facility + self.cooling + self.it
        }

    def devices(self) -> list[str]:
        """Every device whose points a snapshot reads."""
        return sorted(self.needed())

    def needed(self) -> dict[str, set[str]]:
        """Device name -> the points a snapshot reads from it."""
        out: dict[str, set[str]] = {}
        racks = [x for lst in self.cdu_racks + self.cdu_util + self.cdu_clock for x in lst]
        for s in racks + self.facility + self.cooling + self.it:
            out.setdefault(s.device, set()).add(s.point)
        lim = self.limits
        for i, name in enumerate(lim.cdu_names):
            pts = {p for p in self.cdu_points[i].values() if p is not None}
            out.setdefault(name, set()).update(pts | {lim.tcs_point, lim.dp_point})
        out.setdefault(lim.plant_device, set()).update(
            {p for p in self.plant.values() if p is not None} | {lim.fws_point}
            | ({lim.chw_point} if lim.chw_point is not None else set())
        )
        return out

    def _sum_kw(self, r: Readings, srcs: list[_Src]) -> float:
        if not srcs:
            return math.nan
        return sum(_scalar(r.get(s.device, {}).get(s.point)) * self.scales[s.device + "." + s.point] for s in srcs)

    def build(self, t_ns: int, r: Readings, *, max_age_s: float = 0.0) -> Snapshot:
        """A snapshot from the latest readings (missing values become NaN, which the guard treats as bad)."""
        lim = self.limits
        n = len(lim.cdu_names)
        gmax, util, clock = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
        tcs, valve, heat = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
        sp_t, sp_d = np.full(n, np.nan), np.full(n, np.nan)
        alarms: list[str] = []
        for i, name in enumerate(lim.cdu_names):
            mx = [_array_max(r.get(s.device, {}).get(s.point)) for s in self.cdu_racks[i]]
            gmax[i] = max(mx) if mx and all(math.isfinite(x) for x in mx) else math.nan
            util[i] = self._mean(r, self.cdu_util[i])
            clock[i] = self._mean(r, self.cdu_clock[i])
            vals = r.get(name, {})
            pts = self.cdu_points[i]
            for arr, key in ((tcs, "tcs"), (valve, "valve"), (heat, "heat")):
                p = pts[key]
                if p is not None:
                    arr[i] = _scalar(vals.get(p))
            sp_t[i] = _scalar(vals.get(lim.tcs_point))
            sp_d[i] = _scalar(vals.get(lim.dp_point))
            a = pts["alarm"]
            if a is not None and _scalar(vals.get(a)) not in (0.0,) and math.isfinite(_scalar(vals.get(a))):
                alarms.append(f"{name}: alarm word {int(_scalar(vals.get(a)))}")
        pv = r.get(lim.plant_device, {})

        def plant(key: str) -> float:
            p = self.plant[key]
            return _scalar(pv.get(p)) if p is not None else math.nan

        return Snapshot(
            t_ns=t_ns,
            cdu_names=lim.cdu_names,
            gpu_max_c=gmax,
            gpu_util_pct=util,
            tcs_supply_c=tcs,
            valve_pct=valve,
            heat_kw=heat,
            current=Setpoints(sp_t, sp_d, _scalar(pv.get(lim.fws_point)),
                              _scalar(pv.get(lim.chw_point)) if lim.chw_point is not None else math.nan),
            fws_supply_c=plant("fws"),
            drybulb_c=plant("db"),
            wetbulb_c=plant("wb"),
            facility_kw=self._sum_kw(r, self.facility),
            it_kw=self._sum_kw(r, self.it),
            cooling_kw=self._sum_kw(r, self.cooling),
            max_age_s=max_age_s,
            alarms=tuple(alarms),
            gpu_clock_pct=clock,
            free_cooling_state=plant("free"),
            free_cooler_fan_pct=plant("fan"),
        )

    @staticmethod
    def _mean(r: Readings, srcs: list[_Src]) -> float:
        """Mean over every GPU of the racks ``srcs`` name; NaN where any is missing (or none is configured)."""
        us = [_array_max_mean(r.get(s.device, {}).get(s.point)) for s in srcs]
        cnt = sum(u[2] for u in us)
        if cnt and all(math.isfinite(u[1]) for u in us):
            return sum(u[1] * u[2] for u in us) / cnt
        return math.nan


def _kw_scale(dev: DeviceRef, point: str) -> float:
    unit = dev.profile.point(point).unit.lower()
    return {"w": 1e-3, "kw": 1.0, "mw": 1e3}.get(unit, 1e-3 if point.endswith("_w") else 1.0)
