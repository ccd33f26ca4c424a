"""What the pages show, computed from the live state and the historian only (never from devices).

Series ids are worked out once from the site and its profiles (per rack, per CDU, per role), so a refresh reads
arrays of latest values instead of scanning every series: a 1,000-rack hall has some 250,000 series.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from aidc.clock import Clock
from aidc.config import DeviceRef, Site
from aidc.live import LiveState
from aidc.model import SeriesKey
from aidc.roles import Role
from analytics.alarms.engine import AlarmEngine
from analytics.energy import kpi
from analytics.energy.metering import PowerMeters, it_power_windows, live_pue
from analytics.energy.pue import MeterInfo
from analytics.historian_adapter import pue_from_historian, site_meters
from control.interface import SupervisorControl
from dashboards.supervisor import entry_time, read_jsonl_tail
from dashboards.trend_range import PRESET_WINDOW, PRESETS, TrendRange
from historian import Historian, SeriesSelector
from historian.base import Agg

log = logging.getLogger(__name__)

FloorMetric = str
FLOOR_METRICS: dict[str, tuple[str, str]] = {
    # key: (label, unit)
    "power": ("rack power", "kW"),
    "hottest_gpu": ("hottest GPU", "°C"),
    "coolant_dt": ("coolant ΔT", "K"),
    "thermal_margin": ("thermal margin to the GPU alarm limit", "K"),
    "power_headroom": ("power headroom to rated", "kW"),
    "data_quality": ("good data", "%"),
}
RANGES = PRESETS  # trend presets and their windows: dashboards/trend_range.py
MIN_PUE_SPAN = pd.Timedelta("15min")  # below this the counters' resolution (0.1 kWh) dominates the ratio
WINDOW_FOR = PRESET_WINDOW
# The Overview's power trend: its lines and the meter roles each sums (IT by the one metering rule per window).
TREND_ROLES: dict[str, list[Role]] = {
    "facility": [Role.FACILITY_POWER],
    "it": list(kpi.IT_POWER_ROLES.values()),
    "cooling": [Role.COOLING_POWER],
}


@dataclass(frozen=True, slots=True)
class RackInfo:
    """A rack's place on the floor and its series."""

    name: str
    hall: str
    row: str
    position: int
    rated_kw: float
    gpus: int
    cdu: str | None
    power: str | None
    inlet: str | None
    outlet: str | None
    gpu_temp: tuple[str, ...]
    gpu_power: tuple[str, ...]
    gpu_util: tuple[str, ...]
    scalars: tuple[str, ...]  # every scalar series of the rack controller and the PDU (for data quality)
    devices: tuple[str, ...]


def _sid(dev: DeviceRef, point: str, **extra: str) -> str:
    return SeriesKey.of(dev.profile.measurement, point, {**dev.tags, **extra}).id


def _array_ids(dev: DeviceRef, point: str, tag: str, n: int) -> list[str]:
    """Series ids of an array point's ``n`` elements (one id built properly, the rest by substitution: fast)."""
    template = _sid(dev, point, **{tag: "\x00"})
    return [template.replace("\x00", str(i)) for i in range(n)]


def _point(dev: DeviceRef | None, role: Role) -> str | None:
    if dev is None:
        return None
    return next((p.name for p in dev.profile.points if dev.role_of(p.name) == role), None)


class SeriesSet:
    """A fixed list of series read from the live state in one vectorised call."""

    def __init__(self, live: LiveState, ids: list[str]) -> None:
        self.live, self.ids = live, ids
        self._known = len(live)
        self._idx = live.indices(ids)

    def read(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.uint8]]:
        """Timestamps, values and qualities (NaN and bad where never seen)."""
        # Series not seen yet (a device still connecting) are looked up again once new series have arrived.
        if len(self.live) != self._known and len(self._idx) and (self._idx < 0).any():
            self._known = len(self.live)
            self._idx = self.live.indices(self.ids)
        return self.live.read(self._idx)

    def good(self) -> npt.NDArray[np.float64]:
        """Values where good, NaN elsewhere (for figures that must not show estimates)."""
        _, v, q = self.read()
        return np.where(q == 0, v, np.nan)


QUALITY_LABELS = np.array(["good", "uncertain", "bad"], dtype=object)
HEALTH_FIELDS = ("up", "state", "latency_ms", "errors_total", "last_success_s")  # collectors' health series


