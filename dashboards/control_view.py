"""Plain words for the Control page: numbers with units, times in the site's zone, and each controller decision,
hold and audit entry as sentences an operator on shift reads at a glance (never a JSON blob).

Everything here is pure (records and the site in, text out), so it is tested without a browser or a running
controller. The records are the supervisor's audit lines (``control/supervisor.py``: ``kind`` ``decision``,
``mode``, ``override``, ...) and the setpoint writer's (``collectors/writer.py`` ``WriteResult``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aidc.config import Site
from aidc.roles import Role
from dashboards.fmt import UNIT_DIGITS, local_time, num

# What each controlled setpoint is called in a sentence, by the role its profile gives it.
SETPOINT_LABELS = {
    Role.TCS_SUPPLY_TEMP_SETPOINT: "supply",
    Role.TCS_DP_SETPOINT: "dp",
    Role.FWS_SUPPLY_TEMP_SETPOINT: "FWS",
    Role.CHW_SUPPLY_TEMP_SETPOINT: "chilled water",
}
KIND_LABELS = {"cdu": "CDU", "plant": "plant", "crah": "CRAH"}
MAX_NAMED = 3  # a change shared by more devices than this names the first few and counts the rest


def as_dict(v: object) -> dict[str, Any]:
    """``v`` if it is a mapping read from a record, else an empty one (records are JSON: anything may be missing)."""
    return v if isinstance(v, dict) else {}


@dataclass(frozen=True, slots=True)
class PointName:
    """How one device point reads in a sentence: ``CDU h1-01`` + ``supply`` + ``°C``."""

    device: str
    label: str
    unit: str

    @property
    def text(self) -> str:
        """``CDU h1-01 supply``."""
        return f"{self.device} {self.label}"


class Names:
    """Sentence names of the site's devices and points (by their kind and role, never hard-coded names)."""

    def __init__(self, site: Site) -> None:
        self._points: dict[tuple[str, str], PointName] = {}
        self._devices: dict[str, str] = {}
        plants = sum(1 for d in site.devices if d.kind == "plant")
        for dev in site.devices:
            kind = KIND_LABELS.get(dev.kind, dev.kind)
            short = dev.name.removeprefix(f"{dev.kind}-")
            self._devices[dev.name] = kind if dev.kind == "plant" and plants == 1 else f"{kind} {short}"
            for p in dev.profile.points:
                role = dev.role_of(p.name)
                label = SETPOINT_LABELS.get(role) if role is not None else None
                self._points[(dev.name, p.name)] = PointName(self._devices[dev.name], label or p.name, p.unit)

    @classmethod
    def of(cls, site: Site) -> Names:
        """The names of ``site``, built once per site object (a 1,000-rack site has tens of thousands of points)."""
        hit = _NAMES.get(id(site))
        if hit is None or hit[0] is not site:
            hit = (site, cls(site))
            _NAMES[id(site)] = hit
        return hit[1]

    def device(self, name: str) -> str:
        """``CDU h1-01`` for ``cdu-h1-01``; the name itself for a device the site does not have."""
        return self._devices.get(name, name)

    def point(self, device: str, point: str) -> PointName:
        """The sentence name and unit of ``device.point`` (the raw names for one the site does not have)."""
        return self._points.get((device, point), PointName(self.device(device), point, ""))


_NAMES: dict[int, tuple[Site, Names]] = {}  # the site is kept with its names, so its id is never reused meanwhile


def _chosen(rec: Mapping[str, Any]) -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], float] = {}
    chosen = rec.get("chosen")
    if isinstance(chosen, dict):
        for dev, points in chosen.items():
            if isinstance(points, dict):
                for point, v in points.items():
                    if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
                        out[(str(dev), str(point))] = float(v)
    return out


def describe_changes(
    chosen: Mapping[tuple[str, str], float], before: Mapping[tuple[str, str], float], names: Names
) -> str:
    """``CDU h1-01 supply 32.0 → 33.5 °C; plant FWS 26.0 → 27.0 °C``: the points that moved, alike moves grouped."""
    groups: dict[tuple[str, str], list[str]] = {}
    for key, new in chosen.items():
        old = before.get(key)
        pn = names.point(*key)
        d = UNIT_DIGITS.get(pn.unit, 1)
        if old is not None and round(old, d) == round(new, d):
            continue
        move = f"{num(old, digits=d)} → {num(new, pn.unit)}" if old is not None else f"set to {num(new, pn.unit)}"
        groups.setdefault((pn.label, move), []).append(pn.device)
    parts = []
    for (label, move), devices in groups.items():
        kinds = {d.split(" ", 1)[0] for d in devices}
        if len(devices) == 1 or len(kinds) != 1 or not all(" " in d for d in devices):
            parts.append(f"{', '.join(devices)} {label} {move}")
            continue
        kind = kinds.pop()
        shown = ", ".join(d.split(" ", 1)[1] for d in devices[:MAX_NAMED])
        more = f" and {len(devices) - MAX_NAMED} more" if len(devices) > MAX_NAMED else ""
        parts.append(f"{len(devices)} {kind}s ({shown}{more}) {label} {move}")
    return "; ".join(parts)


