"""Site control policy (the ``[control]`` table of the site file) and the hard limits derived from it.

The limits an operator signs off: GPU temperature margin below each model's throttle limit, the ASHRAE W-class cap
on facility water, TCS supply at least a margin above the dew point, the CDU approach (TCS supply cannot be colder
than the facility water feeding it plus the exchanger's approach), the profiles' writable min/max, and the largest
change per decision interval. :class:`Limits` is computed once from the site and shared by the supervisor's
constraint layer and the independent hard-limit check before every write.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import psychrolib as psy

from aidc.config import CduConfig, DeviceRef, Site
from aidc.errors import ConfigError
from aidc.roles import Role
from aidc.site_tables import ControlConfig as ControlConfig  # re-exported: control code imports it here
from aidc.site_tables import TrimRespondConfig as TrimRespondConfig
from control.types import Arr, Setpoints

# Junction temperature at which each accelerator caps its power (vendor data sheets); a site can override per model.
psy.SetUnitSystem(psy.SI)

THROTTLE_LIMITS_C: dict[str, float] = {
    "GB200": 87.0,
    "GB300": 87.0,
    "B200": 87.0,
    "H100": 87.0,
    "H200": 87.0,
    "A100": 85.0,
}


def control_config(site: Site) -> ControlConfig:
    """The site's ``[control]`` table (validated when the site was loaded: a bad key never reaches the supervisor)."""
    return site.config.control


def dew_point_c(drybulb_c: float, wetbulb_c: float, pressure_pa: float = 101325.0) -> float:
    """Dew point from outdoor dry and wet bulb (ASHRAE psychrometrics via psychrolib); −40 °C for very dry air."""
    if not (math.isfinite(drybulb_c) and math.isfinite(wetbulb_c)):
        return math.nan
    # psychrolib iterates; weather moves slowly, so a cache on 0.01 K steps serves the per-minute checks.
    return _dew_point(round(drybulb_c, 2), round(min(wetbulb_c, drybulb_c), 2), round(pressure_pa, -1))


@functools.lru_cache(maxsize=65536)
def _dew_point(drybulb_c: float, wetbulb_c: float, pressure_pa: float) -> float:
    try:
        return float(psy.GetTDewPointFromTWetBulb(drybulb_c, wetbulb_c, pressure_pa))
    except ValueError:
        return -40.0


@dataclass(frozen=True)
class Limits:
    """Hard limits of one site, per CDU where they differ."""

    cdu_names: tuple[str, ...]
    cdu_devices: tuple[str, ...]  # device names (same as cdu_names) in snapshot order
    plant_device: str
    tcs_point: str
    dp_point: str
    fws_point: str
    tcs_lo: float
    tcs_hi: float
    dp_lo: float
    dp_hi: float
    fws_lo: float
    fws_hi: float  # profile max, capped at the W-class limit
    w_class_c: float | None
    gpu_limit_c: Arr  # per CDU: the lowest throttle limit of its racks
    safe: Setpoints
    cfg: ControlConfig
    chw_point: str | None = None  # the plant's writable CRAH chilled-water setpoint, where its profile has one
    chw_lo: float = math.nan
    chw_hi: float = math.nan

    @property
    def gpu_ceiling_c(self) -> Arr:
        """Hottest GPU allowed per CDU: throttle limit − margin."""
        return self.gpu_limit_c - self.cfg.gpu_margin_k

    def clip(self, sp: Setpoints, dew_c: float | None = None) -> Setpoints:
        """The nearest setpoints inside the absolute bounds, the approach and the dew-point margin."""
        fws = float(np.clip(sp.fws_c, self.fws_lo, self.fws_hi))
        lo = max(self.tcs_lo, fws + self.cfg.cdu_approach_k)
        if dew_c is not None:
            lo = max(lo, dew_c + self.cfg.dew_margin_k)
        tcs = np.clip(sp.tcs_c, min(lo, self.tcs_hi), self.tcs_hi)
        return Setpoints(tcs, np.clip(sp.dp_kpa, self.dp_lo, self.dp_hi), fws, self._chw(sp.chw_c))

    def _chw(self, chw_c: float) -> float:
        """A chilled-water setpoint inside its bounds; NaN (leave it) where the site has none to write."""
        if self.chw_point is None or not math.isfinite(chw_c):
            return math.nan
        return float(np.clip(chw_c, self.chw_lo, self.chw_hi))

    def step_toward(self, sp: Setpoints, prev: Setpoints, dew_c: float | None = None) -> Setpoints:
        """``sp`` clipped to the bounds and rate-limited from ``prev``, and still inside the CDU approach.

        Rate limiting after clipping can undo the approach: from a TCS setpoint a device holds rounded (24.4 for
        24.4125), TCS + 2 K lands just below FWS + 2 K + approach. Then FWS gives way (it stays within its own rate
        limit and bounds), and where it cannot, TCS rises within its rate limit.
        """
        c = self.cfg
        r = self.rate_limit(self.clip(sp, dew_c), prev)
        fws = min(r.fws_c, float(r.tcs_c.min()) - c.cdu_approach_k)
        fws = float(np.clip(max(fws, prev.fws_c - c.max_step_fws_k, self.fws_lo), self.fws_lo, self.fws_hi))
        tcs = np.minimum(np.maximum(r.tcs_c, min(fws + c.cdu_approach_k, self.tcs_hi)),
                         prev.tcs_c + c.max_step_tcs_k)
        return Setpoints(np.clip(tcs, self.tcs_lo, self.tcs_hi), r.dp_kpa, fws, r.chw_c)

    def rate_limit(self, sp: Setpoints, prev: Setpoints) -> Setpoints:
        """``sp`` moved no further from ``prev`` than the maximum change per interval."""
        c = self.cfg
        chw = sp.chw_c
        if math.isfinite(chw) and math.isfinite(prev.chw_c):  # plant supply temperatures share the FWS rate limit
            chw = float(np.clip(chw, prev.chw_c - c.max_step_fws_k, prev.chw_c + c.max_step_fws_k))
        return Setpoints(
            np.clip(sp.tcs_c, prev.tcs_c - c.max_step_tcs_k, prev.tcs_c + c.max_step_tcs_k),
            np.clip(sp.dp_kpa, prev.dp_kpa - c.max_step_dp_kpa, prev.dp_kpa + c.max_step_dp_kpa),
            float(np.clip(sp.fws_c, prev.fws_c - c.max_step_fws_k, prev.fws_c + c.max_step_fws_k)),
            chw,
        )


