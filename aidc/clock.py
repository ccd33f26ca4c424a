"""Simulation-aware time shared by the simulators and the app.

A :class:`ScaledClock` maps wall time to simulated time: ``sim = sim_start + (wall - wall_start) * speed``.
Two processes that hold the same three numbers agree on the time without talking to each other; the
simulator publishes them in ``<data_dir>/clock.json`` and the app reads that file, so the whole stack can run
``--speed 60`` together. A :class:`SteppedClock` is advanced explicitly, for fast in-process evaluations.
Everything is UTC nanoseconds since the epoch.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from aidc.errors import ConfigError

NS = 1_000_000_000


class Clock(Protocol):
    """Anything that tells simulated time."""

    speed: float

    def now_ns(self) -> int:
        """Current simulated time, UTC ns."""
        ...


def parse_time(text: str, *, what: str = "time") -> int:
    """ISO-8601 text (``Z`` or offset; naive means UTC) to UTC ns; ConfigError names the bad value."""
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{what}: {text!r} is not an ISO-8601 time") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * NS)


_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_cli_time(text: str, what: str, now_ns: int | None = None) -> int:
    """A time given on the command line to UTC ns: ISO-8601 with a zone, ``now``, or relative (``-1h``, ``-30d``).

    Naive ISO times are refused rather than guessed: aidc stores UTC and a site's local time is ambiguous.
    """
    now = time.time_ns() if now_ns is None else now_ns
    if text == "now":
        return now
    if text.startswith("-") and text[-1:] in _UNITS_S:
        try:
            amount = float(text[1:-1])
        except ValueError:
            raise ConfigError(f"{what} {text!r}: expected e.g. -15m, -1h, -30d") from None
        return now - int(amount * _UNITS_S[text[-1]] * NS)
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{what} {text!r}: expected ISO 8601 with a zone, 'now' or e.g. -1h") from None
    if dt.tzinfo is None:
        raise ConfigError(f"{what} {text!r}: give a time zone (e.g. 2026-07-01T00:00Z); aidc stores UTC")
    return int(dt.timestamp() * NS)


def format_ns(ts_ns: int) -> str:
    """UTC ns to ISO-8601 with ``Z``."""
    return datetime.fromtimestamp(ts_ns / NS, tz=UTC).isoformat().replace("+00:00", "Z")


@dataclass
class ScaledClock:
    """Simulated time running ``speed`` times faster than wall time from a common origin."""

    sim_start_ns: int
    wall_start_ns: int
    speed: float = 1.0

    @classmethod
    def starting_now(cls, sim_start_ns: int | None = None, speed: float = 1.0) -> ScaledClock:
        """A clock whose simulated time starts at ``sim_start_ns`` (default: now) at this wall instant."""
        wall = time.time_ns()
        return cls(sim_start_ns=wall if sim_start_ns is None else sim_start_ns, wall_start_ns=wall, speed=speed)

    def now_ns(self) -> int:
        """Current simulated time."""
        return self.sim_start_ns + int((time.time_ns() - self.wall_start_ns) * self.speed)

    def wall_seconds(self, sim_seconds: float) -> float:
        """Wall seconds that ``sim_seconds`` of simulated time take."""
        return sim_seconds / self.speed

    async def sleep(self, sim_seconds: float) -> None:
        """Sleep for a simulated duration."""
        await asyncio.sleep(max(0.0, sim_seconds / self.speed))

    def save(self, path: Path) -> None:
        """Publish the clock atomically so other processes can share it."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self)), encoding="utf-8")
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> ScaledClock:
        """Read a published clock; ConfigError names the file if it is missing or malformed."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(int(data["sim_start_ns"]), int(data["wall_start_ns"]), float(data["speed"]))
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read clock: {exc.strerror}") from None
        except (ValueError, KeyError, TypeError):
            raise ConfigError(f"{path}: malformed clock file") from None


@dataclass
class SteppedClock:
    """A clock advanced explicitly by the caller (in-process evaluations, tests)."""

    t_ns: int
    speed: float = 1.0

    def now_ns(self) -> int:
        """Current simulated time."""
        return self.t_ns

    def advance(self, seconds: float) -> int:
        """Move time forward and return the new time."""
        self.t_ns += int(seconds * NS)
        return self.t_ns


CLOCK_FILE = "clock.json"


def site_clock(data_dir: Path) -> Clock:
    """The facility's clock, as the main job keeps it: the simulator's published clock in ``<data_dir>/clock.json``
    (a simulated site runs on simulated time), else wall time. Commands that resolve ``now`` use it, so ``--to now``
    means the same instant for them as for the job."""
    path = data_dir / CLOCK_FILE
    return ScaledClock.load(path) if path.is_file() else ScaledClock.starting_now()
