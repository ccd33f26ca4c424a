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

import functools
import json
from collections.abc import Collection, Mapping, Sequence
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


@functools.lru_cache(maxsize=65536)
def rack_device(sid: str) -> tuple[str | None, str]:
    """The rack and device tags of a series id (cached: the service maps the same columns every 5 minutes)."""
    tags = SeriesKey.parse(sid).tag_dict
    return tags.get("rack"), tags.get("device", "")


def device_frame(wide: pd.DataFrame, roles: Mapping[str, Role], rack_cdu: Mapping[str, str]) -> pd.DataFrame:
    """Per-device signals (``<device>:<signal>`` columns) from wide collector series found by role."""
    groups: dict[str, list[str]] = {}
    for sid in wide.columns:
        role = roles.get(sid)
        if role is None:
            continue
        rack, dev = rack_device(sid)
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


@dataclass(frozen=True, slots=True)
class ModelState:
    """Where one residual model stands at the end of a scanned window.

    ``fired``: when its CUSUM first crossed the threshold with the day's mean past ``MIN_EFFECT`` (None if it did
    not); ``day_mean``: mean hourly residual of the last 24 hours (NaN with fewer than 12 of them).
    """

    device: str
    name: str
    fired: pd.Timestamp | None
    day_mean: float

    @property
    def key(self) -> str:
        """``<device>:<model>``, as in :meth:`FaultDetector.residuals`."""
        return f"{self.device}:{self.name}"


def model_specs(rack_cdu: Mapping[str, str]) -> list[_Model]:
    """Every residual model a site with these racks and CDUs can have (unfitted)."""
    specs: list[_Model] = []
    for rack in rack_cdu:
        xs = (f"{rack}:gpu_power", f"{rack}:cdu_supply", f"{rack}:p_q08", f"{rack}:p_q")
        specs.append(_Model("thermal", rack, f"{rack}:gpu_temp", xs))
        specs.append(_Model("inlet", rack, f"{rack}:inlet_offset", ()))
    for cdu in sorted(set(rack_cdu.values())):
        specs.append(_Model("speed", cdu, f"{cdu}:speed", (f"{cdu}:flow",)))
        specs.append(_Model("power", cdu, f"{cdu}:pump_power", (f"{cdu}:dp_flow", f"{cdu}:flow3")))
    return specs


