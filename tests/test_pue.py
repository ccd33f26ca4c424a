"""PUE engine over a month and a day: wraps, resets, gaps, categories, partial PUE and the KPI companions."""

from __future__ import annotations

import pandas as pd
import pytest

from aidc.errors import DataError
from aidc.roles import Role
from analytics.energy.metering import PowerMeters, live_pue
from analytics.energy.pue import MeterInfo, compare, compute_pue, period_edges

JUNE = pd.Timestamp("2026-06-01T00:00Z")
JULY = pd.Timestamp("2026-07-01T00:00Z")
HOURS = 720  # June has 30 days
GAP = pd.Timedelta("2h")  # readings are hourly in these tests


def counter(
    series: str,
    per_hour: list[float] | float,
    hours: int = HOURS,
    start_value: float = 0.0,
    modulus: float | None = None,
    t0: pd.Timestamp = JUNE,
) -> pd.DataFrame:
    """Hourly readings of a counter that increases by ``per_hour`` (scalar or one per hour) from ``start_value``."""
    rates = per_hour if isinstance(per_hour, list) else [per_hour] * hours
    values, v = [start_value], start_value
    for r in rates:
        v += r
        values.append(v % modulus if modulus else v)
    ts = [t0 + pd.Timedelta(hours=i) for i in range(len(values))]
    return pd.DataFrame({"ts": ts, "series": series, "value": values, "quality": 0})


def gauge(series: str, values: list[float], t0: pd.Timestamp = JUNE) -> pd.DataFrame:
    """Hourly gauge readings."""
    ts = [t0 + pd.Timedelta(hours=i) for i in range(len(values))]
    return pd.DataFrame({"ts": ts, "series": series, "value": values, "quality": 0})


def cat(*frames: pd.DataFrame) -> pd.DataFrame:
    """Concatenate reading frames."""
    return pd.concat(frames, ignore_index=True)


METERS = {
    "meter,purpose=utility energy_kwh": MeterInfo(Role.FACILITY_ENERGY),
    "gpu_rack,rack=a it_energy_wh": MeterInfo(Role.IT_ENERGY_EQUIPMENT_INPUT, scale=0.001),
}


def test_month_with_counter_wrap() -> None:
    """A utility counter wrapping 72 times in June still gives 720 h x 100 kWh; PUE 72000/57600 = 1.25."""
    meters = {**METERS, "meter,purpose=utility energy_kwh": MeterInfo(Role.FACILITY_ENERGY, modulus=1000.0)}
    readings = cat(
        counter("meter,purpose=utility energy_kwh", 100.0, start_value=500.0, modulus=1000.0),
        counter("gpu_rack,rack=a it_energy_wh", 80_000.0),
    )
    r = compute_pue(readings, meters, JUNE, JULY, max_gap=GAP)
    assert r.e_dc_kwh == pytest.approx(72_000.0)
    assert r.e_it_kwh == pytest.approx(57_600.0)
    assert r.pue == pytest.approx(1.25)
    assert r.energies[Role.FACILITY_ENERGY].wraps == 72
    assert r.coverage == pytest.approx(1.0)
    assert r.estimated_kwh == 0.0


def test_month_with_meter_reset() -> None:
    """An IT meter replaced at hour 300 (new meter reads 20 kWh an hour later) loses nothing: 80 kWh estimated."""
    it = counter("gpu_rack,rack=a it_energy_wh", 80_000.0, hours=299, start_value=1e6)
    new = counter(
        "gpu_rack,rack=a it_energy_wh", 80_000.0, hours=420, start_value=20_000.0, t0=JUNE + pd.Timedelta(hours=300)
    )
    readings = cat(counter("meter,purpose=utility energy_kwh", 100.0), it, new)
    r = compute_pue(readings, METERS, JUNE, JULY, max_gap=GAP)
    assert r.e_it_kwh == pytest.approx(57_600.0)  # the reset hour is estimated at the neighbours' 80 kWh
    assert r.pue == pytest.approx(1.25)
    assert r.energies[Role.IT_ENERGY_EQUIPMENT_INPUT].resets == 1
    assert r.estimated_kwh == pytest.approx(80.0)


