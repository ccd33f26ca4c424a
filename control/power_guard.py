"""The power guard: keeps every PDU feed, the UPS and the site under rating by lowering cappable racks' power limits.

Each tick (``[power_guard] interval_s`` of simulated time) it reads the power chain's loads from the live state
(:mod:`analytics.power_chain`, the figures of the dashboard's Power chain page), works out the racks' limits with
:func:`control.power_budget.allocate` (ceilings within the PDU feeds' ratings, proportional cuts above a level's
guarded rating, stepwise restores below it less the hysteresis), and writes every limit that moved by more than
the dead band through the setpoint writer (``control.supervisor.Writer``: role check, clamp, read back, audit in
``writes.jsonl``) as the ``[power_guard] user`` with role operator. A rack's limit is its rack-power-limit point
(role ``rack_power_limit``): today the OPC-UA rack controller's ``power_limit_w``; a Redfish chassis PowerLimit
with that role is found the same way. A refused write (``WriteRefused``) is counted and logged, never retried in a
loop; a failed one too. Every tick that writes or finds a level over its line is a JSON line in
``<data_dir>/audit/power_guard.jsonl``. Advisory mode decides and audits, and writes nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aidc.clock import Clock, format_ns
from aidc.config import Site
from aidc.errors import AidcError, ConfigError
from aidc.live import LiveState
from aidc.model import Quality
from aidc.roles import Role
from analytics.energy import kpi
from analytics.power_chain import Meter, chain_meters, loads_kw
from control.power_budget import Allocation, Level, RackBudget, allocate
from control.supervisor import Writer

log = logging.getLogger(__name__)

MIN_TICK_S = 0.02  # wall seconds: the floor on the tick when the clock runs fast


@dataclass(frozen=True, slots=True)
class LimitPoint:
    """Where a rack's power limit is written: device, point, kW per point unit, and the most it can hold (kW)."""

    device: str
    point: str
    scale_kw: float
    max_kw: float


def limit_points(site: Site) -> dict[str, LimitPoint]:
    """Per rack name, its writable rack-power-limit point (the first device of the rack that has one)."""
    out: dict[str, LimitPoint] = {}
    for dev in site.devices:
        rack = dev.tags.get("rack")
        if rack is None or rack in out:
            continue
        for p in dev.profile.points:
            if dev.role_of(p.name) is Role.RACK_POWER_LIMIT and p.writable and p.max is not None:
                scale = kpi.power_scale(p.name, p.unit)
                out[rack] = LimitPoint(dev.name, p.name, scale, p.max * scale)
                break
    return out


