"""One rule for the IT metering point: `aidc pue` and the monthly report agree on the category of a month with a
patchy PDU meter, and live PUE with an unreachable PDU falls back to a complete category or names the missing
meters, never showing a figure from part of a category."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aidc.config import Site, load_site
from aidc.errors import DataError
from aidc.live import LiveState
from aidc.model import Batch, Quality
from aidc.roles import Role
from aidc.sitegen import SiteTemplate, render_site
from analytics.energy.metering import (
    FRESH_POLLS,
    MeterInfo,
    PowerMeters,
    choose_energy_category,
    it_power_windows,
    live_pue,
)
from analytics.report.build import build_month_report
from analytics.report.config import ReportConfig
from analytics.report.period import Month
from api.auth import TokenStore
from api.context import ApiContext
from api.views import live_power
from historian import open_historian
from tests.report_fixture import END, START, fixture_batch

# ---------------------------------------------------------------------------------------------- energy periods

ENERGY = {
    "meter,device=utility energy_kwh": MeterInfo(Role.FACILITY_ENERGY),
    "rack,device=r1 energy_kwh": MeterInfo(Role.IT_ENERGY_EQUIPMENT_INPUT),
    "rack,device=r2 energy_kwh": MeterInfo(Role.IT_ENERGY_EQUIPMENT_INPUT),
    "pdu,device=p1 energy_kwh": MeterInfo(Role.IT_ENERGY_PDU_OUTPUT),
    "pdu,device=p2 energy_kwh": MeterInfo(Role.IT_ENERGY_PDU_OUTPUT),
    "ups,device=u1 energy_kwh": MeterInfo(Role.IT_ENERGY_UPS_OUTPUT),
}


@pytest.mark.parametrize(
    ("short", "category", "expected", "named"),
    [
        ({}, None, 3, []),  # every meter complete: the most advanced category
        ({"rack,device=r2 energy_kwh": 0.5}, None, 2, ["r2"]),  # a patchy rack meter: PDU output
        ({"rack,device=r2 energy_kwh": 0.0, "pdu,device=p1 energy_kwh": 0.94}, None, 1, ["r2", "p1"]),
        (
            {"rack,device=r1 energy_kwh": 0.1, "pdu,device=p2 energy_kwh": 0.2, "ups,device=u1 energy_kwh": 0.3},
            None,
            None,
            ["r1", "p2", "u1"],
        ),  # nothing complete: no category
        ({"pdu,device=p1 energy_kwh": 0.5}, 2, None, ["p1"]),  # a category asked for is used only when complete
        ({"rack,device=r2 energy_kwh": 0.5}, 1, 1, []),
    ],
)
def test_highest_complete_energy_category_wins(
    short: dict[str, float], category: int | None, expected: int | None, named: list[str]
) -> None:
    """The highest category whose every meter covers 95 % wins; the short meters are named with their coverage."""
    coverage = {sid: short.get(sid, 1.0) for sid in ENERGY}
    choice = choose_energy_category(coverage, ENERGY, category=category)
    assert choice.category == expected
    assert [m.split(",device=")[1].split(" ")[0] for m in choice.missing] == named
    assert all("% covered" in m for m in choice.missing)
    assert choice.coverage[3] == min(coverage[s] for s in ENERGY if s.startswith("rack"))


def test_unmetered_category_asked_for_is_one_clear_error() -> None:
    """Asking for a category the site does not meter is a DataError naming the role."""
    meters = {s: m for s, m in ENERGY.items() if m.role is not Role.IT_ENERGY_EQUIPMENT_INPUT}
    with pytest.raises(DataError, match="it_energy_equipment_input"):
        choose_energy_category(dict.fromkeys(meters, 1.0), meters, category=3)


def _two_rack_site(tmp_path: Path) -> tuple[Path, Site]:
    """A 2-rack site in UTC whose historian lives under tmp_path."""
    path = tmp_path / "site.toml"
    path.write_text(render_site(SiteTemplate(racks=2, timezone="UTC", data_dir="var", name="fx2")), encoding="utf-8")
    return path, load_site(path)


def test_month_with_a_patchy_pdu_meter_has_one_category_in_aidc_pue_and_the_report(tmp_path: Path) -> None:
    """A month with one PDU meter silent for its last 12 days (and no rack-input counters read): `aidc pue` and the
    monthly report state the same category, the complete one (1, UPS output), with the same PUE."""
    path, site = _two_rack_site(tmp_path)
    batch = fixture_batch(site)
    pdu = sorted({str(s) for s in batch.series if str(s).startswith("pdu,") and "active_energy_wh" in str(s)})[0]
    silent_from = pd.Timestamp("2026-10-20T00:00Z").value
    rack_energy = np.array(["it_energy_wh" in str(s) for s in batch.series])
    keep = ~rack_energy & ~((batch.series == pdu) & (batch.ts_ns >= silent_from))
    with open_historian(site.config.historian, site.data_dir) as hist:
        hist.write(Batch(batch.series[keep], batch.ts_ns[keep], batch.values[keep], batch.quality[keep]))
        hist.flush()
    proc = subprocess.run(
        [sys.executable, "-m", "app.cli", "pue", "--config", str(path), "--from", START.isoformat(),
         "--to", END.isoformat(), "--json"],
        capture_output=True, text=True, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (cli,) = json.loads(proc.stdout)
    with open_historian(site.config.historian, site.data_dir) as hist:
        report = build_month_report(hist, site, Month(2026, 10), ReportConfig())
    assert cli["category"] == 1, cli["note"]
    assert report.pue.category == cli["category"]
    assert report.category_text.startswith("category 1 ")
    assert report.pue.pue == pytest.approx(cli["pue"], rel=1e-9)
    assert report.pue.pue == pytest.approx(124.0 / 102.0, rel=1e-3)
    assert any(pdu in m for m in cli["missing"])
    assert any(pdu in m for m in report.pue.missing)


# ---------------------------------------------------------------------------------------------- live power

NOW = pd.Timestamp("2026-07-01T12:00Z")


def _site_meters(tmp_path: Path) -> tuple[PowerMeters, str, list[str], str]:
    """The 2-rack site's power meters: the utility meter, the two PDU outputs (category 2), the UPS output (1)."""
    site = _two_rack_site(tmp_path)[1]
    meters = PowerMeters.of(site)
    assert set(meters.it) == {2, 1}, "the generated site meters IT power at the PDUs and the UPS"
    (facility,) = meters.facility
    (ups,) = meters.it[1]
    return meters, facility, list(meters.it[2]), ups


