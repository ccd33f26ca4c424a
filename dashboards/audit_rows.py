"""One audit line as one plain-text table row: actor, action, device · point, old → new, reason or result.

The supervisor's lines (``control/supervisor.py``, keyed by ``kind``) and the setpoint writer's
(``collectors/writer.py`` ``WriteResult``) each become the same six columns, so the Control page's audit table can
be filtered and sorted on any of them; numbers carry the point's unit and sensible decimals, never a JSON blob.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from dashboards.control_view import Names
from dashboards.fmt import UNIT_DIGITS, local_time, num

SUPERVISOR = "aidc supervisor"
ACTIONS = {
    "decision": "decision",
    "mode": "mode change",
    "override": "override set",
    "override_cleared": "override cleared",
    "override_expired": "override expired",
    "cdu_hold": "CDU hold",
    "cdu_hold_cleared": "CDU hold cleared",
    "cdu_revert": "CDU reverted to safe",
    "revert": "reverted to safe",
    "thermal_guard": "thermal guard",
    "feed_forward": "load-step feed-forward",
}
SKIP = {"ts", "ts_ns", "user", "who", "kind", "action", "event"}


def _value(v: object, unit: str, digits: int | None = None) -> str:
    if isinstance(v, int | float) and not isinstance(v, bool):
        return num(v, unit, digits)
    return "—" if v is None else str(v)


def _unit(names: Names | None, device: object, point: object) -> str:
    if names is None or not isinstance(device, str) or not isinstance(point, str):
        return ""
    return names.point(device, point).unit


def _target(device: object, point: object = None) -> str:
    return " · ".join(str(x) for x in (device, point) if x not in (None, ""))


def _plain(e: Mapping[str, Any]) -> str:
    """The scalar fields of an unknown line as ``key value`` pairs (lists and mappings counted, not dumped)."""
    out = []
    for k, v in e.items():
        if k in SKIP:
            continue
        if isinstance(v, float):
            out.append(f"{k} {num(v)}" if math.isfinite(v) else f"{k} —")
        elif isinstance(v, dict | list):
            out.append(f"{k}: {len(v)} item(s)")
        else:
            out.append(f"{k} {v}")
    return "; ".join(out)[:300]


def write_row(e: Mapping[str, Any], names: Names | None = None) -> dict[str, str]:
    """A setpoint writer's line: who wrote which point from what to what, why, and whether it held."""
    unit = _unit(names, e.get("device"), e.get("point"))
    ok = bool(e.get("ok", True))
    result = [str(e.get("why") or "")]
    if e.get("clamped"):
        result.append(f"clamped from {_value(e.get('requested'), unit)}")
    readback = e.get("readback")
    if ok and isinstance(readback, int | float):
        result.append(f"read back {_value(readback, unit)}")
    if not ok:
        result.append(f"FAILED: {e.get('error') or 'no reason given'}")
    old = e.get("old")
    new = e.get("new", e.get("requested"))
    return {
        "actor": str(e.get("who") or e.get("user") or ""),
        "action": "write" if ok else "write failed",
        "target": _target(e.get("device"), e.get("point")),
        "change": f"{_value(old, '', UNIT_DIGITS.get(unit))} → {_value(new, unit)}",
        "result": "; ".join(r for r in result if r),
    }


def control_row(e: Mapping[str, Any], names: Names | None = None, tz: str = "UTC") -> dict[str, str]:
    """A supervisor line (decision, mode, override, hold, revert, guard, feed-forward) as a row."""
    kind = str(e.get("kind") or e.get("action") or e.get("event") or "")
    actor = str(e.get("user") or e.get("who") or SUPERVISOR)
    device, point = e.get("device"), e.get("point")
    change, result = "", ""
    if kind == "decision":
        state = str(e.get("state", ""))
        saving = e.get("predicted_saving_kw")
        bits = [f"{e.get('mode', '?')}, {state}"]
        if isinstance(saving, int | float):
            bits.append(f"predicted saving {num(saving, 'kW')}")
        if e.get("hold_reason"):
            bits.append(str(e["hold_reason"]))
        written = e.get("written")
        if isinstance(written, list) and written:
            failed = sum(1 for w in written if isinstance(w, dict) and not w.get("ok", True))
            change = f"{len(written)} setpoint(s) written" + (f", {failed} failed" if failed else "")
        result = "; ".join(bits)
    elif kind == "mode":
        change = f"{e.get('from', '?')} → {e.get('to', '?')}"
    elif kind == "override":
        change = f"→ {_value(e.get('value'), _unit(names, device, point))}"
        result = f"until {local_time(e.get('until'), tz)}"
    elif kind in ("override_cleared", "override_expired"):
        result = kind.removeprefix("override_")
    elif kind in ("cdu_hold", "cdu_revert", "revert"):
        result = str(e.get("why", ""))
        if kind == "cdu_hold":
            result = f"{e.get('hold', '')}: {result}"
        written = e.get("written")
        if isinstance(written, list):
            change = f"{len(written)} setpoint(s) written"
    elif kind == "thermal_guard":
        alarms = e.get("alarms")
        result = "; ".join(str(a) for a in alarms) if isinstance(alarms, list) else ""
    elif kind == "feed_forward":
        cdus = e.get("cdus")
        device = ", ".join(str(c) for c in cdus) if isinstance(cdus, list) else None
        u0, u1 = e.get("util_from"), e.get("util_to")
        if isinstance(u0, list) and isinstance(u1, list):
            change = "GPU load " + ", ".join(f"{num(a, '%')} → {num(b, '%')}" for a, b in zip(u0, u1, strict=False))
        refused = e.get("refused")
        result = ("refused: " + "; ".join(str(r) for r in refused)) if isinstance(refused, list) else ""
    elif kind not in ACTIONS:
        result = _plain(e)
    return {
        "actor": actor,
        "action": ACTIONS.get(kind, kind),
        "target": _target(device, point),
        "change": change,
        "result": result,
    }
