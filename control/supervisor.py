"""The live supervisory controller: modes, operator overrides, the safety guard, audit, heartbeat and revert.

Each decision interval: a snapshot from the live state; input checks (stale or NaN: hold, and revert to the safe
defaults after ``hold_revert_s``); the learning core's choice (commissioning / learning / deciding); operator
overrides with expiry replace the points they name; then the independent hard-limit check; then, in ``auto``
mode only, the writes through the setpoint writer (which clamps, reads back and audits each one). At the
collectors' rate the thermal guard checks measured temperatures and cools at once on an alarm, and a heartbeat
is written to each controlled device so it falls back to its own safe setpoints if the supervisor stops. Every
decision and every mode or override change is a JSON line in ``<data_dir>/audit/control.jsonl``; decisions are
also published as ``controller,site=<site>`` series for the historian.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from aidc.clock import Clock, format_ns
from aidc.config import Site
from aidc.errors import ConfigError
from aidc.live import LiveState
from aidc.model import Batch, Quality, SeriesKey
from control.guard import check_inputs, cooling_response, thermal_alarms, verify
from control.interface import MODES, Mode
from control.learner import LearningController
from control.live_reader import LiveReader
from control.policy import Limits, site_limits
from control.snapshot import SnapshotBuilder
from control.types import Decision, Setpoints, Snapshot

log = logging.getLogger(__name__)

MEASUREMENT = "controller"
MIN_TICK_S = 0.02  # wall seconds: the floor on the guard tick when the clock runs fast (as the collectors have)


class WriteOutcome(Protocol):
    """What the writer reports for one write (``collectors.writer.WriteResult``)."""

    @property
    def device(self) -> str: ...
    @property
    def point(self) -> str: ...
    @property
    def new(self) -> float: ...
    @property
    def readback(self) -> float | None: ...
    @property
    def ok(self) -> bool: ...
    @property
    def error(self) -> str: ...


class Writer(Protocol):
    """The setpoint writer (``collectors.writer.SetpointWriter``): clamps, writes, reads back, audits."""

    async def write(self, actor: Any, device: str, point: str, value: float, why: str) -> WriteOutcome:
        """Write one point."""
        ...


@dataclass(frozen=True, slots=True)
class Override:
    """An operator's value for one point until ``until_ns``."""

    device: str
    point: str
    value: float
    until_ns: int
    user: str


