"""Alarms: thresholds from the device profiles and the site policy, raised and cleared with hysteresis and delay.

The engine is fed the live state's latest values (a frame from :meth:`aidc.live.LiveState.select`) and a few
health figures (historian spool and drops, writer errors) every second or so. Each rule measures one value per
subject (a rack, a CDU, a device) and compares it with its threshold: a condition must hold for ``raise_delay_s``
before the alarm is raised, and the value must be back past the threshold by the hysteresis for ``clear_delay_s``
before it clears, so a value hovering at the limit does not flap. A missing value (device down, NaN) never clears
an alarm: "device down" speaks for that device instead. Operators acknowledge alarms; every raise, clear and
acknowledgement is appended to ``<data_dir>/alarms/alarms.jsonl`` (replayed at start, so a restart keeps the
active alarms and their acknowledgements) and, where the site policy names one, posted to a webhook.

Alarms judged elsewhere (fault prediction, :mod:`analytics.alarms.prediction`) come in through the same engine:
their rules are added with :meth:`AlarmEngine.add_external_rule` and never measured here, and their source calls
:meth:`AlarmEngine.raise_external` and :meth:`AlarmEngine.clear_external`, owning their hysteresis; they are
stored, posted, listed and acknowledged like every other alarm. Rules live in :mod:`analytics.alarms.rules`, the
webhook in :mod:`analytics.alarms.notify`.

The dashboard and the REST API both read :meth:`AlarmEngine.active` and :meth:`AlarmEngine.history` and call
:meth:`AlarmEngine.acknowledge`; neither re-implements the rules.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from aidc.config import Site
from aidc.errors import AidcError, ConfigError
from analytics.alarms.notify import Webhook
from analytics.alarms.rules import (
    SEVERITY_ORDER,
    AlarmPolicy,
    Measure,
    Rule,
    Severity,
    default_rules,
    unmeasured,
)

# The wing's public names, importable from here as before the rules and the webhook had modules of their own.
__all__ = [
    "SEVERITY_ORDER",
    "Alarm",
    "AlarmEngine",
    "AlarmFeed",
    "AlarmPolicy",
    "Measure",
    "Rule",
    "Severity",
    "Webhook",
    "default_rules",
]

log = logging.getLogger(__name__)

HISTORY_KEPT = 1000  # cleared alarms kept in memory (and replayed at start): history, and baselines' exclusions


@dataclass(slots=True)
class Alarm:
    """A raised alarm (active until cleared), with its acknowledgement."""

    id: str
    rule: str
    subject: str
    severity: str
    message: str
    value: float
    threshold: float
    unit: str
    raised_ns: int
    cleared_ns: int | None = None
    acked_by: str | None = None
    acked_ns: int | None = None

    @property
    def active(self) -> bool:
        """Raised and not yet cleared."""
        return self.cleared_ns is None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return asdict(self)


@dataclass(slots=True)
class _Track:
    pending_since: int | None = None
    clearing_since: int | None = None


class AlarmEngine:
    """Evaluates the rules on the latest values; keeps, stores and announces raised alarms."""

    def __init__(self, rules: list[Rule], *, store: Path | None = None, webhook: Webhook | None = None) -> None:
        self.rules = {r.name: r for r in rules}
        self.store, self.webhook = store, webhook
        self._lock = threading.Lock()
        self._tracks: dict[str, _Track] = {}
        self._alarms: dict[str, Alarm] = {}  # id -> the active alarm
        self._history: list[Alarm] = []  # cleared alarms, oldest first (bounded)
        if store is not None:
            self._replay(store)

    @classmethod
    def from_site(cls, site: Site, *, data_dir: Path | None = None) -> AlarmEngine:
        """Rules and store for a site; the webhook URL is read from the variable the policy names (never logged)."""
        policy = AlarmPolicy.from_site(site)
        hook = None
        if policy.webhook_url_env:
            url = os.environ.get(policy.webhook_url_env)
            if not url:
                raise ConfigError(f"dashboard.alarms.webhook_url_env: variable {policy.webhook_url_env} is not set")
            hook = Webhook(url, policy.webhook_timeout_s)
        store = (data_dir or site.data_dir) / "alarms" / "alarms.jsonl"
        return cls(default_rules(site, policy), store=store, webhook=hook)

    # ------------------------------------------------------------------ evaluation

    def evaluate(self, frame: pd.DataFrame, now_ns: int, extra: Mapping[str, float] | None = None) -> list[Alarm]:
        """Apply every rule to the latest values; returns the alarms raised or cleared by this call."""
        extra = extra or {}
        changed: list[Alarm] = []
        with self._lock:
            for rule in self.rules.values():
                if rule.external:
                    continue
                for subject, value in rule.measure(frame, extra).items():
                    if np.isfinite(value):
                        alarm = self._step(rule, subject, value, now_ns)
                        if alarm is not None:
                            changed.append(alarm)
        return changed

    def _step(self, rule: Rule, subject: str, value: float, now_ns: int) -> Alarm | None:
        aid = f"{rule.name}:{subject}"
        track = self._tracks.setdefault(aid, _Track())
        alarm = self._alarms.get(aid)
        if alarm is None:
            if not rule.violated(value):
                track.pending_since = None
                return None
            if track.pending_since is None:
                track.pending_since = now_ns
            if now_ns - track.pending_since < rule.raise_delay_s * 1e9:
                return None
            track.pending_since = None
            alarm = Alarm(
                aid,
                rule.name,
                subject,
                rule.severity,
                _message(rule, subject, value),
                value,
                rule.threshold,
                rule.unit,
                now_ns,
            )
            self._alarms[aid] = alarm
            self._record("raise", alarm, now_ns)
            return alarm
        if rule.violated(value):
            alarm.value = max(alarm.value, value)
        if not rule.recovered(value):
            track.clearing_since = None
            return None
        if track.clearing_since is None:
            track.clearing_since = now_ns
        if now_ns - track.clearing_since < rule.clear_delay_s * 1e9:
            return None
        track.clearing_since = None
        self._clear(alarm, now_ns)
        return alarm

    def _clear(self, alarm: Alarm, now_ns: int) -> None:
        alarm.cleared_ns = now_ns
        del self._alarms[alarm.id]
        self._history.append(alarm)
        del self._history[:-HISTORY_KEPT]
        self._record("clear", alarm, now_ns)

    # ------------------------------------------------------------------ external sources

    def add_external_rule(self, name: str, title: str, severity: Severity, unit: str, threshold: float,
                          source: str) -> Rule:  # fmt: skip
        """Register a rule whose alarms another component raises and clears (the same rule again is a no-op)."""
        rule = Rule(name, title, severity, unit, threshold, unmeasured, source=source, external=True)
        with self._lock:
            known = self.rules.get(name)
            if known is not None and not known.external:
                raise AidcError(f"alarm rule {name!r} is measured by the engine; pick another name")
            self.rules[name] = rule
        return rule

    def raise_external(self, rule_name: str, subject: str, value: float, now_ns: int, message: str) -> Alarm | None:
        """Raise an external rule's alarm on ``subject``; the new alarm, or None when it is already active.

        Raising an active alarm again keeps it (with its acknowledgement) and only updates its value and
        message: no second event, no second webhook post. The source owns the hysteresis: it decides when the
        condition has gone far enough back to call :meth:`clear_external`.
        """
        with self._lock:
            rule = self._external(rule_name)
            aid = f"{rule.name}:{subject}"
            alarm = self._alarms.get(aid)
            if alarm is not None:
                alarm.value, alarm.message = value, message
                return None
            alarm = Alarm(aid, rule.name, subject, rule.severity, message, value, rule.threshold, rule.unit, now_ns)
            self._alarms[aid] = alarm
            self._record("raise", alarm, now_ns)
            return alarm

    def clear_external(self, rule_name: str, subject: str, now_ns: int) -> Alarm | None:
        """Clear an external rule's active alarm on ``subject``; the cleared alarm, or None if none was active."""
        with self._lock:
            rule = self._external(rule_name)
            alarm = self._alarms.get(f"{rule.name}:{subject}")
            if alarm is None:
                return None
            self._clear(alarm, now_ns)
            return alarm

    def _external(self, name: str) -> Rule:
        rule = self.rules.get(name)
        if rule is None or not rule.external:
            raise AidcError(f"alarm rule {name!r} is not an external rule (add it with add_external_rule first)")
        return rule

    def alarms_between(self, start_ns: int, end_ns: int) -> list[Alarm]:
        """Alarms active at any time in ``[start_ns, end_ns)``: the active ones and those in the kept history."""
        with self._lock:
            alarms = [*self._alarms.values(), *self._history]
        return [a for a in alarms if a.raised_ns < end_ns and (a.cleared_ns is None or a.cleared_ns >= start_ns)]

    # ------------------------------------------------------------------ operators

    def acknowledge(self, alarm_id: str, user: str, now_ns: int, *, raised_ns: int | None = None) -> Alarm:
        """Acknowledge an alarm: the active one of that id, or with ``raised_ns`` that occurrence even after it
        cleared (ISA-18.2: an alarm back to normal unacknowledged still awaits its acknowledgement); AidcError
        names an alarm that is neither."""
        with self._lock:
            alarm = self._alarms.get(alarm_id)
            if alarm is not None and raised_ns is not None and alarm.raised_ns != raised_ns:
                alarm = None
            if alarm is None and raised_ns is not None:
                alarm = next((a for a in reversed(self._history) if a.id == alarm_id and a.raised_ns == raised_ns),
                             None)  # fmt: skip
            if alarm is None:
                raise AidcError(f"alarm {alarm_id!r} is not active")
            if alarm.acked_by is None:
                alarm.acked_by, alarm.acked_ns = user, now_ns
                self._record("ack", alarm, now_ns)
            return alarm

    def active(self) -> list[Alarm]:
        """Active alarms, most severe first, then newest first."""
        with self._lock:
            alarms = list(self._alarms.values())
        return sorted(alarms, key=lambda a: (SEVERITY_ORDER.get(a.severity, 9), -a.raised_ns))

    def history(self, limit: int = 100) -> list[Alarm]:
        """Recently cleared alarms, newest first."""
        with self._lock:
            return list(reversed(self._history[-limit:]))

    def close(self) -> None:
        """Flush the webhook queue."""
        if self.webhook is not None:
            self.webhook.close()

    # ------------------------------------------------------------------ storage

    def _record(self, event: str, alarm: Alarm, now_ns: int) -> None:
        entry = {"event": event, "ts_ns": now_ns, **alarm.to_dict()}
        if self.store is not None:
            try:
                self.store.parent.mkdir(parents=True, exist_ok=True)
                with self.store.open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(entry) + "\n")
            except OSError as exc:
                log.error("cannot append alarm event to %s: %s", self.store, exc.strerror)
        if self.webhook is not None:
            self.webhook.post(entry)
        log.info("alarm %s %s (%s)", event, alarm.id, alarm.message)

    def _replay(self, path: Path) -> None:
        if not path.is_file():
            return
        fields = set(Alarm.__dataclass_fields__)
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            try:
                entry = json.loads(line)
                alarm = Alarm(**{k: v for k, v in entry.items() if k in fields})
                event = entry["event"]
            except (ValueError, TypeError, KeyError):
                log.warning("%s:%d: skipping unreadable alarm event", path, n)  # a torn last line after a crash
                continue
            if event == "ack" and alarm.cleared_ns is not None:  # acknowledged after it cleared
                past = next((a for a in reversed(self._history) if a.id == alarm.id and a.raised_ns == alarm.raised_ns),
                            None)  # fmt: skip
                if past is not None:
                    past.acked_by, past.acked_ns = alarm.acked_by, alarm.acked_ns
            elif event in ("raise", "ack"):
                self._alarms[alarm.id] = alarm
            elif event == "clear":
                self._alarms.pop(alarm.id, None)
                self._history.append(alarm)
        del self._history[:-HISTORY_KEPT]


def _message(rule: Rule, subject: str, value: float) -> str:
    if rule.unit in ("", "points") and rule.threshold == 0.5:
        return f"{rule.title}: {subject}" + (f" ({value:.0f} {rule.unit})" if rule.unit else "")
    return f"{rule.title}: {subject} at {value:.1f} {rule.unit} (limit {rule.threshold:g} {rule.unit}, {rule.source})"


@dataclass
class AlarmFeed:
    """Where the engine's extra health figures come from (historian spool, writer errors, controller state)."""

    sources: list[Callable[[], Mapping[str, float]]] = field(default_factory=list)

    def __call__(self) -> dict[str, float]:
        """Merged figures; a failing source is skipped (its own alarm is 'stale' data, not a crash)."""
        out: dict[str, float] = {}
        for src in self.sources:
            try:
                out.update(src())
            except Exception:  # a health probe must never stop alarm evaluation
                log.exception("alarm health source failed")
        return out
