"""The facility as Prometheus metrics: PUE, power, racks, CDUs, plant, alarms and the controller's saving.

A custom collector reads the live state at scrape time (nothing is pushed, nothing goes stale between scrapes).
Every series is found once, at start-up, by role from the site's devices and profiles (never by device name), and
converted to base units (watts, degrees Celsius, cubic metres per second) following Prometheus naming conventions.

A figure is exported only from complete data: a rack's power or hottest GPU, a CDU reading or a power total whose
series are not all good right now has no sample at this scrape (absent means unknown, never a partial sum), and
``aidc_pue_meters_missing`` says how many power meters kept the PUE from its best category.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from aidc.config import DeviceRef, Site
from aidc.live import LiveState
from aidc.model import SeriesKey
from aidc.roles import Role
from analytics.alarms.engine import SEVERITY_ORDER
from analytics.energy import kpi
from analytics.energy.metering import PowerMeters, live_pue
from api.context import ApiContext

log = logging.getLogger(__name__)

# Factors from a profile unit to the Prometheus base unit of the metric (temperatures stay in Celsius, which
# the Prometheus naming guide lists as a base unit; flows become cubic metres per second).
_TEMPERATURE_UNITS = {"°C": 1.0, "C": 1.0, "degC": 1.0}
_FLOW_UNITS = {"L/min": 1 / 60_000, "l/min": 1 / 60_000, "lpm": 1 / 60_000, "L/s": 1e-3, "m3/h": 1 / 3600}
_PLANT_PARTS = {Role.CHILLER_POWER: "chiller", Role.HEAT_REJECTION_FAN_POWER: "heat_rejection_fans",
                Role.PUMP_POWER: "pumps"}  # fmt: skip
# A rack's power: the rack's own input meter when it has one, else its PDU outlets (DESIGN.md §5 categories).
_RACK_POWER_ROLES = (Role.RACK_POWER, Role.IT_POWER_EQUIPMENT_INPUT, Role.IT_POWER_PDU_OUTPUT)


@dataclass
class _Group:
    """Exported figures of one metric: each a label tuple and the series it sums or maxes (with unit factors)."""

    labels: list[tuple[str, ...]] = field(default_factory=list)
    series: list[str] = field(default_factory=list)
    factor: list[float] = field(default_factory=list)
    owner: list[int] = field(default_factory=list)

    def add(self, labels: tuple[str, ...], members: list[tuple[str, float]]) -> None:
        """One figure made of ``members`` (series id, factor to the base unit); none: not exported."""
        if not members:
            return
        for sid, f in members:
            self.series.append(sid)
            self.factor.append(f)
            self.owner.append(len(self.labels))
        self.labels.append(labels)


def _sid(dev: DeviceRef, point: str, **extra: str) -> str:
    return SeriesKey.of(dev.profile.measurement, point, {**dev.tags, **extra}).id


def _points(dev: DeviceRef, role: Role) -> list[tuple[str, str]]:
    """(point, unit) of the device's scalar points with ``role`` (site overrides and meter purposes included)."""
    return [(p.name, p.unit) for p in dev.profile.points if not p.array and dev.role_of(p.name) == role]


def _factor(dev: DeviceRef, point: str, unit: str, table: dict[str, float]) -> float | None:
    f = table.get(unit)
    if f is None:
        log.warning("metrics: %s point %s has unit %r, which /metrics cannot convert; not exported", dev.name,
                    point, unit)  # fmt: skip
    return f


def _watts(dev: DeviceRef, role: Role) -> list[tuple[str, float]]:
    return [(_sid(dev, p), 1000 * kpi.power_scale(p, u)) for p, u in _points(dev, role)]


def _converted(dev: DeviceRef, role: Role, table: dict[str, float]) -> list[tuple[str, float]]:
    out = []
    for p, u in _points(dev, role):
        f = _factor(dev, p, u, table)
        if f is not None:
            out.append((_sid(dev, p), f))
    return out


def _gpu_temps(dev: DeviceRef, gpus: int) -> list[tuple[str, float]]:
    """One series per GPU of the device's GPU-temperature array points."""
    out = []
    for p in dev.profile.points:
        if p.array and dev.role_of(p.name) == Role.GPU_TEMP:
            f = _factor(dev, p.name, p.unit, _TEMPERATURE_UNITS)
            if f is not None:
                # One id built properly, the rest by substitution: a 1,000-rack hall has some 72,000 GPUs.
                template = _sid(dev, p.name, **{p.array_tag: "\x00"})
                out += [(template.replace("\x00", str(i)), f) for i in range(gpus)]
    return out