def test_month_with_six_hour_gap_reports_coverage() -> None:
    """A 6 h hole in the utility readings while load rose to 160 kWh/h is bridged by the counter; coverage 714/720."""
    rates = [100.0] * HOURS
    rates[100:106] = [160.0] * 6
    dc = counter("meter,purpose=utility energy_kwh", rates)
    dc = dc[~dc["ts"].between(JUNE + pd.Timedelta(hours=101), JUNE + pd.Timedelta(hours=105))]
    readings = cat(dc, counter("gpu_rack,rack=a it_energy_wh", 80_000.0))
    r = compute_pue(readings, METERS, JUNE, JULY, max_gap=GAP)
    assert r.e_dc_kwh == pytest.approx(714 * 100.0 + 6 * 160.0)  # 72 360
    assert r.pue == pytest.approx(72_360.0 / 57_600.0)  # 1.25625
    assert r.coverage == pytest.approx(714 / 720)
    assert r.energies[Role.FACILITY_ENERGY].gaps == ((JUNE + pd.Timedelta(hours=100), JUNE + pd.Timedelta(hours=106)),)


def _three_level_site() -> tuple[pd.DataFrame, dict[str, MeterInfo]]:
    meters = {
        "meter energy_kwh": MeterInfo(Role.FACILITY_ENERGY),
        "ups energy_out_kwh": MeterInfo(Role.IT_ENERGY_UPS_OUTPUT),
        "pdu energy_wh": MeterInfo(Role.IT_ENERGY_PDU_OUTPUT, scale=0.001),
        "gpu_rack it_energy_wh": MeterInfo(Role.IT_ENERGY_EQUIPMENT_INPUT, scale=0.001),
    }
    readings = cat(
        counter("meter energy_kwh", 100.0, hours=24),
        counter("ups energy_out_kwh", 85.0, hours=24),
        counter("pdu energy_wh", 82_000.0, hours=24),
        counter("gpu_rack it_energy_wh", 80_000.0, hours=24),
    )
    return readings, meters


@pytest.mark.parametrize(
    ("category", "expected_category", "expected_pue"),
    [
        (1, 1, 2400 / 2040),  # UPS output 85 kWh/h -> 1.17647
        (2, 2, 2400 / 1968),  # PDU output 82 kWh/h -> 1.21951
        (3, 3, 2400 / 1920),  # IT input 80 kWh/h -> 1.25
        (None, 3, 2400 / 1920),  # automatic: the most advanced category metered
    ],
)
def test_category_follows_it_metering_point(category: int | None, expected_category: int, expected_pue: float) -> None:
    """The IT energy comes from the metering point of the category (UPS 1, PDU 2, IT input 3)."""
    readings, meters = _three_level_site()
    r = compute_pue(readings, meters, JUNE, JUNE + pd.Timedelta("1D"), category=category, max_gap=GAP)
    assert r.category == expected_category
    assert r.pue == pytest.approx(expected_pue)


@pytest.mark.parametrize("role", [Role.IT_ENERGY_UPS_OUTPUT, Role.IT_ENERGY_PDU_OUTPUT])
def test_category_with_single_it_meter(role: Role) -> None:
    """With only a UPS-output (or PDU-output) meter, the category drops to 1 (or 2)."""
    meters = {"m energy_kwh": MeterInfo(Role.FACILITY_ENERGY), "it energy_kwh": MeterInfo(role)}
    readings = cat(counter("m energy_kwh", 110.0, hours=24), counter("it energy_kwh", 100.0, hours=24))
    r = compute_pue(readings, meters, JUNE, JUNE + pd.Timedelta("1D"), max_gap=GAP)
    assert r.category == (1 if role is Role.IT_ENERGY_UPS_OUTPUT else 2)
    assert r.pue == pytest.approx(1.1)


