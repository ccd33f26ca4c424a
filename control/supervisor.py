"""The live supervisory controller: modes, operator overrides, the safety guard, audit, heartbeat and revert.

Each decision interval: a snapshot from the live state; input checks: bad or stale site-wide inputs (facility
water, outdoor air, facility power) hold the whole site, a CDU's own bad or stale inputs hold only that CDU and a
non-zero device alarm word keeps that CDU from moving warmer (:mod:`control.holds`; either, lasting
``hold_revert_s``, reverts what it holds to the safe defaults); the learning core's choice (commissioning / learning
/ deciding) on a snapshot in which a held CDU shows its last good readings; the held CDUs' setpoints and the
lock-out after a guard action replace the core's where they must; operator overrides with expiry replace the points
they name; then the independent hard-limit check (an override exempts only its own point from the rate limit);
then, in ``auto`` mode only, the writes through the setpoint writer (which clamps, reads back and audits each one).
At the collectors' rate the thermal guard checks measured temperatures and cools at once on an alarm, the fast path
(:mod:`control.fastpath`) meets a load step with colder, higher-flow setpoints before the temperatures rise (both
followed by the ``lockout_s`` lock-out), and a heartbeat is written to each controlled device so it falls back to
its own safe setpoints if the supervisor stops. Every decision, guard and fast-path action and every mode, override
or hold change is a JSON line in ``<data_dir>/audit/control.jsonl``; decisions are also published as
``controller,site=<site>`` series for the historian.
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
from control.fastpath import LoadStepDetector, cold_side, core_step_ready, step_ready_rule
from control.guard import (
    alarmed_cdus,
    check_cdu_inputs,
    check_site_inputs,
    cooling_response,
    hot_cdus,
    thermal_alarms,
    verify,
)
from control.holds import ALARM, INPUTS, CduHolds, Lockout, fill_held, keep_approach
from control.interface import MODES, Mode
from control.learner import LearningController
from control.live_reader import LiveReader
from control.policy import Limits, dew_point_c, site_limits
from control.snapshot import SnapshotBuilder
from control.types import Decision, Setpoints, Snapshot

log = logging.getLogger(__name__)

MEASUREMENT = "controller"
FEED_FORWARD = "feed forward"  # the fast path's lock-out source
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
        self.core = core if core is not None else LearningController(self.lim, plant_type=site.config.plant.type)
        if isinstance(self.core, LearningController) and self.core.plant_type is None:
            self.core.plant_type = site.config.plant.type  # commissioning's outdoor-reset centre needs the plant
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
                       "refused": 0, "cdu_holds": 0, "cdu_reverts": 0, "feed_forwards": 0, "lockout_limits": 0}
        self.hold_since_ns: int | None = None
        self.written: Setpoints | None = None  # what the supervisor last wrote
        self.heartbeat_value = 0
        self.controlled = [*self.lim.cdu_names, self.lim.plant_device]
        self.decided = asyncio.Event()  # set after every decision (for watchers and tests)
        self.cooled = asyncio.Event()  # set after every thermal-guard action
        self.fed_forward = asyncio.Event()  # set after every fast-path (feed-forward) write
        self.holds = CduHolds(self.lim.cdu_names)
        self.lockout = Lockout(self.lim.cdu_names)
        self.steps = LoadStepDetector(len(self.lim.cdu_names))
        self._good: Snapshot | None = None  # the last snapshot, with each CDU's values from its last good reading
        self._ages: dict[str, float] = {}  # per device: age of its oldest reading in the last snapshot
        # The thermal guard runs at the collectors' rate: the fastest poll of the devices a snapshot reads.
        devs = {d.name: d for d in site.devices}
        # Which devices feed each CDU (its own and its racks'); every other device a snapshot reads is site-wide.
        b = self.builder
        self._cdu_devs = [{n} | {s.device for s in b.cdu_racks[i] + b.cdu_util[i]}
                          for i, n in enumerate(self.lim.cdu_names)]
        per_cdu = set().union(*self._cdu_devs)
        self._site_devs = {d for d in b.devices() if d not in per_cdu} | {s.device for s in b.facility + b.it}
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
        fit_ns = getattr(self.core, "last_fit_ns", None)  # a stand-in core (tests) may not refit at all
        return {
            "mode": self._mode,
            "state": self.state,
            "last_decision": self.last,
            "model": model.provenance if model is not None else None,
            "training_rows": len(self.core.rows),
            # Read-only context for the Control page: when the model was last refitted (and why not, if it failed)
            # and the GPU ceiling (throttle limit − margin) each decision's binding constraint is measured against.
            "model_fit": {"last_fit": None if fit_ns is None else format_ns(fit_ns),
                          "error": str(getattr(self.core, "fit_error", ""))},
            "limits": {"gpu_margin_k": self.cfg.gpu_margin_k, "fws_max_c": self.lim.fws_hi,
                       "gpu_ceiling_c": dict(zip(self.lim.cdu_names, self.lim.gpu_ceiling_c.tolist(), strict=True))},
            "overrides": self.overrides(),
            "counts": dict(self.counts),
        }

    # --- one decision -----------------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """The facility as the live state shows it now (each device's reading age kept for the input checks)."""
        now = self.clock.now_ns()
        readings, age, self._ages = self.reader.read_ages(self.live, now)
        return self.builder.build(now, readings, max_age_s=age)

    def inputs_ready(self) -> bool:
        """Whether every site-wide and per-CDU input has a fresh, finite reading (what a decision needs), so a
        start waits for the first polls instead of logging a hold on inputs nobody has read yet."""
        snap = self.snapshot()
        if not check_site_inputs(snap, self.lim, self._site_age_s()).ok:
            return False
        return not any(check_cdu_inputs(snap, self.lim, self._cdu_ages_s()))

    def _site_age_s(self) -> float:
        return max((self._ages.get(d, 0.0) for d in self._site_devs), default=0.0)

    def _cdu_ages_s(self) -> npt.NDArray[np.float64]:
        return np.array([max((self._ages.get(d, 0.0) for d in devs), default=0.0) for devs in self._cdu_devs])

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
        inputs = check_site_inputs(snap, self.lim, self._site_age_s())
        rec["inputs"] = _inputs_summary(snap)
        self.steps.reset(snap.gpu_util_pct)
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
        prev = self._base(snap)
        bad = self._update_holds(snap, now)
        # The core sees each held CDU's last good readings (it needs finite values) and its held setpoints.
        core_snap = fill_held(snap, bad, self._good, prev)
        self._good = core_snap
        # The core may fit its plant model: off the event loop, so the collectors keep polling meanwhile.
        dec: Decision = await asyncio.to_thread(self.core.decide, core_snap)
        sp, reverting = self.holds.apply(dec.setpoints, prev, self.lim.safe, now, self.cfg.hold_revert_s)
        sp, limited = self.lockout.apply(sp, now)
        sp = keep_approach(sp, prev, self.lim)
        sp, notes = self._apply_overrides(sp)
        binding = list(dec.binding) + notes
        # Second layer: the hard-limit check. An overridden point skips only its own rate check, and so does a CDU
        # reverted to its safe defaults (as the whole-site revert does; until written, e.g. after a refused check).
        exempt = {(o.device, o.point) for o in self._overrides.values()}
        exempt |= {(self.lim.cdu_names[i], p) for i in self.holds.reverted()
                   for p in (self.lim.tcs_point, self.lim.dp_point)}
        checked = verify(sp, prev, snap, self.lim, exempt=exempt)
        rec.update(
            state=dec.state, candidates=dec.candidates, chosen=self._by_point(sp),
            predicted_facility_kw=dec.predicted_facility_kw, predicted_saving_kw=dec.predicted_saving_kw,
            binding=binding, hold_reason=dec.hold_reason, decision_ms=round(1000 * (time.perf_counter() - t0), 3),
        )
        if self.holds.held:
            rec["cdu_holds"] = self.holds.record(now)
        if self.lockout.active(now):
            rec["lockout"] = self.lockout.record(now, limited)
            self.counts["lockout_limits"] += bool(limited)
        self.state = dec.state
        if not checked.ok:
            self.counts["refused"] += 1
            self.counts["holds"] += 1
            rec.update(state="holding", hold_reason="hard-limit check refused: " + "; ".join(checked.reasons))
            self.state = "holding"
        elif self._mode == "auto":
            rec["written"] = await self._write(sp, prev, "supervisor decision")
        for i in reverting:
            self.counts["cdu_reverts"] += 1
            h = self.holds.held[i]
            self._audit({"kind": "cdu_revert", "device": self.lim.cdu_names[i], "why": h.reason, "mode": self._mode,
                         "held_s": round((now - h.since_ns) / 1e9, 1), "written": checked.ok and self._mode == "auto"})
            log.warning("control: %s reverted to its safe defaults (%s)", self.lim.cdu_names[i], h.reason)
        self.counts["decisions"] += 1
        self._finish(rec, now)
        self.decided.set()
        return rec

    def _base(self, snap: Snapshot) -> Setpoints:
        """What the devices hold: what the supervisor last wrote, else what they report, else the safe defaults."""
        cur = self.written if self.written is not None else snap.current
        safe = self.lim.safe
        return Setpoints(np.where(np.isfinite(cur.tcs_c), cur.tcs_c, safe.tcs_c),
                         np.where(np.isfinite(cur.dp_kpa), cur.dp_kpa, safe.dp_kpa),
                         cur.fws_c if math.isfinite(cur.fws_c) else safe.fws_c,
                         cur.chw_c if math.isfinite(cur.chw_c) else safe.chw_c)

    def _update_holds(self, snap: Snapshot, now: int) -> npt.NDArray[np.bool_]:
        """Hold the CDUs with bad or stale inputs or a device alarm (audited as they start and end); the CDUs
        whose inputs are bad."""
        names = self.lim.cdu_names
        why: dict[int, tuple[str, str]] = {}
        alarmed = alarmed_cdus(snap, self.cfg.alarm_word_mask)
        for i, name in enumerate(names):
            if name in alarmed:
                why[i] = (ALARM, alarmed[name])
        for i, reasons in enumerate(check_cdu_inputs(snap, self.lim, self._cdu_ages_s())):
            if reasons:  # bad inputs hold fully, an alarm only forbids the warm direction: the stricter wins
                why[i] = (INPUTS, "; ".join(reasons))
        started, cleared = self.holds.update(now, why)
        for i in started:
            self.counts["cdu_holds"] += 1
            kind, reason = why[i]
            self._audit({"kind": "cdu_hold", "device": names[i], "hold": kind, "why": reason, "mode": self._mode})
            log.warning("control: holding %s (%s)", names[i], reason)
        for i in cleared:
            self._audit({"kind": "cdu_hold_cleared", "device": names[i], "mode": self._mode})
            log.info("control: %s no longer held", names[i])
        return self.holds.mask(INPUTS)

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

    async def guard_tick(self) -> None:
        """Between decisions, at the collectors' rate: the thermal guard, then the fast path, on one snapshot."""
        snap = self.snapshot()
        await self.thermal_check(snap)
        await self.fast_check(snap)

    async def thermal_check(self, snap: Snapshot | None = None) -> list[str]:
        """The fast thermal guard: on an alarm, colder setpoints at once (auto mode), audited, then the lock-out."""
        snap = snap if snap is not None else self.snapshot()
        alarms = thermal_alarms(snap, self.lim)
        if not alarms:
            return []
        sp = cooling_response(snap, self.lim)
        rec: dict[str, object] = {"kind": "thermal_guard", "ts": format_ns(snap.t_ns), "alarms": list(alarms),
                                  "chosen": self._by_point(sp), "mode": self._mode}
        if self._mode == "auto":
            rec["written"] = await self._write(sp, self.written or snap.current, "thermal guard: " + alarms[0])
            self.counts["thermal_actions"] += 1
            self._lock(snap.t_ns, hot_cdus(snap, self.lim), "thermal guard", rec)
            self.cooled.set()
        self._audit(rec)
        log.warning("thermal guard: %s", "; ".join(alarms))
        return list(alarms)

    async def fast_check(self, snap: Snapshot | None = None) -> list[str]:
        """The fast path: a CDU whose GPU utilisation rose by more than ``feedforward_util_rise_pct`` since the last
        decision moves at once to step-ready setpoints, colder and at more flow only (auto mode writes; advisory
        records), through the hard-limit check, audited as ``feed_forward``, then the lock-out; the CDUs acted on."""
        if self._mode == "off":
            return []
        snap = snap if snap is not None else self.snapshot()
        stepped, u0 = self.steps.check(snap.gpu_util_pct, self.cfg.feedforward_util_rise_pct)
        if not stepped.any():
            return []
        lim = self.lim
        names = [n for n, s in zip(lim.cdu_names, stepped, strict=True) if s]
        cur = self._base(snap)
        target = core_step_ready(self.core, snap)
        source = "core" if target is not None else "rule"
        if target is None:
            target = step_ready_rule(cur, lim.safe, u0, snap.gpu_util_pct)
        dew = dew_point_c(snap.drybulb_c, snap.wetbulb_c) if math.isfinite(snap.wetbulb_c) else None
        sp = cold_side(target, cur, stepped, lim, dew)
        # The cold direction skips the rate limit (as the thermal guard's does); everything else is checked.
        checked = verify(sp, cur, snap, lim, cold_free=True)
        rec: dict[str, object] = {
            "kind": "feed_forward", "ts": format_ns(snap.t_ns), "mode": self._mode, "cdus": names, "source": source,
            "util_from": [round(float(u), 1) for u in u0[stepped]],
            "util_to": [round(float(u), 1) for u in snap.gpu_util_pct[stepped]],
            "chosen": self._by_point(sp),
        }
        if not checked.ok:
            self.counts["refused"] += 1
            rec["refused"] = list(checked.reasons)
        elif self._mode == "auto":
            why = f"feed forward: load step on {', '.join(names)}"
            rec["written"] = await self._write(sp, cur, why)
            self.counts["feed_forwards"] += 1
            self._lock(snap.t_ns, stepped, FEED_FORWARD, rec)
            self.fed_forward.set()
        self._audit(rec)
        log.warning("control: load step on %s: feed-forward to step-ready setpoints (%s)", ", ".join(names), source)
        return names

    def _lock(self, now: int, guarded: npt.NDArray[np.bool_], source: str, rec: dict[str, object]) -> None:
        """Arm the lock-out at what the devices hold now (the write's read-back) and note it in ``rec``: for
        ``lockout_s``, or after the fast path (which met a load step before any temperature rose) for at most
        ``feedforward_lockout_s``."""
        seconds = self.cfg.lockout_s
        if source == FEED_FORWARD:
            seconds = min(seconds, self.cfg.feedforward_lockout_s)
        if self.written is None or seconds <= 0:
            return
        self.lockout.arm(now, seconds, self.written, guarded, source)
        rec["lockout_until"] = format_ns(self.lockout.until_ns)

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
                    await self.guard_tick()
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
        "gpu_max_cdu": snap.cdu_names[int(np.nanargmax(snap.gpu_max_c))] if np.isfinite(snap.gpu_max_c).any() else None,
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
