"""The report's PDF renders to pages with Debian's pdftoppm with every chart on a page, and its HTML opens in
headless Chromium without console errors and without fetching anything."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image

from analytics.report.charts import TITLES
from analytics.report.period import parse_month
from analytics.report.render import ReportFiles
from analytics.report.schedule import write_month_report
from historian import open_historian
from tests.debtools import require_tool
from tests.report_fixture import MONTH, fixture_site, write_fixture
from tests.test_report import NOW


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReportFiles]:
    """The fixture month's report, written once for the module."""
    tmp = tmp_path_factory.mktemp("render")
    site = fixture_site(tmp)
    write_fixture(site)
    with open_historian(site.config.historian, site.data_dir) as hist:
        yield write_month_report(hist, site, parse_month(MONTH, "UTC"), now=NOW)


def _page_text(pdf: Path, page: int) -> str:
    return subprocess.run(["pdftotext", "-f", str(page), "-l", str(page), "-layout", str(pdf), "-"],
                          capture_output=True, text=True, check=True, timeout=60).stdout  # fmt: skip


@pytest.mark.needs_deb
def test_pdf_renders_with_pdftoppm_and_every_chart_is_drawn(files: ReportFiles, tmp_path: Path) -> None:
    """pdftoppm renders every page; each chart's title is on a page whose image has drawn chart content."""
    require_tool("pdftoppm", "poppler-utils")
    require_tool("pdftotext", "poppler-utils")
    assert files.pdf is not None
    subprocess.run(["pdftoppm", "-r", "40", "-png", str(files.pdf), str(tmp_path / "page")], check=True, timeout=120)
    pages = sorted(tmp_path.glob("page-*.png"))
    assert len(pages) >= 3
    ink = []
    for p in pages:
        img = image.imread(p)[..., :3]
        ink.append(float(np.mean(img.mean(axis=2) < 0.9)))
    assert all(share > 0.005 for share in ink), f"a blank page: {ink}"
    found = {}
    for n in range(1, len(pages) + 1):
        text = _page_text(files.pdf, n)
        for key, title in TITLES.items():
            # The section heading and the chart's own title: the chart's text is kept as text in the SVG.
            if text.count(title) >= 2 or (key == "breakdown" and "MWh this month" in text):
                found.setdefault(key, n)
    assert sorted(found) == sorted(TITLES), f"charts found on pages {found}"
    for key, n in found.items():
        # A chart page carries bars or points: far more ink than a page of text alone.
        assert ink[n - 1] > 0.02, f"chart {key} on page {n} looks empty ({ink[n - 1]:.3f})"


@pytest.mark.needs_deb
def test_html_opens_in_headless_chromium_without_console_errors(files: ReportFiles, tmp_path: Path) -> None:
    """Chromium loads the self-contained HTML with no console error and shows all three charts."""
    require_tool("chromium", "chromium")
    driver_path = require_tool("chromedriver", "chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
                 f"--user-data-dir={tmp_path / 'profile'}"):  # fmt: skip
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=opts)
    try:
        driver.get(files.html.resolve().as_uri())
        assert driver.title.startswith("PUE report fx1 2026-10")
        charts = driver.find_elements(By.CSS_SELECTOR, "div.chart svg")
        assert len(charts) == len(TITLES)
        assert all(c.size["width"] > 100 and c.size["height"] > 50 for c in charts)
        errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
        assert errors == []
        # Self-contained: the page loaded no other resource.
        resources = driver.execute_script("return performance.getEntriesByType('resource').length")
        assert resources == 0
    finally:
        driver.quit()


def test_missing_pdf_renderer_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without pango WeasyPrint cannot load: the error names the Debian packages and --no-pdf, no traceback."""
    import builtins

    from aidc.errors import ConfigError
    from analytics.report.render import render_pdf

    real_import = builtins.__import__

    def no_weasyprint(name: str, *args: object, **kwargs: object) -> object:
        if name == "weasyprint":
            raise OSError("cannot load library 'libpango-1.0-0': error 0x7e")
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", no_weasyprint)
    with pytest.raises(ConfigError, match=r"libpango-1\.0-0 and libpangoft2-1\.0-0.*--no-pdf"):
        render_pdf("<html></html>")
