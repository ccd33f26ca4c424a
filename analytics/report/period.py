"""Calendar months in the site's time zone, and the checks a report month must pass before anything is read."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pandas as pd

from aidc.errors import ConfigError

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


@dataclass(frozen=True, slots=True, order=True)
class Month:
    """A calendar month in a time zone: local midnight on the 1st to local midnight on the 1st of the next."""

    year: int
    month: int
    tz: str = "UTC"

    @property
    def label(self) -> str:
        """``2026-10``."""
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def start(self) -> pd.Timestamp:
        """First instant of the month (UTC)."""
        return pd.Timestamp(year=self.year, month=self.month, day=1, tz=self.tz).tz_convert("UTC")

    @property
    def end(self) -> pd.Timestamp:
        """First instant after the month (UTC)."""
        return self.shift(1).start

    @property
    def hours(self) -> float:
        """Length in hours (743 or 745 in a month with a daylight-saving change)."""
        return (self.end - self.start) / pd.Timedelta("1h")

    def shift(self, months: int) -> Month:
        """The month ``months`` later (negative: earlier)."""
        k = self.year * 12 + self.month - 1 + months
        return Month(k // 12, k % 12 + 1, self.tz)

    def hour_edges(self) -> pd.DatetimeIndex:
        """Local hour boundaries of the month, in UTC (DST-aware)."""
        local = pd.date_range(self.start.tz_convert(self.tz), self.end.tz_convert(self.tz), freq="h")
        return pd.DatetimeIndex(local).tz_convert("UTC")


def parse_month(text: str, tz: str = "UTC", *, what: str = "--month") -> Month:
    """``YYYY-MM`` to a :class:`Month`; ConfigError names the option and the value."""
    m = _MONTH.match(text.strip())
    if not m or not 1 <= int(m.group(2)) <= 12:
        raise ConfigError(f"{what} {text!r}: expected a month as YYYY-MM, e.g. 2026-10")
    return Month(int(m.group(1)), int(m.group(2)), tz)


def check_complete(month: Month, now: pd.Timestamp, *, what: str = "--month") -> None:
    """Refuse a month that has not started, or has not ended, at ``now``."""
    local_end = month.end.tz_convert(month.tz)
    if month.start > now:
        today = now.tz_convert(month.tz)
        raise ConfigError(f"{what} {month.label}: that month is in the future (today is {today:%Y-%m-%d})")
    if month.end > now:
        raise ConfigError(
            f"{what} {month.label}: the month is incomplete until {local_end:%Y-%m-%d %H:%M} {month.tz}; "
            "a monthly report covers a whole month"
        )
