"""AI load scenarios for the control evaluation: hall-wide load patterns as functions of absolute UTC time.

``aidc evaluate-control --scenario NAME`` drives every rack from one of these instead of the site's own workload.
Every scenario is a pure function of absolute UTC time and the seed (never of when a facility started), so every
controller, each on a fresh facility per evaluated day with a warm-up before it, sees exactly the same load at the
same instant. Random event times are drawn per UTC calendar year from ``(seed, scenario, year)`` when a year is
first asked for, and looked up by bisection, so a call costs a few microseconds plus one numpy pass over racks.

* **steady**: the site's own workload (:mod:`simulators.workload`); :func:`scenario_workload` returns None.
* **ai-steps**: the whole hall steps together between idle (5 %) and full (95 %), as a training job starts, stalls
  or fails. Dwell at each level: 10 min + an exponential draw, mean 3 h in all; each step is a linear ramp of
  5-30 s. Each year starts idle on 1 January 00:00 UTC and ends in the state it started (the last step of a year
  that would leave it at full is dropped). About half the time is at full.
* **checkpoint-stalls**: a hall-wide training job at 93 %. Every 30-60 min (uniform) it checkpoints: every rack
  drops together to 15-25 % for 1-4 min. Job failures arrive at random (exponential, mean one a day): the hall
  falls to idle (5 %) for 10-40 min, then the job restarts. Ramps 5-30 s.
* **mixed**: the first half of the racks (in the site's rack order, so whole CDUs where racks are grouped by CDU)
  run the checkpoint-stalls job (drawn independently of the checkpoint-stalls scenario's own stream); the rest
  serve inference on the diurnal curve of :func:`simulators.workload.inference_level` in the site's time zone.
* **trace-replay**: the bundled measured GPU power traces (``data/gpu_power/*_usage_stats.txt.gz``, hourly, see
  ``data/README.md``), mapped to utilisation by their idle-to-peak power range as :mod:`simulators.trace` does
  (``column="powerave"``). Rack i replays trace i mod 2, anchored at the Unix epoch and offset by a seeded 0-24 h
  per rack; the trace loops over its span.

Every scenario but trace-replay adds a percent or two of per-rack variation: a gain of 0.99-1.01 and two slow
sinusoids (±1 %, ±0.5 %) with seeded phases. Same seed: the same series; another seed: other event times.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from aidc.config import Site
from aidc.errors import ConfigError, DataError
from simulators.trace import Trace, load_trace
from simulators.workload import TWO_PI, UtilisationSource, inference_level

Arr = npt.NDArray[np.float64]
SCENARIOS: tuple[str, ...] = ("steady", "ai-steps", "checkpoint-stalls", "mixed", "trace-replay")
TRACE_DIR = Path(__file__).resolve().parents[1] / "data" / "gpu_power"
TRACE_FILES = ("cbsugpu05_usage_stats.txt.gz", "cbsugpu07_usage_stats.txt.gz")

IDLE = 0.05
FULL = 0.95
TRAIN = 0.93
MIN_DWELL_S = 600.0
MEAN_DWELL_S = 3 * 3600.0
RAMP_S = (5.0, 30.0)
CKPT_EVERY_S = (1800.0, 3600.0)
CKPT_LEN_S = (60.0, 240.0)
CKPT_LEVEL = (0.15, 0.25)
FAIL_MEAN_S = 86400.0
FAIL_IDLE_S = (600.0, 2400.0)
# Streams keep each scenario's draws independent of the others' for the same seed.
_STREAM = {"ai-steps": 1, "checkpoint-stalls": 2, "mixed": 3, "trace-replay": 4, "jitter": 5}

Knots = tuple[list[float], list[float]]


def _year_bounds(year: int) -> tuple[float, float]:
    """Unix seconds of 1 January 00:00 UTC of ``year`` and of the next year."""
    return datetime(year, 1, 1, tzinfo=UTC).timestamp(), datetime(year + 1, 1, 1, tzinfo=UTC).timestamp()


def _ramp(rng: np.random.Generator) -> float:
    """Length of one step's linear ramp, s."""
    return float(rng.uniform(*RAMP_S))