@dataclass(frozen=True, slots=True)
class DecisionText:
    """One decision in words: when, mode, state, what changed, the predicted saving, the binding constraint, holds."""

    when: str
    mode: str
    state: str
    change: str
    saving: str
    binding: str
    holds: str

    def sentences(self) -> list[str]:
        """The non-empty parts, each a sentence."""
        return [s for s in (self.change, self.saving, self.binding, self.holds) if s]


def describe_decision(
    rec: Mapping[str, Any],
    before: Mapping[tuple[str, str], float] | None,
    names: Names,
    tz: str,
    limits: Mapping[str, Any] | None = None,
) -> DecisionText:
    """A decision record in words; ``before``: the previous decision's setpoints (None: the first one seen)."""
    mode = str(rec.get("mode", "?"))
    state = str(rec.get("state", "?"))
    chosen = _chosen(rec)
    moved = describe_changes(chosen, before or {}, names) if chosen else ""
    if not chosen:
        change = "No setpoints chosen."
    elif not moved:
        change = "No change: every setpoint stays where it was."
    elif mode == "auto" and "written" in rec:
        change = f"Wrote {moved}." + _write_failures(rec)
    elif mode == "auto":  # refused by the hard-limit check, or held: the devices keep what they hold
        change = f"Chose {moved}, but wrote nothing (see the hold below)."
    else:
        change = f"Recommends {moved} (advisory: not written)."
    return DecisionText(
        local_time(rec.get("ts"), tz),
        mode,
        state,
        change,
        _saving(rec),
        _binding(rec, names, limits or {}),
        _holds(rec, names, tz),
    )


def _write_failures(rec: Mapping[str, Any]) -> str:
    written = rec.get("written")
    if not isinstance(written, list):
        return ""
    bad = [w for w in written if isinstance(w, dict) and not w.get("ok", True)]
    if not bad:
        return ""
    first = bad[0]
    return f" {len(bad)} write(s) failed ({first.get('device')} {first.get('point')}: {first.get('error') or '?'})."


def _saving(rec: Mapping[str, Any]) -> str:
    saving, facility = rec.get("predicted_saving_kw"), rec.get("predicted_facility_kw")
    if isinstance(saving, int | float) and math.isfinite(saving):
        return (
            f"Predicted saving {num(saving, 'kW')} against the fixed safe setpoints "
            f"(predicted facility power {num(facility, 'kW')})."
        )
    state = str(rec.get("state", ""))
    if state == "commissioning":
        return "No saving predicted yet: commissioning, the plant model is still being learnt."
    if state == "learning":
        return "No saving predicted: the model is not trusted where the plant operates now (learning)."
    if isinstance(facility, int | float) and math.isfinite(facility):
        return f"Predicted facility power {num(facility, 'kW')} (no saving estimate)."
    return ""


def _gpu_headroom(rec: Mapping[str, Any], names: Names, limits: Mapping[str, Any]) -> str:
    inputs = as_dict(rec.get("inputs"))
    hottest = inputs.get("gpu_max_c")
    if not isinstance(hottest, int | float) or not math.isfinite(hottest):
        return ""
    cdu = inputs.get("gpu_max_cdu")
    ceilings = limits.get("gpu_ceiling_c")
    ceiling: float | None = None
    if isinstance(ceilings, dict) and ceilings:
        got = ceilings.get(cdu) if isinstance(cdu, str) else None
        ceiling = float(got) if isinstance(got, int | float) else float(min(ceilings.values()))
    where = f" (racks of {names.device(cdu)})" if isinstance(cdu, str) else ""
    if ceiling is None:
        return f"hottest GPU {num(hottest, '°C')}{where}"
    room = ceiling - float(hottest)
    side = "below" if room >= 0 else "ABOVE"
    return (
        f"hottest GPU {num(hottest, '°C')}{where}, {num(abs(room), 'K')} {side} limit − margin ({num(ceiling, '°C')})"
    )