class FacilityLayout:
    """Every exported figure's series, found once by role from the site's devices and profiles."""

    def __init__(self, site: Site) -> None:
        self.site = site
        name = site.name
        self.cooling, self.racks, self.gpu_max, self.plant = _Group(), _Group(), _Group(), _Group()
        self.cdu = {key: _Group() for key in ("supply", "return", "flow")}
        self.cooling.add((name, "cooling"), [m for d in site.devices for m in _watts(d, Role.COOLING_POWER)])
        by_rack: dict[str, list[DeviceRef]] = {}
        for dev in site.devices:
            if dev.kind in ("pdu", "rack") and "rack" in dev.tags:
                by_rack.setdefault(dev.tags["rack"], []).append(dev)
        for hall, rack in site.racks():
            devs, labels = by_rack.get(rack.name, []), (name, hall.name, rack.name)
            power = next((m for role in _RACK_POWER_ROLES if (m := [x for d in devs for x in _watts(d, role)])), [])
            self.racks.add(labels, power)
            self.gpu_max.add(labels, [g for d in devs for g in _gpu_temps(d, rack.gpus)])
        for dev in site.devices:
            if dev.kind == "cdu":
                labels = (name, dev.tags.get("hall", ""), dev.name)
                self.cdu["supply"].add(labels, _converted(dev, Role.TCS_SUPPLY_TEMP, _TEMPERATURE_UNITS))
                self.cdu["return"].add(labels, _converted(dev, Role.TCS_RETURN_TEMP, _TEMPERATURE_UNITS))
                self.cdu["flow"].add(labels, _converted(dev, Role.TCS_FLOW, _FLOW_UNITS))
            elif dev.kind == "plant":
                for role, part in _PLANT_PARTS.items():
                    self.plant.add((name, dev.name, part), _watts(dev, role))


class _Reader:
    """A fixed list of series read from the live state in one vectorised call (positions cached)."""

    def __init__(self, live: LiveState, ids: list[str]) -> None:
        self.live, self.ids = live, ids
        self._known = -1
        self._idx: npt.NDArray[np.intp] = np.full(len(ids), -1, dtype=np.intp)

    def good(self) -> npt.NDArray[np.float64]:
        """Latest values where good, NaN elsewhere (never seen, uncertain, bad or stale)."""
        # Series not seen yet (a device still connecting) are looked up again once new series have arrived.
        if len(self.live) != self._known and (self._idx < 0).any():
            self._known = len(self.live)
            self._idx = self.live.indices(self.ids)
        _, v, q = self.live.read(self._idx)
        return np.where(q == 0, v, np.nan)


def _complete(group: _Group, values: npt.NDArray[np.float64], how: str) -> npt.NDArray[np.float64]:
    """Per figure: the sum or max of its members in base units, NaN unless every member is good."""
    n = len(group.labels)
    owner = np.asarray(group.owner, dtype=np.intp)
    scaled = values * np.asarray(group.factor)
    bad = np.bincount(owner, weights=np.isnan(scaled).astype(float), minlength=n) > 0
    if how == "sum":
        out = np.bincount(owner, weights=np.nan_to_num(scaled), minlength=n)
    else:
        out = np.full(n, -np.inf)
        np.maximum.at(out, owner, np.nan_to_num(scaled, nan=-np.inf))
    return np.where(bad, np.nan, out)