def catalog(site: Site) -> pd.DataFrame:
    """Every series the site's devices produce: series, measurement, field, device, rack (categoricals)."""
    rows: dict[str, list[str]] = {"series": [], "measurement": [], "field": [], "device": [], "rack": []}
    gpus = {r.name: r.gpus for _, r in site.racks()}

    def add(sid: str, meas: str, fld: str, dev: DeviceRef) -> None:
        rows["series"].append(sid)
        rows["measurement"].append(meas)
        rows["field"].append(fld)
        rows["device"].append(dev.name)
        rows["rack"].append(dev.tags.get("rack", ""))

    for dev in site.devices:
        meas = dev.profile.measurement
        for p in dev.profile.points:
            if p.array:
                for sid in _array_ids(dev, p.name, p.array_tag, gpus.get(dev.tags.get("rack", ""), 0)):
                    add(sid, meas, p.name, dev)
            else:
                add(_sid(dev, p.name), meas, p.name, dev)
        htags = {k: v for k, v in dev.tags.items() if k in ("site", "hall", "device")}
        for f in HEALTH_FIELDS:
            add(SeriesKey.of("collector", f, htags).id, "collector", f, dev)
    frame = pd.DataFrame(rows)
    for col in ("measurement", "field", "device", "rack"):
        frame[col] = frame[col].astype("category")
    return frame