def _setpoint_point(dev: DeviceRef, role: Role) -> tuple[str, float, float, float]:
    found = _optional_setpoint(dev, role)
    if found is None:
        raise ConfigError(f"{dev.path}: profile {dev.profile.name!r} has no writable point with role {role.value}")
    return found


def _optional_setpoint(dev: DeviceRef, role: Role) -> tuple[str, float, float, float] | None:
    for p in dev.profile.points:
        if p.writable and dev.role_of(p.name) is role:
            if p.min is None or p.max is None or p.safe_default is None:
                raise ConfigError(f"{dev.path}: setpoint {p.name} needs min, max and safe_default in its profile")
            return p.name, float(p.min), float(p.max), float(p.safe_default)
    return None


def site_limits(site: Site, cfg: ControlConfig | None = None) -> Limits:
    """Limits of ``site`` from its profiles, its W-class and its control policy."""
    cfg = cfg if cfg is not None else control_config(site)
    cdus = [d for d in site.devices if d.kind == "cdu"]
    plants = [d for d in site.devices if d.kind == "plant"]
    if not cdus or not plants:
        raise ConfigError(f"{site.path or '<site>'}: supervisory control needs at least one CDU and the plant")
    limits = {**THROTTLE_LIMITS_C, **{k.upper(): v for k, v in cfg.gpu_limits_c.items()}}
    rack_limit: dict[str, float] = {}
    for _hall, rack in site.racks():
        model = rack.gpu_model.upper()
        if model not in limits:
            raise ConfigError(f"control.gpu_limits_c: no throttle limit for GPU model {rack.gpu_model!r}; add one")
        rack_limit[rack.name] = limits[model]
    tcs = [_setpoint_point(d, Role.TCS_SUPPLY_TEMP_SETPOINT) for d in cdus]
    dps = [_setpoint_point(d, Role.TCS_DP_SETPOINT) for d in cdus]
    fws = _setpoint_point(plants[0], Role.FWS_SUPPLY_TEMP_SETPOINT)
    chw = _optional_setpoint(plants[0], Role.CHW_SUPPLY_TEMP_SETPOINT)
    w = site.config.site.max_fws_supply_c
    gpu_limit = []
    for d in cdus:
        assert isinstance(d.config, CduConfig)
        gpu_limit.append(min(rack_limit[r] for r in d.config.racks))
    names = tuple(d.name for d in cdus)
    return Limits(
        cdu_names=names,
        cdu_devices=names,
        plant_device=plants[0].name,
        tcs_point=tcs[0][0],
        dp_point=dps[0][0],
        fws_point=fws[0],
        tcs_lo=max(t[1] for t in tcs),
        tcs_hi=min(t[2] for t in tcs),
        dp_lo=max(t[1] for t in dps),
        dp_hi=min(t[2] for t in dps),
        fws_lo=fws[1],
        fws_hi=min(fws[2], w) if w is not None else fws[2],
        w_class_c=w,
        gpu_limit_c=np.array(gpu_limit, dtype=np.float64),
        safe=Setpoints(np.array([t[3] for t in tcs]), np.array([t[3] for t in dps]), fws[3],
                       chw[3] if chw is not None else math.nan),
        cfg=cfg,
        chw_point=chw[0] if chw is not None else None,
        chw_lo=chw[1] if chw is not None else math.nan,
        chw_hi=chw[2] if chw is not None else math.nan,
    )