def _frame(
    values: dict[str, float], bad: tuple[str, ...] = (), age: dict[str, pd.Timedelta] | None = None
) -> pd.DataFrame:
    """Latest samples as a historian's ``latest`` gives them (quality as numbers)."""
    ages = age or {}
    return pd.DataFrame({
        "series": list(values),
        "ts": [NOW - ages.get(s, pd.Timedelta(0)) for s in values],
        "value": list(values.values()),
        "quality": [int(Quality.BAD) if s in bad else 0 for s in values],
    })  # fmt: skip


def test_live_pue_with_every_meter_uses_the_pdus(tmp_path: Path) -> None:
    """With every meter fresh, IT is the two PDUs (category 2): 220 kW / 200 kW = 1.1."""
    meters, fac, (p1, p2), ups = _site_meters(tmp_path)
    live = live_pue(meters, _frame({fac: 220e3, p1: 100e3, p2: 100e3, ups: 202e3}), now=NOW)
    assert (live.category, live.missing) == (2, ())
    assert live.value == pytest.approx(1.1)
    assert live.it_w == pytest.approx(200e3)
    assert live.facility_w == pytest.approx(220e3)


@pytest.mark.parametrize("how", ["bad", "unseen", "stale"])
def test_live_pue_with_an_unreachable_pdu_falls_back_to_ups_output(tmp_path: Path, how: str) -> None:
    """One PDU bad, never seen or stale: not 220/100 = 2.2 at category 2, but 220/202 at category 1, naming the PDU."""
    meters, fac, (p1, p2), ups = _site_meters(tmp_path)
    values = {fac: 220e3, p1: 100e3, p2: 100e3, ups: 202e3}
    if how == "unseen":
        del values[p2]
    stale = {p2: pd.Timedelta(seconds=10 * (FRESH_POLLS + 1))}  # the generated site polls every 10 s
    frame = _frame(values, bad=(p2,) if how == "bad" else (), age=stale if how == "stale" else None)
    live = live_pue(meters, frame, now=NOW)
    assert live.category == 1
    assert live.value == pytest.approx(220 / 202)
    assert live.missing == (p2,)
    assert "category 2 not used" in live.note


