"""The dashboard's side of the cooling supervisor: the one interface (``control.interface.SupervisorControl``) and
the audit trail.

The dashboard imports only the interface from control/, never the controller: the composition root hands it the
running supervisor, or None when no controller runs (the Control page then says so). Audit entries are read from
the JSON-lines files the supervisor and the setpoint writer append to.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from control.interface import MODES
from dashboards.audit_rows import control_row, write_row
from dashboards.control_view import Names

__all__ = ["MODES", "audit_entries", "entry_time", "read_jsonl_tail"]  # MODES: for the Control page


AUDIT_FILES = {"control": "control.jsonl", "writes": "writes.jsonl", "users": "users.jsonl"}


def read_jsonl_tail(path: Path, limit: int = 200, max_bytes: int = 2_000_000) -> list[dict[str, Any]]:
    """The last ``limit`` readable JSON objects of a JSON-lines file (a torn last line is skipped)."""
    if not path.is_file():
        return []
    with path.open("rb") as fh:
        fh.seek(0, 2)
        size = fh.tell()
        fh.seek(max(0, size - max_bytes))
        chunk = fh.read().decode("utf-8", errors="replace")
    out: list[dict[str, Any]] = []
    for line in chunk.splitlines()[-limit:]:
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict):
            out.append(doc)
    return out


def entry_time(entry: dict[str, Any]) -> float:
    """Seconds since the epoch of an audit entry (``ts_ns``, or ``ts`` as ISO-8601 text or seconds)."""
    for key in ("ts_ns", "ts"):
        v = entry.get(key)
        if isinstance(v, int | float):
            return float(v) / (1e9 if key == "ts_ns" or v > 1e12 else 1.0)
        if isinstance(v, str):
            try:
                from datetime import datetime

                return datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
    return 0.0


def user_row(e: dict[str, Any]) -> dict[str, str]:
    """A user-administration event (dashboards.pages.users) as a table row: who did what to which account."""
    ok = e.get("ok", True)
    return {
        "actor": str(e.get("user", "")),
        "action": str(e.get("action", "")),
        "target": str(e.get("target", "")),
        "change": "",
        "result": "done" if ok else f"refused: {e.get('detail', '')}",
    }


def audit_entries(
    data_dir: Path,
    alarm_events: Iterable[dict[str, Any]] = (),
    limit: int = 200,
    names: Names | None = None,
    tz: str = "UTC",
) -> list[dict[str, Any]]:
    """Newest first: the supervisor's and the writer's audit lines (heartbeat writes only where they failed) plus
    alarm acknowledgements, as table rows with
    ``t`` (epoch seconds), ``source``, ``actor``, ``action``, ``target`` (device · point), ``change`` (old → new)
    and ``result`` (reason or outcome), all plain text."""
    rows: list[dict[str, Any]] = []
    for source, name in AUDIT_FILES.items():
        for e in read_jsonl_tail(data_dir / "audit" / name, limit):
            if source == "writes" and e.get("why") == "heartbeat" and e.get("ok", True):
                continue  # one per device every few seconds: they would bury every other line (failures stay)
            if source == "writes":
                row = write_row(e, names)
            elif source == "users":
                row = user_row(e)
            else:
                row = control_row(e, names, tz)
            rows.append({"t": entry_time(e), "source": source, **row})
    for e in alarm_events:
        rows.append(
            {
                "t": entry_time(e),
                "source": "alarms",
                "actor": str(e.get("acked_by", "")),
                "action": "acknowledge",
                "target": str(e.get("device") or e.get("id") or ""),
                "change": "",
                "result": str(e.get("message", "")),
            }
        )
    rows.sort(key=lambda r: r["t"], reverse=True)
    return rows[:limit]
