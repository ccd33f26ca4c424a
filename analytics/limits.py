"""How much work one question may ask for, stated once for ``aidc pue`` / ``aidc query`` and the job's REST API.

A PUE report costs about the same per calendar period whether or not there is data in it (each period reads its
meters and computes coverage: 0.1 to 0.4 s per period measured here), so a year of hourly rows is 15 to 60 minutes
of work and ten years of daily rows 6 to 24 minutes. The limits keep one question within its time budget:

============  ==========================  ===============
``period``    longest ``from`` .. ``to``  periods at most
============  ==========================  ===============
hour          31 days                     744
day           366 days                    366
month, year   any representable range     (a century: 1,200 months)
none          3,660 days (ten years)      one report
============  ==========================  ===============

(one report over the whole range reads every counter reading in it at once, hence the ten years). Beyond them the
question is refused at once with a message naming the limit. Within them a question still runs under a
:class:`Budget`: the REST API gives each one :data:`PUE_TIME_BUDGET_S` and stops it between periods when the time
is up or the client has gone (503 saying how far it got); the command line on its own store runs to the end
(Ctrl-C stops it).
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import TYPE_CHECKING, Any

import pandas as pd

from aidc.clock import parse_cli_time
from aidc.errors import AidcError, ConfigError

if TYPE_CHECKING:
    from aidc.config import Site
    from historian import Historian

DAY = pd.Timedelta(days=1)
PUE_MAX_SPAN: dict[str | None, pd.Timedelta | None] = {
    "hour": 31 * DAY,
    "day": 366 * DAY,
    "month": None,
    "year": None,
    None: 3660 * DAY,
}
ADJECTIVE = {"hour": "hourly", "day": "daily", "month": "monthly", "year": "yearly"}
PUE_TIME_BUDGET_S = 300.0  # the API's budget per PUE question (744 hourly periods at 0.4 s); the CLI waits longer
_TIME_MIN, _TIME_MAX = pd.Timestamp.min.tz_localize("UTC").ceil("s"), pd.Timestamp.max.tz_localize("UTC").floor("s")


class LimitError(ConfigError):
    """A question over a stated limit; ``field`` names the parameter to change."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


class Stopped(AidcError):
    """A question stopped before its end: its time budget ran out or whoever asked has gone."""


def parse_time(text: str, what: str, now_ns: int | None = None) -> pd.Timestamp:
    """``now``, ``-<n><unit>`` or an ISO time with a zone, as a UTC timestamp; ConfigError (one line) for text
    that is not a time or lies outside the times a timestamp can hold (about 1677 to 2262)."""
    try:
        return pd.Timestamp(parse_cli_time(text, what, now_ns), unit="ns", tz="UTC")
    except (OverflowError, ValueError) as exc:  # pandas' OutOfBoundsDatetime is a ValueError; -nand, -infd too
        if isinstance(exc, AidcError):
            raise
        raise LimitError(
            f"{what} {text!r}: outside the times aidc can represent ({_TIME_MIN:%Y-%m-%d} to {_TIME_MAX:%Y-%m-%d})",
            what.lstrip("-"),
        ) from None


def _days(span: pd.Timedelta) -> str:
    return f"{span / DAY:,.0f} days"


def check_pue(start: pd.Timestamp, end: pd.Timestamp, period: str | None) -> None:
    """Refuse a PUE question over :data:`PUE_MAX_SPAN` with one line naming the limit and what to ask instead."""
    limit = PUE_MAX_SPAN.get(period)
    if limit is None or end - start <= limit:
        return
    asked = f"from {start.isoformat()} to {end.isoformat()} is {_days(end - start)}"
    if period is None:
        raise LimitError(
            f"{asked}; one report covers at most {_days(limit)}: ask per month or year (period), or a shorter range",
            "from",
        )
    span = end - start
    coarser = next(p for p in ("day", "month") if (cap := PUE_MAX_SPAN[p]) is None or span <= cap)
    raise LimitError(
        f"{asked}; {ADJECTIVE[period]} rows cover at most {_days(limit)} per question: ask for period {coarser}, "
        "or a shorter range",
        "period",
    )


