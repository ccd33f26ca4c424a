"""GPU utilisation per rack over time: synthetic training and inference profiles, and trace replay.

All profiles are functions of time (no state), so any step size gives the same answer at the same instant.
Per-rack variation (phases, checkpoint periods, trace offsets) is drawn once from ``simulation.seed``.

* **training**: high, steady utilisation (≈0.93) with a short dip to ≈0.15 at each checkpoint (every 20-40 min,
  2-4 min long, per rack) and a few percent of jitter.
* **inference**: diurnal request load peaking mid-afternoon local time, lower at weekends, with jitter.
* **trace**: a measured utilisation series replayed from the simulation start, looping; racks are offset from
  one another by up to an hour of trace so they do not move in lock step.
* **idle**: 2 %.

Utilisation maps to GPU power in :func:`simulators.physics.gpu_power_and_temp`:
P = P_idle + (P_tdp − P_idle)·u plus temperature-dependent leakage.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from aidc.errors import ConfigError
from simulators.trace import Trace, load_trace

Arr = npt.NDArray[np.float64]
KINDS = ("training", "inference", "trace", "idle")
TWO_PI = 2.0 * math.pi

TRAIN_HIGH = 0.93
TRAIN_DIP = 0.15
INFER_BASE = 0.2
INFER_PEAK = 0.85
WEEKEND_FACTOR = 0.75
IDLE = 0.02


class UtilisationSource(Protocol):
    """Anything that gives every rack's utilisation at a UTC time."""

    def rack_util(self, t_ns: int) -> Arr:
        """Utilisation (0-1) of every rack at ``t_ns``."""
        ...


@dataclass(frozen=True, slots=True)
class ConstantWorkload:
    """The same utilisation for every rack at all times (steady-state tests, what-if runs)."""

    util: float
    racks: int

    def rack_util(self, t_ns: int) -> Arr:
        """``util`` for every rack."""
        return np.full(self.racks, self.util)


@dataclass(frozen=True, slots=True)
class RackWorkload:
    """Utilisation of every rack at any instant."""

    kinds: tuple[str, ...]
    start_ns: int
    tz: ZoneInfo
    trace: Trace | None
    # Per-rack draws.
    phase: Arr  # jitter phases (rad)
    ckpt_period_s: Arr
    ckpt_len_s: Arr
    ckpt_offset_s: Arr
    trace_offset_s: Arr
    gain: Arr
    masks: dict[str, npt.NDArray[np.bool_]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if "trace" in self.kinds and self.trace is None:
            raise ConfigError("simulation.trace: racks use the 'trace' workload but no trace file is configured")
        kinds = np.array(self.kinds)
        object.__setattr__(self, "masks", {k: kinds == k for k in KINDS})

    def rack_util(self, t_ns: int) -> Arr:
        """Utilisation (0-1) of every rack at a UTC time."""
        t = (t_ns - self.start_ns) / 1e9
        kinds = self.masks
        out = np.full(len(self.kinds), IDLE)
        train = kinds["training"]
        if train.any():
            in_ckpt = (t + self.ckpt_offset_s) % self.ckpt_period_s < self.ckpt_len_s
            out[train] = np.where(in_ckpt, TRAIN_DIP, TRAIN_HIGH)[train]
        infer = kinds["inference"]
        if infer.any():
            out[infer] = inference_level(t_ns, self.tz)
        replay = kinds["trace"]
        if replay.any() and self.trace is not None:
            out[replay] = [self.trace.at(t + float(dt)) for dt in self.trace_offset_s[replay]]
        jitter = 0.02 * np.sin(TWO_PI * t / 97.0 + self.phase) + 0.015 * np.sin(TWO_PI * t / 661.0 + 2 * self.phase)
        out *= self.gain
        out += jitter
        return np.clip(out, 0.0, 1.0, out=out)


def inference_level(t_ns: int, tz: ZoneInfo) -> float:
    """Diurnal inference utilisation: low before dawn, peak at 15:00 local, lower at weekends."""
    local = datetime.fromtimestamp(t_ns / 1e9, tz=tz)
    hour = local.hour + local.minute / 60.0
    shape = 0.5 * (1.0 - math.cos(TWO_PI * (hour - 3.0) / 24.0))
    weekend = WEEKEND_FACTOR if local.weekday() >= 5 else 1.0
    return INFER_BASE + (INFER_PEAK - INFER_BASE) * shape * weekend


def build_workload(
    kinds: Sequence[str],
    *,
    start_ns: int,
    seed: int,
    timezone: str = "UTC",
    trace: Trace | None = None,
) -> RackWorkload:
    """A workload for racks of the given kinds with per-rack variation drawn from ``seed``."""
    for k in kinds:
        if k not in KINDS:
            raise ConfigError(f"workload: {k!r} is not one of {', '.join(KINDS)}")
    n = len(kinds)
    rng = np.random.default_rng(seed)
    return RackWorkload(
        kinds=tuple(kinds),
        start_ns=start_ns,
        tz=ZoneInfo(timezone),
        trace=trace,
        phase=rng.uniform(0.0, TWO_PI, n),
        ckpt_period_s=rng.uniform(1200.0, 2400.0, n),
        ckpt_len_s=rng.uniform(120.0, 240.0, n),
        ckpt_offset_s=rng.uniform(0.0, 2400.0, n),
        trace_offset_s=rng.uniform(0.0, 3600.0, n),
        gain=rng.uniform(0.97, 1.03, n),
    )


def workload_for_site(
    kinds: Sequence[str], start_ns: int, seed: int, timezone: str, trace_path: Path | None, site_dir: Path | None
) -> RackWorkload:
    """The workload a site file describes, loading its trace when a rack replays one."""
    trace = None
    if trace_path is not None:
        p = trace_path if trace_path.is_absolute() or site_dir is None else site_dir / trace_path
        trace = load_trace(p)
    elif "trace" in kinds:
        raise ConfigError("simulation.trace: racks use the 'trace' workload but no trace file is configured")
    return build_workload(kinds, start_ns=start_ns, seed=seed, timezone=timezone, trace=trace)


def daily_profile(workload: RackWorkload, day_start_ns: int, step_s: float = 300.0) -> Arr:
    """Mean utilisation over racks at ``step_s`` steps through one day (for tests and plots)."""
    steps = int(86400 / step_s)
    ns = int(step_s * 1e9)
    return np.array([workload.rack_util(day_start_ns + k * ns).mean() for k in range(steps)])


def utc_day(year: int, month: int, day: int) -> int:
    """UTC midnight of a date in ns."""
    return int(datetime(year, month, day, tzinfo=UTC).timestamp()) * 1_000_000_000
