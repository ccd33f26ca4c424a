"""Tenant billing: the fixture month's hand-computed energy, overhead, peak and carbon, through the CLI and the engine."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from aidc.config import load_site
from aidc.errors import ConfigError
from analytics.leasing.billing import month_bounds, report_from_historian
from analytics.leasing.tenants import UNALLOCATED, TenantReport
from historian import open_historian
from tests import tenant_fixture as fx


@pytest.fixture(scope="module")
def fixture_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture month written once into a DuckDB historian."""
    return fx.build(tmp_path_factory.mktemp("tenants"))


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app.cli", *args], capture_output=True, text=True, check=False)


def check_fixture_figures(tenants: dict[str, dict[str, object]], site: dict[str, object]) -> None:
    """The hand-computed figures of the fixture month (shared with the API test)."""
    acme, bolt = tenants["acme"], tenants["bolt"]
    assert acme["it_kwh"] == pytest.approx(fx.ACME_IT, rel=1e-9)
    assert bolt["it_kwh"] == pytest.approx(fx.BOLT_IT, rel=1e-9), "the wrapped 32-bit counter is counted once"
    assert acme["overhead_kwh"] == pytest.approx(fx.ACME_IT * (fx.PUE - 1), rel=1e-9)
    assert bolt["overhead_kwh"] == pytest.approx(fx.BOLT_IT * (fx.PUE - 1), rel=1e-9)
    assert acme["cooling_overhead_kwh"] == pytest.approx(fx.ACME_IT * fx.SITE_COOLING / fx.SITE_IT, rel=1e-9)
    assert acme["total_kwh"] == pytest.approx(fx.ACME_IT * fx.PUE, rel=1e-9)
    assert acme["location_kgco2"] == pytest.approx(fx.ACME_LOC_KG, rel=1e-9)
    assert bolt["location_kgco2"] == pytest.approx(fx.BOLT_LOC_KG, rel=1e-9)
    assert acme["market_kgco2"] == pytest.approx(fx.ACME_IT * fx.PUE * fx.MARKET_G / 1000, rel=1e-9)
    assert acme["cue_location"] == pytest.approx(fx.ACME_LOC_KG / fx.ACME_IT, rel=1e-9)
    assert acme["peak_kw"] == pytest.approx(100.0, rel=1e-9)
    assert bolt["peak_kw"] == pytest.approx(60.0, rel=1e-9)
    assert bolt["wraps"] == 1
    assert bolt["resets"] == 0
    assert acme["coverage"] == pytest.approx(1.0)
    assert bolt["coverage"] == pytest.approx(1.0)
    assert sorted(acme["racks"]) == ["h1-r01-01", "h1-r01-02"]  # type: ignore[call-overload]
    assert site["pue"] == pytest.approx(fx.PUE, rel=1e-9)
    assert site["e_dc_kwh"] == pytest.approx(fx.SITE_DC, rel=1e-9)
    assert site["location_kgco2"] == pytest.approx(fx.SITE_LOC_KG, rel=1e-9)
    assert site["cue_location"] == pytest.approx(fx.SITE_LOC_KG / fx.SITE_IT, rel=1e-9)


def test_fixture_month_engine(fixture_site: Path) -> None:
    """The engine gives the hand-computed figures, and tenants plus unallocated racks add up to the site."""
    site = load_site(fixture_site)
    start, end = month_bounds("2026-10", "UTC")
    with open_historian(site.config.historian, site.data_dir) as hist:
        report: TenantReport = report_from_historian(hist, site, start, end)
    d = report.to_dict()
    lines = {t["tenant"]: t for t in d["tenants"]}  # type: ignore[attr-defined]
    check_fixture_figures(lines, d)
    assert sum(ln.total_kwh or 0.0 for ln in report.lines) == pytest.approx(fx.SITE_DC, rel=1e-9)
    assert sum(ln.location_kgco2 or 0.0 for ln in report.lines) == pytest.approx(fx.SITE_LOC_KG, rel=1e-9)
    assert report.line(UNALLOCATED).it_kwh == pytest.approx(fx.SITE_IT - fx.ACME_IT - fx.BOLT_IT, rel=1e-9)
    assert "pro rata" in report.method