def test_live_pue_without_a_complete_category_gives_no_value_and_the_missing_meters(tmp_path: Path) -> None:
    """One PDU and the UPS output missing: no PUE and no IT power, only the meters that are missing."""
    meters, fac, (p1, p2), ups = _site_meters(tmp_path)
    live = live_pue(meters, _frame({fac: 220e3, p1: 100e3, p2: 100e3, ups: 202e3}, bad=(p2, ups)), now=NOW)
    assert live.value is None
    assert live.category is None
    assert live.it_w is None
    assert set(live.missing) == {p2, ups}


def test_live_pue_reads_a_live_state(tmp_path: Path) -> None:
    """From a LiveState (the main job's), a PDU marked bad by the stale watchdog gives the UPS-output figure."""
    meters, fac, (p1, p2), ups = _site_meters(tmp_path)
    state = LiveState()
    ids = np.array([fac, p1, p2, ups], dtype=object)
    state.update(Batch(ids, np.full(4, NOW.value, dtype=np.int64), np.array([220e3, 100e3, np.nan, 202e3]),
                       np.array([0, 0, int(Quality.BAD), 0], dtype=np.uint8), []))  # fmt: skip
    live = live_pue(meters, state)
    assert (live.category, live.missing) == (1, (p2,))
    assert live.value == pytest.approx(220 / 202)


def test_the_jobs_summary_line_uses_the_rule_not_a_part_sum(tmp_path: Path) -> None:
    """The main job's live line with one PDU unreachable shows IT at the UPS output (category 1), not one PDU's part
    sum; the collectors' own line without the rule shows n/a rather than a part sum."""
    from app.job import MainJob
    from collectors.engine import Summary

    _, site = _two_rack_site(tmp_path)
    job = MainJob.build(site)
    try:
        meters = PowerMeters.of(site)
        (fac,), (p1, p2), (ups,) = meters.facility, meters.it[2], meters.it[1]
        ids = np.array([fac, p1, p2, ups], dtype=object)
        job.live.update(Batch(ids, np.full(4, NOW.value, dtype=np.int64), np.array([220e3, 100e3, np.nan, 202e3]),
                              np.array([0, 0, int(Quality.BAD), 0], dtype=np.uint8), []))  # fmt: skip
        line = job.summary().line()
        assert "IT 0.20 MW (category 1)" in line, line
        assert "facility 0.22 MW" in line
        bare = Summary(job.engine, job.live).line()
        assert "IT n/a" in bare, bare
    finally:
        job.historian.close()


def test_windows_missing_a_pdu_fall_back_and_windows_missing_all_are_nan() -> None:
    """Per window: both PDUs give category 2, one PDU short gives the UPS output, nothing complete gives NaN."""
    meters = {
        "p1": MeterInfo(Role.IT_POWER_PDU_OUTPUT, 1.0),
        "p2": MeterInfo(Role.IT_POWER_PDU_OUTPUT, 1.0),
        "u": MeterInfo(Role.IT_POWER_UPS_OUTPUT, 1.0),
    }
    wide = pd.DataFrame({"p1": [100.0, 100.0, np.nan], "p2": [100.0, np.nan, 100.0], "u": [202.0, 202.0, np.nan]})
    kw, cat = it_power_windows(wide, meters)
    assert kw.iloc[:2].tolist() == [200.0, 202.0]
    assert np.isnan(kw.iloc[2])
    assert cat.tolist() == [2, 1, 0]
    kw_no_ups, _ = it_power_windows(wide.drop(columns="u"), meters)  # a meter with no column has no value
    assert kw_no_ups.iloc[0] == 200.0
    assert np.isnan(kw_no_ups.iloc[1])