def _binding(rec: Mapping[str, Any], names: Names, limits: Mapping[str, Any]) -> str:
    raw = rec.get("binding")
    binding = [str(b) for b in raw] if isinstance(raw, list) else []
    gpu = _gpu_headroom(rec, names, limits)
    parts = []
    for b in binding:
        if b.startswith("gpu margin"):
            parts.append(f"GPU temperature ({b.removeprefix('gpu margin ').replace(': ', ', ')}): {gpu}" if gpu else b)
            gpu = ""
        elif b.startswith("fws at"):
            parts.append(f"facility water at its maximum ({num(limits.get('fws_max_c'), '°C')}, W-class or profile)")
        elif b == "dew point":
            parts.append("TCS supply at the dew-point margin")
        elif b.startswith("override "):
            parts.append(f"operator {b}")
        else:
            parts.append(b)
    if parts:
        return "Binding: " + "; ".join(parts) + (f"; {gpu}" if gpu else "") + "."
    if rec.get("kind") == "decision" and str(rec.get("state")) == "deciding":
        return "No constraint binding" + (f": {gpu}." if gpu else ".")
    return f"GPU: {gpu}." if gpu else ""


def _holds(rec: Mapping[str, Any], names: Names, tz: str) -> str:
    out = []
    reason = str(rec.get("hold_reason") or "")
    state = str(rec.get("state", ""))
    if state in ("holding", "fallback") and reason:
        held = rec.get("held_s")
        since = f" for {duration(held)}" if isinstance(held, int | float) and held > 0 else ""
        verb = "Fell back to the safe setpoints" if state == "fallback" else "Holding every setpoint"
        out.append(f"{verb}{since}: {reason}.")
    elif reason.startswith("exploring"):
        out.append(f"Exploring ({reason.removeprefix('exploring: ')}): a bounded step for the model to learn from.")
    elif reason:
        out.append(reason[0].upper() + reason[1:] + ".")
    cdu_holds = rec.get("cdu_holds")
    if isinstance(cdu_holds, dict):
        for cdu, h in cdu_holds.items():
            if isinstance(h, dict):
                action = {"hold": "held", "no-warmer": "kept from moving warmer", "revert": "reverted to safe"}.get(
                    str(h.get("action")), str(h.get("action"))
                )
                out.append(f"{names.device(str(cdu))} {action} for {duration(h.get('held_s'))}: {h.get('reason')}.")
    lock = rec.get("lockout")
    if isinstance(lock, dict):
        cdus = ", ".join(names.device(str(c)) for c in lock.get("cdus", []) if isinstance(c, str)) or "all CDUs"
        out.append(
            f"Lock-out after the {lock.get('source', 'guard')} until {local_time(lock.get('until'), tz)}: {cdus} "
            "may not move warmer."
        )
    return " ".join(out)


def describe_decisions(
    records: Sequence[Mapping[str, Any]],
    names: Names,
    tz: str,
    limits: Mapping[str, Any] | None = None,
    count: int | None = None,
) -> list[DecisionText]:
    """The last ``count`` (default: all) decision records (given oldest first) in words, newest first; each change
    is against the setpoints in force before it (the last written, or in advisory the last recommended)."""
    decisions = [r for r in records if r.get("kind") == "decision"]
    start = 0 if count is None else max(0, len(decisions) - count)
    before: dict[tuple[str, str], float] | None = None
    for rec in reversed(decisions[:start]):  # a decision chooses every controlled point: the nearest one will do
        if in_force(rec) and (chosen := _chosen(rec)):
            before = chosen
            break
    out = []
    for rec in decisions[start:]:
        out.append(describe_decision(rec, before, names, tz, limits))
        chosen = _chosen(rec)
        if chosen and in_force(rec):
            before = {**(before or {}), **chosen}
    return out[::-1]


def in_force(rec: Mapping[str, Any]) -> bool:
    """Whether a decision's setpoints became what the next one starts from: written in auto mode, or (advisory)
    the recommendation the next one moves on from; a refused or held auto decision wrote nothing."""
    return rec.get("mode") != "auto" or "written" in rec


def duration(seconds: object) -> str:
    """``45 s``, ``12 min``, ``5 h 14 min``: a hold's or lock-out's length as an operator says it."""
    if not isinstance(seconds, int | float) or isinstance(seconds, bool) or not math.isfinite(seconds):
        return "—"
    s = max(0, round(seconds))
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    return f"{s // 3600} h {s % 3600 // 60} min"
