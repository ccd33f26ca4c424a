"""Fault prediction: residuals against learned healthy behaviour, a CUSUM change detector, predictive alarms.

Fitted on a healthy commissioning window of telemetry (found by role, never by device name), four residual models
each watch one physical relation that a slowly developing fault bends:

============================  ===========================================================  ======================
model (per device)            relation learned by least squares on the healthy window      fault it reveals
============================  ===========================================================  ======================
rack thermal                  mean GPU temp ~ GPU power, CDU supply, power·flow^-0.8 ...   cold-plate fouling
rack inlet sensor             rack inlet temp − CDU supply temp ~ constant                 drifting inlet sensor
CDU pump speed                pump speed ~ flow                                            strainer clogging
CDU pump power                pump power ~ dp·flow + flow³                                 pump wear
============================  ===========================================================  ======================

The thermal model uses the CDU's supply temperature, not the rack's own inlet sensor, so a drifting inlet sensor
is not mistaken for fouling; a clogged strainer raises pump power too, so a CDU whose speed residual also moved is
blamed on the strainer, one whose power alone moved on the pump. Residuals are averaged per hour and standardised
by their healthy spread; a two-sided CUSUM (allowance ``k``, threshold ``h``) detects a sustained shift, and an
alarm is raised only when the last day's mean residual also exceeds an engineering minimum (``min_effect``), so a
statistically visible but harmless wobble never pages anyone. Each device and cause alarms once (latched).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from aidc.errors import DataError
from aidc.model import SeriesKey
from aidc.roles import Role

# Every role a residual model reads.
ROLES: tuple[Role, ...] = (
    Role.GPU_TEMP, Role.GPU_POWER, Role.RACK_COOLANT_INLET_TEMP, Role.RACK_COOLANT_FLOW, Role.TCS_SUPPLY_TEMP,
    Role.PUMP_POWER, Role.TCS_FLOW, Role.TCS_DP, Role.CDU_PUMP_SPEED,
)  # fmt: skip
CAUSES = {
    "thermal": ("fouling", "cold-plate fouling: GPUs run hotter than learned for their power and coolant"),
    "inlet": ("sensor_drift", "drifting temperature sensor: rack inlet reading departs from the CDU supply"),
    "speed": ("strainer", "strainer clogging: the pump needs more speed for the same flow"),
    "power": ("pump_wear", "pump wear: the pump draws more power for the same flow and head"),
}
# Smallest shift worth an alarm, in the residual's unit (K, K, fraction of speed, fraction of power).
MIN_EFFECT = {"thermal": 1.0, "inlet": 0.5, "speed": 0.02, "power": 0.04}
RELATIVE = {"speed", "power"}


@dataclass(frozen=True, slots=True)
class PredictiveAlarm:
    """A predicted fault: which device, the likely cause, when it was raised and how far the residual moved."""

    ts: str
    device: str
    kind: str
    cause: str
    shift: float
    unit: str

    def to_dict(self) -> dict[str, object]:
        """JSON form."""
        return {**asdict(self), "severity": "predictive"}


@dataclass
class _Model:
    name: str  # thermal, inlet, speed, power
    device: str
    y: str
    xs: tuple[str, ...]
    coef: np.ndarray = field(default_factory=lambda: np.zeros(0))
    sigma: float = 1.0
    scale: float = 1.0  # relative residuals are divided by the healthy mean of y


def _design(frame: pd.DataFrame, xs: Sequence[str]) -> np.ndarray:
    cols = [frame[x].to_numpy(dtype=np.float64) for x in xs]
    return np.column_stack([*cols, np.ones(len(frame))])


def device_frame(wide: pd.DataFrame, roles: Mapping[str, Role], rack_cdu: Mapping[str, str]) -> pd.DataFrame:
    """Per-device signals (``<device>:<signal>`` columns) from wide collector series found by role."""
    groups: dict[str, list[str]] = {}
    for sid in wide.columns:
        role = roles.get(sid)
        if role is None:
            continue
        tags = SeriesKey.parse(sid).tag_dict
        rack, dev = tags.get("rack"), tags.get("device", "")
        key = {
            Role.GPU_TEMP: f"{rack}:gpu_temp", Role.GPU_POWER: f"{rack}:gpu_power",
            Role.RACK_COOLANT_INLET_TEMP: f"{rack}:inlet", Role.RACK_COOLANT_FLOW: f"{rack}:rack_flow",
            Role.TCS_SUPPLY_TEMP: f"{dev}:supply",
            Role.PUMP_POWER: f"{dev}:pump_power", Role.TCS_FLOW: f"{dev}:flow", Role.TCS_DP: f"{dev}:dp",
            Role.CDU_PUMP_SPEED: f"{dev}:speed",
        }.get(role)  # fmt: skip
        if key is not None and not key.startswith("None:"):
            groups.setdefault(key, []).append(sid)
    out = {k: wide[v].mean(axis=1) for k, v in groups.items()}
    for rack, cdu in rack_cdu.items():
        if f"{cdu}:supply" in out:
            out[f"{rack}:cdu_supply"] = out[f"{cdu}:supply"]
            if f"{rack}:inlet" in out:
                out[f"{rack}:inlet_offset"] = out[f"{rack}:inlet"] - out[f"{cdu}:supply"]
        if f"{rack}:gpu_power" in out and f"{rack}:rack_flow" in out:
            # Cold-plate convection goes as flow^-0.8 and the coolant's rise as 1/flow, both times the heat.
            q = out[f"{rack}:rack_flow"].clip(lower=1.0)
            out[f"{rack}:p_q08"] = out[f"{rack}:gpu_power"] * (q / 100.0) ** -0.8
            out[f"{rack}:p_q"] = out[f"{rack}:gpu_power"] * 100.0 / q
    for cdu in set(rack_cdu.values()):
        if f"{cdu}:dp" in out and f"{cdu}:flow" in out:
            out[f"{cdu}:dp_flow"] = out[f"{cdu}:dp"] * out[f"{cdu}:flow"]
            out[f"{cdu}:flow3"] = out[f"{cdu}:flow"] ** 3 / 1e6
    return pd.DataFrame(out, index=wide.index)


class FaultDetector:
    """Residual models fitted on healthy telemetry and a CUSUM per model; :meth:`scan` returns predictive alarms."""

    def __init__(self, models: list[_Model], k: float = 0.5, h: float = 12.0) -> None:
        self.models, self.k, self.h = models, k, h

    @classmethod
    def fit(
        cls, signals: pd.DataFrame, rack_cdu: Mapping[str, str], *, k: float = 0.5, h: float = 12.0
    ) -> FaultDetector:
        """Learn every relation from a healthy window of :func:`device_frame` signals."""
        specs: list[_Model] = []
        for rack in rack_cdu:
            xs = (f"{rack}:gpu_power", f"{rack}:cdu_supply", f"{rack}:p_q08", f"{rack}:p_q")
            specs.append(_Model("thermal", rack, f"{rack}:gpu_temp", xs))
            specs.append(_Model("inlet", rack, f"{rack}:inlet_offset", ()))
        for cdu in sorted(set(rack_cdu.values())):
            specs.append(_Model("speed", cdu, f"{cdu}:speed", (f"{cdu}:flow",)))
            specs.append(_Model("power", cdu, f"{cdu}:pump_power", (f"{cdu}:dp_flow", f"{cdu}:flow3")))
        models = []
        for m in specs:
            needed = [m.y, *m.xs]
            if any(c not in signals for c in needed):
                continue
            data = signals[needed].dropna()
            if len(data) < 48:
                raise DataError(f"fault detector: {len(data)} healthy samples for {m.device} {m.name}; need 48")
            x, y = _design(data, m.xs), data[m.y].to_numpy(dtype=np.float64)
            m.coef = np.linalg.lstsq(x, y, rcond=1e-9)[0]
            m.scale = float(np.mean(np.abs(y))) if m.name in RELATIVE else 1.0
            resid = (y - x @ m.coef) / m.scale
            hourly = pd.Series(resid, index=data.index).resample("1h").mean().dropna()
            # Healthy spread of hourly residuals, floored at the sensors' resolution so a perfectly quiet
            # relation does not turn quantisation steps into alarms.
            floor = 0.02 if m.name in ("thermal", "inlet") else 0.002
            m.sigma = max(float(hourly.std(ddof=1)) if len(hourly) > 2 else 0.0, floor)
            models.append(m)
        if not models:
            raise DataError("fault detector: no device has the signals any residual model needs")
        return cls(models, k, h)

    def residuals(self, signals: pd.DataFrame) -> pd.DataFrame:
        """Hourly mean residual of every model (columns ``<device>:<model>``), in the model's unit."""
        out = {}
        for m in self.models:
            data = signals[[m.y, *m.xs]].dropna()
            r = (data[m.y].to_numpy() - _design(data, m.xs) @ m.coef) / m.scale
            out[f"{m.device}:{m.name}"] = pd.Series(r, index=data.index).resample("1h").mean()
        return pd.DataFrame(out)

    def scan(self, signals: pd.DataFrame) -> list[PredictiveAlarm]:
        """Run the change detectors over ``signals`` in time order; one alarm per device and cause."""
        res = self.residuals(signals)
        raised: dict[str, PredictiveAlarm] = {}
        fired: dict[tuple[str, str], pd.Timestamp] = {}
        for m in self.models:
            col = res[f"{m.device}:{m.name}"]
            z = (col / m.sigma).to_numpy()
            day = col.rolling(24, min_periods=12).mean().to_numpy()
            hi = lo = 0.0
            for i, zi in enumerate(z):
                if not np.isfinite(zi):
                    continue
                hi, lo = max(0.0, hi + zi - self.k), max(0.0, lo - zi - self.k)
                sign = 1.0 if hi > self.h else -1.0 if lo > self.h else 0.0
                if sign and np.isfinite(day[i]) and sign * day[i] >= MIN_EFFECT[m.name]:
                    fired[(m.device, m.name)] = col.index[i] + pd.Timedelta("1h")
                    break
        for (device, name), ts in sorted(fired.items(), key=lambda kv: kv[1]):
            if name == "power" and (device, "speed") in fired:
                continue  # a clogged strainer also costs pump power: the speed residual names the cause
            kind, cause = CAUSES[name]
            shift = float(res[f"{device}:{name}"].loc[:ts].tail(24).mean())
            unit = "fraction" if name in RELATIVE else "K"
            raised[f"{device}:{kind}"] = PredictiveAlarm(ts.isoformat(), device, kind, cause, shift, unit)
        return sorted(raised.values(), key=lambda a: a.ts)


def write_alarms(path: Path, alarms: Sequence[PredictiveAlarm]) -> None:
    """Append alarms to the JSON-lines alarm log the API serves."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        for a in alarms:
            f.write(json.dumps(a.to_dict()) + "\n")