def _steps_year(rng: np.random.Generator, y0: float, y1: float) -> Knots:
    """ai-steps knots for one year: alternating idle/full dwells, idle at both ends of the year."""
    ts, vs = [y0], [IDLE]
    level, t = IDLE, y0
    events: list[tuple[float, float, float]] = []  # (start, ramp, new level)
    while True:
        t += MIN_DWELL_S + float(rng.exponential(MEAN_DWELL_S - MIN_DWELL_S))
        ramp = _ramp(rng)
        if t + ramp + MIN_DWELL_S > y1:
            break
        level = FULL if level == IDLE else IDLE
        events.append((t, ramp, level))
        t += ramp
    if events and events[-1][2] == FULL:
        events.pop()  # end the year idle: the next year starts idle without a step at midnight
    for start, ramp, new in events:
        ts += [start, start + ramp]
        vs += [vs[-1], new]
    ts.append(y1)
    vs.append(vs[-1])
    return ts, vs


def _stalls_year(rng: np.random.Generator, y0: float, y1: float) -> Knots:
    """checkpoint-stalls knots for one year: a job at TRAIN with synchronised checkpoint dips and failures."""
    ts, vs = [y0], [TRAIN]
    t = y0
    fail = y0 + float(rng.exponential(FAIL_MEAN_S))
    while True:
        ckpt = t + float(rng.uniform(*CKPT_EVERY_S))
        failed = fail < ckpt
        if failed:  # the job fails before its next checkpoint: idle, then restart
            low, hold, start = IDLE, float(rng.uniform(*FAIL_IDLE_S)), fail
        else:
            low, hold, start = float(rng.uniform(*CKPT_LEVEL)), float(rng.uniform(*CKPT_LEN_S)), ckpt
        down, up = _ramp(rng), _ramp(rng)
        end = start + down + hold + up
        if end >= y1:
            break
        ts += [start, start + down, start + down + hold, end]
        vs += [TRAIN, low, low, TRAIN]
        t = end
        if failed:
            fail = end + float(rng.exponential(FAIL_MEAN_S))
        while fail <= t:  # a failure drawn inside a checkpoint dip waits for the job to run again
            fail = t + float(rng.exponential(FAIL_MEAN_S))
    ts.append(y1)
    vs.append(TRAIN)
    return ts, vs


@dataclass
class HallTimeline:
    """One hall-wide level, piecewise linear in time, drawn per UTC calendar year from (seed, stream, year)."""

    build: Callable[[np.random.Generator, float, float], Knots]
    seed: int
    stream: int
    _years: dict[int, Knots] = field(default_factory=dict, repr=False)
    _cur: tuple[float, float, list[float], list[float]] = field(default=(0.0, -1.0, [], []), repr=False)

    def knots(self, year: int) -> Knots:
        """The year's knot times (Unix s) and levels, drawn on first use."""
        if year not in self._years:
            rng = np.random.default_rng([self.seed, self.stream, year])
            self._years[year] = self.build(rng, *_year_bounds(year))
        return self._years[year]

    def level(self, t_s: float) -> float:
        """The hall level at Unix time ``t_s`` (linear between knots)."""
        lo, hi, ts, vs = self._cur
        if not lo <= t_s < hi:
            year = datetime.fromtimestamp(t_s, tz=UTC).year
            ts, vs = self.knots(year)
            self._cur = (ts[0], ts[-1], ts, vs)
        i = bisect.bisect_right(ts, t_s) - 1
        if i >= len(ts) - 1:
            return vs[-1]
        t0, t1 = ts[i], ts[i + 1]
        return vs[i] + (vs[i + 1] - vs[i]) * (t_s - t0) / (t1 - t0) if t1 > t0 else vs[i + 1]


@dataclass
class _Jitter:
    """A percent or two of per-rack variation around a hall level, stateless in time."""

    gain: Arr
    phase: Arr

    @classmethod
    def draw(cls, seed: int, racks: int) -> _Jitter:
        """Per-rack gains and phases from the seed."""
        rng = np.random.default_rng([seed, _STREAM["jitter"]])
        return cls(rng.uniform(0.99, 1.01, racks), rng.uniform(0.0, TWO_PI, racks))

    def apply(self, level: Arr, t_s: float) -> Arr:
        """``level`` (per rack) with gain and jitter, clipped to 0-1."""
        # Periods of 97 s and 661 s (as simulators.workload): not multiples of the 60 s step, so steps sample them.
        wave = 0.01 * np.sin(TWO_PI * t_s / 97.0 + self.phase) + 0.005 * np.sin(TWO_PI * t_s / 661.0 + 2 * self.phase)
        out = level * self.gain + wave
        return np.clip(out, 0.0, 1.0, out=out)


