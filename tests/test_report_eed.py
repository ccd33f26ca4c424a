"""The annual EU export (Delegated Regulation (EU) 2024/1364): metered items from a year of known counters,
site-file facts, missing items listed and never invented, and the 500 kW obligation threshold."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pandas as pd
import pytest

from analytics.report.config import report_config
from analytics.report.eed import build_eed, write_eed
from historian import open_historian
from tests.report_fixture import fixture_batch, fixture_site, write_fixture

YEAR_START, YEAR_END = pd.Timestamp("2025-01-01T00:00Z"), pd.Timestamp("2026-01-01T00:00Z")
HOURS = 8760.0
EED_TABLE = """
[report.eed]
data_centre_name = "Fixture DC"
operator = "Example Operations GmbH"
country = "DE"
installed_it_power_kw = 800.0
"""


@pytest.fixture(scope="module")
def year_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder whose site's historian holds 2025 at 15-minute readings (no gap)."""
    tmp = tmp_path_factory.mktemp("eed")
    site = fixture_site(tmp)
    write_fixture(site, fixture_batch(site, YEAR_START, YEAR_END, pd.Timedelta("15min"), None))
    return tmp


def _export(tmp: Path, extra: str = ""):  # type: ignore[no-untyped-def]
    site = fixture_site(tmp, extra)
    with open_historian(site.config.historian, site.data_dir) as hist:
        return build_eed(hist, site, 2025, report_config(site))


def test_metered_items_and_indicators_are_the_hand_computed_ones(year_dir: Path) -> None:
    """E_DC = 124 kW x 8760 h, E_IT at UPS output = 102 kW x 8760 h, PUE = 124/102."""
    items = {i.key: i for i in _export(year_dir).items}
    assert items["e_dc_kwh"].value == pytest.approx(124.0 * HOURS, abs=0.05)
    assert items["e_it_kwh"].value == pytest.approx(102.0 * HOURS, abs=0.05)
    assert items["e_it_kwh"].source == "UPS output counters"
    assert items["pue"].value == pytest.approx(round(124.0 / 102.0, 4))
    assert items["e_dc_kwh"].unit == "kWh"
    assert items["water_input_m3"].unit == "m³"


def test_fields_the_site_cannot_supply_are_missing_not_invented(year_dir: Path) -> None:
    """No water, heat-reuse or renewable meter and no site facts: those items are missing with no value."""
    exp = _export(year_dir)
    items = {i.key: i for i in exp.items}
    for key in ("water_input_m3", "wue", "waste_heat_reused_kwh", "erf", "renewable_energy_kwh", "ref", "owner",
                "total_floor_area_m2", "incoming_traffic_eb", "server_capacity_w"):  # fmt: skip
        assert items[key].status == "missing", key
        assert items[key].value is None, key
    assert json.loads(exp.to_json())["missing"] == [i.key for i in exp.items if i.status == "missing"]


def test_below_500_kw_the_site_is_not_obliged(year_dir: Path) -> None:
    """One 132 kW rack: installed IT power demand (sum of rated_kw) is below 500 kW, so not obliged."""
    exp = _export(year_dir)
    assert exp.installed_it_kw == 132.0
    assert exp.obliged is False
    assert "not obliged" in exp.obligation
    assert "below 500 kW" in exp.obligation


def test_site_facts_and_the_threshold_come_from_the_report_table(year_dir: Path, tmp_path: Path) -> None:
    """[report.eed] facts are reported as site-file items; 800 kW makes the site obliged; JSON and CSV agree."""
    exp = _export(year_dir, EED_TABLE)
    items = {i.key: i for i in exp.items}
    assert items["data_centre_name"].value == "Fixture DC"
    assert items["data_centre_name"].status == "site file"
    assert items["country"].value == "DE"
    assert exp.obliged is True
    assert "by 15 May 2026" in exp.obligation
    js, cs = write_eed(exp, tmp_path)
    rows = list(csv.DictReader(io.StringIO(cs.read_text())))
    doc = json.loads(js.read_text())
    assert [r["key"] for r in rows] == [i["key"] for i in doc["items"]]
    assert {r["key"]: r["status"] for r in rows}["owner"] == "missing"


def test_bad_report_table_is_one_line_naming_the_key(year_dir: Path) -> None:
    """A wrong type in [report.eed] names the file and the key path."""
    from aidc.errors import ConfigError

    with pytest.raises(ConfigError, match=r"site\.toml: report\.eed\.installed_it_power_kw: 'lots'"):
        fixture_site(year_dir, '\n[report.eed]\ninstalled_it_power_kw = "lots"\n')  # refused at load
