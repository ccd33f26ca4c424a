"""Fault prediction inside the main job: learns its own healthy baseline, scores every 5 minutes, alarms through
the one alarm engine.

:class:`FaultPredictionService` runs the residual models and CUSUM detectors of :mod:`analytics.alarms.faults` on
the job's facility clock (:meth:`~FaultPredictionService.step`, called from a worker thread or driven by a test):

- **Baseline, learnt automatically.** Every ``refit_every`` (a day) it refits on the rolling ``window`` (seven
  days) of stored telemetry that ends ``guard`` (a day) before now, so the newest day is always scored against
  older behaviour, never learned. Alarmed periods, device outages and bad data are left out per rack and CDU
  (:mod:`analytics.alarms.baseline`); a predictive alarm's period reaches back over its whole ``scan`` window, so
  a fault's early growth is not learned either. A model whose subject has too little clean history in the new
  window keeps its previous fit.
- **Learning first.** Until some model has ``min_history`` (48 h) of clean history the service says so
  (``learning: N of M hours``) and scores nothing: it never raises from an unfitted model. Models that are still
  short are listed in its status and join at a later refit.
- **Scoring.** Every ``score_every`` (5 min) it reads the new 5-minute means, runs the detectors over the last
  ``scan`` (two days) and raises ``predicted_<cause>`` alarms on the rack or CDU through
  :meth:`AlarmEngine.raise_external`, so they reach the dashboard's alarm list, the webhook and the API and are
  acknowledged like every other alarm. Hysteresis: an alarm is raised when the CUSUM fires with the day's mean
  residual past the cause's minimum effect, and cleared only once the last day's mean is back under half of it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from aidc.clock import Clock
from aidc.config import Site
from aidc.errors import ConfigError, DataError
from analytics.alarms import baseline
from analytics.alarms.engine import AlarmEngine, Severity
from analytics.alarms.faults import (
    CAUSES,
    MIN_EFFECT,
    RELATIVE,
    ROLES,
    FaultDetector,
    ModelState,
    blamed_elsewhere,
    device_frame,
    model_specs,
)
from historian import Historian, parse_window

log = logging.getLogger(__name__)

CLEAR_FRACTION = 0.5  # an alarm clears when the day's mean residual is back under this share of the minimum effect
SEVERITY: dict[str, Severity] = {"thermal": "minor", "inlet": "warning", "speed": "minor", "power": "minor"}


def rule_name(model: str) -> str:
    """The alarm rule of a residual model (``thermal`` -> ``predicted_fouling``)."""
    return f"predicted_{CAUSES[model][0]}"


PREDICTIVE_RULES = frozenset(rule_name(m) for m in CAUSES)


@dataclass(frozen=True, slots=True, kw_only=True)
class PredictionSettings:
    """Schedule and baseline of the service, in facility time (hours unless the name says otherwise)."""

    window_h: float = 168.0  # the rolling baseline: a week
    guard_h: float = 24.0  # the newest day is scored, never learned
    min_history_h: float = 48.0
    refit_every_h: float = 24.0
    retry_every_h: float = 1.0  # while learning: how often to look at stored history again
    score_every_s: float = 300.0
    scan_h: float = 48.0  # the detectors' look-back each time they score
    step: str = "5m"  # the mean window the models read
    check_every_s: float = 5.0  # wall seconds between the worker's looks at the clock

    def __post_init__(self) -> None:
        for name in ("window_h", "guard_h", "min_history_h", "refit_every_h", "retry_every_h", "score_every_s",
                     "scan_h", "check_every_s"):  # fmt: skip
            if not getattr(self, name) > 0:
                raise ConfigError(f"fault prediction: {name} must be positive (got {getattr(self, name)!r})")
        if self.min_history_h > self.window_h - self.guard_h:
            raise ConfigError(
                f"fault prediction: min_history_h {self.min_history_h:g} does not fit in window_h {self.window_h:g} "
                f"less guard_h {self.guard_h:g}"
            )
        parse_window(self.step)  # ConfigError naming a bad step

    def td(self, name: str) -> pd.Timedelta:
        """A setting as a Timedelta (``td("window")`` is ``window_h`` hours)."""
        if name == "score_every":
            return pd.Timedelta(seconds=self.score_every_s)
        if name == "step":
            return pd.Timedelta(parse_window(self.step), unit="ns")
        return pd.Timedelta(hours=float(getattr(self, f"{name}_h")))


@dataclass(frozen=True, slots=True)
class PredictionStatus:
    """What the service is doing: ``learning`` (with N of M hours) or ``watching`` with a fitted baseline."""

    state: Literal["learning", "watching"]
    message: str
    clean_hours: float
    needed_hours: float
    models: int = 0
    fitted_at: str | None = None
    baseline_from: str | None = None
    baseline_to: str | None = None
    excluded_hours: dict[str, float] = field(default_factory=dict)  # subject -> hours left out of the baseline
    learning: dict[str, float] = field(default_factory=dict)  # model still short -> its clean hours
    scored_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return asdict(self)


def _iso(ts: pd.Timestamp) -> str:
    return ts.isoformat()


class FaultPredictionService:
    """Predictive fault alarms for one site, from its historian, through its alarm engine."""

    def __init__(
        self,
        site: Site,
        historian: Historian,
        engine: AlarmEngine,
        clock: Clock,
        settings: PredictionSettings | None = None,
    ) -> None:
        self.site, self.historian, self.engine, self.clock = site, historian, engine, clock
        self.settings = settings or PredictionSettings()
        self._step_td = self.settings.td("step")
        self.rack_cdu = {r: c.name for h in site.config.halls for c in h.cdus for r in c.racks}
        for model, (_kind, text) in CAUSES.items():
            unit = "%" if model in RELATIVE else "K"
            scale = 100.0 if model in RELATIVE else 1.0
            engine.add_external_rule(rule_name(model), f"predicted {text.split(':')[0]}", SEVERITY[model], unit,
                                     MIN_EFFECT[model] * scale, "fault prediction")  # fmt: skip
        self.detector: FaultDetector | None = None
        self._next_fit_ns = 0
        self._recent = pd.DataFrame()  # the last scan window's per-device signals
        hours = self.settings.min_history_h
        self._status = PredictionStatus("learning", "fault prediction: not started", 0.0, hours)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    # ------------------------------------------------------------------ running

    def start(self) -> FaultPredictionService:
        """Run :meth:`step` on the job's clock from a worker thread."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="fault prediction", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the worker (a fit or score in progress finishes first, before the historian closes)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step(self.clock.now_ns())
                if self._failing:
                    log.info("fault prediction works again")
                self._failing = False
            except Exception:  # advisory: log once per failure spell, keep the job running
                if not self._failing:
                    log.exception("fault prediction step failed for site %s", self.site.name)
                self._failing = True
            self._stop.wait(self.settings.check_every_s)

    def status(self) -> PredictionStatus:
        """The latest status (learning with N of M hours, or watching with the baseline it learned)."""
        return self._status

    def alarms(self) -> list[dict[str, Any]]:
        """The predictive alarms active in the engine (for the API's alarm list)."""
        return [a.to_dict() for a in self.engine.active() if a.rule in PREDICTIVE_RULES]

    def step(self, now_ns: int) -> PredictionStatus:
        """Refit when due, score when due; the status after it."""
        with self._lock:
            if now_ns >= self._next_fit_ns:
                self._fit(now_ns)
            scored = self._status.scored_at
            due = scored is None or now_ns - pd.Timestamp(scored).value >= self.settings.td("score_every").value
            if self.detector is not None and due:
                self._score(now_ns)
            return self._status

    def refit(self, now_ns: int) -> PredictionStatus:
        """Learn the baseline now (ahead of the schedule); the status after it."""
        with self._lock:
            self._fit(now_ns)
            return self._status

    # ------------------------------------------------------------------ baseline

    def _fit(self, now_ns: int) -> None:
        s = self.settings
        now = pd.Timestamp(now_ns, unit="ns", tz="UTC")
        start, end = now - s.td("window"), now - s.td("guard")
        wide, roles = baseline.read_signals(self.historian, self.site, ROLES, start, end, s.step)
        signals = device_frame(wide, roles, self.rack_cdu) if not wide.empty else pd.DataFrame()
        # A predictive alarm's evidence reaches back over the whole scan window: leave all of it out.
        ahead = dict.fromkeys(PREDICTIVE_RULES, s.td("scan"))
        alarmed = self.engine.alarms_between(start.value, now_ns)
        periods = baseline.alarm_periods(alarmed, now_ns, before=ahead)
        periods += baseline.outages(self.historian, self.site, start, end)
        masks = baseline.exclusions(pd.DatetimeIndex(signals.index), baseline.feeders(wide.columns, self.rack_cdu),
                                    periods)  # fmt: skip
        clean = baseline.apply(signals, masks)
        hours = self._clean_hours(clean)
        step = self._step_td
        need = s.min_history_h
        excluded = baseline.excluded_hours(masks, step)
        try:
            det = FaultDetector.fit(clean, self.rack_cdu, min_samples=int(s.td("min_history") / step), skip_short=True)
        except DataError:
            self._next_fit_ns = now_ns + s.td("retry_every").value
            best = max(hours.values(), default=0.0)
            if self.detector is None:
                self._status = PredictionStatus(
                    "learning", f"fault prediction learning: {best:.1f} of {need:.0f} hours of clean history",
                    best, need, excluded_hours=excluded,
                )  # fmt: skip
            else:  # keep watching with the models learned before
                log.warning("fault prediction: refit found %.1f h of clean history (need %.0f); keeping the last fit",
                            best, need)  # fmt: skip
            return
        self.detector = det.merged(self.detector)
        self._next_fit_ns = now_ns + s.td("refit_every").value
        short = {k: hours.get(k, 0.0) for k in self.detector.short}
        msg = (f"fault prediction watching {len(self.detector.models)} models, baseline "
               f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC less {sum(excluded.values()):.0f} excluded "
               f"subject-hours" + (f"; {len(short)} models still learning" if short else ""))  # fmt: skip
        log.info("%s", msg)
        self._status = PredictionStatus(
            "watching", msg, max(hours.values(), default=0.0), need, len(self.detector.models), _iso(now),
            _iso(start), _iso(end), excluded, short, self._status.scored_at,
        )  # fmt: skip

    def _clean_hours(self, clean: pd.DataFrame) -> dict[str, float]:
        """Hours of complete, clean rows per model (``<device>:<model>``)."""
        step_h = self._step_td / pd.Timedelta("1h")
        out = {}
        for m in model_specs(self.rack_cdu):
            cols = [m.y, *m.xs]
            if all(c in clean for c in cols):
                out[f"{m.device}:{m.name}"] = round(len(clean[cols].dropna()) * step_h, 2)
        return out

    # ------------------------------------------------------------------ scoring

    def _score(self, now_ns: int) -> None:
        assert self.detector is not None  # step() checks it
        s = self.settings
        now = pd.Timestamp(now_ns, unit="ns", tz="UTC")
        start = now - s.td("scan")
        # Read only what is new (and the last quarter hour again: windows still filling when last read).
        since = start if self._recent.empty else max(start, self._recent.index[-1] - pd.Timedelta("15min"))
        new, roles = baseline.read_signals(self.historian, self.site, ROLES, since, now, s.step)
        old = self._recent
        if not old.empty:
            old = old[(old.index >= start) & (old.index < since)]
        if not new.empty:
            # Kept as per-device signals (a few columns per rack and CDU), not every GPU's series: the signals are
            # row-wise, so building them chunk by chunk gives the same frame.
            fresh = device_frame(new, roles, self.rack_cdu)
            self._recent = pd.concat([old, fresh]).sort_index() if not old.empty else fresh
        else:
            self._recent = old
        if not self._recent.empty:
            states, _ = self.detector.states(self._recent)
            self._apply(states, now_ns)
        self._status = _replace(self._status, scored_at=_iso(now))

    def _apply(self, states: list[ModelState], now_ns: int) -> None:
        for st, verdict in verdicts(states):
            rule = rule_name(st.name)
            if verdict == "clear":
                if self.engine.clear_external(rule, st.device, now_ns) is not None:
                    log.info("predictive alarm %s:%s cleared", rule, st.device)
            else:
                self.engine.raise_external(rule, st.device, self._value(st), now_ns, self._message(st))

    @staticmethod
    def _value(st: ModelState) -> float:
        return st.day_mean * (100.0 if st.name in RELATIVE else 1.0)

    def _message(self, st: ModelState) -> str:
        _kind, text = CAUSES[st.name]
        unit = "%" if st.name in RELATIVE else "K"
        first = f", first seen {st.fired:%Y-%m-%d %H:%M} UTC" if st.fired is not None else ""
        return f"predicted {text.split(':')[0]} on {st.device}: {text.split(': ', 1)[1]} " \
               f"({self._value(st):+.2f} {unit} over the last day{first})"  # fmt: skip


def verdicts(states: Sequence[ModelState]) -> list[tuple[ModelState, Literal["raise", "clear"]]]:
    """What each model's state asks of its alarm: ``raise`` when its CUSUM fired and the last day's mean is still at
    least half the minimum effect, ``clear`` once that mean is back under half; nothing inside the band, with too
    little recent data, or for pump power when the same CDU's speed residual moved (the strainer is blamed)."""
    fired = {(st.device, st.name) for st in states if st.fired is not None}
    out: list[tuple[ModelState, Literal["raise", "clear"]]] = []
    for st in states:
        if not np.isfinite(st.day_mean):
            continue
        if abs(st.day_mean) < CLEAR_FRACTION * MIN_EFFECT[st.name]:
            out.append((st, "clear"))
        elif st.fired is not None and not blamed_elsewhere(st.device, st.name, fired):
            out.append((st, "raise"))
    return out


def _replace(status: PredictionStatus, **changes: Any) -> PredictionStatus:
    return PredictionStatus(**{**status.to_dict(), **changes})
