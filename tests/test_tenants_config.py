"""`[[tenants]]` and `[carbon]` in the site file: validated once, with one line naming the entry and value."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest

from aidc.config import site_from_dict
from aidc.errors import ConfigError
from aidc.sitegen import SiteTemplate, render_site


def _doc(**extra: Any) -> dict[str, Any]:
    doc = tomllib.loads(render_site(SiteTemplate(racks=2)))
    doc.update(extra)
    return doc


def test_leases_and_carbon_parse() -> None:
    """Two leases of one tenant and a carbon table validate; the lease bounds are local midnights."""
    import datetime as dt

    site = site_from_dict(_doc(
        tenants=[{"name": "acme", "racks": ["h1-r01-01"], "from": dt.date(2026, 10, 1), "until": dt.date(2026, 10, 16)},
                 {"name": "acme", "racks": ["h1-r01-02"], "from": dt.date(2026, 10, 16)}],
        carbon={"intensity": "pjm.csv.gz", "residual_mix_g_per_kwh": 480, "contracts": [{"name": "ppa", "share": 0.4}]},
    ))  # fmt: skip
    first = site.config.tenants[0]
    start, end = first.bounds_ns("America/New_York")
    assert start == 1_790_827_200 * 10**9  # 2026-10-01T04:00Z
    assert end is not None
    assert site.config.carbon.contracts[0].g_per_kwh == 0.0


@pytest.mark.parametrize(
    ("tenants", "carbon", "message"),
    [
        ([{"name": "acme", "racks": ["nope"], "from": "2026-10-01"}], {}, "tenants[0].racks: 'nope' is not a rack of this site"),
        ([{"name": "acme", "racks": ["h1-r01-01"], "from": "2026-10-01"},
          {"name": "bolt", "racks": ["h1-r01-01"], "from": "2026-10-20"}], {},
         "tenants[1].racks: rack 'h1-r01-01' is already leased to 'acme' (tenants[0]) over the same time"),
        ([{"name": "acme", "racks": ["h1-r01-01"], "from": "2026-10-10", "until": "2026-10-01"}], {},
         "tenants[0]: until 2026-10-01 is not after from 2026-10-10"),
        ([{"name": "acme", "racks": ["h1-r01-01"]}], {}, "tenants[0]: missing key 'from'"),
        ([], {"contracts": [{"name": "a", "share": 0.7}, {"name": "b", "share": 0.5}]},
         "carbon: contracts cover 1.200 of consumption"),
        ([], {"residual_mix_g_per_kwh": -3}, "carbon.residual_mix_g_per_kwh: -3"),
    ],
)  # fmt: skip
def test_bad_tenant_or_carbon_is_one_line(tenants: list[dict[str, Any]], carbon: dict[str, Any], message: str) -> None:
    """Unknown racks, double leases, reversed dates, a missing date and bad carbon factors name the entry."""
    with pytest.raises(ConfigError) as err:
        site_from_dict(_doc(tenants=tenants, carbon=carbon), source="site.toml")
    assert message in str(err.value)
    assert str(err.value).startswith("site.toml: ")
