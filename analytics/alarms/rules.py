"""Alarm rules: the site's alarm policy, what each rule measures per subject, and the thresholds it compares with.

Thresholds come from DESIGN.md's operating limits, the device profiles (a writable point's max) and the site's
``[dashboard.alarms]`` policy. :class:`analytics.alarms.engine.AlarmEngine` applies the rules; a rule marked
``external`` is measured by no one here: another component (fault prediction) raises and clears its alarms.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from aidc.config import Site
from aidc.roles import Role
from aidc.site_tables import AlarmPolicy as AlarmPolicy  # the [dashboard.alarms] table, typed at load

Severity = Literal["critical", "major", "minor", "warning"]
SEVERITY_ORDER: dict[str, int] = {"critical": 0, "major": 1, "minor": 2, "warning": 3}


Measure = Callable[[pd.DataFrame, Mapping[str, float]], dict[str, float]]


@dataclass(frozen=True, slots=True)
class Rule:
    """One kind of alarm: how to measure it per subject, the threshold and which way is bad."""

    name: str
    title: str
    severity: Severity
    unit: str
    threshold: float
    measure: Measure
    hysteresis: float = 0.0
    raise_delay_s: float = 0.0
    clear_delay_s: float = 0.0
    source: str = "policy"  # where the threshold came from, shown to the operator
    # Raised and cleared by another component (fault prediction) through AlarmEngine.raise_external and
    # clear_external; evaluate() never measures it, so the two sources cannot fight over one alarm.
    external: bool = False

    def violated(self, value: float) -> bool:
        """Whether ``value`` is past the threshold."""
        return value > self.threshold

    def recovered(self, value: float) -> bool:
        """Whether ``value`` is back past the threshold by the hysteresis."""
        return value <= self.threshold - self.hysteresis


def _by(frame: pd.DataFrame, measurement: str, fld: str, tag: str, how: str = "max") -> dict[str, float]:
    """Aggregate of the good values of ``measurement``/``fld`` per value of ``tag``."""
    if frame.empty or tag not in frame.columns:
        return {}
    rows = frame[(frame["measurement"] == measurement) & (frame["field"] == fld) & (frame["quality"] != "bad")]
    rows = rows[rows["value"].notna() & rows[tag].notna()]
    if rows.empty:
        return {}
    agg = rows.groupby(tag)["value"].agg(how)
    return {str(k): float(v) for k, v in agg.items()}


def _approach(frame: pd.DataFrame, _: Mapping[str, float]) -> dict[str, float]:
    tcs = _by(frame, "cdu", "tcs_supply_temp_c", "device")
    fws = _by(frame, "cdu", "fws_supply_temp_c", "device")
    return {d: tcs[d] - fws[d] for d in tcs if d in fws}


def _device_down(frame: pd.DataFrame, _: Mapping[str, float]) -> dict[str, float]:
    up = _by(frame, "collector", "up", "device", "min")
    return {d: 1.0 - v for d, v in up.items()}


def _stale(frame: pd.DataFrame, extra: Mapping[str, float]) -> dict[str, float]:
    """Count of stale or bad points per device that is up (a device that is down has its own alarm)."""
    if frame.empty or "device" not in frame.columns:
        return {}
    down = {d for d, v in _device_down(frame, extra).items() if v > 0.5}
    data = frame[(frame["measurement"] != "collector") & ~frame["device"].isin(down)]
    bad = data["quality"] == "bad"
    return {str(k): float(v) for k, v in bad.groupby(data["device"]).sum().items()}


def _extra(key: str) -> Measure:
    def measure(_: pd.DataFrame, extra: Mapping[str, float]) -> dict[str, float]:
        v = extra.get(key)
        return {} if v is None or not np.isfinite(v) else {"historian": float(v)}

    return measure


def _field(measurement: str, fld: str, tag: str) -> Measure:
    return lambda frame, _: _by(frame, measurement, fld, tag)


def _profile_max(site: Site, role: Role) -> float | None:
    for dev in site.devices:
        for p in dev.profile.points:
            if dev.role_of(p.name) == role and p.writable and p.max is not None:
                return float(p.max)
    return None


def default_rules(site: Site, policy: AlarmPolicy) -> list[Rule]:
    """The alarm rules for a site: DESIGN.md's operating limits, the profiles' setpoint limits, the site policy."""
    d: dict[str, Any] = {
        "hysteresis": policy.hysteresis_k,
        "raise_delay_s": policy.raise_delay_s,
        "clear_delay_s": policy.clear_delay_s,
    }
    now_d: dict[str, Any] = {"raise_delay_s": 0.0, "clear_delay_s": policy.clear_delay_s}
    rules = [
        Rule(
            "gpu_hot", "hot GPU", "major", "°C", policy.gpu_temp_high_c, _field("gpu_rack", "gpu_temp_c", "rack"), **d
        ),
        Rule(
            "rack_outlet_high",
            "high rack coolant outlet",
            "major",
            "°C",
            policy.rack_outlet_high_c,
            _field("gpu_rack", "coolant_outlet_temp_c", "rack"),
            **d,
        ),
        Rule(
            "cdu_approach",
            "CDU approach drifting",
            "minor",
            "K",
            policy.cdu_approach_high_k,
            _approach,
            hysteresis=min(policy.hysteresis_k, 0.5),
            raise_delay_s=policy.raise_delay_s,
            clear_delay_s=policy.clear_delay_s,
        ),
        Rule("leak", "leak detected", "critical", "", 0.5, _field("gpu_rack", "leak_detected", "rack"), **now_d),
        Rule("cdu_leak", "CDU leak alarm", "critical", "", 0.5, _field("cdu", "alarm_leak", "device"), **now_d),
        Rule(
            "cdu_fallback",
            "CDU fell back to local control",
            "major",
            "",
            0.5,
            _field("cdu", "fallback_active", "device"),
            **now_d,
        ),
        Rule(
            "device_down",
            "device down",
            "major",
            "",
            0.5,
            _device_down,
            raise_delay_s=policy.raise_delay_s,
            clear_delay_s=policy.clear_delay_s,
        ),
        Rule(
            "stale_points",
            "stale or bad points",
            "warning",
            "points",
            0.5,
            _stale,
            raise_delay_s=policy.raise_delay_s,
            clear_delay_s=policy.clear_delay_s,
        ),
        Rule(
            "spool_growing",
            "historian spool growing",
            "minor",
            "points",
            float(policy.spool_points_high),
            _extra("spool_depth_points"),
            **now_d,
        ),
        Rule(
            "points_dropped",
            "historian dropped points",
            "major",
            "points",
            0.5,
            _extra("dropped_points_total"),
            **now_d,
        ),
        Rule("writer_errors", "historian write errors", "major", "", 0.5, _extra("write_errors"), **now_d),
        Rule("controller_fallback", "controller fell back", "major", "", 0.5, _extra("controller_fallback"), **now_d),
    ]
    tcs = policy.tcs_supply_high_c
    tcs_source = "policy"
    if tcs is None:
        tcs, tcs_source = _profile_max(site, Role.TCS_SUPPLY_TEMP_SETPOINT), "profile setpoint max"
    if tcs is not None:
        rules.append(
            Rule(
                "tcs_supply_high",
                "high TCS coolant supply",
                "major",
                "°C",
                tcs,
                _field("cdu", "tcs_supply_temp_c", "device"),
                source=tcs_source,
                **d,
            )
        )
    fws = policy.fws_supply_high_c
    fws_source = "policy"
    if fws is None:
        fws, fws_source = site.config.site.max_fws_supply_c, f"ASHRAE {site.config.site.ashrae_class}"
    if fws is not None:
        rules.append(
            Rule(
                "fws_supply_high",
                "high facility water supply",
                "major",
                "°C",
                fws,
                _field("plant", "fws_supply_temp_c", "device"),
                source=fws_source,
                **d,
            )
        )
    return rules


def unmeasured(_: pd.DataFrame, __: Mapping[str, float]) -> dict[str, float]:
    """The measure of an external rule: the engine measures nothing, the rule's source raises and clears."""
    return {}
