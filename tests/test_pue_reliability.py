"""No wrong PUE: meter coverage decides the category, short periods are interim PUE, retention is bridged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aidc.model import Batch
from aidc.roles import Role
from analytics.energy.counter_read import read_counter_frame
from analytics.energy.counters import counter_energy
from analytics.energy.pue import MeterInfo, compute_pue, format_report
from historian import SeriesSelector
from historian.duckdb_store import DuckDBHistorian

JUNE = pd.Timestamp("2026-06-01T00:00Z")
DAY = pd.Timedelta("1D")


def _counter(sid: str, kw: float, start: pd.Timestamp, end: pd.Timestamp, every: str = "15min") -> pd.DataFrame:
    ts = pd.date_range(start, end, freq=every)
    hours = (ts - start) / pd.Timedelta("1h")
    return pd.DataFrame({"ts": ts, "series": sid, "value": kw * hours.to_numpy(), "quality": 0})


METERS = {
    "meter,device=utility energy_kwh": MeterInfo(Role.FACILITY_ENERGY),
    "rack,device=r1 energy_kwh": MeterInfo(Role.IT_ENERGY_EQUIPMENT_INPUT),
    "rack,device=r2 energy_kwh": MeterInfo(Role.IT_ENERGY_EQUIPMENT_INPUT),
    "pdu,device=p1 energy_kwh": MeterInfo(Role.IT_ENERGY_PDU_OUTPUT),
    "pdu,device=p2 energy_kwh": MeterInfo(Role.IT_ENERGY_PDU_OUTPUT),
}


def _readings(silent: set[str]) -> pd.DataFrame:
    """Facility 250 kW, two racks of 100 kW metered at the rack and at the PDU; ``silent`` meters never report."""
    kw = {"meter,device=utility energy_kwh": 250.0, "rack,device=r1 energy_kwh": 100.0,
          "rack,device=r2 energy_kwh": 100.0, "pdu,device=p1 energy_kwh": 100.0, "pdu,device=p2 energy_kwh": 100.0}
    frames = [_counter(s, k, JUNE - pd.Timedelta("1h"), JUNE + DAY + pd.Timedelta("1h"))
              for s, k in kw.items() if s not in silent]  # fmt: skip
    return pd.concat(frames, ignore_index=True)


def test_a_silent_rack_meter_falls_back_to_the_complete_category() -> None:
    """One silent rack meter of two: not category 3 with PUE 2.5, but category 2 (PDU output) with PUE 1.25,
    and the report names the silent meter."""
    r = compute_pue(_readings({"rack,device=r2 energy_kwh"}), METERS, JUNE, JUNE + DAY)
    assert r.category == 2
    assert r.pue == pytest.approx(1.25)
    assert "rack,device=r2 energy_kwh" in r.note
    assert any("r2" in m for m in r.missing)


def test_no_complete_category_reports_insufficient_data_naming_the_meters() -> None:
    """With a silent meter in every IT category there is no PUE: "insufficient data" and the meters named."""
    r = compute_pue(_readings({"rack,device=r2 energy_kwh", "pdu,device=p1 energy_kwh"}), METERS, JUNE, JUNE + DAY)
    assert r.pue is None
    assert r.note.startswith("insufficient data")
    assert "rack,device=r2" in r.note
    assert "pdu,device=p1" in r.note
    assert r.category_name == "insufficient data"
    assert "insufficient data" in format_report([r])


def test_patchy_facility_meter_gives_no_pue() -> None:
    """A facility meter that reported for only half the day gives no PUE (E_DC would be understated)."""
    df = _readings(set())
    fac = df["series"] == "meter,device=utility energy_kwh"
    df = df[~fac | (df["ts"] < JUNE + DAY / 2)]
    r = compute_pue(df, METERS, JUNE, JUNE + DAY)
    assert r.pue is None
    assert "utility" in r.note


def test_periods_shorter_than_a_year_are_interim_pue() -> None:
    """A day is labelled interim PUE with its period; a full year is plain PUE (ISO/IEC 30134-2)."""
    r = compute_pue(_readings(set()), METERS, JUNE, JUNE + DAY)
    assert r.label == f"interim PUE ({JUNE.isoformat()} .. {(JUNE + DAY).isoformat()})"
    assert "interim PUE" in format_report([r])
    assert r.to_dict()["label"] == r.label
    year0 = pd.Timestamp("2026-01-01T00:00Z")
    year1 = pd.Timestamp("2027-01-01T00:00Z")
    ry = compute_pue(
        pd.concat([_counter(s, 100.0, year0, year1, every="6h") for s in METERS], ignore_index=True),
        METERS, year0, year1, max_gap=pd.Timedelta("7h"),
    )  # fmt: skip
    assert ry.label == "PUE"


def test_period_straddling_raw_retention_reads_rollups_for_the_older_part(tmp_path: Path) -> None:
    """Three days of counter readings, one day of raw retention: reading the three days bridges the deleted raw
    rows with the 1-minute rollup, so the counter covers the whole period and its energy is exact."""
    t0 = JUNE
    end = t0 + 3 * DAY
    h = DuckDBHistorian(tmp_path / "h.duckdb", raw_retention_days=1, rollup_every_s=1e9,
                        clock=lambda: end.value / 1e9)  # fmt: skip
    ts = pd.date_range(t0, end, freq="1min", inclusive="left")
    hours = ((ts - t0) / pd.Timedelta("1h")).to_numpy()
    sid = "meter,device=utility energy_kwh"
    for day in range(3):
        part = slice(day * 1440, (day + 1) * 1440)
        n = len(ts[part])
        h.write(Batch(np.array([sid] * n, dtype=object), ts[part].as_unit("ns").asi8.astype(np.int64), 100.0 * hours[part],
                      np.zeros(n, np.uint8)))  # fmt: skip
        h.flush()
    raw = h.query(SeriesSelector.parse("meter,device=utility,energy_kwh"), t0, end)
    assert raw["ts"].min() > t0 + DAY, "the oldest raw rows were deleted by retention"
    got = read_counter_frame(h, [sid], t0, end)
    e = counter_energy(got, t0, end - pd.Timedelta("1min"), max_gap=pd.Timedelta("5min"))
    assert e.coverage == pytest.approx(1.0)
    assert e.energy == pytest.approx(100.0 * (72 - 1 / 60), rel=1e-6)
    assert got["ts"].is_unique
    h.close()
