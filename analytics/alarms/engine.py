"""Alarms: thresholds from the device profiles and the site policy, raised and cleared with hysteresis and delay.

The engine is fed the live state's latest values (a frame from :meth:`aidc.live.LiveState.select`) and a few
health figures (historian spool and drops, writer errors) every second or so. Each rule measures one value per
subject (a rack, a CDU, a device) and compares it with its threshold: a condition must hold for ``raise_delay_s``
before the alarm is raised, and the value must be back past the threshold by the hysteresis for ``clear_delay_s``
before it clears, so a value hovering at the limit does not flap. A missing value (device down, NaN) never clears
an alarm: "device down" speaks for that device instead. Operators acknowledge alarms; every raise, clear and
acknowledgement is appended to ``<data_dir>/alarms/alarms.jsonl`` (replayed at start, so a restart keeps the
active alarms and their acknowledgements) and, where the site policy names one, posted to a webhook.

The dashboard and the REST API both read :meth:`AlarmEngine.active` and :meth:`AlarmEngine.history` and call
:meth:`AlarmEngine.acknowledge`; neither re-implements the rules.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from aidc.config import Site
from aidc.errors import AidcError, ConfigError
from aidc.roles import Role
from aidc.site_tables import AlarmPolicy as AlarmPolicy  # the [dashboard.alarms] table; re-exported here

log = logging.getLogger(__name__)

Severity = Literal["critical", "major", "minor", "warning"]
SEVERITY_ORDER: dict[str, int] = {"critical": 0, "major": 1, "minor": 2, "warning": 3}


Measure = Callable[[pd.DataFrame, Mapping[str, float]], dict[str, float]]


@dataclass(frozen=True, slots=True)
class Rule:
    """One kind of alarm: how to measure it per subject, the threshold and which way is bad."""

    name: str
    title: str
    severity: Severity
    unit: str
    threshold: float
    measure: Measure
    hysteresis: float = 0.0
    raise_delay_s: float = 0.0
    clear_delay_s: float = 0.0
    source: str = "policy"  # where the threshold came from, shown to the operator

    def violated(self, value: float) -> bool:
        """Whether ``value`` is past the threshold."""
        return value > self.threshold

    def recovered(self, value: float) -> bool:
        """Whether ``value`` is back past the threshold by the hysteresis."""
        return value <= self.threshold - self.hysteresis


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


def _by(frame: pd.DataFrame, measurement: str, fld: str, tag: str, how: str = "max") -> dict[str, float]:
    """Aggregate of the good values of ``measurement``/``fld`` per value of ``tag``."""
    if frame.empty or tag not in frame.columns:
        return {}
    rows = frame[(frame["measurement"] == measurement) & (frame["field"] == fld) & (frame["quality"] != "bad")]
    rows = rows[rows["value"].notna() & rows[tag].notna()]
    if rows.empty:
        return {}
    agg = rows.groupby(tag)["value"].agg(how)
    return {str(k): float(v) for k, v in agg.items()}


def _approach(frame: pd.DataFrame, _: Mapping[str, float]) -> dict[str, float]:
    tcs = _by(frame, "cdu", "tcs_supply_temp_c", "device")
    fws = _by(frame, "cdu", "fws_supply_temp_c", "device")
    return {d: tcs[d] - fws[d] for d in tcs if d in fws}


def _device_down(frame: pd.DataFrame, _: Mapping[str, float]) -> dict[str, float]:
    up = _by(frame, "collector", "up", "device", "min")
    return {d: 1.0 - v for d, v in up.items()}


def _stale(frame: pd.DataFrame, extra: Mapping[str, float]) -> dict[str, float]:
    """Count of stale or bad points per device that is up (a device that is down has its own alarm)."""
    if frame.empty or "device" not in frame.columns:
        return {}
    down = {d for d, v in _device_down(frame, extra).items() if v > 0.5}
    data = frame[(frame["measurement"] != "collector") & ~frame["device"].isin(down)]
    bad = data["quality"] == "bad"
    return {str(k): float(v) for k, v in bad.groupby(data["device"]).sum().items()}


def _extra(key: str) -> Measure:
    def measure(_: pd.DataFrame, extra: Mapping[str, float]) -> dict[str, float]:
        v = extra.get(key)
        return {} if v is None or not np.isfinite(v) else {"historian": float(v)}

    return measure


def _field(measurement: str, fld: str, tag: str) -> Measure:
    return lambda frame, _: _by(frame, measurement, fld, tag)


def _profile_max(site: Site, role: Role) -> float | None:
    for dev in site.devices:
        for p in dev.profile.points:
            if dev.role_of(p.name) == role and p.writable and p.max is not None:
                return float(p.max)
    return None


def default_rules(site: Site, policy: AlarmPolicy) -> list[Rule]:
    """The alarm rules for a site: DESIGN.md's operating limits, the profiles' setpoint limits, the site policy."""
    d: dict[str, Any] = {
        "hysteresis": policy.hysteresis_k,
        "raise_delay_s": policy.raise_delay_s,
        "clear_delay_s": policy.clear_delay_s,
    }
    now_d: dict[str, Any] = {"raise_delay_s": 0.0, "clear_delay_s": policy.clear_delay_s}
    rules = [
        Rule(
            "gpu_hot", "hot GPU", "major", "°C", policy.gpu_temp_high_c, _field("gpu_rack", "gpu_temp_c", "rack"), **d
        ),
        Rule(
            "rack_outlet_high",
            "high rack coolant outlet",
            "major",
            "°C",
            policy.rack_outlet_high_c,
            _field("gpu_rack", "coolant_outlet_temp_c", "rack"),
            **d,
        ),
        Rule(
            "cdu_approach",
            "CDU approach drifting",
            "minor",
            "K",
            policy.cdu_approach_high_k,
            _approach,
            hysteresis=min(policy.hysteresis_k, 0.5),
            raise_delay_s=policy.raise_delay_s,
            clear_delay_s=policy.clear_delay_s,
        ),
        Rule("leak", "leak detected", "critical", "", 0.5, _field("gpu_rack", "leak_detected", "rack"), **now_d),
        Rule("cdu_leak", "CDU leak alarm", "critical", "", 0.5, _field("cdu", "alarm_leak", "device"), **now_d),
        Rule(
            "cdu_fallback",
            "CDU fell back to local control",
            "major",
            "",
            0.5,
            _field("cdu", "fallback_active", "device"),
            **now_d,
        ),
        Rule(
            "device_down",
            "device down",
            "major",
            "",
            0.5,
            _device_down,
            raise_delay_s=policy.raise_delay_s,
            clear_delay_s=policy.clear_delay_s,
        ),
        Rule(
            "stale_points",
            "stale or bad points",
            "warning",
            "points",
            0.5,
            _stale,
            raise_delay_s=policy.raise_delay_s,
            clear_delay_s=policy.clear_delay_s,
        ),
        Rule(
            "spool_growing",
            "historian spool growing",
            "minor",
            "points",
            float(policy.spool_points_high),
            _extra("spool_depth_points"),
            **now_d,
        ),
        Rule(
            "points_dropped",
            "historian dropped points",
            "major",
            "points",
            0.5,
            _extra("dropped_points_total"),
            **now_d,
        ),
        Rule("writer_errors", "historian write errors", "major", "", 0.5, _extra("write_errors"), **now_d),
        Rule("controller_fallback", "controller fell back", "major", "", 0.5, _extra("controller_fallback"), **now_d),
    ]
    tcs = policy.tcs_supply_high_c
    tcs_source = "policy"
    if tcs is None:
        tcs, tcs_source = _profile_max(site, Role.TCS_SUPPLY_TEMP_SETPOINT), "profile setpoint max"
    if tcs is not None:
        rules.append(
            Rule(
                "tcs_supply_high",
                "high TCS coolant supply",
                "major",
                "°C",
                tcs,
                _field("cdu", "tcs_supply_temp_c", "device"),
                source=tcs_source,
                **d,
            )
        )
    fws = policy.fws_supply_high_c
    fws_source = "policy"
    if fws is None:
        fws, fws_source = site.config.site.max_fws_supply_c, f"ASHRAE {site.config.site.ashrae_class}"
    if fws is not None:
        rules.append(
            Rule(
                "fws_supply_high",
                "high facility water supply",
                "major",
                "°C",
                fws,
                _field("plant", "fws_supply_temp_c", "device"),
                source=fws_source,
                **d,
            )
        )
    return rules


class Webhook:
    """Posts alarm events as JSON to a URL from a worker thread, so a slow receiver never stalls evaluation."""

    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"alarm webhook URL must start with http:// or https:// (got {url[:30]!r})")
        self.url, self.timeout_s = url, timeout_s
        self.sent = 0
        self.failed = 0
        self._q: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=10_000)
        self._failing = False
        self._thread = threading.Thread(target=self._run, name="alarm webhook", daemon=True)
        self._thread.start()

    def post(self, event: dict[str, Any]) -> None:
        """Queue one event (dropped and counted when the queue is full)."""
        try:
            self._q.put_nowait(event)
        except queue.Full:
            self.failed += 1

    def _run(self) -> None:
        while (event := self._q.get()) is not None:
            req = urllib.request.Request(  # noqa: S310 - the scheme is checked in __init__
                self.url, data=json.dumps(event).encode(), headers={"Content-Type": "application/json"}, method="POST"
            )
            try:
                with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:  # noqa: S310
                    resp.read()
                self.sent += 1
                if self._failing:
                    log.info("alarm webhook reachable again")
                self._failing = False
            except OSError as exc:
                self.failed += 1
                # The URL may carry a token: name the host only, and log once until it recovers.
                if not self._failing:
                    log.error("alarm webhook to %s failed: %s", urllib.parse.urlparse(self.url).netloc, exc)
                self._failing = True
            finally:
                self._q.task_done()

    def close(self, timeout_s: float = 5.0) -> None:
        """Send what is queued (up to ``timeout_s``) and stop the worker."""
        self._q.put(None)
        self._thread.join(timeout_s)


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
        policy = site.config.dashboard.alarms
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
        alarm.cleared_ns = now_ns
        del self._alarms[aid]
        self._history.append(alarm)
        del self._history[:-1000]
        self._record("clear", alarm, now_ns)
        return alarm

    # ------------------------------------------------------------------ operators

    def acknowledge(self, alarm_id: str, user: str, now_ns: int) -> Alarm:
        """Acknowledge an active alarm; AidcError names an unknown or already cleared one."""
        with self._lock:
            alarm = self._alarms.get(alarm_id)
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
            if event in ("raise", "ack"):
                self._alarms[alarm.id] = alarm
            elif event == "clear":
                self._alarms.pop(alarm.id, None)
                self._history.append(alarm)
        del self._history[:-1000]


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