@dataclass
class HallScenario:
    """Every rack follows one hall timeline (ai-steps, checkpoint-stalls)."""

    name: str
    timeline: HallTimeline
    jitter: _Jitter

    def rack_util(self, t_ns: int) -> Arr:
        """Utilisation (0-1) of every rack at a UTC time."""
        t_s = t_ns / 1e9
        return self.jitter.apply(np.full(len(self.jitter.gain), self.timeline.level(t_s)), t_s)


@dataclass
class MixedScenario:
    """Training racks follow a hall timeline; inference racks the diurnal curve in the site's time zone."""

    training: npt.NDArray[np.bool_]
    timeline: HallTimeline
    tz: ZoneInfo
    jitter: _Jitter

    def rack_util(self, t_ns: int) -> Arr:
        """Utilisation (0-1) of every rack at a UTC time."""
        t_s = t_ns / 1e9
        level = np.where(self.training, self.timeline.level(t_s), inference_level(t_ns, self.tz))
        return self.jitter.apply(level, t_s)


@dataclass
class TraceScenario:
    """Rack i replays trace ``which[i]`` at Unix time + ``offset_s[i]`` (looping, as Trace.at), no added jitter."""

    traces: tuple[Trace, ...]
    which: npt.NDArray[np.int64]
    offset_s: Arr

    def __post_init__(self) -> None:
        # Each trace's racks and values, so one call is a few numpy passes whatever the number of racks.
        self._groups = [(np.flatnonzero(self.which == k), tr.util, tr.step_s) for k, tr in enumerate(self.traces)]

    def rack_util(self, t_ns: int) -> Arr:
        """Utilisation (0-1) of every rack at a UTC time."""
        t_s = t_ns / 1e9
        out = np.empty(len(self.which))
        for idx, v, step in self._groups:
            x = ((t_s + self.offset_s[idx]) / step) % len(v)
            i = x.astype(np.int64)
            j = (i + 1) % len(v)
            out[idx] = v[i] + (v[j] - v[i]) * (x - i)
        return out


def _gpu_traces() -> tuple[Trace, ...]:
    """The bundled GPU power traces as utilisation; a clear DataError where they are not installed."""
    paths = [TRACE_DIR / f for f in TRACE_FILES]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise DataError(f"--scenario trace-replay: bundled GPU power trace not found: {', '.join(missing)}")
    return tuple(load_trace(p, column="powerave") for p in paths)


def scenario_workload(name: str, site: Site, *, seed: int) -> UtilisationSource | None:
    """The utilisation source of scenario ``name`` for ``site``'s racks (None for ``steady``: the site's own)."""
    if name not in SCENARIOS:
        raise ConfigError(f"--scenario: {name!r} is not a scenario (known: {', '.join(SCENARIOS)})")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"--scenario {name}: seed must be a non-negative integer, got {seed!r}")
    if name == "steady":
        return None
    racks = sum(1 for _ in site.racks())  # the order Facility uses (simulators.layout)
    if racks == 0:
        raise ConfigError(f"--scenario {name}: the site has no racks")
    jitter = _Jitter.draw(seed, racks)
    if name == "ai-steps":
        return HallScenario(name, HallTimeline(_steps_year, seed, _STREAM[name]), jitter)
    if name == "checkpoint-stalls":
        return HallScenario(name, HallTimeline(_stalls_year, seed, _STREAM[name]), jitter)
    if name == "mixed":
        training = np.arange(racks) < math.ceil(racks / 2)
        tz = ZoneInfo(site.config.site.timezone)
        return MixedScenario(training, HallTimeline(_stalls_year, seed, _STREAM[name]), tz, jitter)
    rng = np.random.default_rng([seed, _STREAM[name]])
    traces = _gpu_traces()
    return TraceScenario(traces, np.arange(racks, dtype=np.int64) % len(traces), rng.uniform(0.0, 86400.0, racks))
