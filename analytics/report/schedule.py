"""Entry points for writing reports: one month on demand, and last month's report when a new month has begun.

The main job calls :meth:`MonthlyReports.tick` periodically (hourly); it writes the previous month's report once, on
the first day of the month (local time) or at the first call after it, and never twice: a report already on disk is
left alone. Reports go to ``<data_dir>/reports/``, where the dashboard lists them.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from aidc.config import Site
from aidc.errors import AidcError
from analytics.report.build import build_month_report
from analytics.report.config import report_config
from analytics.report.period import Month, check_complete
from analytics.report.render import ReportFiles, write_report
from historian import Historian

log = logging.getLogger(__name__)


def reports_dir(site: Site) -> Path:
    """``<data_dir>/reports``: where reports are written by default and listed by the dashboard."""
    return site.data_dir / "reports"


def write_month_report(
    hist: Historian, site: Site, month: Month, *, now: pd.Timestamp, out_dir: Path | None = None, pdf: bool = True
) -> ReportFiles:
    """Build and write the report of a finished month; AidcError (one line) when it cannot be made."""
    check_complete(month, now)
    cfg = report_config(site)
    rep = build_month_report(hist, site, month, cfg)
    return write_report(rep, out_dir or reports_dir(site), pdf=pdf)


def last_month(site: Site, now: pd.Timestamp) -> Month:
    """The calendar month before the one containing ``now`` (site time zone)."""
    tz = site.config.site.timezone
    local = pd.Timestamp(now).tz_convert(tz)
    return Month(local.year, local.month, tz).shift(-1)


class MonthlyReports:
    """Writes last month's report once a new month has begun; the main job calls :meth:`tick` periodically.

    A month whose report is already on disk is skipped. A month that cannot be reported yet (no data, a bad
    ``[report]`` table) is logged once as a warning and retried quietly at later ticks (late data may arrive);
    nothing here ever stops the main job.
    """

    def __init__(self, site: Site) -> None:
        self.site = site
        self._warned: set[str] = set()

    def tick(self, hist: Historian, now: pd.Timestamp) -> ReportFiles | None:
        """Write last month's report if it is due and missing; returns the files written, or None."""
        month = last_month(self.site, now)
        out = reports_dir(self.site)
        if (out / f"pue-report-{self.site.name}-{month.label}.html").exists():
            return None
        try:
            files = write_month_report(hist, self.site, month, now=now, out_dir=out)
        except AidcError as exc:
            level = logging.DEBUG if month.label in self._warned else logging.WARNING
            self._warned.add(month.label)
            log.log(level, "monthly PUE report %s for site %s not written: %s", month.label, self.site.name, exc)
            return None
        log.info("monthly PUE report %s for site %s written to %s", month.label, self.site.name, files.html)
        return files