class FacilityCollector(Collector):
    """The facility families of /metrics, read from the live state at every scrape."""

    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx
        self.layout = FacilityLayout(ctx.site)
        self.meters = PowerMeters.of(ctx.site)  # the one IT-metering rule's meter sets, worked out once
        self._readers: dict[str, _Reader] = {}

    def _good(self, key: str, ids: list[str]) -> npt.NDArray[np.float64]:
        assert self.ctx.live is not None
        reader = self._readers.get(key)
        if reader is None:
            reader = self._readers[key] = _Reader(self.ctx.live, ids)
        return reader.good()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Every facility family, read now (none without a live state: the stand-alone server has no collectors)."""
        if self.ctx.live is not None:
            yield from self._power()
            yield from self._equipment()
        yield from self._alarms()
        yield from self._saving()

    def _power(self) -> Iterator[GaugeMetricFamily]:
        site = self.ctx.site.name
        assert self.ctx.live is not None
        pue = live_pue(self.meters, self.ctx.live)  # the one rule (analytics/energy/metering.py), as the dashboard
        doc = "Instantaneous (power-based) PUE at the IT metering category used; absent when no category is complete"
        fam = GaugeMetricFamily("aidc_pue", doc, labels=["site", "category"])
        if pue.value is not None and pue.category is not None:
            fam.add_metric([site, str(pue.category)], pue.value)
        yield fam
        doc = "Power meters without a good reading that kept the PUE from its best IT metering category (or any)"
        fam = GaugeMetricFamily("aidc_pue_meters_missing", doc, labels=["site"])
        fam.add_metric([site], float(len(pue.missing)))
        yield fam
        fam = GaugeMetricFamily(
            "aidc_power_watts", "Facility, IT (at the PUE's category) and cooling power", labels=["site", "kind"]
        )
        for kind, w in (("facility", pue.facility_w), ("it", pue.it_w)):
            if w is not None:
                fam.add_metric([site, kind], w)
        self._add(fam, self.layout.cooling, "cooling", "sum")
        yield fam

    def _equipment(self) -> Iterator[GaugeMetricFamily]:
        lay = self.layout
        specs = (
            ("aidc_rack_power_watts", "Rack IT power (rack input meter, else the sum of its PDUs)",
             ["site", "hall", "rack"], lay.racks, "racks", "sum"),
            ("aidc_rack_gpu_temperature_max_celsius", "Hottest GPU of the rack (every GPU reading)",
             ["site", "hall", "rack"], lay.gpu_max, "gpu_max", "max"),
            ("aidc_cdu_supply_temperature_celsius", "CDU secondary (TCS) supply temperature",
             ["site", "hall", "cdu"], lay.cdu["supply"], "cdu_supply", "max"),
            ("aidc_cdu_return_temperature_celsius", "CDU secondary (TCS) return temperature",
             ["site", "hall", "cdu"], lay.cdu["return"], "cdu_return", "max"),
            ("aidc_cdu_flow_cubic_meters_per_second", "CDU secondary (TCS) coolant flow",
             ["site", "hall", "cdu"], lay.cdu["flow"], "cdu_flow", "sum"),
            ("aidc_plant_power_watts", "Cooling plant power by part", ["site", "plant", "part"],
             lay.plant, "plant", "sum"),
        )  # fmt: skip
        for name, doc, labels, group, key, how in specs:
            fam = GaugeMetricFamily(name, doc, labels=labels)
            self._add(fam, group, key, how)
            yield fam

    def _add(self, fam: GaugeMetricFamily, group: _Group, key: str, how: str) -> None:
        if not group.labels:
            return
        values = _complete(group, self._good(key, group.series), how)
        for labels, v in zip(group.labels, values, strict=True):
            if not np.isnan(v):
                fam.add_metric(list(labels), float(v))

    def _alarms(self) -> Iterator[GaugeMetricFamily]:
        engine = self.ctx.alarm_engine
        if engine is None:
            return
        counts = dict.fromkeys(SEVERITY_ORDER, 0)
        for alarm in engine.active():
            counts[alarm.severity] = counts.get(alarm.severity, 0) + 1
        fam = GaugeMetricFamily(
            "aidc_alarms_active",
            "Active alarms (device, threshold and predictive) by severity",
            labels=["site", "severity"],
        )
        for sev, n in counts.items():
            fam.add_metric([self.ctx.site.name, sev], float(n))
        yield fam

    def _saving(self) -> Iterator[GaugeMetricFamily]:
        c = self.ctx.controller
        if c is None:
            return
        last = c.status().get("last_decision")
        kw = last.get("predicted_saving_kw") if isinstance(last, dict) else None
        doc = "Facility power the controller's last decision predicted to save against keeping the setpoints"
        fam = GaugeMetricFamily("aidc_controller_predicted_saving_watts", doc, labels=["site"])
        if isinstance(kw, int | float) and kw == kw:
            fam.add_metric([self.ctx.site.name], 1000.0 * float(kw))
        yield fam