class Budget:
    """When a question must stop: a deadline (None: none) and a stop flag another thread may set with a reason."""

    def __init__(self, seconds: float | None = None) -> None:
        self.seconds = seconds
        self._deadline = None if seconds is None else time.monotonic() + seconds
        self._stop = threading.Event()
        self._why = ""

    def stop(self, why: str) -> None:
        """Make the next :meth:`check` raise :class:`Stopped` with ``why`` (the first reason given is kept)."""
        if not self._stop.is_set():
            self._why = why
            self._stop.set()

    @property
    def stopped(self) -> bool:
        """Stop was asked for, or the deadline has passed."""
        return self._stop.is_set() or (self._deadline is not None and time.monotonic() > self._deadline)

    def check(self, progress: str = "") -> None:
        """Raise :class:`Stopped` (naming ``progress``, e.g. "12 of 744 hourly periods done") when it must stop."""
        if self._deadline is not None and time.monotonic() > self._deadline:
            self.stop(f"stopped after its time limit of {self.seconds:g} s")
        if self._stop.is_set():
            done = f" ({progress})" if progress else ""
            raise Stopped(f"{self._why}{done}: ask for a shorter range or a coarser period")


def pue_rows(
    hist: Historian,
    site: Site,
    start: pd.Timestamp,
    end: pd.Timestamp,
    period: str | None,
    category: int | None,
    budget: Budget | None = None,
    lock: Any = None,
) -> list[Any]:
    """:func:`analytics.answers.pue` within the limits, one calendar period at a time so ``budget`` can stop it
    between periods; ``lock`` (a context manager) is held per period only, so other readers get their turn."""
    from contextlib import nullcontext

    from analytics import answers
    from analytics.energy.pue import period_edges

    check_pue(start, end, period)
    budget = budget or Budget()
    guard = lock if lock is not None else nullcontext()
    if period is None:
        budget.check()
        with guard:
            return answers.pue(hist, site, start, end, None, category)
    edges = list(itertools.pairwise(period_edges(start, end, period, site.config.site.timezone)))
    rows: list[Any] = []
    for i, (a, b) in enumerate(edges):
        budget.check(f"{i:,} of {len(edges):,} {ADJECTIVE[period]} periods done")
        with guard:
            # One period's edges give answers.pue exactly that period: the same report it makes in a longer range.
            rows += answers.pue(hist, site, a, b, period, category)
    return rows


WINDOW_HINTS = ("1m", "5m", "15m", "1h", "1d")


def series_range(
    hist: Historian, text: str, start: pd.Timestamp, end: pd.Timestamp, window: str | None, agg: str | None
) -> list[Any]:
    """:func:`analytics.answers.series_range`, but a raw range is counted first (one row per series, in the store)
    and refused with one line when it holds more than ``MAX_ROWS`` samples, before a single row is loaded."""
    from analytics import answers
    from historian import parse_window

    if window is None and agg is None and end > start:
        sel = answers.selector(text)
        whole = -(-int((end - start).value) // 1_000_000_000)  # the range in whole seconds: one count per series
        counts = hist.query(sel, start, end, window=f"{whole}s", agg="count")
        total = int(counts["value"].fillna(0).sum())
        if total > answers.MAX_ROWS:
            n_series = max(1, int(counts["series"].nunique()))
            span = int((end - start).value)
            fits = [w for w in WINDOW_HINTS if n_series * -(-span // parse_window(w)) <= answers.MAX_ROWS]
            hint = f"aggregate with a window (--window {fits[0]} gives at most " if fits else ""
            if fits:
                hint += f"{n_series * -(-span // parse_window(fits[0])):,} rows)"
            raise LimitError(
                f"at least {total:,} samples of {n_series:,} series match from {start.isoformat()} to "
                f"{end.isoformat()}, {total - answers.MAX_ROWS:,} over the limit of {answers.MAX_ROWS:,} rows, so none "
                "were read: narrow the selector or the range" + (f", or {hint}" if hint else ""),
                "from",
            )
    return answers.series_range(hist, text, start, end, window, agg)
