"""The supervisor's fast path: meet a load step before the temperatures rise (feed-forward between decisions).

Decisions come every ``interval_s`` (5 min) from feedback; a training job's start takes a hall from idle to full in
seconds, and its GPUs would throttle before the next decision. At every thermal-guard tick (the collectors' rate)
:class:`LoadStepDetector` compares each CDU's mean GPU utilisation with its lowest value since the last decision;
a rise of more than ``feedforward_util_rise_pct`` percentage points is a load step. The stepped CDUs move at once to
step-ready setpoints, in the cold / more-flow direction only (so, like the thermal guard, the move skips the rate
limit), through the same hard-limit check and setpoint writer as every decision, audited as ``feed_forward``.

Step-ready setpoints come from the core where it offers them (``step_ready(snapshot) -> Setpoints``, what it predicts
safe at full load: :func:`core_step_ready`) and otherwise from :func:`step_ready_rule`: the commissioned safe
defaults are taken as safe at full load, the current setpoints as safe at the load before the step, and the target
is interpolated between them by how much of the way to full load the step went, ``(u1 - u0) / (100 - u0)``.
"""

from __future__ import annotations

import logging
import math
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from control.policy import Limits
from control.types import Arr, Setpoints, Snapshot

log = logging.getLogger(__name__)
Mask = npt.NDArray[np.bool_]


@runtime_checkable
class StepReadyCore(Protocol):
    """A core that predicts setpoints safe at full load (``control.learner.LearningController`` may offer it)."""

    def step_ready(self, snap: Snapshot) -> Setpoints:
        """Setpoints the core predicts safe at full load from the state in ``snap``."""
        ...


def core_step_ready(core: object, snap: Snapshot) -> Setpoints | None:
    """The core's step-ready setpoints, or None where it offers none or what it offers has the wrong shape."""
    if not isinstance(core, StepReadyCore):
        return None
    try:
        sp = core.step_ready(snap)
    except Exception:  # the fast path is a safety action: a failing optional core method falls back to the rule
        log.exception("control: the core's step_ready failed; the fast path uses its own rule")
        return None
    n = len(snap.cdu_names)
    if np.shape(sp.tcs_c) != (n,) or np.shape(sp.dp_kpa) != (n,):
        return None
    return sp


class LoadStepDetector:
    """Per CDU: the rise of mean GPU utilisation since the last decision, measured from its lowest value since."""

    def __init__(self, n: int) -> None:
        self.ref: Arr = np.full(n, np.nan)

    def reset(self, util_pct: Arr) -> None:
        """A decision was taken at this load: rises count from here (a NaN keeps the CDU's previous reference)."""
        self.ref = np.where(np.isfinite(util_pct), util_pct, self.ref)

    def check(self, util_pct: Arr, rise_pct: float) -> tuple[Mask, Arr]:
        """Which CDUs stepped up by more than ``rise_pct`` points, and the load each stepped from (NaN: none).

        A stepped CDU's reference moves to the new load, so one step acts once; a drop lowers the reference, so a
        drop and a rise within one interval count as the rise they are.
        """
        ref = np.fmin(self.ref, util_pct)  # fmin: a NaN on either side keeps the other
        with np.errstate(invalid="ignore"):
            stepped = np.asarray(util_pct - ref > rise_pct, dtype=np.bool_)
        base = np.where(stepped, ref, np.nan)
        self.ref = np.where(stepped, util_pct, ref)
        return stepped, base


def step_ready_rule(cur: Setpoints, safe: Setpoints, util_from: Arr, util_to: Arr) -> Setpoints:
    """Setpoints moved from ``cur`` toward the safe defaults' cold side by ``(u1 - u0) / (100 - u0)`` per CDU.

    The safe defaults are commissioned to hold at full load and ``cur`` held at ``u0``; with heat roughly linear in
    load, that fraction of the way covers the new load. CDUs with a NaN load (no step) keep ``cur``; the plant's FWS
    moves by the largest CDU fraction.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        f = (util_to - util_from) / np.maximum(100.0 - util_from, 1.0)
    f = np.clip(np.nan_to_num(f, nan=0.0), 0.0, 1.0)
    tcs = cur.tcs_c - f * np.maximum(cur.tcs_c - safe.tcs_c, 0.0)
    dp = cur.dp_kpa + f * np.maximum(safe.dp_kpa - cur.dp_kpa, 0.0)
    fmax = float(f.max()) if f.size else 0.0
    fws = cur.fws_c - fmax * max(cur.fws_c - safe.fws_c, 0.0)
    return Setpoints(tcs, dp, float(fws), math.nan)


def cold_side(target: Setpoints, cur: Setpoints, stepped: Mask, limits: Limits, dew_c: float | None) -> Setpoints:
    """``target`` for the stepped CDUs only and never warmer or at less flow than ``cur``; the plant's FWS colder
    where the stepped CDUs' colder TCS needs it for the CDU approach; the chilled water is left alone."""
    tcs = np.where(stepped, np.fmin(target.tcs_c, cur.tcs_c), cur.tcs_c)
    dp = np.where(stepped, np.fmax(target.dp_kpa, cur.dp_kpa), cur.dp_kpa)
    fws = min(
        cur.fws_c,
        target.fws_c if math.isfinite(target.fws_c) else cur.fws_c,
        float(tcs.min()) - limits.cfg.cdu_approach_k,
    )
    clipped = limits.clip(Setpoints(tcs, dp, max(fws, limits.fws_lo), math.nan), dew_c)
    # Clipping may only make a target reachable, never warmer than what the devices hold now.
    return Setpoints(
        np.fmin(clipped.tcs_c, cur.tcs_c), np.fmax(clipped.dp_kpa, cur.dp_kpa), min(clipped.fws_c, cur.fws_c), math.nan
    )