def test_partial_pue_clf_plf() -> None:
    """Facility 100, IT 80, cooling 12, other 2 kWh/h: CLF 0.15, PLF 0.075, pPUEs 1.15 and 1.075, UPS losses 72."""
    readings, meters = _three_level_site()
    meters = {
        **meters,
        "cool energy_kwh": MeterInfo(Role.COOLING_ENERGY),
        "other energy_kwh": MeterInfo(Role.OTHER_ENERGY),
        "ups energy_in_kwh": MeterInfo(Role.UPS_INPUT_ENERGY),
    }
    readings = cat(
        readings,
        counter("cool energy_kwh", 12.0, hours=24),
        counter("other energy_kwh", 2.0, hours=24),
        counter("ups energy_in_kwh", 88.0, hours=24),
    )
    r = compute_pue(readings, meters, JUNE, JUNE + pd.Timedelta("1D"), max_gap=GAP)
    assert (r.e_cooling_kwh, r.e_other_kwh) == (pytest.approx(288.0), pytest.approx(48.0))
    assert r.e_power_losses_kwh == pytest.approx(144.0)
    assert r.clf == pytest.approx(0.15)
    assert r.plf == pytest.approx(0.075)
    assert r.ppue_cooling == pytest.approx(1.15)
    assert r.ppue_power == pytest.approx(1.075)
    assert r.ups_losses_kwh == pytest.approx(72.0)
    assert r.pue == pytest.approx(1 + 0.15 + 0.075 + 48 / 1920)


def test_energy_falls_while_pue_rises() -> None:
    """Day A 120/100 kWh/h (PUE 1.2) vs day B 115/94 (PUE 1.2234): energy -120 kWh, PUE +0.0234, both reported."""
    meters = {"m energy_kwh": MeterInfo(Role.FACILITY_ENERGY), "it energy_kwh": MeterInfo(Role.IT_ENERGY_PDU_OUTPUT)}
    day_b = JUNE + pd.Timedelta("1D")
    readings = cat(
        counter("m energy_kwh", [120.0] * 24 + [115.0] * 24, hours=48),
        counter("it energy_kwh", [100.0] * 24 + [94.0] * 24, hours=48),
    )
    a = compute_pue(readings, meters, JUNE, day_b, max_gap=GAP)
    b = compute_pue(readings, meters, day_b, day_b + pd.Timedelta("1D"), max_gap=GAP)
    change = compare(a, b)
    assert (a.e_dc_kwh, b.e_dc_kwh) == (pytest.approx(2880.0), pytest.approx(2760.0))
    assert (a.pue, b.pue) == (pytest.approx(1.2), pytest.approx(2760 / 2256))
    assert change.delta_e_dc_kwh == pytest.approx(-120.0)
    assert change.delta_pue == pytest.approx(2760 / 2256 - 1.2)
    assert change.divergent
    assert "total energy fell by 120.0 kWh while PUE rose by 0.0234" in change.note


def test_wue_erf_ref_cue() -> None:
    """Water 0.5 m³/h, reuse 10, renewable 30 kWh/h and carbon 0.2 then 0.6 kg/kWh give 6.25, 0.1, 0.3, 0.5."""
    meters = {
        **METERS,
        "w water_m3": MeterInfo(Role.WATER_VOLUME, scale=1000.0),
        "r reused_kwh": MeterInfo(Role.REUSED_ENERGY),
        "g renewable_kwh": MeterInfo(Role.RENEWABLE_ENERGY),
        "c intensity_kg_per_kwh": MeterInfo(Role.CARBON_INTENSITY),
    }
    readings = cat(
        counter("meter,purpose=utility energy_kwh", 100.0, hours=24),
        counter("gpu_rack,rack=a it_energy_wh", 80_000.0, hours=24),
        counter("w water_m3", 0.5, hours=24),
        counter("r reused_kwh", 10.0, hours=24),
        counter("g renewable_kwh", 30.0, hours=24),
        gauge("c intensity_kg_per_kwh", [0.2] * 12 + [0.6] * 13),
    )
    r = compute_pue(readings, meters, JUNE, JUNE + pd.Timedelta("1D"), max_gap=GAP)
    assert r.wue == pytest.approx(12_000 / 1920)
    assert r.erf == pytest.approx(0.1)
    assert r.ref == pytest.approx(0.3)
    assert r.cue == pytest.approx((1200 * 0.2 + 1200 * 0.6) / 1920)


