"""Render a :class:`MonthReport` to one self-contained HTML file (SVG charts inline) and a PDF of the same HTML.

The PDF comes from WeasyPrint: it lays out the very HTML the browser shows (CSS paged media: A4, page numbers),
keeps the SVG charts as vectors and their text searchable, installs from PyPI with Debian's pango libraries, and
writes byte-identical files for identical input (no creation date unless the HTML sets one). ReportLab would have
meant a second layout of every section in Python.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pandas as pd
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from aidc.errors import ConfigError
from analytics.energy.counters import DEFAULT_MAX_GAP
from analytics.report.build import POINT_TEXT
from analytics.report.charts import all_charts
from analytics.report.model import MonthReport
from analytics.report.savings import METHOD

_ENV = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html", "j2"]),
    undefined=StrictUndefined,
    trim_blocks=False,
    keep_trailing_newline=True,
)


def num(x: float | None, places: int) -> str:
    """``12,345.6``; ``n/a`` for a missing value."""
    if x is None or pd.isna(x):
        return "n/a"
    return f"{x:,.{places}f}"


def _version() -> str:
    try:
        return version("aidc")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


def _coverage_rows(rep: MonthReport) -> list[dict[str, object]]:
    rows: dict[str, dict[str, object]] = {}
    for s in rep.meter_stats:
        row = rows.setdefault(
            s.role.value, {"role": s.role.value, "n": 0, "coverage": 1.0, "estimated": 0.0, "wraps": 0, "resets": 0}
        )
        row["n"] = int(row["n"]) + 1  # type: ignore[call-overload]
        row["coverage"] = min(float(row["coverage"]), s.energy.coverage)  # type: ignore[arg-type]
        row["estimated"] = float(row["estimated"]) + s.energy.estimated  # type: ignore[arg-type]
        row["wraps"] = int(row["wraps"]) + s.energy.wraps  # type: ignore[call-overload]
        row["resets"] = int(row["resets"]) + s.energy.resets  # type: ignore[call-overload]
    return [rows[k] for k in sorted(rows)]


def render_html(rep: MonthReport) -> str:
    """The report as one HTML document with inline SVG charts and no external resources."""
    tz = rep.timezone

    def local(ts: pd.Timestamp) -> str:
        return pd.Timestamp(ts).tz_convert(tz).strftime("%Y-%m-%d %H:%M %Z")

    return _ENV.get_template("month.html.j2").render(
        r=rep,
        charts=all_charts(rep),
        num=num,
        local=local,
        point=POINT_TEXT[rep.pue.category],
        coverage=_coverage_rows(rep),
        max_gap=f"{int(DEFAULT_MAX_GAP.total_seconds() // 60)} min",
        savings_method=METHOD,
        version=_version(),
    )


def render_pdf(html: str) -> bytes:
    """The PDF of the HTML (WeasyPrint)."""
    try:
        from weasyprint import HTML  # imported here: pango is loaded only when a PDF is wanted
    except (ImportError, OSError) as exc:  # WeasyPrint loads pango through cffi and raises OSError without it
        raise ConfigError(
            f"PDF renderer WeasyPrint cannot start ({str(exc).splitlines()[0]}): install the Debian packages "
            "libpango-1.0-0 and libpangoft2-1.0-0 (make test does), or write the HTML only with --no-pdf"
        ) from None

    # WeasyPrint's CSS parser warns about every SVG presentation property (fill, stroke, text-anchor) in the inline
    # charts' style attributes, which its SVG renderer then applies: hundreds of lines that mean nothing.
    wp_log = logging.getLogger("weasyprint")
    level = wp_log.level
    wp_log.setLevel(logging.ERROR)
    try:
        return bytes(HTML(string=html).write_pdf())
    finally:
        wp_log.setLevel(level)


def summary_dict(rep: MonthReport) -> dict[str, object]:
    """Headline figures for machines (dashboard listing, tests): PUE, energies, coverage, breakdown, tenants."""
    out: dict[str, object] = {
        "site": rep.site,
        "month": rep.month.label,
        "timezone": rep.timezone,
        "label": rep.label,
        "category_text": rep.category_text,
        "pue": rep.pue.to_dict(),
        "comparisons": [{"label": c.label, "pue": c.pue, "e_dc_kwh": c.e_dc_kwh, "e_it_kwh": c.e_it_kwh,
                         "note": c.note} for c in rep.comparisons],
        "breakdown": [{"name": b.name, "kwh": b.kwh, "basis": b.basis} for b in rep.breakdown],
        "free_cooling_h": {
            "full": rep.free_cooling.full_h,
            "partial": rep.free_cooling.partial_h,
            "none": rep.free_cooling.none_h,
            "no_reading": rep.free_cooling.unknown_h,
        },
        "savings": {
            "active": rep.savings.active,
            "statement": rep.savings.statement,
            "saved_kwh": rep.savings.saved_kwh,
        },
    }
    if rep.tenants is not None:
        out["tenants"] = rep.tenants.to_dict()
    return out


@dataclass(frozen=True, slots=True)
class ReportFiles:
    """Paths of one written report."""

    html: Path
    pdf: Path | None
    json: Path


def _write(path: Path, data: bytes) -> None:
    """Write via a temporary file and rename, so a reader (the dashboard) never sees half a report."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_report(rep: MonthReport, out_dir: Path, *, pdf: bool = True) -> ReportFiles:
    """Write ``pue-report-<site>-<YYYY-MM>.html``, ``.pdf`` and ``.json`` under ``out_dir``."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--out {out_dir}: cannot create the folder: {exc.strerror}") from None
    stem = f"pue-report-{rep.site}-{rep.month.label}"
    html = render_html(rep)
    files = ReportFiles(out_dir / f"{stem}.html", out_dir / f"{stem}.pdf" if pdf else None, out_dir / f"{stem}.json")
    _write(files.html, html.encode("utf-8"))
    if files.pdf is not None:
        _write(files.pdf, render_pdf(html))
    _write(files.json, (json.dumps(summary_dict(rep), indent=2, sort_keys=True) + "\n").encode("utf-8"))
    return files
