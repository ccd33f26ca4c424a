"""The ``[[tenants]]`` and ``[carbon]`` tables of the site file: who leases which racks when, and the grid's carbon.

A tenant may appear in several ``[[tenants]]`` entries with the same name: each entry is one lease (a set of racks
over ``from`` .. ``until``), so a tenant that moves racks mid-month is two entries. Dates are the site's local
midnight; ``until`` is exclusive and may be left out for an open lease::

    [[tenants]]
    name = "acme"
    racks = ["h1-r01-01", "h1-r01-02"]
    from = 2026-10-01
    until = 2026-10-16

    [[tenants]]
    name = "acme"                  # the same tenant, moved to another rack on the 16th
    racks = ["h1-r02-01"]
    from = 2026-10-16

    [carbon]
    intensity = "grid/PJM_hourly_2022.csv.gz"   # hourly grid intensity (timestamp, avg_CI gCO2/kWh), location-based
    residual_mix_g_per_kwh = 480.0               # market-based factor of energy not covered by a contract
    contracts = [{ name = "wind PPA", share = 0.4, g_per_kwh = 0.0 }]
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, model_validator

from aidc.errors import ConfigError

NS = 1_000_000_000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class TenantLease(_Strict):
    """One lease: a tenant's racks over ``from`` .. ``until`` (exclusive; dates are the site's local midnight)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    racks: tuple[str, ...] = Field(min_length=1)
    start: dt.date | dt.datetime = Field(alias="from")
    until: dt.date | dt.datetime | None = None
    account: str | None = None  # the billing system's account id, copied into the export

    @model_validator(mode="after")
    def _order(self) -> TenantLease:
        if self.until is not None and _naive_key(self.until) <= _naive_key(self.start):
            raise ValueError(f"until {self.until} is not after from {self.start}")
        return self

    def bounds_ns(self, tz: str) -> tuple[int, int | None]:
        """Start and end (None: open) of the lease in UTC ns; dates and naive times are the site's local time."""
        return to_ns(self.start, tz), None if self.until is None else to_ns(self.until, tz)


class CarbonContract(_Strict):
    """A contractual instrument (PPA, green tariff, certificates) covering a share of consumption at a factor."""

    name: str
    share: float = Field(gt=0, le=1)
    g_per_kwh: float = Field(0.0, ge=0, le=2000)


class CarbonConfig(_Strict):
    """Grid carbon for location-based (hourly intensity) and market-based (contracts, residual mix) Scope 2."""

    intensity: str | None = None  # CSV(.gz) with ``timestamp`` (UTC) and ``avg_CI`` (gCO2/kWh), hourly
    flat_g_per_kwh: float | None = Field(None, ge=0, le=2000)  # location-based factor when no hourly series
    contracts: tuple[CarbonContract, ...] = ()
    residual_mix_g_per_kwh: float | None = Field(None, ge=0, le=2000)

    @model_validator(mode="after")
    def _shares(self) -> CarbonConfig:
        total = sum(c.share for c in self.contracts)
        if total > 1.0 + 1e-9:
            raise ValueError(f"contracts cover {total:.3f} of consumption; shares must add up to at most 1")
        return self


def _naive_key(v: dt.date | dt.datetime) -> dt.datetime:
    if isinstance(v, dt.datetime):
        return v.astimezone(dt.UTC).replace(tzinfo=None) if v.tzinfo else v
    return dt.datetime(v.year, v.month, v.day)  # noqa: DTZ001 - compared with other naive values only


def to_ns(v: dt.date | dt.datetime, tz: str) -> int:
    """A lease date (local midnight) or time (naive: local) as UTC ns."""
    zone = ZoneInfo(tz)
    if isinstance(v, dt.datetime):
        aware = v if v.tzinfo is not None else v.replace(tzinfo=zone)
    else:
        aware = dt.datetime(v.year, v.month, v.day, tzinfo=zone)
    return int(aware.timestamp()) * NS + aware.microsecond * 1000


def check_tenants(leases: Iterable[TenantLease], racks: Iterable[str], tz: str, source: str) -> None:
    """Every leased rack exists and no rack is leased twice at the same time; ConfigError names the entry."""
    known = set(racks)
    taken: dict[str, list[tuple[int, int | None, int, str]]] = {}
    for i, lease in enumerate(leases):
        start, end = lease.bounds_ns(tz)
        for rack in lease.racks:
            if rack not in known:
                raise ConfigError(f"{source}: tenants[{i}].racks: {rack!r} is not a rack of this site")
            for o_start, o_end, j, other in taken.get(rack, []):
                if (end is None or o_start < end) and (o_end is None or start < o_end):
                    raise ConfigError(
                        f"{source}: tenants[{i}].racks: rack {rack!r} is already leased to {other!r} "
                        f"(tenants[{j}]) over the same time"
                    )
            taken.setdefault(rack, []).append((start, end, i, lease.name))