def test_api_live_power_from_the_historian_judges_freshness_by_the_api_clock(tmp_path: Path) -> None:
    """The stand-alone API (no live state) reads the historian's latest values: a PDU whose last value is a minute
    old is not fresh, so the figure is the UPS output's, and the PDU is named."""
    site = _two_rack_site(tmp_path)[1]
    meters = PowerMeters.of(site)
    (fac,), (p1, p2), (ups,) = meters.facility, meters.it[2], meters.it[1]
    ts = {fac: NOW, p1: NOW, p2: NOW - pd.Timedelta("1min"), ups: NOW}
    values = {fac: 220e3, p1: 100e3, p2: 100e3, ups: 202e3}
    ids = np.array(list(values), dtype=object)
    with open_historian(site.config.historian, site.data_dir) as hist:
        hist.write(Batch(ids, np.array([ts[s].value for s in ids], dtype=np.int64), np.array(list(values.values())),
                         np.zeros(len(ids), dtype=np.uint8)))  # fmt: skip
        hist.flush()
        ctx = ApiContext(site=site, historian=hist, tokens=TokenStore({}), clock=lambda: NOW)
        out = live_power(ctx)
    assert out["category"] == 1
    assert out["pue"] == pytest.approx(220 / 202)
    assert out["it_w"] == pytest.approx(202e3)
    assert out["missing"] == [p2]


def test_a_range_reaching_back_before_collection_began_is_the_metered_range_and_says_so(tmp_path: Path) -> None:
    """`aidc pue` over a range that starts a day before the first stored reading gives the PUE of the metered part,
    with a note naming where it starts; a range with readings before its start is not moved."""
    from analytics import answers

    _, site = _two_rack_site(tmp_path)
    first = START - pd.Timedelta("2h")  # the fixture's first reading
    with open_historian(site.config.historian, site.data_dir) as hist:
        hist.write(fixture_batch(site, START, START + pd.Timedelta("1D"), gap=None))
        hist.flush()
        (clipped,) = answers.pue(hist, site, START - pd.Timedelta("1D"), START + pd.Timedelta("12h"), None, None)
        (inside,) = answers.pue(hist, site, START + pd.Timedelta("1h"), START + pd.Timedelta("12h"), None, None)
    assert pd.Timestamp(clipped["start"]) == first
    assert "collection started within the range" in clipped["note"]
    assert pd.Timestamp(inside["start"]) == START + pd.Timedelta("1h")
    assert "collection started" not in inside["note"]
    assert inside["pue"] is not None
    assert clipped["category"] == inside["category"]
    assert clipped["pue"] == pytest.approx(inside["pue"], rel=1e-3)  # constant powers: the same figure


def test_a_range_ending_before_the_next_readings_are_due_ends_at_the_newest_ones(tmp_path: Path) -> None:
    """`--to now` a few seconds after the last poll ends the period at the newest readings (said in the note), while
    an end long after them (meters silent for many poll intervals) keeps the end, so the outage counts."""
    from analytics import answers

    _, site = _two_rack_site(tmp_path)
    last = START + pd.Timedelta("1D") + pd.Timedelta("2h")  # the fixture's newest reading
    with open_historian(site.config.historian, site.data_dir) as hist:
        hist.write(fixture_batch(site, START, START + pd.Timedelta("1D"), gap=None))
        hist.flush()
        (due,) = answers.pue(hist, site, START + pd.Timedelta("12h"), last + pd.Timedelta("10s"), None, None)
        (late,) = answers.pue(hist, site, START + pd.Timedelta("12h"), last + pd.Timedelta("1h"), None, None)
    assert pd.Timestamp(due["end"]) == last
    assert "not due yet" in due["note"]
    assert due["pue"] is not None
    assert pd.Timestamp(late["end"]) == last + pd.Timedelta("1h")
    assert "not due yet" not in late["note"]
