"""Sample quality: every value is good, uncertain or bad with a reason (DESIGN.md §3).

Checks, in order of precedence (the first that applies gives the reason):
read failed (exception reply, timeout, bad OPC-UA status) → bad; NaN or ±inf → bad (no instrument reads infinity: a
hostile or broken server's value, never published as good); device sentinel → bad;
stuck (a ``must_move`` point unchanged for N polls) → uncertain; outside the profile's range → uncertain;
counter reset → uncertain. A counter wrap is handled, not flagged: the raw counter is published as the device shows
it (the historian's ``counter_deltas`` adds the modulus back), the wrapping sample says so in its reason, and
:attr:`QualityTracker.counter_delta` holds the wrap-corrected increase of the last poll.
All checks run on whole arrays; the reason list is only built when something is flagged.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from operator import itemgetter, le
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from aidc.model import Quality
from aidc.profiles import Point

if TYPE_CHECKING:
    from collectors._fastpoll import Poll

F64 = npt.NDArray[np.float64]
U8 = npt.NDArray[np.uint8]
STUCK_POLLS = 5
STALE_INTERVALS = 3

GOOD, UNCERTAIN, BAD = int(Quality.GOOD), int(Quality.UNCERTAIN), int(Quality.BAD)


def _picker(indices: Sequence[int]) -> Callable[[Sequence[float]], Sequence[float]] | None:
    """A C-level function picking ``indices`` out of a sequence as a tuple (None: no indices)."""
    if not indices:
        return None
    if len(indices) == 1:  # itemgetter of one index returns the item itself
        i = indices[0]
        return lambda v: (v[i],)
    return itemgetter(*indices)


def shared_floats(values: Sequence[float]) -> list[float]:
    """``values`` as a list in which equal numbers are one float object (a poll's hot path then touches a few
    objects, not one per point, e.g. one range shared by every outlet); ``0.0`` and ``-0.0`` stay apart."""
    seen: dict[tuple[float, float], float] = {}
    return [seen.setdefault((v, math.copysign(1.0, v)), v) for v in map(float, values)]


class QualityTracker:
    """Per-device quality state over a fixed layout of samples (points, arrays expanded)."""

    def __init__(
        self,
        points: Sequence[Point],
        *,
        sentinels: Sequence[float] = (),
        stuck_polls: int = STUCK_POLLS,
        list_order: Sequence[int] | None = None,
    ) -> None:
        """``list_order``: the order (indices into ``points``) in which :meth:`clean_list` is given the values
        (default: the points' own order); every other method takes them in the points' order."""
        self.n = len(points)
        rng = [p.range or (np.nan, np.nan) for p in points]
        self.lo = np.array([r[0] for r in rng], dtype=np.float64)
        self.hi = np.array([r[1] for r in rng], dtype=np.float64)
        self.must_move = np.array([p.must_move for p in points], dtype=bool)
        self.counter = np.array([p.counter for p in points], dtype=bool)
        self.modulus = np.array([p.modulus or np.nan for p in points], dtype=np.float64)
        self.sentinels = np.array(sentinels, dtype=np.float64)
        self.stuck_polls = stuck_polls
        self.names = [p.name for p in points]
        self._last = np.full(self.n, np.nan)
        self._unchanged = np.zeros(self.n, dtype=np.int64)
        self._counter_prev = np.full(self.n, np.nan)
        # The fast path swaps two previous-value buffers (NaN for every non-counter point) instead of computing
        # the increase each poll: :attr:`counter_delta` subtracts them only when asked for.
        self._counter_spare = np.full(self.n, np.nan)
        self._delta: F64 | None = np.full(self.n, np.nan)
        self._has_counters = bool(self.counter.any())
        # For the all-good fast path: a missing range is the finite float range, so one comparison also rejects
        # NaN and ±inf; a counter's floor is also its previous value, so the same comparison catches a reset or a wrap.
        big = np.finfo(np.float64).max
        self._lo = np.where(np.isnan(self.lo), -big, self.lo)
        self._hi = np.where(np.isnan(self.hi), big, self.hi)
        self._floor = self._lo.copy()
        self._moving = np.flatnonzero(self.must_move)
        # Python mirrors of the state for :meth:`clean_list` (the Modbus poll's hot path); whichever side ran last
        # is ahead, and the other side catches up only when it runs next (:meth:`_numpy_state`, :meth:`_py_state`).
        # The Python side keeps the static floors and checks counters against their previous values apart (one
        # ``itemgetter`` picks them out), so a clean poll changes no list in place.
        order = list(range(self.n)) if list_order is None else list(list_order)
        if sorted(order) != list(range(self.n)):
            raise ValueError(f"list_order is not an order of the {self.n} points: {order}")
        at = {point: k for k, point in enumerate(order)}  # a point's position in clean_list's values
        self._lo_l: list[float] = shared_floats(self._lo[order].tolist())
        self._hi_l: list[float] = shared_floats(self._hi[order].tolist())
        self._moving_l: list[int] = self._moving.tolist()
        self._moving_at: list[int] = [at[i] for i in self._moving_l]
        self._counters_l: list[int] = np.flatnonzero(self.counter).tolist()
        self._cget = _picker([at[i] for i in self._counters_l])
        self._last_m: list[float] = [math.nan] * len(self._moving_l)
        self._unch_m: list[int] = [0] * len(self._moving_l)
        self._prev_c: Sequence[float] = [math.nan] * len(self._counters_l)
        self._prev2_c: Sequence[float] = list(self._prev_c)
        self._py_ahead = self._np_ahead = False
        self._fast: Poll | None = None  # the C poll keeping the Python side's state (:meth:`attach`)
        self._good = np.zeros(self.n, dtype=np.uint8)
        self._good.flags.writeable = False  # shared by every all-good poll: callers copy it into their batch

    def assess(
        self,
        raw: F64,
        values: F64,
        failures: Sequence[tuple[Sequence[int], str]] = (),
    ) -> tuple[F64, U8, list[str]]:
        """Quality-check one poll: returns published values, qualities and reasons ([] when all good)."""
        self._numpy_state()
        if not failures:
            clean = self._assess_clean(raw, values)
            if clean is not None:
                return clean
        return self._assess(raw, values, failures)

    def _assess_clean(self, raw: F64, values: F64) -> tuple[F64, U8, list[str]] | None:
        """The usual poll, every sample good, in a few array operations; None if any check needs a closer look.

        The qualities returned are a shared read-only array of zeros.
        """
        if len(self.sentinels) and np.isin(raw, self.sentinels).any():
            return None
        return (values, self._good, []) if self.clean(values) else None

    def clean(self, values: F64) -> bool:
        """Whether every sample of the poll is good, with the state updated as :meth:`assess` would; False (and
        nothing changed) if any check needs a closer look. Sentinels are not checked here (they need the raw
        values): a caller with a tracker that has sentinels uses :meth:`assess`.

        State changes only when the poll is clean, so :meth:`_assess` then starts from the same state.
        Only the stuck counts of ``must_move`` points are kept up to date here: no other point uses them.
        """
        # count_nonzero is a direct C call (``ndarray.all`` goes through a Python wrapper); NaN fails both tests.
        self._numpy_state()
        n = self.n
        if np.count_nonzero(np.greater_equal(values, self._floor)) != n:
            return False
        if np.count_nonzero(np.less_equal(values, self._hi)) != n:
            return False
        moving = self._moving
        if len(moving):
            moved = values[moving]
            unchanged = np.where(moved != self._last[moving], 0, self._unchanged[moving] + 1)
            if (unchanged >= self.stuck_polls).any():
                return False
            self._unchanged[moving] = unchanged
            self._last[moving] = moved
        if self._has_counters:
            # NaN where there is no previous value and for every non-counter point (their previous stays NaN).
            prev, nxt = self._counter_prev, self._counter_spare
            np.copyto(nxt, values, where=self.counter)
            self._counter_prev, self._counter_spare, self._delta = nxt, prev, None
            np.copyto(self._floor, values, where=self.counter)  # values >= lo was checked: max(lo, value)
        return True

    def clean_list(self, values: list[float]) -> bool:
        """:meth:`clean` on the poll's engineering values as Python numbers in ``list_order``, with the same
        comparisons and the same state changes (kept in Python lists; see ``_py_ahead``): for a few dozen points, a
        few C-level ``map`` passes cost less in a real poll than the numpy calls (each wakes numpy's dispatch on cold
        caches). Sentinels are not checked here either. A counter with no previous value yet (NaN) takes the full
        checks."""
        if self._np_ahead:
            self._py_state()
        elif self._fast is not None:
            self._pull_fast()
        if not (all(map(le, self._lo_l, values)) and all(map(le, values, self._hi_l))):  # NaN fails both
            return False
        cget = self._cget
        if cget is not None:
            cur = cget(values)
            if not all(map(le, self._prev_c, cur)):  # a reset or a wrap (or no previous value): a closer look
                return False
        moving = self._moving_at
        if moving:
            last, unch, stuck = self._last_m, self._unch_m, self.stuck_polls
            new = [0 if values[i] != last[k] else unch[k] + 1 for k, i in enumerate(moving)]
            if max(new) >= stuck:
                return False
            self._unch_m, self._last_m = new, [values[i] for i in moving]
        if cget is not None:
            self._prev2_c, self._prev_c = self._prev_c, cur
        self._py_ahead = True
        if self._fast is not None:  # only where a test mixes the two: the C poll takes the state
            self._fast.set_state(self._last_m, self._unch_m, self._prev_c, self._prev2_c)
        return True

    # --- the C poll (collectors/fastpoll.py) ------------------------------------------------------------

    @property
    def lo_bounds(self) -> list[float]:
        """Per point, the lowest good value (a missing range: the lowest finite float)."""
        return self._lo.tolist()

    @property
    def hi_bounds(self) -> list[float]:
        """Per point, the highest good value (a missing range: the highest finite float)."""
        return self._hi.tolist()

    @property
    def moving_points(self) -> list[int]:
        """Indices of the ``must_move`` points."""
        return list(self._moving_l)

    @property
    def counter_points(self) -> list[int]:
        """Indices of the counter points."""
        return list(self._counters_l)

    def attach(self, poll: Poll) -> None:
        """Let ``poll`` (a C poll over these points in their own order) take the clean polls: it then keeps the
        Python side's state (stuck counts, counters' history), handed over whichever side runs next."""
        if poll.n != self.n:
            raise ValueError(f"a C poll of {poll.n} points for a tracker of {self.n}")
        self._fast = poll
        self._py_state()

    def clean_columns(
        self, registers: bytes | bytearray, health: Sequence[float], ts: int
    ) -> tuple[npt.NDArray[np.int64], F64] | None:
        """The attached C poll of ``registers``: a clean poll's timestamp and value columns (the points in their
        own order, then ``health``), with the state updated as :meth:`clean_list` would; None and nothing changed
        if a sample needs a closer look."""
        fast = self._fast
        assert fast is not None, "no C poll attached"
        if self._np_ahead:
            self._py_state()
        return fast.poll(registers, health, ts)

    def _pull_fast(self) -> None:
        """Take the Python side's state back from the attached C poll if a poll there changed it."""
        fast = self._fast
        if fast is not None and fast.ahead:
            self._last_m, self._unch_m, self._prev_c, self._prev2_c = fast.state()
            fast.ahead = 0
            self._py_ahead = True

    def _numpy_state(self) -> None:
        """Bring the numpy state up to the Python path's (only after :meth:`clean_list` or the C poll ran last);
        mark numpy ahead."""
        if self._fast is not None:
            self._pull_fast()
        if self._py_ahead:
            self._py_ahead = False
            moving = self._moving
            self._last[moving] = self._last_m
            self._unchanged[moving] = self._unch_m
            c = self._counters_l
            if c:
                self._counter_prev[c] = self._prev_c
                self._counter_spare[c] = self._prev2_c
                prev = self._counter_prev
                self._floor = np.where(np.isnan(prev), self._lo, np.fmax(self._lo, prev))
            self._delta = None
        self._np_ahead = True

    def _py_state(self) -> None:
        """Bring the Python mirrors up to the numpy state (only after a numpy path ran last)."""
        self._np_ahead = False
        self._last_m = self._last[self._moving].tolist()
        self._unch_m = self._unchanged[self._moving].tolist()
        c = self._counters_l
        self._prev_c = self._counter_prev[c].tolist()
        self._prev2_c = self._counter_spare[c].tolist()
        if self._fast is not None:
            self._fast.set_state(self._last_m, self._unch_m, self._prev_c, self._prev2_c)

    @property
    def counter_delta(self) -> F64:
        """Per point, the wrap-corrected increase of a counter over the last poll (NaN: no counter or no value)."""
        self._numpy_state()
        if self._delta is None:  # the fast path's: new minus previous (both NaN for every non-counter point)
            self._delta = self._counter_prev - self._counter_spare
        return self._delta

    def _assess(
        self, raw: F64, values: F64, failures: Sequence[tuple[Sequence[int], str]]
    ) -> tuple[F64, U8, list[str]]:
        """Every check, with reasons."""
        q = np.zeros(self.n, dtype=np.uint8)
        reasons: list[str] | None = None
        failed = np.zeros(self.n, dtype=bool)
        if failures:
            reasons = [""] * self.n
            for idx, why in failures:
                for i in idx:
                    failed[i] = True
                    reasons[i] = why
            values = values.copy()
            values[failed] = np.nan
            q[failed] = BAD
        fresh = ~failed
        nan = ~np.isfinite(values) & fresh
        sentinel = np.isin(raw, self.sentinels) & fresh if len(self.sentinels) else np.zeros(self.n, dtype=bool)
        ok = fresh & ~nan & ~sentinel

        # Stuck: count consecutive polls with an unchanged value, only for points that must move.
        changed = values != self._last
        self._unchanged = np.where(ok, np.where(changed, 0, self._unchanged + 1), self._unchanged)
        self._last = np.where(ok, values, self._last)
        stuck = self.must_move & ok & (self._unchanged >= self.stuck_polls)
        with np.errstate(invalid="ignore"):
            out_of_range = ok & ((values < self.lo) | (values > self.hi))

        wrapped = reset = np.zeros(self.n, dtype=bool)
        if self._has_counters:
            values, wrapped, reset = self._counters(values, ok & self.counter)

        flagged = nan | sentinel | stuck | out_of_range | wrapped | reset
        if not flagged.any():
            return values, q, reasons or []
        if sentinel.any():
            values = values.copy()
            values[sentinel] = np.nan
        if reasons is None:
            reasons = [""] * self.n
        for i in np.flatnonzero(flagged).tolist():
            if nan[i]:
                q[i], reasons[i] = BAD, "NaN" if np.isnan(values[i]) else f"not finite: {values[i]:g}"
            elif sentinel[i]:
                q[i], reasons[i] = BAD, f"sentinel {raw[i]:g}"
            elif stuck[i]:
                q[i], reasons[i] = UNCERTAIN, f"stuck: unchanged for {self._unchanged[i]} polls"
            elif out_of_range[i]:
                q[i], reasons[i] = UNCERTAIN, f"out of range [{self.lo[i]:g}, {self.hi[i]:g}]"
            elif reset[i]:
                q[i], reasons[i] = UNCERTAIN, "counter reset"
            elif wrapped[i]:
                reasons[i] = f"counter wrapped at {self.modulus[i]:g}"
        if nan.any():  # a bad sample carries no value (±inf stays in its reason)
            values = values.copy()
            values[nan] = np.nan
        return values, q, reasons

    def _counters(
        self, values: F64, ok: npt.NDArray[np.bool_]
    ) -> tuple[F64, npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
        """Classify counter drops: more than half the modulus is a wrap, any other drop a reset (counted from 0)."""
        prev = self._counter_prev
        with np.errstate(invalid="ignore"):
            dropped = ok & (values < prev)
            wrapped = dropped & ((prev - values) > self.modulus / 2)
            reset = dropped & ~wrapped
            delta = np.where(wrapped, values - prev + self.modulus, np.where(reset, values, values - prev))
        self._delta = np.where(ok & self.counter, delta, np.nan)
        self._counter_prev, self._counter_spare = np.where(ok, values, prev), prev
        self._floor = np.where(np.isnan(self._counter_prev), self._lo, np.fmax(self._lo, self._counter_prev))
        return values, wrapped, reset

    def failed(self, reason: str) -> tuple[F64, U8, list[str]]:
        """Every sample bad with one reason (device unreachable, stale)."""
        return np.full(self.n, np.nan), np.full(self.n, BAD, dtype=np.uint8), [reason] * self.n
