"""Server-side filtering, sorting and paging for a ``dash_table.DataTable`` (``filter_action="custom"``).

The table sends its ``filter_query`` (``{actor} contains ann && {action} = write``), ``sort_by`` and page; only the
page's rows go back to the browser, so a long audit log costs the same as a short one. The grammar is the
DataTable's own filter syntax: ``contains``,
``=``/``eq``, ``!=``/``ne``, ``<``, ``<=``, ``>``, ``>=`` and ``datestartswith``; text matches ignore case.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

# The DataTable's spellings of each operator; each may carry a case prefix (``s``: sensitive, ``i``: insensitive),
# read as the same operator (text matching here always ignores case).
OPERATORS = {">=": ">=", "ge": ">=", "<=": "<=", "le": "<=", "<": "<", "lt": "<", ">": ">", "gt": ">", "!=": "!=",
             "ne": "!=", "=": "=", "eq": "=", "contains": "contains", "datestartswith": "datestartswith"}  # fmt: skip
_PART = re.compile(r"^\{([^}]*)\}\s+(\S+)\s+(.*)$", re.DOTALL)


def _operator(token: str) -> str | None:
    if token in OPERATORS:
        return OPERATORS[token]
    if token[:1] in ("s", "i") and token[1:] in OPERATORS:
        return OPERATORS[token[1:]]
    return None


def parse_filter(query: str) -> list[tuple[str, str, str]]:
    """``(column, operator, value)`` per ``&&``-joined part; parts that are not ``{column} op value`` are dropped."""
    out = []
    for part in (query or "").split(" && "):
        m = _PART.match(part.strip())
        op = _operator(m.group(2)) if m else None
        if m is None or op is None:
            continue
        value = m.group(3).strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"`":
            value = value[1:-1].replace("\\" + value[0], value[0])
        out.append((m.group(1), op, value))
    return out


def _compare(cell: object, op: str, value: str) -> bool:
    text = "" if cell is None else str(cell)
    if op in ("contains", "datestartswith"):
        return value.lower() in text.lower() if op == "contains" else text.startswith(value)
    a: Any = text.lower()
    b: Any = value.lower()
    try:  # numbers compare as numbers where both sides are
        a, b = float(text), float(value)
    except ValueError:
        pass
    if isinstance(a, float) and math.isnan(a):
        return False
    checks: dict[str, Callable[[Any, Any], bool]] = {
        "=": lambda x, y: x == y, "!=": lambda x, y: x != y, "<": lambda x, y: x < y,
        "<=": lambda x, y: x <= y, ">": lambda x, y: x > y, ">=": lambda x, y: x >= y,
    }  # fmt: skip
    return checks[op](a, b)


def query_rows(
    rows: Sequence[Mapping[str, Any]],
    filter_query: str | None,
    sort_by: Sequence[Mapping[str, Any]] | None,
    sort_keys: Mapping[str, str] | None = None,
) -> list[Mapping[str, Any]]:
    """``rows`` filtered by ``filter_query`` and sorted by ``sort_by`` (``sort_keys``: a column sorted by another,
    e.g. the displayed time by its epoch seconds); unknown columns in either are ignored."""
    parts = parse_filter(filter_query or "")
    out = [r for r in rows if all(c not in r or _compare(r.get(c), op, v) for c, op, v in parts)]
    for spec in reversed(list(sort_by or [])):  # stable sorts, last key first
        col = str(spec.get("column_id", ""))
        key = (sort_keys or {}).get(col, col)
        if not out or key not in out[0]:
            continue
        out.sort(key=functools.partial(_row_key, key), reverse=spec.get("direction") == "desc")
    return out


def _row_key(key: str, row: Mapping[str, Any]) -> tuple[int, float, str]:
    return _sort_key(row.get(key))


def _sort_key(v: object) -> tuple[int, float, str]:
    if isinstance(v, int | float) and not isinstance(v, bool):
        return (0, float(v), "")
    return (1, 0.0, "" if v is None else str(v).lower())


def page(rows: Sequence[Mapping[str, Any]], current: int | None, size: int) -> tuple[list[Mapping[str, Any]], int]:
    """The rows of page ``current`` (0-based, clipped to the last page) and the page count (at least 1)."""
    count = max(1, math.ceil(len(rows) / size))
    cur = min(max(int(current or 0), 0), count - 1)
    return list(rows[cur * size : (cur + 1) * size]), count
