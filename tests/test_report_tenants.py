"""The monthly report's tenant appendix: the tenant fixture month's hand-computed figures (issue 14) read back out of
the HTML and the PDF, computed by the billing engine; a site without ``[[tenants]]`` gets no appendix."""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
import tomli_w

from aidc.config import load_site
from analytics.report.period import parse_month
from analytics.report.render import ReportFiles
from analytics.report.schedule import write_month_report
from historian import open_historian
from tests import tenant_fixture as fx
from tests.debtools import require_tool
from tests.test_report import NOW, _Tables

ACME_OVERHEAD = fx.ACME_IT * (fx.PUE - 1)
BOLT_OVERHEAD = fx.BOLT_IT * (fx.PUE - 1)
MARKET_KG = {t: it * fx.PUE * fx.MARKET_G / 1000 for t, it in (("acme", fx.ACME_IT), ("bolt", fx.BOLT_IT))}
# Hand-computed lines of the appendix's two tables, as the report prints them (kWh, kW and kg to 0.1).
ENERGY_ROWS = {
    "acme": ["2", f"{fx.ACME_IT:,.1f}", f"{ACME_OVERHEAD:,.1f}", f"{fx.ACME_IT * fx.SITE_COOLING / fx.SITE_IT:,.1f}",
             f"{fx.ACME_IT * fx.PUE:,.1f}", "100.0", "2026-10-01 00:00 UTC", "100.00 %"],
    "bolt": ["1", f"{fx.BOLT_IT:,.1f}", f"{BOLT_OVERHEAD:,.1f}", f"{fx.BOLT_IT * fx.SITE_COOLING / fx.SITE_IT:,.1f}",
             f"{fx.BOLT_IT * fx.PUE:,.1f}", "60.0", "2026-10-01 00:00 UTC", "100.00 %"],
}  # fmt: skip
CARBON_ROWS = {
    "acme": ["ACME-001", f"{fx.ACME_LOC_KG:,.1f}", f"{MARKET_KG['acme']:,.1f}", f"{fx.ACME_LOC_KG / fx.ACME_IT:.4f}",
             f"{fx.MARKET_G / 1000 * fx.PUE:.4f}", "0", "0", "0.0"],
    "bolt": ["", f"{fx.BOLT_LOC_KG:,.1f}", f"{MARKET_KG['bolt']:,.1f}", f"{fx.BOLT_LOC_KG / fx.BOLT_IT:.4f}",
             f"{fx.MARKET_G / 1000 * fx.PUE:.4f}", "1", "0", "0.0"],
}  # fmt: skip


@dataclass
class Reports:
    """The fixture month's report with its tenants, and the same site's report with ``[[tenants]]`` removed."""

    with_tenants: ReportFiles
    without: ReportFiles


def _write(site_toml: Path, out: Path) -> ReportFiles:
    site = load_site(site_toml)
    with open_historian(site.config.historian, site.data_dir) as hist:
        return write_month_report(hist, site, parse_month("2026-10", "UTC"), now=NOW, out_dir=out)


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> Reports:
    """The tenant fixture month in a DuckDB historian, reported with and without its tenants."""
    root = tmp_path_factory.mktemp("report-tenants")
    (root / "with").mkdir()
    path = fx.build(root / "with")
    with_tenants = _write(path, root / "out-with")
    bare = fx.copy_site(path.parent, root / "without")
    doc = tomllib.loads(bare.read_text(encoding="utf-8"))
    del doc["tenants"]
    bare.write_text(tomli_w.dumps(doc), encoding="utf-8")
    return Reports(with_tenants, _write(bare, root / "out-without"))


def _tables(files: ReportFiles) -> _Tables:
    p = _Tables()
    p.feed(files.html.read_text(encoding="utf-8"))
    return p


def test_html_appendix_has_the_hand_computed_tenant_figures(reports: Reports) -> None:
    """IT energy, overhead, cooling share, total, peak, coverage and both carbon figures per tenant are exact."""
    t = _tables(reports.with_tenants)
    energy = {r[0]: r[1:] for r in t.tables["tenant-energy"][1:]}
    carbon = {r[0]: r[1:] for r in t.tables["tenant-carbon"][1:]}
    for tenant in ("acme", "bolt"):
        assert energy[tenant] == ENERGY_ROWS[tenant], tenant
        assert carbon[tenant] == CARBON_ROWS[tenant], tenant
    assert energy["site"][1] == f"{fx.SITE_IT:,.1f}"
    assert energy["site"][3] == f"{fx.SITE_COOLING:,.1f}"
    assert energy["site"][4] == f"{fx.SITE_DC:,.1f}"
    assert carbon["site"][1] == f"{fx.SITE_LOC_KG:,.1f}"
    assert "(unallocated)" in energy, "the racks no tenant leased are shown, so the lines add up to E_DC"
    racks = {r[0]: r[1] for r in t.tables["tenant-racks"]}
    assert racks["acme"] == "h1-r01-01, h1-r01-02"
    method = t.texts["tenant-method"]
    assert "pro rata to IT energy by the same-period energy-based PUE" in method
    assert "GHG Protocol Scope 2" in method


def test_pdf_appendix_states_the_same_tenant_figures(reports: Reports) -> None:
    """pdftotext of the PDF gives each tenant's hand-computed energy and carbon rows and the allocation method."""
    require_tool("pdftotext", "poppler-utils")
    assert reports.with_tenants.pdf is not None
    text = subprocess.run(["pdftotext", "-layout", str(reports.with_tenants.pdf), "-"], capture_output=True,
                          text=True, check=True, timeout=60).stdout  # fmt: skip
    section = text[text.index("Appendix: tenants") : text.index("Appendix: methodology")]
    for tenant in ("acme", "bolt"):
        cells = [re.escape(c) for c in ENERGY_ROWS[tenant]]
        assert re.search(rf"^\s*{tenant}\s+" + r"\s+".join(cells) + r"\s*$", section, re.M), tenant
        cells = [re.escape(c) for c in CARBON_ROWS[tenant] if c]
        assert re.search(rf"^\s*{tenant}\s+" + r"\s+".join(cells) + r"\s*$", section, re.M), tenant
    assert re.search(r"allocated pro rata to IT\s+energy by the same-period energy-based PUE", section)
    assert re.search(rf"Site PUE for the\s+allocation {fx.PUE:.4f}", section)


def test_json_summary_carries_the_tenant_report(reports: Reports) -> None:
    """The report's JSON summary has the unrounded tenant figures; without tenants it has no tenant key."""
    doc = json.loads(reports.with_tenants.json.read_text(encoding="utf-8"))
    lines = {t["tenant"]: t for t in doc["tenants"]["tenants"]}
    assert lines["acme"]["it_kwh"] == pytest.approx(fx.ACME_IT, rel=1e-12)
    assert lines["bolt"]["location_kgco2"] == pytest.approx(fx.BOLT_LOC_KG, rel=1e-9)
    assert "tenants" not in json.loads(reports.without.json.read_text(encoding="utf-8"))


def test_without_tenants_there_is_no_appendix(reports: Reports) -> None:
    """The same month without [[tenants]] has no tenant appendix and is otherwise the same report."""
    html = reports.without.html.read_text(encoding="utf-8")
    assert 'id="tenants"' not in html
    assert "Appendix: tenants" not in html
    with_t = reports.with_tenants.html.read_text(encoding="utf-8")
    assert 'id="tenants"' in with_t
    cut = re.sub(r'<section id="tenants".*?</section>\n', "", with_t, flags=re.S)
    assert cut == html