class PowerGuard:
    """See the module docstring. ``writer`` None (or mode advisory): decide and audit only."""

    def __init__(self, site: Site, live: LiveState, writer: Writer | None, clock: Clock, *,
                 actor: object | None = None, audit_dir: Path | None = None) -> None:  # fmt: skip
        self.site, self.live, self.writer, self.clock = site, live, writer, clock
        self.cfg = cfg = site.config.power_guard
        self.actor = actor if actor is not None else _operator(cfg.user)
        self.audit_path = (audit_dir if audit_dir is not None else site.data_dir / "audit") / "power_guard.jsonl"
        self.audit_path.parent.mkdir(parents=True, exist_ok=True)
        points = limit_points(site)
        meters = chain_meters(site, (Role.FACILITY_POWER, Role.IT_POWER_UPS_OUTPUT, Role.IT_POWER_PDU_OUTPUT,
                                     Role.RACK_POWER, Role.RACK_POWER_LIMIT))  # fmt: skip
        self.racks: list[str] = []
        self.cappable: list[bool] = []
        self.floor_kw: list[float] = []
        self.ceiling_kw: list[float] = []
        self.points: dict[int, LimitPoint] = {}
        self.levels: list[tuple[str, float, list[Meter], tuple[int, ...]]] = []  # name, rating, meters, racks
        pdu_meters = meters[Role.IT_POWER_PDU_OUTPUT]
        for hall, rack in site.racks():
            i = len(self.racks)
            self.racks.append(rack.name)
            feed_kw = rack.pdu_rated_kw if rack.pdu_rated_kw is not None else rack.rated_kw
            feed = [m for m in pdu_meters if m.rack == rack.name]
            if feed:
                self.levels.append((f"feed {feed[0].device}", feed_kw, feed, (i,)))
            lp = points.get(rack.name)
            where = f"{site.path or 'site'}: rack {rack.name} (hall {hall.name})"
            if rack.cappable and lp is None:
                raise ConfigError(f"{where}: cappable = true but no device of the rack has a writable "
                                  "rack_power_limit point (e.g. profile gpu-rack-opcua-powerlimit)")  # fmt: skip
            ceiling = min(lp.max_kw, feed_kw * (1.0 - cfg.headroom_frac)) if lp is not None else math.inf
            floor = (
                rack.min_power_limit_kw if rack.min_power_limit_kw is not None else cfg.min_limit_frac * rack.rated_kw
            )
            if rack.cappable and floor > ceiling:
                raise ConfigError(f"{where}: min_power_limit_kw {floor:g} is above its ceiling {ceiling:g} kW "
                                  "(the PDU feed's rating less the headroom)")  # fmt: skip
            self.cappable.append(rack.cappable)
            self.floor_kw.append(floor)
            self.ceiling_kw.append(ceiling)
            if lp is not None and rack.cappable:
                self.points[i] = lp
        everyone = tuple(range(len(self.racks)))
        self.levels.append((f"UPS {site.config.ups.name}", site.config.ups.rated_kw,
                            meters[Role.IT_POWER_UPS_OUTPUT], everyone))  # fmt: skip
        if cfg.site_rated_kw is not None:
            self.levels.append(("site", cfg.site_rated_kw, meters[Role.FACILITY_POWER], everyone))
        self._draw = _per_rack(meters[Role.RACK_POWER], self.racks)
        self._held = _per_rack(meters[Role.RACK_POWER_LIMIT], self.racks)
        self.limit_kw: dict[int, float] = {}  # what each cappable rack's limit is now (read back), once known
        self.counts = {"ticks": 0, "writes": 0, "write_errors": 0, "refused": 0, "cuts": 0, "restores": 0,
                       "short": 0}  # fmt: skip
        self.last: dict[str, object] = {}

    @property
    def active(self) -> bool:
        """Whether the guard has anything to do: some rack is cappable and the mode is not off."""
        return self.cfg.mode != "off" and bool(self.points)

    def budget(self) -> tuple[list[RackBudget], list[Level]]:
        """The racks and levels as the live state shows them now (a reading older than ``stale_s`` is unknown)."""
        draws = self._values(self._draw)
        held = self._values(self._held)
        racks = []
        for i, name in enumerate(self.racks):
            known = held[i]
            limit = self.limit_kw.get(i, known if known is not None else self.ceiling_kw[i])
            racks.append(RackBudget(name, i in self.points, self.floor_kw[i], self.ceiling_kw[i], limit, draws[i]))
        loads = self._values([meters for _, _, meters, _ in self.levels])
        levels = [Level(name, rating, load, members)
                  for (name, rating, _, members), load in zip(self.levels, loads, strict=True)]  # fmt: skip
        return racks, levels

    def _values(self, groups: list[list[Meter]]) -> list[float | None]:
        """Per group of meters, their sum in kW from fresh good readings (None: no meter, or one unknown)."""
        now, stale_ns = self.clock.now_ns(), int(self.cfg.stale_s * 1e9)
        out: list[float | None] = []
        for meters in groups:
            if not meters:
                out.append(None)
                continue
            ts, val, q = self.live.read(self.live.indices([m.series for m in meters]))
            fresh = np.where((q == int(Quality.GOOD)) & (now - ts <= stale_ns), val, np.nan)
            out.append(loads_kw(fresh, meters)[0])
        return out

    async def tick(self) -> dict[str, object]:
        """Decide the limits from the live state and write those that moved (auto mode); the audit record."""
        self.counts["ticks"] += 1
        racks, levels = self.budget()
        cfg = self.cfg
        alloc = allocate(racks, levels, headroom=cfg.headroom_frac, hysteresis=cfg.restore_hysteresis_frac,
                         step_kw=cfg.restore_step_kw)  # fmt: skip
        now = self.clock.now_ns()
        rec: dict[str, object] = {"ts": format_ns(now), "kind": "power_guard", "mode": cfg.mode}
        if alloc.over:
            rec["over"] = alloc.over
            self.counts["cuts"] += 1
        if alloc.short_kw:
            rec["short_kw"] = {k: round(v, 2) for k, v in alloc.short_kw.items()}
            self.counts["short"] += 1
            log.warning("power guard: cappable racks cannot shed enough: %s", rec["short_kw"])
        if alloc.restored:
            self.counts["restores"] += 1
        writes = await self._apply(racks, alloc)
        if writes:
            rec["writes"] = writes
        rec["levels"] = [{"level": lv.name, "load_kw": None if lv.load_kw is None else round(lv.load_kw, 2),
                          "rating_kw": lv.rating_kw} for lv in levels if lv.load_kw is not None]  # fmt: skip
        self.last = rec
        if alloc.over or writes or alloc.short_kw:
            self._audit(rec)
        return rec

    async def _apply(self, racks: list[RackBudget], alloc: Allocation) -> list[dict[str, object]]:
        """Write every cappable rack's limit that moved by more than the dead band; what was written."""
        out: list[dict[str, object]] = []
        restored = set(alloc.restored)
        for i, lp in self.points.items():
            new, old = alloc.limits_kw[i], racks[i].limit_kw
            moved = new - old
            # Every cut is written; a raise once it reaches the dead band, or when it is the last step to the top.
            if moved > -1e-6 and not (moved >= self.cfg.deadband_kw or (moved > 1e-6 and new >= self.ceiling_kw[i])):
                continue
            why = "power guard: " + ("restore" if i in restored else "cut" if new < old else "ceiling within feed")
            entry: dict[str, object] = {"rack": self.racks[i], "device": lp.device, "point": lp.point,
                                        "from_kw": round(old, 3), "to_kw": round(new, 3)}  # fmt: skip
            out.append(entry)
            if self.writer is None or self.cfg.mode != "auto":
                continue
            try:
                r = await self.writer.write(self.actor, lp.device, lp.point, new / lp.scale_kw, why)
            except AidcError as exc:  # WriteRefused: not attempted (role, point); counted, logged, audited
                self.counts["refused"] += 1
                entry["refused"] = str(exc)
                log.error("power guard: write to %s.%s refused: %s", lp.device, lp.point, exc)
                continue
            self.counts["writes"] += 1
            entry |= {"ok": r.ok, "readback_kw": None if r.readback is None else round(r.readback * lp.scale_kw, 3)}
            if not r.ok:
                self.counts["write_errors"] += 1
                entry["error"] = r.error
            if r.readback is not None and math.isfinite(r.readback):
                self.limit_kw[i] = r.readback * lp.scale_kw
            elif r.ok:
                self.limit_kw[i] = new
        return out

    async def run(self, stop: asyncio.Event) -> None:
        """Tick every ``interval_s`` of simulated time until ``stop`` is set or the task is cancelled."""
        speed = max(getattr(self.clock, "speed", 1.0), 1e-9)
        while not stop.is_set():
            await self.tick()
            try:
                await asyncio.wait_for(stop.wait(), timeout=max(MIN_TICK_S, self.cfg.interval_s / speed))
            except TimeoutError:
                pass

    def status(self) -> dict[str, object]:
        """Mode, counters, the limits in force (kW) and the last tick's record."""
        limits = {self.racks[i]: round(v, 3) for i, v in self.limit_kw.items()}
        return {"mode": self.cfg.mode, "counts": dict(self.counts), "limits_kw": limits, "last": self.last}

    def _audit(self, rec: dict[str, Any]) -> None:
        with self.audit_path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")


def _per_rack(meters: list[Meter], racks: list[str]) -> list[list[Meter]]:
    by: dict[str, list[Meter]] = {r: [] for r in racks}
    for m in meters:
        if m.rack in by:
            by[m.rack].append(m)
    return [by[r] for r in racks]


def _operator(user: str) -> object:
    from collectors.writer import Actor

    return Actor(user, "operator")