class Supervisor:
    """See the module docstring; the dashboard and the API code against ``control.interface.SupervisorControl``."""

    def __init__(self, site: Site, live: LiveState, writer: Writer | None, clock: Clock, *,
                 publish: Callable[[Batch], None] | None = None, actor: object | None = None,
                 limits: Limits | None = None, core: LearningController | None = None,
                 audit_dir: Path | None = None) -> None:
        self.site = site
        self.live = live
        self.writer = writer
        self.clock = clock
        self.publish = publish
        self.lim = limits if limits is not None else site_limits(site)
        self.cfg = self.lim.cfg
        self.core = core if core is not None else LearningController(self.lim)
        self.builder = SnapshotBuilder(site, self.lim)
        self.reader = LiveReader(site, self.builder)
        self.actor = actor if actor is not None else _default_actor(self.cfg.user)
        self.audit_path = (audit_dir if audit_dir is not None else site.data_dir / "audit") / "control.jsonl"
        self.audit_path.parent.mkdir(parents=True, exist_ok=True)
        self._mode: Mode = self.cfg.mode
        self._overrides: dict[tuple[str, str], Override] = {}
        self.state = "commissioning"
        self.last: dict[str, object] = {}
        self.counts = {"decisions": 0, "holds": 0, "writes": 0, "write_errors": 0, "thermal_actions": 0,
                       "refused": 0}
        self.hold_since_ns: int | None = None
        self.written: Setpoints | None = None  # what the supervisor last wrote
        self.heartbeat_value = 0
        self.controlled = [*self.lim.cdu_names, self.lim.plant_device]
        self.decided = asyncio.Event()  # set after every decision (for watchers and tests)
        self.cooled = asyncio.Event()  # set after every thermal-guard action
        # The thermal guard runs at the collectors' rate: the fastest poll of the devices a snapshot reads.
        devs = {d.name: d for d in site.devices}
        self.guard_s = min((devs[n].config.poll_interval_s for n in self.builder.devices()), default=10.0)
        self._hb_points = {d.name: d.profile.heartbeat.point for d in site.devices
                           if d.name in self.controlled and d.profile.heartbeat is not None}

    # --- the interface the dashboard uses ---------------------------------------------------------------

    @property
    def mode(self) -> Mode:
        """off / advisory (recommend and log only) / auto (write)."""
        return self._mode

    def set_mode(self, mode: str, user: str) -> None:
        """Switch mode (audited); leaving auto reverts the controlled setpoints at the next tick."""
        if mode not in MODES:
            raise ConfigError(f"control mode {mode!r}: choose off, advisory or auto")
        old, self._mode = self._mode, mode
        self._audit({"kind": "mode", "user": user, "from": old, "to": mode})
        log.info("control mode %s -> %s by %s", old, mode, user)
        if old == "auto" and mode != "auto":
            self._revert_pending = True

    _revert_pending = False

    def set_override(self, device: str, point: str, value: float, until_ns: int, user: str) -> None:
        """Hold ``device.point`` at ``value`` until ``until_ns``, whatever the optimiser wants (audited)."""
        if device not in self.controlled:
            raise ConfigError(f"override: {device!r} is not a controlled device ({', '.join(self.controlled)})")
        plant_points = {self.lim.fws_point} | ({self.lim.chw_point} if self.lim.chw_point is not None else set())
        allowed = plant_points if device == self.lim.plant_device else {self.lim.tcs_point, self.lim.dp_point}
        if point not in allowed:
            raise ConfigError(f"override: {device}.{point} is not a controlled setpoint ({', '.join(sorted(allowed))})")
        if not math.isfinite(value):
            raise ConfigError(f"override: {device}.{point} = {value!r} is not a number")
        if until_ns <= self.clock.now_ns():
            raise ConfigError(f"override: {device}.{point} expiry {format_ns(until_ns)} is not in the future")
        self._overrides[(device, point)] = Override(device, point, float(value), int(until_ns), user)
        self._audit({"kind": "override", "user": user, "device": device, "point": point, "value": value,
                     "until": format_ns(until_ns)})

    def clear_override(self, device: str, point: str, user: str) -> None:
        """Remove an override (audited); unknown ones are ignored."""
        if self._overrides.pop((device, point), None) is not None:
            self._audit({"kind": "override_cleared", "user": user, "device": device, "point": point})

    def overrides(self) -> list[dict[str, object]]:
        """Active overrides: device, point, value, until_ns, user."""
        self._expire()
        return [dict(device=o.device, point=o.point, value=o.value, until_ns=o.until_ns, user=o.user)
                for o in self._overrides.values()]

    @property
    def sink(self) -> LiveReader:
        """The supervisor's input sink: add it to the collectors' output beside the live state for fast reads."""
        return self.reader

    def status(self) -> dict[str, object]:
        """Mode, state, the last decision, model provenance and counters (JSON-able)."""
        model = self.core.model
        return {
            "mode": self._mode,
            "state": self.state,
            "last_decision": self.last,
            "model": model.provenance if model is not None else None,
            "training_rows": len(self.core.rows),
            "overrides": self.overrides(),
            "counts": dict(self.counts),
        }

    # --- one decision -----------------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """The facility as the live state shows it now."""
        now = self.clock.now_ns()
        readings, age = self.reader.read(self.live, now)
        return self.builder.build(now, readings, max_age_s=age)

    def _expire(self) -> None:
        now = self.clock.now_ns()
        for key, o in list(self._overrides.items()):
            if o.until_ns <= now:
                del self._overrides[key]
                self._audit({"kind": "override_expired", "user": o.user, "device": o.device, "point": o.point})

    def _apply_overrides(self, sp: Setpoints) -> tuple[Setpoints, list[str]]:
        self._expire()
        sp, notes = sp.copy(), []
        for o in self._overrides.values():
            if o.device == self.lim.plant_device and o.point == self.lim.chw_point:
                sp = sp.with_chw(o.value)
            elif o.device == self.lim.plant_device:
                sp = Setpoints(sp.tcs_c, sp.dp_kpa, o.value, sp.chw_c)
            else:
                i = self.lim.cdu_names.index(o.device)
                (sp.tcs_c if o.point == self.lim.tcs_point else sp.dp_kpa)[i] = o.value
            notes.append(f"override {o.device}.{o.point}={o.value:g} by {o.user}")
        return sp, notes

    async def decide_once(self) -> dict[str, object]:
        """One decision interval: snapshot, checks, choice, guard, writes (auto only), audit; returns the record."""
        snap = self.snapshot()
        now = snap.t_ns
        rec: dict[str, object] = {"kind": "decision", "ts": format_ns(now), "mode": self._mode}
        if self._revert_pending:
            self._revert_pending = False
            rec["reverted"] = await self.revert("mode left auto")
        if self._mode == "off":
            self.state = "off"
            rec["state"] = "off"
            return rec
        t0 = time.perf_counter()
        inputs = check_inputs(snap, self.lim)
        rec["inputs"] = _inputs_summary(snap)
        if not inputs.ok:
            self.counts["holds"] += 1
            self.hold_since_ns = self.hold_since_ns if self.hold_since_ns is not None else now
            held_s = (now - self.hold_since_ns) / 1e9
            rec.update(state="holding", hold_reason="; ".join(inputs.reasons), held_s=held_s)
            self.state = "holding"
            if held_s >= self.cfg.hold_revert_s and self._mode == "auto":
                rec["reverted"] = await self.revert(f"inputs bad for {held_s:.0f} s")
                self.state = "fallback"
                rec["state"] = "fallback"
            self._finish(rec, now)
            return rec
        self.hold_since_ns = None
        # The core may fit its plant model: off the event loop, so the collectors keep polling meanwhile.
        dec: Decision = await asyncio.to_thread(self.core.decide, snap)
        prev = self.written if self.written is not None else snap.current
        sp, notes = self._apply_overrides(dec.setpoints)
        binding = list(dec.binding) + notes
        # Second layer: the hard-limit check (overridden points skip only the rate limit).
        checked = verify(sp, prev if not notes else sp, snap, self.lim, rate=not notes)
        rec.update(
            state=dec.state, candidates=dec.candidates, chosen=self._by_point(sp),
            predicted_facility_kw=dec.predicted_facility_kw, predicted_saving_kw=dec.predicted_saving_kw,
            binding=binding, hold_reason=dec.hold_reason, decision_ms=round(1000 * (time.perf_counter() - t0), 3),
        )
        self.state = dec.state
        if not checked.ok:
            self.counts["refused"] += 1
            self.counts["holds"] += 1
            rec.update(state="holding", hold_reason="hard-limit check refused: " + "; ".join(checked.reasons))
            self.state = "holding"
        elif self._mode == "auto":
            rec["written"] = await self._write(sp, prev, "supervisor decision")
        self.counts["decisions"] += 1
        self._finish(rec, now)
        self.decided.set()
        return rec

    def _by_point(self, sp: Setpoints) -> dict[str, dict[str, float]]:
        lim = self.lim
        return sp.by_point(lim.cdu_names, lim.tcs_point, lim.dp_point, lim.plant_device, lim.fws_point,
                           lim.chw_point)

    def _finish(self, rec: dict[str, object], now: int) -> None:
        self.last = rec
        self._audit(rec)
        self._publish(rec, now)

    async def _write(self, sp: Setpoints, prev: Setpoints, why: str, *, force: bool = False) -> list[dict[str, object]]:
        """Write the setpoints that differ from ``prev`` (all of them with ``force``) and remember what the devices
        hold now: the read-back of each write (a register stores tenths, not the requested value), which is also
        fed to the input reader so the next snapshot starts from it even before the collectors poll again."""
        out: list[dict[str, object]] = []
        if self.writer is None:
            return out
        lim = self.lim
        held_t, held_d, held_f = sp.tcs_c.astype(np.float64).copy(), sp.dp_kpa.astype(np.float64).copy(), [sp.fws_c]
        held_c = [sp.chw_c if math.isfinite(sp.chw_c) else prev.chw_c]
        items: list[tuple[str, str, float, float, npt.NDArray[np.float64] | list[float], int]] = []
        for i, cdu in enumerate(lim.cdu_names):
            items.append((cdu, lim.tcs_point, float(sp.tcs_c[i]), float(prev.tcs_c[i]), held_t, i))
            items.append((cdu, lim.dp_point, float(sp.dp_kpa[i]), float(prev.dp_kpa[i]), held_d, i))
        items.append((lim.plant_device, lim.fws_point, float(sp.fws_c), float(prev.fws_c), held_f, 0))
        if lim.chw_point is not None and math.isfinite(sp.chw_c):  # NaN: the controller leaves chilled water alone
            items.append((lim.plant_device, lim.chw_point, float(sp.chw_c), float(prev.chw_c), held_c, 0))
        first = self.written is None
        for dev, point, value, old, held, i in items:
            if not (force or first) and abs(value - old) < 1e-9:
                held[i] = old
                continue
            r = await self.writer.write(self.actor, dev, point, value, why)
            self.counts["writes"] += 1
            if not r.ok:
                self.counts["write_errors"] += 1
            if r.readback is not None and math.isfinite(r.readback):
                held[i] = float(r.readback)
                self.reader.note(dev, point, float(r.readback), self.clock.now_ns())
            elif not r.ok:
                held[i] = old  # not written: the device still holds what it held
            out.append({"device": r.device, "point": r.point, "value": r.new, "readback": r.readback, "ok": r.ok,
                        "error": r.error})
        self.written = Setpoints(held_t, held_d, float(held_f[0]), float(held_c[0]))
        return out

    async def revert(self, why: str) -> list[dict[str, object]]:
        """Write the safe default of every controlled setpoint (audited)."""
        safe = self.lim.safe.copy()
        out = await self._write(safe, safe, f"revert: {why}", force=True)
        self._audit({"kind": "revert", "why": why, "written": out})
        log.warning("control: reverted %d setpoints to safe defaults (%s)", len(out), why)
        return out

    async def thermal_check(self) -> list[str]:
        """The fast thermal guard: on an alarm, colder setpoints at once (auto mode), audited."""
        snap = self.snapshot()
        alarms = thermal_alarms(snap, self.lim)
        if not alarms:
            return []
        sp = cooling_response(snap, self.lim)
        rec: dict[str, object] = {"kind": "thermal_guard", "ts": format_ns(snap.t_ns), "alarms": list(alarms),
                                  "chosen": self._by_point(sp), "mode": self._mode}
        if self._mode == "auto":
            rec["written"] = await self._write(sp, self.written or snap.current, "thermal guard: " + alarms[0])
            self.counts["thermal_actions"] += 1
            self.cooled.set()
        self._audit(rec)
        log.warning("thermal guard: %s", "; ".join(alarms))
        return list(alarms)

    async def heartbeat(self) -> None:
        """Change each controlled device's heartbeat point (auto mode only: advisory must not hold devices)."""
        if self._mode != "auto" or self.writer is None:
            return
        self.heartbeat_value = (self.heartbeat_value + 1) % 65536
        for dev, point in self._hb_points.items():
            await self.writer.write(self.actor, dev, point, float(self.heartbeat_value), "heartbeat")

    # --- the long-running job ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, *, guard_s: float | None = None) -> None:
        """Decide every ``interval_s``, run the thermal guard every ``guard_s`` (default: the collectors' rate, the
        shortest poll interval of the devices a snapshot reads) and heartbeat every ``heartbeat_s``, all in
        simulated seconds at the clock's speed, waking for whichever is due first (never sooner than
        :data:`MIN_TICK_S` of wall time), until ``stop`` is set or the task is cancelled; then revert to the safe
        defaults if in auto."""
        speed = max(getattr(self.clock, "speed", 1.0), 1e-9)
        guard = self.guard_s if guard_s is None else guard_s
        tick_ns = int(min(guard, self.cfg.heartbeat_s) * 1e9)
        beat_ns = int(self.cfg.heartbeat_s * 1e9)
        interval_ns = int(self.cfg.interval_s * 1e9)
        next_decision = next_beat = self.clock.now_ns()
        try:
            while not stop.is_set():
                now = self.clock.now_ns()
                if now >= next_decision:
                    await self.decide_once()
                    # On the interval's cadence; after a stall, from now rather than in a burst of catch-up decisions.
                    next_decision += interval_ns
                    if next_decision <= now:
                        next_decision = now + interval_ns
                else:
                    await self.thermal_check()
                now = self.clock.now_ns()
                if now >= next_beat:
                    await self.heartbeat()
                    next_beat = now + beat_ns
                now = self.clock.now_ns()
                wait_ns = min(tick_ns, next_decision - now, next_beat - now)
                try:
                    await asyncio.wait_for(stop.wait(), timeout=max(MIN_TICK_S, wait_ns / 1e9 / speed))
                except TimeoutError:
                    pass
        finally:
            if self._mode == "auto":
                await asyncio.shield(self.revert("supervisor stopping"))

    # --- records ----------------------------------------------------------------------------------------

    def _audit(self, rec: dict[str, object]) -> None:
        rec = {"ts": format_ns(self.clock.now_ns()), **rec}
        with self.audit_path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(rec, default=_json_default) + "\n")

    def _publish(self, rec: dict[str, object], now: int) -> None:
        if self.publish is None:
            return
        tags = {"site": self.site.name}
        fields: dict[str, float] = {
            "predicted_facility_kw": _num(rec.get("predicted_facility_kw")),
            "predicted_saving_kw": _num(rec.get("predicted_saving_kw")),
            "holding": 1.0 if rec.get("state") == "holding" else 0.0,
            "auto": 1.0 if self._mode == "auto" else 0.0,
        }
        keys = [SeriesKey.of(MEASUREMENT, f, tags).id for f in fields]
        vals_l = list(fields.values())
        chosen = rec.get("chosen")
        if isinstance(chosen, dict):  # one series per controlled setpoint: controller,site=..,device=.. <point>
            for dev, points in chosen.items():
                for point, v in points.items():
                    keys.append(SeriesKey.of(MEASUREMENT, point, {**tags, "device": dev}).id)
                    vals_l.append(float(v))
        ids = np.array(keys, dtype=object)
        vals = np.array(vals_l, dtype=np.float64)
        q = np.where(np.isfinite(vals), int(Quality.GOOD), int(Quality.BAD)).astype(np.uint8)
        self.publish(Batch(ids, np.full(len(ids), now, dtype=np.int64), vals, q))


def _num(v: object) -> float:
    return float(v) if isinstance(v, int | float) else math.nan


def _json_default(o: object) -> object:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def _inputs_summary(snap: Snapshot) -> dict[str, object]:
    return {
        "gpu_max_c": round(float(np.nanmax(snap.gpu_max_c)), 2) if np.isfinite(snap.gpu_max_c).any() else None,
        "gpu_util_pct": round(float(np.nanmean(snap.gpu_util_pct)), 2) if np.isfinite(snap.gpu_util_pct).any()
        else None,
        "drybulb_c": snap.drybulb_c, "wetbulb_c": snap.wetbulb_c, "fws_supply_c": snap.fws_supply_c,
        "facility_kw": snap.facility_kw, "max_age_s": round(snap.max_age_s, 1),
    }


def _default_actor(user: str) -> object:
    from collectors.writer import Actor

    return Actor(user, "operator")


def install_signal_handlers(stop: asyncio.Event) -> None:
    """SIGTERM and SIGINT set ``stop`` so :meth:`Supervisor.run` returns through its revert."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