class FaultDetector:
    """Residual models fitted on healthy telemetry and a CUSUM per model; :meth:`scan` returns predictive alarms."""

    def __init__(self, models: list[_Model], k: float = 0.5, h: float = 12.0) -> None:
        self.models, self.k, self.h = models, k, h
        # Models left out of the last fit for too little healthy data: ``<device>:<model>`` -> samples it had.
        self.short: dict[str, int] = {}

    @classmethod
    def fit(
        cls,
        signals: pd.DataFrame,
        rack_cdu: Mapping[str, str],
        *,
        k: float = 0.5,
        h: float = 12.0,
        min_samples: int = 48,
        skip_short: bool = False,
    ) -> FaultDetector:
        """Learn every relation from a healthy window of :func:`device_frame` signals.

        A model with fewer than ``min_samples`` complete rows is refused (DataError naming it), or with
        ``skip_short`` left out and listed in :attr:`short`; with no model at all the fit is refused.
        """
        models = []
        short: dict[str, int] = {}
        for m in model_specs(rack_cdu):
            needed = [m.y, *m.xs]
            if any(c not in signals for c in needed):
                continue
            data = signals[needed].dropna()
            if len(data) < min_samples:
                if skip_short:
                    short[f"{m.device}:{m.name}"] = len(data)
                    continue
                raise DataError(
                    f"fault detector: {len(data)} healthy samples for {m.device} {m.name}; need {min_samples}"
                )
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
            why = f" with {min_samples} healthy samples" if short else ""
            raise DataError(f"fault detector: no device has the signals any residual model needs{why}")
        det = cls(models, k, h)
        det.short = short
        return det

    def keys(self) -> set[str]:
        """``<device>:<model>`` of every fitted model."""
        return {f"{m.device}:{m.name}" for m in self.models}

    def merged(self, older: FaultDetector | None) -> FaultDetector:
        """This fit, plus the models of ``older`` this fit had to leave out (kept rather than dropped)."""
        if older is None:
            return self
        have = self.keys()
        kept = [m for m in older.models if f"{m.device}:{m.name}" not in have]
        det = FaultDetector([*self.models, *kept], self.k, self.h)
        det.short = {k: v for k, v in self.short.items() if k not in {f"{m.device}:{m.name}" for m in kept}}
        return det

    def residuals(self, signals: pd.DataFrame) -> pd.DataFrame:
        """Hourly mean residual of every model (columns ``<device>:<model>``), in the model's unit."""
        out = {}
        for m in self.models:
            if any(c not in signals for c in (m.y, *m.xs)):
                out[f"{m.device}:{m.name}"] = pd.Series(np.nan, index=signals.index).resample("1h").mean()
                continue
            data = signals[[m.y, *m.xs]].dropna()
            r = (data[m.y].to_numpy() - _design(data, m.xs) @ m.coef) / m.scale
            out[f"{m.device}:{m.name}"] = pd.Series(r, index=data.index).resample("1h").mean()
        return pd.DataFrame(out)

    def states(self, signals: pd.DataFrame) -> tuple[list[ModelState], pd.DataFrame]:
        """Run the change detectors over ``signals`` in time order: each model's state, and the hourly residuals."""
        res = self.residuals(signals)
        out = []
        for m in self.models:
            col = res[f"{m.device}:{m.name}"]
            z = (col / m.sigma).to_numpy()
            day = col.rolling(24, min_periods=12).mean().to_numpy()
            hi = lo = 0.0
            fired = None
            for i, zi in enumerate(z):
                if not np.isfinite(zi):
                    continue
                hi, lo = max(0.0, hi + zi - self.k), max(0.0, lo - zi - self.k)
                sign = 1.0 if hi > self.h else -1.0 if lo > self.h else 0.0
                if sign and np.isfinite(day[i]) and sign * day[i] >= MIN_EFFECT[m.name]:
                    fired = col.index[i] + pd.Timedelta("1h")
                    break
            last = col.tail(24)
            day_mean = float(last.mean()) if last.notna().sum() >= 12 else float("nan")
            out.append(ModelState(m.device, m.name, fired, day_mean))
        return out, res

    def scan(self, signals: pd.DataFrame) -> list[PredictiveAlarm]:
        """Run the change detectors over ``signals`` in time order; one alarm per device and cause."""
        states, res = self.states(signals)
        fired = {(s.device, s.name): s.fired for s in states if s.fired is not None}
        return [alarm_of(device, name, ts, res) for (device, name), ts in sorted(fired.items(), key=lambda kv: kv[1])
                if not blamed_elsewhere(device, name, fired)]  # fmt: skip


def blamed_elsewhere(device: str, name: str, fired: Collection[tuple[str, str]]) -> bool:
    """A CDU's pump-power shift when its speed residual also moved: a clogged strainer costs pump power too."""
    return name == "power" and (device, "speed") in fired


def alarm_of(device: str, name: str, ts: pd.Timestamp, res: pd.DataFrame) -> PredictiveAlarm:
    """The predictive alarm of one fired model: cause, and the mean shift of the day before ``ts``."""
    kind, cause = CAUSES[name]
    shift = float(res[f"{device}:{name}"].loc[:ts].tail(24).mean())
    unit = "fraction" if name in RELATIVE else "K"
    return PredictiveAlarm(ts.isoformat(), device, kind, cause, shift, unit)


def write_alarms(path: Path, alarms: Sequence[PredictiveAlarm]) -> None:
    """Append alarms to the JSON-lines alarm log the API serves."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        for a in alarms:
            f.write(json.dumps(a.to_dict()) + "\n")
