"""Per-CDU holds and the lock-out after a guard action: what the supervisor lets a decision change.

A CDU is held when its own inputs are bad or stale (its setpoints stay where they are) or when its device alarm
word is non-zero (no move toward warmer water or less flow); a hold that lasts ``hold_revert_s`` reverts that CDU to
its safe defaults while the other CDUs are decided as normal. After the thermal guard or the fast path cools, the
:class:`Lockout` keeps the CDUs it acted on (and the plant's supply temperatures) no warmer and at no less
pressure than it left them for ``lockout_s``, so the next decision cannot undo the action on the evidence that
prompted it. :func:`fill_held` gives the core a snapshot it can decide on while a CDU's inputs are bad.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from aidc.clock import format_ns
from control.fastpath import Mask
from control.policy import Limits
from control.types import Arr, Setpoints, Snapshot

INPUTS = "inputs"  # the CDU's own inputs are bad or stale: hold its setpoints
ALARM = "alarm"  # the CDU's alarm word is set: no move toward warmer water or less flow


@dataclass(slots=True)
class CduHold:
    """One CDU's hold: why, since when, and whether it has reverted to its safe defaults."""

    kind: str
    reason: str
    since_ns: int
    reverted: bool = False


class CduHolds:
    """The CDUs held now, by index into the limits' CDU order."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self.held: dict[int, CduHold] = {}

    def update(self, now_ns: int, bad: dict[int, tuple[str, str]]) -> tuple[list[int], list[int]]:
        """Hold the CDUs in ``bad`` (index -> (kind, reason)), release the others; the started and cleared ones."""
        started = [i for i in bad if i not in self.held]
        cleared = [i for i in self.held if i not in bad]
        for i in cleared:
            del self.held[i]
        for i, (kind, reason) in bad.items():
            h = self.held.get(i)
            if h is None:
                self.held[i] = CduHold(kind, reason, now_ns)
            else:  # the episode continues (its clock too) whatever the latest reason
                h.kind, h.reason = kind, reason
        return started, cleared

    def apply(
        self, sp: Setpoints, prev: Setpoints, safe: Setpoints, now_ns: int, hold_revert_s: float
    ) -> tuple[Setpoints, list[int]]:
        """``sp`` with the held CDUs' setpoints held (or at their safe defaults once held ``hold_revert_s``), and the
        CDUs reverting at this decision."""
        tcs, dp = sp.tcs_c.astype(np.float64).copy(), sp.dp_kpa.astype(np.float64).copy()
        reverting: list[int] = []
        for i, h in self.held.items():
            if h.reverted or (now_ns - h.since_ns) / 1e9 >= hold_revert_s:
                if not h.reverted:
                    reverting.append(i)
                h.reverted = True
                tcs[i], dp[i] = safe.tcs_c[i], safe.dp_kpa[i]
                continue
            # A setpoint the devices do not report and the supervisor never wrote is held at its safe default.
            pt = float(prev.tcs_c[i]) if math.isfinite(prev.tcs_c[i]) else float(safe.tcs_c[i])
            pd = float(prev.dp_kpa[i]) if math.isfinite(prev.dp_kpa[i]) else float(safe.dp_kpa[i])
            if h.kind == INPUTS:
                tcs[i], dp[i] = pt, pd
            else:
                tcs[i], dp[i] = min(float(tcs[i]), pt), max(float(dp[i]), pd)
        return Setpoints(tcs, dp, sp.fws_c, sp.chw_c), reverting

    def reverted(self) -> list[int]:
        """The held CDUs at (or going to) their safe defaults."""
        return [i for i, h in self.held.items() if h.reverted]

    def mask(self, kind: str | None = None) -> Mask:
        """Per CDU: whether it is held (of ``kind``, or of any kind)."""
        m = np.zeros(len(self.names), dtype=np.bool_)
        for i, h in self.held.items():
            m[i] = kind is None or h.kind == kind
        return m

    def record(self, now_ns: int) -> dict[str, dict[str, object]]:
        """For the decision's audit line: each held CDU's kind, reason, start, duration and action."""
        return {
            self.names[i]: {
                "kind": h.kind,
                "reason": h.reason,
                "since": format_ns(h.since_ns),
                "held_s": round((now_ns - h.since_ns) / 1e9, 1),
                "action": "revert" if h.reverted else ("hold" if h.kind == INPUTS else "no-warmer"),
            }
            for i, h in sorted(self.held.items())
        }


class Lockout:
    """After a guard action: the guarded CDUs no warmer and at no less dp, the plant no warmer, until ``until_ns``."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self.until_ns = 0
        self.tcs_max: Arr = np.full(len(names), np.nan)  # NaN: not locked
        self.dp_min: Arr = np.full(len(names), np.nan)
        self.fws_max = math.nan
        self.chw_max = math.nan
        self.source = ""

    def active(self, now_ns: int) -> bool:
        """Whether a lock-out is in force at ``now_ns``."""
        return now_ns < self.until_ns

    def arm(self, now_ns: int, seconds: float, left: Setpoints, guarded: Mask, source: str) -> None:
        """Lock the ``guarded`` CDUs and the plant at what the guard ``left`` for ``seconds`` (merged with a lock-out
        still in force: the colder bound of the two, the later end)."""
        if not self.active(now_ns):
            self.tcs_max[:], self.dp_min[:], self.fws_max, self.chw_max = np.nan, np.nan, math.nan, math.nan
        self.tcs_max = np.where(guarded, np.fmin(self.tcs_max, left.tcs_c), self.tcs_max)
        self.dp_min = np.where(guarded, np.fmax(self.dp_min, left.dp_kpa), self.dp_min)
        self.fws_max = float(np.fmin(self.fws_max, left.fws_c))
        self.chw_max = float(np.fmin(self.chw_max, left.chw_c))
        self.until_ns = max(self.until_ns, now_ns + int(seconds * 1e9))
        self.source = source

    def apply(self, sp: Setpoints, now_ns: int) -> tuple[Setpoints, list[str]]:
        """``sp`` no warmer and at no less dp than the lock-out allows, and the points it limited."""
        if not self.active(now_ns):
            return sp, []
        tcs, dp = np.fmin(sp.tcs_c, self.tcs_max), np.fmax(sp.dp_kpa, self.dp_min)
        fws = float(np.fmin(sp.fws_c, self.fws_max))
        chw = float(np.fmin(sp.chw_c, self.chw_max)) if math.isfinite(sp.chw_c) else sp.chw_c
        limited = [f"{n}.tcs" for n, a, b in zip(self.names, sp.tcs_c, tcs, strict=True) if b < a - 1e-9]
        limited += [f"{n}.dp" for n, a, b in zip(self.names, sp.dp_kpa, dp, strict=True) if b > a + 1e-9]
        limited += ["plant.fws"] if fws < sp.fws_c - 1e-9 else []
        limited += ["plant.chw"] if math.isfinite(sp.chw_c) and chw < sp.chw_c - 1e-9 else []
        return Setpoints(tcs, dp, fws, chw), limited

    def record(self, now_ns: int, limited: list[str]) -> dict[str, object]:
        """For the decision's audit line: until when, which CDUs, why, and what it limited in this decision."""
        return {
            "until": format_ns(self.until_ns),
            "source": self.source,
            "limited": limited,
            "cdus": [n for n, t in zip(self.names, self.tcs_max, strict=True) if math.isfinite(t)],
        }