def test_fixture_month_cli_json_and_csv(fixture_site: Path) -> None:
    """`aidc tenants --month 2026-10` prints the same figures as JSON and as a CSV billing export."""
    proc = _cli("tenants", "--config", str(fixture_site), "--month", "2026-10", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    check_fixture_figures({t["tenant"]: t for t in d["tenants"]}, d)
    proc = _cli("tenants", "--config", str(fixture_site), "--month", "2026-10", "--format", "csv")
    assert proc.returncode == 0, proc.stderr
    rows = {r["tenant"]: r for r in csv.DictReader(io.StringIO(proc.stdout))}
    assert set(rows) == {"acme", "bolt", UNALLOCATED}
    assert float(rows["acme"]["it_kwh"]) == pytest.approx(fx.ACME_IT, abs=1e-3)
    assert float(rows["bolt"]["location_kgco2"]) == pytest.approx(fx.BOLT_LOC_KG, abs=1e-3)
    assert rows["acme"]["account"] == "ACME-001"
    assert rows["bolt"]["counter_wraps"] == "1"


def test_month_in_site_time_zone() -> None:
    """A month is the site's local calendar month: October in New York starts at 04:00 UTC."""
    start, end = month_bounds("2026-10", "America/New_York")
    assert start.isoformat() == "2026-10-01T04:00:00+00:00"
    assert end.isoformat() == "2026-11-01T04:00:00+00:00"


@pytest.mark.parametrize("month", ["2026-13", "Oct 2026", "2026-1"])
def test_bad_month_is_one_line(month: str) -> None:
    """A malformed --month is refused naming the option and value."""
    with pytest.raises(ConfigError, match="--month"):
        month_bounds(month, "UTC")


def test_cli_bad_month_no_traceback(fixture_site: Path) -> None:
    """The CLI prints one error line for a bad month, exit 2."""
    proc = _cli("tenants", "--config", str(fixture_site), "--month", "2026-13")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["aidc tenants: --month '2026-13': expected YYYY-MM, e.g. 2026-10"]


def test_cli_table_and_file_output(fixture_site: Path, tmp_path: Path) -> None:
    """The default table names the method and the grid source; -o writes the CSV to a file."""
    proc = _cli("tenants", "--config", str(fixture_site), "--month", "2026-10")
    assert proc.returncode == 0, proc.stderr
    assert "acme" in proc.stdout
    assert "method: IT energy from rack PDU energy counters" in proc.stdout
    assert "grid intensity: " in proc.stdout
    out = tmp_path / "bill.csv"
    proc = _cli("tenants", "--config", str(fixture_site), "--month", "2026-10", "--format", "csv", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert out.read_text(encoding="utf-8").startswith("period_start,period_end,tenant,")


def test_month_without_data_is_one_line(fixture_site: Path) -> None:
    """A month the historian holds nothing for is refused in one line rather than billed as zero."""
    proc = _cli("tenants", "--config", str(fixture_site), "--month", "2025-01")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "aidc tenants: tenants: no facility meter readings between 2025-01-01T00:00:00+00:00 and 2025-02-01T00:00:00+00:00"
    ]


def test_flat_factor_and_market_fallback(fixture_site: Path, tmp_path: Path) -> None:
    """Without an hourly series the flat factor is used; without a residual mix the grid average covers the rest."""
    import tomllib

    import tomli_w

    path = fx.copy_site(fixture_site.parent, tmp_path / "copy")
    doc = tomllib.loads(path.read_text(encoding="utf-8"))
    doc["carbon"] = {"flat_g_per_kwh": 300.0, "contracts": [{"name": "ppa", "share": 0.25}]}
    path.write_text(tomli_w.dumps(doc), encoding="utf-8")
    site = load_site(path)
    start, end = month_bounds("2026-10", "UTC")
    with open_historian(site.config.historian, site.data_dir) as hist:
        report = report_from_historian(hist, site, start, end)
    acme = report.line("acme")
    # acme's share of each hour's facility energy (7920 kWh a day) at 300 g/kWh.
    day_kwh = 12 * 320.0 + 12 * 340.0
    assert acme.location_kgco2 == pytest.approx((15 * day_kwh * 100 / 280 + 16 * day_kwh * 80 / 280) * 0.3, rel=1e-9)
    assert acme.market_kgco2 == pytest.approx(fx.ACME_IT * fx.PUE * 0.75 * 300.0 / 1000, rel=1e-9)
    assert report.market_note is not None
    assert "grid average" in report.market_note
    assert report.intensity_note is not None
    assert "flat factor" in report.intensity_note


def test_simulated_month_reconciles_with_the_simulator(tmp_path: Path) -> None:
    """A simulated July billed from collector-identical telemetry: a tenant's energy and the site total match the physics."""
    import datetime as dt
    import tomllib

    import tomli_w

    from aidc.sitegen import SiteTemplate, render_site
    from simulators.facility import Facility
    from simulators.telemetry import generate

    doc = tomllib.loads(render_site(SiteTemplate(racks=2, start="2026-07-01T00:00:00Z", data_dir="var")))
    doc["site"]["timezone"] = "UTC"
    doc["tenants"] = [{"name": "acme", "racks": ["h1-r01-01"], "from": dt.date(2026, 7, 1)}]
    path = tmp_path / "site.toml"
    path.write_text(tomli_w.dumps(doc), encoding="utf-8")
    site = load_site(path)
    fac = Facility(site)
    tel = generate(site, duration_s=31 * 86400 + 600, sample_s=300, schedule=None, facility=fac)
    with open_historian(site.config.historian, site.data_dir) as hist:
        for batch in tel.batches():
            hist.write(batch)
        hist.flush()
        start, end = month_bounds("2026-07", "UTC")
        report = report_from_historian(hist, site, start, end)
    acme = report.line("acme")
    # The physics accumulated energy for 10 minutes past the month; at most ~0.03 % of it.
    assert acme.it_kwh == pytest.approx(fac.rack_energy_wh[0] / 1000, rel=1e-3)
    assert sum(ln.total_kwh or 0.0 for ln in report.lines) == pytest.approx(fac.energy_wh["facility"] / 1000, rel=5e-3)
    assert acme.coverage > 0.99
