"""The monthly report of a fixture month with known meter data: the hand-computed PUE, breakdown and coverage are
read back out of the HTML and out of the PDF (pdftotext), and the same data gives byte-identical files."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from analytics.report.period import parse_month
from analytics.report.render import ReportFiles
from analytics.report.schedule import write_month_report
from historian import open_historian
from tests.debtools import require_tool
from tests.report_fixture import EXPECTED, MONTH, fixture_site, write_fixture

NOW = pd.Timestamp("2026-12-01T09:00Z")


@dataclass
class Written:
    """The fixture's report files and the folder they are in."""

    files: ReportFiles
    tmp: Path


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Written]:
    """The fixture month stored in a DuckDB historian and its report written once for the module."""
    tmp = tmp_path_factory.mktemp("report")
    site = fixture_site(tmp)
    write_fixture(site)
    with open_historian(site.config.historian, site.data_dir) as hist:
        files = write_month_report(hist, site, parse_month(MONTH, "UTC"), now=NOW)
    return Written(files, tmp)


class _Tables(HTMLParser):
    """Rows of text cells of every table with an id, and the text of every element with an id."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.texts: dict[str, str] = {}
        self._table: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._open: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        ident = dict(attrs).get("id")
        if tag == "table" and ident:
            self._table = ident
            self.tables[ident] = []
        elif tag == "tr" and self._table:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        if tag not in ("br", "meta", "img"):
            self._open.append((tag, ident))
            if ident:
                self.texts.setdefault(ident, "")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None and self._table:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None
        while self._open:
            t, _ = self._open.pop()
            if t == tag:
                break

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        for _, ident in self._open:
            if ident:
                self.texts[ident] += data


def _html(written: Written) -> _Tables:
    p = _Tables()
    p.feed(written.files.html.read_text(encoding="utf-8"))
    return p


def _num(text: str) -> float:
    m = re.search(r"-?[\d,]+\.\d+", text)
    assert m, text
    return float(m.group(0).replace(",", ""))


def test_html_states_the_hand_computed_pue_energies_and_coverage(written: Written) -> None:
    """The HTML's summary gives PUE 1.240, E_DC 92,256.0 kWh, E_IT 74,400.0 kWh and coverage 738/744 h."""
    t = _html(written)
    assert _num(t.texts["pue"]) == pytest.approx(EXPECTED["pue"], abs=5e-4)
    assert _num(t.texts["e-dc"]) == pytest.approx(EXPECTED["e_dc"], abs=0.05)
    assert _num(t.texts["e-it"]) == pytest.approx(EXPECTED["e_it"], abs=0.05)
    assert _num(t.texts["coverage"]) == pytest.approx(100 * EXPECTED["coverage"], abs=5e-4)
    assert "category 3" in t.texts["category"]
    assert "monthly interim PUE" in t.texts["category"]


def test_html_breakdown_is_the_hand_computed_one_and_adds_up(written: Written) -> None:
    """Every breakdown row has the hand-computed kWh, and the rows add up to the utility meter."""
    rows = _html(written).tables["breakdown-table"]
    got = {r[0]: _num(r[1]) for r in rows[1:-1]}
    assert got == pytest.approx(EXPECTED["breakdown"], abs=0.05)
    assert _num(rows[-1][1]) == pytest.approx(EXPECTED["e_dc"], abs=0.05)
    assert sum(got.values()) == pytest.approx(EXPECTED["e_dc"], abs=0.5)


def test_html_quality_section_shows_the_gap_the_wrap_and_the_bad_sample(written: Written) -> None:
    """The utility meter's 6-hour gap, its wrap and the cooling meter's bad sample are reported."""
    t = _html(written)
    cover = {r[0]: r for r in t.tables["coverage-table"][1:]}
    assert _num(cover["facility_energy"][2]) == pytest.approx(100 * EXPECTED["coverage"], abs=5e-4)
    assert cover["facility_energy"][4] == "1", "the utility counter wraps once"
    (gap,) = t.tables["gaps"][1:]
    assert "meter-utility" in gap[0]
    assert gap[1].startswith("2026-10-10 06:00")
    assert _num(gap[3]) == 6.0
    problems = {r[0]: r[2] for r in t.tables["problems"][1:]}
    assert any("meter-cooling" in k and "1 bad sample" in v for k, v in problems.items())
    fc = {r[0]: _num(r[1]) for r in t.tables["free-cooling-table"]}
    assert [fc[k] for k in sorted(fc) if "reading" not in k] == [240.0, 264.0, 240.0]  # full, none, partial
    assert "no controller active this month" in t.texts["savings-statement"].lower()