def test_optional_kpis_absent_without_meters() -> None:
    """Without water, reuse, renewable, carbon or cooling meters those KPIs are None, not zero."""
    readings = cat(
        counter("meter,purpose=utility energy_kwh", 100.0, hours=24),
        counter("gpu_rack,rack=a it_energy_wh", 80_000.0, hours=24),
    )
    r = compute_pue(readings, METERS, JUNE, JUNE + pd.Timedelta("1D"), max_gap=GAP)
    assert (r.wue, r.erf, r.ref, r.cue, r.clf, r.plf, r.ppue_cooling) == (None,) * 7


@pytest.mark.parametrize(
    ("meters", "message"),
    [
        ({"it energy_kwh": MeterInfo(Role.IT_ENERGY_PDU_OUTPUT)}, "no series with role facility_energy"),
        ({"m energy_kwh": MeterInfo(Role.FACILITY_ENERGY)}, "no IT energy counter"),
    ],
)
def test_missing_meters_are_one_clear_error(meters: dict[str, MeterInfo], message: str) -> None:
    """A site without the utility or any IT counter gets a DataError naming the missing role."""
    readings = cat(counter("m energy_kwh", 1.0, hours=2), counter("it energy_kwh", 1.0, hours=2))
    with pytest.raises(DataError, match=message):
        compute_pue(readings, meters, JUNE, JUNE + pd.Timedelta("2h"))


def test_instantaneous_pue_is_labelled() -> None:
    """Live PUE is facility power / IT power (1 200 kW / 1 000 kW = 1.2) and says it is power-based."""
    meters = {
        "m active_power_w": MeterInfo(Role.FACILITY_POWER, scale=0.001),
        "p active_power_w": MeterInfo(Role.IT_POWER_PDU_OUTPUT, scale=0.001),
    }
    latest = pd.DataFrame({"ts": [JUNE, JUNE], "series": list(meters), "value": [1.2e6, 1.0e6], "quality": 0})
    live = live_pue(PowerMeters.from_meters(meters), latest)
    assert live.value == pytest.approx(1.2)
    assert live.category == 2
    assert "instantaneous" in live.label
    assert "not ISO/IEC 30134-2" in live.label


@pytest.mark.parametrize(
    ("start", "end", "period", "tz", "expected"),
    [
        (
            "2026-06-15T00:00Z",
            "2026-08-10T00:00Z",
            "month",
            "UTC",
            ["2026-06-15T00:00Z", "2026-07-01T00:00Z", "2026-08-01T00:00Z", "2026-08-10T00:00Z"],
        ),
        (
            "2026-01-01T00:00Z",
            "2026-01-02T00:00Z",
            "day",
            "Europe/Berlin",
            ["2026-01-01T00:00Z", "2026-01-01T23:00Z", "2026-01-02T00:00Z"],
        ),
        (
            "2026-01-01T00:30Z",
            "2026-01-01T02:00Z",
            "hour",
            "UTC",
            ["2026-01-01T00:30Z", "2026-01-01T01:00Z", "2026-01-01T02:00Z"],
        ),
    ],
)
def test_period_edges_follow_the_site_calendar(start: str, end: str, period: str, tz: str, expected: list[str]) -> None:
    """Period boundaries are calendar boundaries in the site's time zone, clipped to the range."""
    edges = period_edges(start, end, period, tz)
    assert list(edges) == [pd.Timestamp(x) for x in expected]
