"""The report's charts as self-contained SVG text (matplotlib, no pyplot state, byte-identical for equal data).

Text stays text in the SVG (``svg.fonttype = none``) so the PDF keeps it searchable and the tests can find every
chart's title with ``pdftotext``; the hash salt and a missing date make the output deterministic.
"""

from __future__ import annotations

import io
import re
from typing import Any

import matplotlib as mpl
import numpy as np
from matplotlib.figure import Figure

from analytics.report.model import MonthReport

TITLES = {
    "daily": "Daily PUE",
    "wetbulb": "Hourly PUE against outdoor wet bulb",
    "breakdown": "Energy breakdown",
}
_RC: dict[Any, Any] = {
    "svg.hashsalt": "aidc-report",
    "svg.fonttype": "none",
    "font.family": "DejaVu Sans",
    "font.size": 8.0,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
BLUE, GREY, ORANGE = "#1f5fa8", "#9aa5b1", "#d9822b"


_ID = re.compile(r'(\bid="|href="#|url\(#)')


def _svg(fig: Figure, key: str) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": "aidc"}, bbox_inches="tight")
    text = buf.getvalue()
    # Drop the XML prolog and DOCTYPE (the SVG is inlined in HTML), and prefix matplotlib's element ids
    # (figure_1, patch_1, ...) with the chart's key: three charts in one document must not share ids.
    return _ID.sub(lambda m: f"{m.group(1)}{key}-", text[text.index("<svg") :])


def daily_chart(rep: MonthReport) -> str:
    """Bars of daily PUE; days with unmetered hours lighter; the month's PUE and the target as lines."""
    with mpl.rc_context(_RC):
        fig = Figure(figsize=(7.0, 2.6))
        ax = fig.add_subplot()
        d = rep.daily
        x = np.arange(1, len(d) + 1)
        colors = [GREY if u > 0 else BLUE for u in d["uncovered_h"]]
        ax.bar(x, d["pue"].fillna(0.0), color=colors, width=0.8)
        if rep.pue.pue is not None:
            ax.axhline(rep.pue.pue, color="black", linewidth=0.8, label=f"month {rep.pue.pue:.3f}")
        if rep.target is not None:
            ax.axhline(rep.target, color=ORANGE, linewidth=1.0, linestyle="--", label=f"target {rep.target:.3f}")
        vals = d["pue"].dropna()
        if len(vals):
            lo, hi = float(vals.min()), float(vals.max())
            if rep.target is not None:
                lo, hi = min(lo, rep.target), max(hi, rep.target)
            pad = max(0.01, 0.15 * (hi - lo))
            ax.set_ylim(max(1.0, lo - pad) if lo >= 1.0 else lo - pad, hi + pad)
        ax.set_xlim(0.3, len(d) + 0.7)
        ax.set_xlabel(f"day of {rep.month.label} ({rep.timezone}); grey: day with unmetered hours")
        ax.set_ylabel("PUE")
        ax.set_title(TITLES["daily"], loc="left", fontweight="bold")
        ax.legend(loc="upper right", frameon=False, fontsize=7)
        return _svg(fig, "daily")


def wetbulb_chart(rep: MonthReport) -> str:
    """Scatter of hourly PUE against wet bulb; hours interpolated across a gap drawn hollow."""
    with mpl.rc_context(_RC):
        fig = Figure(figsize=(7.0, 2.8))
        ax = fig.add_subplot()
        h = rep.hourly
        ok = h["metered"].to_numpy(dtype=bool) & h["pue"].notna().to_numpy() & h["wetbulb_c"].notna().to_numpy()
        gap = ~h["metered"].to_numpy(dtype=bool) & h["pue"].notna().to_numpy() & h["wetbulb_c"].notna().to_numpy()
        ax.scatter(h["wetbulb_c"][ok], h["pue"][ok], s=5, color=BLUE, linewidths=0, label="metered hour")
        if gap.any():
            ax.scatter(h["wetbulb_c"][gap], h["pue"][gap], s=9, facecolors="none", edgecolors=GREY, linewidths=0.6,
                       label="interpolated across a gap")  # fmt: skip
        if not (ok.any() or gap.any()):
            ax.text(0.5, 0.5, "no wet-bulb readings this month", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlabel("outdoor wet bulb, °C (hourly mean)")
        ax.set_ylabel("hourly PUE")
        ax.set_title(TITLES["wetbulb"], loc="left", fontweight="bold")
        ax.legend(loc="upper left", frameon=False, fontsize=7)
        return _svg(fig, "wetbulb")


def breakdown_chart(rep: MonthReport) -> str:
    """Horizontal bars of the month's energy by use, in MWh, with the share of E_DC."""
    with mpl.rc_context(_RC):
        items = rep.breakdown
        fig = Figure(figsize=(7.0, 0.35 * len(items) + 0.8))
        ax = fig.add_subplot()
        y = np.arange(len(items))[::-1]
        mwh = np.array([i.kwh for i in items]) / 1000.0
        ax.barh(y, mwh, color=[BLUE if k == 0 else ORANGE for k in range(len(items))], height=0.6)
        total = rep.pue.e_dc_kwh
        for yi, item, v in zip(y, items, mwh, strict=True):
            ax.text(max(v, 0.0), yi, f" {100 * item.share(total):.1f} %", va="center", fontsize=7)
        ax.set_yticks(y, [i.name for i in items])
        ax.set_xlabel("MWh this month")
        ax.set_title(TITLES["breakdown"], loc="left", fontweight="bold")
        return _svg(fig, "breakdown")


def all_charts(rep: MonthReport) -> dict[str, str]:
    """Every chart of the report by key (the keys of :data:`TITLES`)."""
    return {"daily": daily_chart(rep), "wetbulb": wetbulb_chart(rep), "breakdown": breakdown_chart(rep)}