@dataclass
class DashboardData:
    """The dashboard's read side: site layout, live values, historian queries, alarms, controller."""

    site: Site
    live: LiveState
    historian: Historian
    clock: Clock
    alarms: AlarmEngine
    supervisor: SupervisorControl | None = None
    job_stats: Callable[[], Mapping[str, float]] | None = None
    gpu_limit_c: float = 85.0
    racks: dict[str, RackInfo] = field(init=False)
    _cache: dict[str, tuple[float, Any]] = field(init=False, default_factory=dict)
    _cache_lock: threading.Lock = field(init=False, default_factory=threading.Lock)
    _running: set[str] = field(init=False, default_factory=set)

    def __post_init__(self) -> None:
        self.racks = self._layout()
        self.catalog = catalog(self.site)
        self.all_series = SeriesSet(self.live, list(self.catalog["series"]))
        racks = list(self.racks.values())
        self._rack_power = SeriesSet(self.live, [r.power or "" for r in racks])
        self._rack_inlet = SeriesSet(self.live, [r.inlet or "" for r in racks])
        self._rack_outlet = SeriesSet(self.live, [r.outlet or "" for r in racks])
        self._gpu_temp = SeriesSet(self.live, [x for r in racks for x in r.gpu_temp])
        self._gpu_owner = np.repeat(np.arange(len(racks)), [len(r.gpu_temp) for r in racks])
        self._scalars = SeriesSet(self.live, [x for r in racks for x in r.scalars])
        self._scalar_owner = np.repeat(np.arange(len(racks)), [len(r.scalars) for r in racks])
        self.power_meters = PowerMeters.of(self.site)
        self.cooling_meters = power_meters(self.site, [Role.COOLING_POWER])
        self.cooling_ids = list(self.cooling_meters)
        # The power trend's meters, worked out once: the site does not change while the dashboard runs, and on a
        # 1,000-rack site building them per refresh held the GIL for seconds (every page's paint waited on it).
        self._trend_meters = power_meters(self.site, [r for rs in TREND_ROLES.values() for r in rs])
        self._trend_ids = {
            name: [s for s, m in self._trend_meters.items() if m.role in rs] for name, rs in TREND_ROLES.items()
        }
        rule = self.alarms.rules.get("gpu_hot")
        if rule is not None:
            self.gpu_limit_c = rule.threshold

    @property
    def data_dir(self) -> Path:
        """Where audits, alarms and reports live."""
        return self.site.data_dir

    def _layout(self) -> dict[str, RackInfo]:
        by_rack: dict[str, dict[str, DeviceRef]] = {}
        for dev in self.site.devices:
            rack_name = dev.tags.get("rack")
            if rack_name and dev.kind in ("pdu", "rack"):
                by_rack.setdefault(rack_name, {})[dev.kind] = dev
        cdu_of = {r: c.name for h in self.site.config.halls for c in h.cdus for r in c.racks}
        out: dict[str, RackInfo] = {}
        positions: dict[tuple[str, str], int] = {}
        for hall, rack in self.site.racks():
            devs = by_rack.get(rack.name, {})
            ctl, pdu = devs.get("rack"), devs.get("pdu")
            pos = positions.get((hall.name, rack.row), 0)
            positions[(hall.name, rack.row)] = pos + 1

            def arr(role: Role, ctl: DeviceRef | None = ctl, n: int = rack.gpus) -> tuple[str, ...]:
                p = _point(ctl, role)
                return () if ctl is None or p is None else tuple(_array_ids(ctl, p, "gpu", n))

            def one(role: Role, dev: DeviceRef | None) -> str | None:
                p = _point(dev, role)
                return None if dev is None or p is None else _sid(dev, p)

            scalars = tuple(_sid(d, p.name) for d in devs.values() for p in d.profile.points if not p.array)
            out[rack.name] = RackInfo(
                rack.name,
                hall.name,
                rack.row,
                pos,
                rack.rated_kw,
                rack.gpus,
                cdu_of.get(rack.name),
                one(Role.RACK_POWER, ctl) or one(Role.IT_POWER_PDU_OUTPUT, pdu),
                one(Role.RACK_COOLANT_INLET_TEMP, ctl),
                one(Role.RACK_COOLANT_OUTLET_TEMP, ctl),
                arr(Role.GPU_TEMP),
                arr(Role.GPU_POWER),
                arr(Role.GPU_UTIL),
                scalars,
                tuple(d.name for d in devs.values()),
            )
        return out

    # ------------------------------------------------------------------ helpers

    def cached(
        self, key: str, ttl_s: float, compute: Callable[[], Any], default: Any = None, *, block_first: bool = False
    ) -> Any:
        """The last value of ``compute()`` for ``key``, recomputed in a background thread once older than ``ttl_s``.

        Historian queries are shared by every browser and never run inside a page's live refresh: until the first
        computation finishes the page gets ``default`` (or, with ``block_first``, waits for it).
        """
        if block_first:
            with self._cache_lock:
                first = key not in self._cache
            if first:
                self._refresh(key, compute)
        now = time.monotonic()
        with self._cache_lock:
            hit = self._cache.get(key)
            stale = hit is None or now - hit[0] >= ttl_s
            if stale and key not in self._running:
                self._running.add(key)
                threading.Thread(
                    target=self._refresh, args=(key, compute), name=f"dashboard {key}", daemon=True
                ).start()
        return default if hit is None else hit[1]

    def _refresh(self, key: str, compute: Callable[[], Any]) -> None:
        try:
            value = compute()
        except Exception:  # shown as missing on the page; the next refresh tries again
            log.exception("dashboard query %s failed", key)
            value = None
        with self._cache_lock:
            self._cache[key] = (time.monotonic(), value)
            self._running.discard(key)

    def now(self) -> pd.Timestamp:
        """The facility's clock (simulated time in the demo) as a UTC timestamp."""
        return pd.Timestamp(self.clock.now_ns(), unit="ns", tz="UTC")

    def value(self, series: str | None) -> float | None:
        """Latest value of one series unless it is bad (uncertain values are shown; Data quality lists them)."""
        if series is None:
            return None
        v = self.live.get(series)
        return None if v is None or v.value is None or v.quality == 2 else v.value

    def sum_of(self, ids: list[str]) -> float | None:
        """Sum of the latest good values (None if none is known)."""
        vals = self.live.values(ids)
        return None if not len(vals) or np.isnan(vals).all() else float(np.nansum(vals))

    # ------------------------------------------------------------------ overview

    def overview(self) -> dict[str, Any]:
        """Live headline figures: power-based PUE, IT, cooling and facility power, outdoor conditions."""
        # The one metering rule (analytics/energy/metering.py): a whole category of fresh meters, or no figure.
        inst = live_pue(self.power_meters, self.live, now=self.now())
        plant = next((d for d in self.site.devices if d.kind == "plant"), None)
        out: dict[str, Any] = {
            "pue": inst.value,
            "pue_label": inst.label,
            "pue_category": inst.category,
            "pue_note": inst.note,
            "pue_missing": list(inst.missing),
            "it_kw": None if inst.it_w is None else inst.it_w / 1000.0,
            "facility_kw": None if inst.facility_w is None else inst.facility_w / 1000.0,
            "cooling_kw": None,
            "drybulb_c": None,
            "wetbulb_c": None,
        }
        cool = self.live.values(self.cooling_ids)
        if len(cool) and not np.isnan(cool).all():
            scales = np.array([self.cooling_meters[s].scale for s in self.cooling_ids])
            out["cooling_kw"] = float(np.nansum(cool * scales))
        if plant is not None:
            out["drybulb_c"] = self.value(_plant_sid(plant, Role.OUTDOOR_DRYBULB))
            out["wetbulb_c"] = self.value(_plant_sid(plant, Role.OUTDOOR_WETBULB))
        return out

    def energy_pue(self) -> dict[str, Any]:
        """Interim ISO/IEC 30134-2 PUE from energy counters for today and this month so far (cached 60 s)."""

        def compute() -> dict[str, Any]:
            now = self.now()
            tz = self.site.config.site.timezone
            local = now.tz_convert(tz)
            day = local.normalize().tz_convert("UTC")
            month = local.normalize().replace(day=1).tz_convert("UTC")
            out: dict[str, Any] = {}
            first = self._first_energy_ts(month, now)
            for key, start in (("today", day), ("month", month)):
                if first is None or now - max(first, start) < MIN_PUE_SPAN:
                    have = 0.0 if first is None else max(0.0, (now - max(first, start)).total_seconds() / 60)
                    out[key] = {
                        "pue": None,
                        "note": f"collecting counters: {have:.0f} of {MIN_PUE_SPAN.total_seconds() / 60:.0f} min",
                    }
                    continue
                begin = max(first, start)
                try:
                    rep = pue_from_historian(self.historian, self.site, begin, now)
                except Exception as exc:  # unreadable counters are shown as such, never raised into the page
                    log.warning("interim PUE for %s failed: %s", key, exc)
                    out[key] = {"pue": None, "note": f"not computable: {str(exc)[:120]}"}
                    continue
                since = "" if begin == start else f" since {begin.tz_convert(tz):%d %b %H:%M}"
                out[key] = {
                    "pue": rep.pue,
                    "coverage": rep.coverage,
                    "category": rep.category_name,
                    "note": f"energy-based, interim{since}; {rep.category_name}; coverage {100 * rep.coverage:.0f} %",
                }
            return out

        result: dict[str, Any] = self.cached("energy_pue", 60.0, compute, default={}) or {}
        return result

    def _first_energy_ts(self, start: pd.Timestamp, end: pd.Timestamp) -> pd.Timestamp | None:
        """When the facility energy counters were first stored since ``start`` (to the minute), if at all."""
        meters = site_meters(self.site, [Role.FACILITY_ENERGY])
        if not meters:
            return None
        key = SeriesKey.parse(next(iter(meters)))
        sel = SeriesSelector(key.measurement, dict(key.tags), key.field)
        hourly = self.historian.query(sel, start, end, window="1h", agg="count")
        hourly = hourly[hourly["value"] > 0]
        if hourly.empty:
            return None
        hour = pd.Timestamp(hourly["ts"].min())
        minutes = self.historian.query(sel, hour, min(end, hour + pd.Timedelta("1h")), window="1m", agg="count")
        minutes = minutes[minutes["value"] > 0]
        return pd.Timestamp(minutes["ts"].min()) if not minutes.empty else hour

    def power_trend(self, rng: str | TrendRange) -> pd.DataFrame:
        """Facility, IT and cooling power (kW) per window over the range: columns ts, facility, it, cooling."""

        def compute() -> pd.DataFrame:
            start, end, window = self._span(rng)
            frames = {}
            meters = self._trend_meters
            for name, ids in self._trend_ids.items():
                if name == "it":  # the one metering rule per window, as the live PUE uses
                    series = self._it_windows(ids, meters, start, end, window)
                else:
                    series = self._window_sum(ids, meters, start, end, window)
                if series is not None:
                    frames[name] = series
            return pd.DataFrame(frames)

        key = rng if isinstance(rng, str) else rng.key
        frame: pd.DataFrame | None = self.cached(f"power_trend:{key}", 5.0, compute, block_first=True)
        return pd.DataFrame() if frame is None else frame

    def _window_sum(
        self, ids: list[str], meters: Mapping[str, Any], start: pd.Timestamp, end: pd.Timestamp, window: str
    ) -> pd.Series | None:
        if not ids:
            return None
        parts = []
        for meas, fld in sorted({_measurement_field(s) for s in ids}):
            df = self.historian.query(SeriesSelector(meas, {}, fld), start, end, window=window, agg="mean")
            df = df[df["series"].isin(ids)]
            if not df.empty:
                parts.append(df.assign(value=df["value"] * df["series"].map(lambda s: meters[s].scale)))
        if not parts:
            return None
        long = pd.concat(parts)
        return long.groupby("ts")["value"].sum(min_count=1)

    def _it_windows(
        self, ids: list[str], meters: Mapping[str, MeterInfo], start: pd.Timestamp, end: pd.Timestamp, window: str
    ) -> pd.Series | None:
        """IT power (kW) per window by the one metering rule: a window missing a meter of a category falls back."""
        long = self._window_means(ids, start, end, window)
        if long.empty:
            return None
        wide = long.pivot_table(index="ts", columns="series", values="value", aggfunc="mean")
        kw, _cat = it_power_windows(wide, {s: meters[s] for s in ids})
        return kw if kw.notna().any() else None

    def _window_means(
        self, ids: list[str], start: pd.Timestamp, end: pd.Timestamp, window: str, agg: Agg = "mean"
    ) -> pd.DataFrame:
        """Window aggregates of a few series between two times: columns ts, series, value."""
        parts = []
        for meas, fld in sorted({_measurement_field(s) for s in ids}):
            df = self.historian.query(SeriesSelector(meas, {}, fld), start, end, window=window, agg=agg)
            parts.append(df[df["series"].isin(ids)])
        return pd.concat(parts) if parts else pd.DataFrame({"ts": [], "series": [], "value": []})

    def series_trend(self, ids: list[str], rng: str | TrendRange, agg: Agg = "mean") -> pd.DataFrame:
        """Window aggregates of a few series over a preset (ending now) or a resolved range: ts, series, value."""
        start, end, window = self._span(rng)
        return self._window_means(ids, start, end, window, agg)

    def _span(self, rng: str | TrendRange) -> tuple[pd.Timestamp, pd.Timestamp, str]:
        """Start, end and window of a preset name or a :class:`TrendRange` (already bounded)."""
        if isinstance(rng, TrendRange):
            return rng.start, rng.end, rng.window
        end = self.now()
        return end - pd.Timedelta(rng), end, WINDOW_FOR.get(rng, "1m")

    def controller(self) -> dict[str, Any] | None:
        """The supervisor's status, or None when no controller runs."""
        if self.supervisor is None:
            return None
        try:
            return dict(self.supervisor.status())
        except Exception as exc:  # a failing supervisor is shown, not raised into the page
            log.exception("supervisor status failed")
            return {"mode": "unknown", "state": f"status failed: {exc}"}

    # ------------------------------------------------------------------ floor map

    def floor(self, metric: FloorMetric) -> pd.DataFrame:
        """One row per rack: name, hall, row, position and the metric's value (NaN where unknown)."""
        racks = list(self.racks.values())
        value = self._metric(metric, racks)
        return pd.DataFrame(
            {
                "rack": [r.name for r in racks],
                "hall": [r.hall for r in racks],
                "row": [r.row for r in racks],
                "position": [r.position for r in racks],
                "value": value,
            }
        )

    def _metric(self, metric: FloorMetric, racks: list[RackInfo]) -> npt.NDArray[np.float64]:
        n = len(racks)
        if metric in ("power", "power_headroom"):
            kw = self._rack_power.good() / 1000.0
            return kw if metric == "power" else np.array([r.rated_kw for r in racks]) - kw
        if metric in ("hottest_gpu", "thermal_margin"):
            temps = self._gpu_temp.good()
            out = np.full(n, -np.inf)
            ok = ~np.isnan(temps)
            np.maximum.at(out, self._gpu_owner[ok], temps[ok])
            out[np.isinf(out)] = np.nan
            return out if metric == "hottest_gpu" else self.gpu_limit_c - out
        if metric == "coolant_dt":
            return self._rack_outlet.good() - self._rack_inlet.good()
        if metric == "data_quality":
            _, _, q = self._scalars.read()
            good = np.bincount(self._scalar_owner, weights=(q == 0).astype(float), minlength=n)
            total = np.bincount(self._scalar_owner, minlength=n).astype(float)
            with np.errstate(invalid="ignore", divide="ignore"):
                return np.where(total > 0, 100.0 * good / total, np.nan)
        raise ValueError(f"unknown floor metric {metric!r}")

    def alarm_frame(self) -> pd.DataFrame:
        """The alarm engine's input: every series seen so far with measurement, field, device, rack, value, quality.

        Series never received are left out: "no data yet" is not a bad reading (device down speaks for a device
        that never answers)."""
        ts, v, q = self.all_series.read()
        seen = ts != 0
        return self.catalog[seen].assign(value=v[seen], quality=QUALITY_LABELS[np.minimum(q[seen], 2)])

    def bad_points(self, limit: int = 100) -> tuple[int, list[dict[str, Any]]]:
        """How many points are not good, and the first ``limit`` with quality, reason and since when."""
        ts, _, q = self.all_series.read()
        tz = self.site.config.site.timezone  # the page shows site time
        not_good = np.flatnonzero((q != 0) & (self.catalog["measurement"] != "collector").to_numpy())
        rows = []
        for i in not_good[:limit]:
            sid = self.all_series.ids[i]
            v = self.live.get(sid)
            rows.append(
                {
                    "series": sid,
                    "quality": QUALITY_LABELS[min(int(q[i]), 2)],
                    "reason": "never received" if v is None else v.reason,
                    "since": "—"
                    if v is None
                    else pd.Timestamp(int(ts[i]), unit="ns", tz="UTC").tz_convert(tz).strftime("%d %b %H:%M:%S %Z"),
                }
            )
        return len(not_good), rows

    # ------------------------------------------------------------------ rack detail

    def rack_gpus(self, rack: str) -> pd.DataFrame:
        """Per-GPU power (W), temperature (°C) and utilisation (%) of one rack."""
        r = self.racks[rack]
        return pd.DataFrame(
            {
                "gpu": list(range(r.gpus)),
                "power_w": self.live.values(list(r.gpu_power)) if r.gpu_power else np.full(r.gpus, np.nan),
                "temp_c": self.live.values(list(r.gpu_temp)) if r.gpu_temp else np.full(r.gpus, np.nan),
                "util_pct": self.live.values(list(r.gpu_util)) if r.gpu_util else np.full(r.gpus, np.nan),
            }
        )

    def device_points(self, device: str) -> pd.DataFrame:
        """Latest value, unit and quality of every scalar point of one device."""
        dev = self.site.device(device)
        rows = []
        for p in dev.profile.points:
            if p.array:
                continue
            v = self.live.get(_sid(dev, p.name))
            rows.append(
                {
                    "point": p.name,
                    "value": None if v is None else v.value,
                    "unit": p.unit,
                    "quality": "no data" if v is None else v.quality.label,
                    "reason": "" if v is None else v.reason,
                }
            )
        return pd.DataFrame(rows)

    # ------------------------------------------------------------------ cooling

    def cdus(self) -> list[DeviceRef]:
        """The site's CDUs."""
        return [d for d in self.site.devices if d.kind == "cdu"]

    def plant(self) -> DeviceRef | None:
        """The cooling plant."""
        return next((d for d in self.site.devices if d.kind == "plant"), None)

    def cooling_table(self) -> list[dict[str, Any]]:
        """One row per CDU and the plant: the temperatures, flows, pressures, valve, pump and setpoints."""
        rows = []
        plant = self.plant()
        for dev in [*self.cdus(), *([plant] if plant is not None else [])]:
            row: dict[str, Any] = {"device": dev.name}
            for p in dev.profile.points:
                if not p.array and (p.unit or p.name in ("free_cooling_state",)) and p.name != "heartbeat":
                    row[p.name] = self.value(_sid(dev, p.name))
            rows.append(row)
        return rows

    def setpoint_writes(self, since: pd.Timestamp) -> list[dict[str, Any]]:
        """Setpoint writes from the writer's audit since a time (for annotations on the setpoint panels)."""
        out = []
        for e in read_jsonl_tail(self.data_dir / "audit" / "writes.jsonl", 500):
            t = entry_time(e)
            if t >= since.value / 1e9 and e.get("ok", True):
                out.append({**e, "ts_ns": int(t * 1e9), "value": e.get("new", e.get("value"))})
        return out

    # ------------------------------------------------------------------ data quality

    def device_health(self) -> pd.DataFrame:
        """Per device: up, latency, errors, seconds since the last good poll, bad points of all its points."""
        _, v, q = self.all_series.read()
        cat = self.catalog
        is_health = (cat["measurement"] == "collector").to_numpy()
        codes = cat["device"].cat.codes.to_numpy()
        ndev = len(cat["device"].cat.categories)
        bad = np.bincount(codes[~is_health], weights=(q[~is_health] == 2).astype(float), minlength=ndev)
        total = np.bincount(codes[~is_health], minlength=ndev)
        health: dict[tuple[str, str], float] = {}
        fields = cat["field"].to_numpy()
        devices = cat["device"].to_numpy()
        for i in np.flatnonzero(is_health):
            health[(str(devices[i]), str(fields[i]))] = float(v[i])
        pos = {str(d): k for k, d in enumerate(cat["device"].cat.categories)}
        now_s = self.clock.now_ns() / 1e9
        rows = []
        for dev in self.site.devices:

            def f(name: str, dev: DeviceRef = dev) -> float | None:
                x = health.get((dev.name, name))
                return None if x is None or np.isnan(x) else x

            last = f("last_success_s")
            k = pos[dev.name]
            rows.append(
                {
                    "device": dev.name,
                    "kind": dev.kind,
                    "endpoint": dev.config.address,
                    "up": "up" if f("up") == 1 else "down",
                    "latency_ms": f("latency_ms"),
                    "errors_total": f("errors_total"),
                    "last_good_s_ago": None if last is None else max(0.0, now_s - last),
                    "bad_points": f"{int(bad[k])}/{int(total[k])}",
                }
            )
        return pd.DataFrame(rows)

    def pipeline_stats(self) -> dict[str, float]:
        """Collector, writer and spool figures (points written, write errors, spool depth, dropped)."""
        out: dict[str, float] = {}
        if self.job_stats is not None:
            out.update(self.job_stats())
        batch = self.historian.stats_batch(self.clock.now_ns())
        for sid, v in zip(batch.series, batch.values, strict=True):
            out[SeriesKey.parse(str(sid)).field] = float(v)
        return out

    # ------------------------------------------------------------------ reports

    def reports(self) -> list[dict[str, Any]]:
        """Files under ``<data_dir>/reports`` (newest first): name, size, modified."""
        folder = self.data_dir / "reports"
        if not folder.is_dir():
            return []
        files = [p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")]
        files.sort(key=lambda p: p.stat().st_mtime, reverse=True)
        return [
            {
                "name": str(p.relative_to(folder)),
                "size_kb": round(p.stat().st_size / 1024, 1),
                "modified": pd.Timestamp(p.stat().st_mtime, unit="s", tz="UTC")
                .tz_convert(self.site.config.site.timezone)
                .strftime("%Y-%m-%d %H:%M %Z"),
            }
            for p in files
        ]


def power_meters(site: Site, roles: list[Role]) -> dict[str, MeterInfo]:
    """:func:`site_meters` for power roles, every one scaled to kW (site_meters scales only facility and IT power)."""
    # Scaled from the point's own field and unit in one pass over the devices: looking each meter's device up by
    # name was meters x devices (a million steps on a 1,000-rack site).
    wanted = set(roles)
    units = {
        _sid(dev, p.name): (p.name, p.unit)
        for dev in site.devices
        for p in dev.profile.points
        if not p.array and dev.role_of(p.name) in wanted
    }
    return {
        sid: dataclasses.replace(m, scale=kpi.power_scale(*units[sid])) for sid, m in site_meters(site, roles).items()
    }


@functools.lru_cache(maxsize=1 << 16)
def _measurement_field(sid: str) -> tuple[str, str]:
    """A series id's measurement and field (parsed once per id: trends group their ids by these on every refresh)."""
    key = SeriesKey.parse(sid)
    return key.measurement, key.field


def _plant_sid(plant: DeviceRef, role: Role) -> str | None:
    p = _point(plant, role)
    return None if p is None else _sid(plant, p)