def keep_approach(sp: Setpoints, prev: Setpoints, limits: Limits) -> Setpoints:
    """``sp`` with the plant's FWS lowered (within its bounds and rate limit) where a held, reverted or locked CDU's
    colder TCS would otherwise sit below FWS + the CDU approach (the hard-limit check would refuse the decision)."""
    need = float(np.min(sp.tcs_c)) - limits.cfg.cdu_approach_k
    if not math.isfinite(need) or sp.fws_c <= need:
        return sp
    floor = limits.fws_lo
    if math.isfinite(prev.fws_c):
        floor = max(floor, prev.fws_c - limits.cfg.max_step_fws_k)
    return Setpoints(sp.tcs_c, sp.dp_kpa, max(need, floor), sp.chw_c)


_PER_CDU = ("gpu_max_c", "gpu_util_pct", "tcs_supply_c", "valve_pct", "heat_kw")


def fill_held(snap: Snapshot, bad: Mask, last: Snapshot | None, held: Setpoints) -> Snapshot:
    """``snap`` as the core should see it: each CDU with bad inputs shows its readings from ``last`` (the last
    snapshot the core saw; before any, or where that is NaN too, the worst of the good CDUs: the hottest GPU, the
    highest load) and its ``held`` setpoints, so the core sees finite values everywhere; ``snap`` itself if none."""
    if not bad.any():
        return snap
    ok = ~bad
    filled: dict[str, Arr] = {}
    for name in _PER_CDU:
        now: Arr = getattr(snap, name)
        good = now[ok & np.isfinite(now)]
        worst = float(good.max()) if good.size else math.nan
        old: Arr = getattr(last, name) if last is not None else np.full_like(now, worst)
        filled[name] = np.where(bad, np.where(np.isfinite(old), old, worst), now)
    cur = snap.current
    current = Setpoints(
        np.where(bad, held.tcs_c, cur.tcs_c), np.where(bad, held.dp_kpa, cur.dp_kpa), cur.fws_c, cur.chw_c
    )
    return replace(snap, current=current, **filled)  # type: ignore[arg-type]