def test_pdf_states_the_same_numbers(written: Written) -> None:
    """pdftotext of the PDF gives the same PUE, energies, coverage, breakdown and gap as the HTML."""
    require_tool("pdftotext", "poppler-utils")
    assert written.files.pdf is not None
    text = subprocess.run(["pdftotext", "-layout", str(written.files.pdf), "-"], capture_output=True, text=True,
                          check=True, timeout=60).stdout  # fmt: skip
    assert re.search(r"PUE 1\.240\b", text)
    assert re.search(r"E_DC, total facility energy\s+92,256\.0 kWh", text)
    assert re.search(r"E_IT, IT energy at IT equipment input\s+74,400\.0 kWh", text)
    assert re.search(r"Coverage of the PUE meters\s+99\.194 %", text)
    section = text[text.index("4. Energy breakdown") : text.index("5. Free cooling")]
    pairs = re.findall(r"(-?[\d,]+\.\d)\s+(\d+\.\d\d) %", section)
    kwh = [float(k.replace(",", "")) for k, _ in pairs]
    assert kwh == pytest.approx([*EXPECTED["breakdown"].values(), EXPECTED["e_dc"]], abs=0.05)
    assert re.search(r"2026-10-10 06:00\s+2026-10-10 12:00\s+6\.00", text)
    assert re.search(r"full free cooling \(chiller off\)\s+240\.0 h", text)


def test_json_summary_has_the_exact_figures(written: Written) -> None:
    """The machine-readable summary beside the report carries the unrounded figures."""
    doc = json.loads(written.files.json.read_text())
    assert doc["pue"]["pue"] == pytest.approx(EXPECTED["pue"], rel=1e-12)
    assert doc["pue"]["coverage"] == pytest.approx(EXPECTED["coverage"], rel=1e-12)
    assert doc["pue"]["wraps"] >= 1
    assert {b["name"]: b["kwh"] for b in doc["breakdown"]} == pytest.approx(EXPECTED["breakdown"], rel=1e-9)
    assert doc["free_cooling_h"] == pytest.approx({**EXPECTED["free_cooling"], "no_reading": 0.0})


def test_same_data_gives_byte_identical_files(written: Written, tmp_path: Path) -> None:
    """Writing the report again from the same historian gives identical HTML, PDF and JSON bytes."""
    site = fixture_site(written.tmp)
    with open_historian(site.config.historian, site.data_dir) as hist:
        again = write_month_report(hist, site, parse_month(MONTH, "UTC"), now=NOW, out_dir=tmp_path)
    assert again.html.read_bytes() == written.files.html.read_bytes()
    assert again.json.read_bytes() == written.files.json.read_bytes()
    assert again.pdf is not None
    assert written.files.pdf is not None
    assert again.pdf.read_bytes() == written.files.pdf.read_bytes()


def test_html_companion_kpis_are_hand_computed_or_not_available(written: Written) -> None:
    """pPUE, CLF and PLF from the meters (cooling 15 kW, losses 7 kW on 100 kW IT); WUE/ERF/REF/CUE not available."""
    rows = {r[0]: r for r in _html(written).tables["kpi-table"][1:]}
    assert _num(rows["pPUE cooling"][1]) == pytest.approx(1.15, abs=5e-5)
    assert _num(rows["pPUE power"][1]) == pytest.approx(1.07, abs=5e-5)
    assert _num(rows["CLF"][1]) == pytest.approx(0.15, abs=5e-5)
    assert _num(rows["PLF"][1]) == pytest.approx(0.07, abs=5e-5)
    for name in ("WUE", "ERF", "REF", "CUE"):
        assert rows[name][1] == "n/a"
        assert rows[name][3].startswith("not available: no "), rows[name]


def test_html_element_ids_are_unique(written: Written) -> None:
    """The three inline SVG charts do not repeat matplotlib's element ids (figure_1, patch_1, ...)."""
    ids = re.findall(r'\bid="([^"]+)"', written.files.html.read_text(encoding="utf-8"))
    assert len(ids) > 100
    assert len(ids) == len(set(ids))
