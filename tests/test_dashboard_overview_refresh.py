"""The Overview's refreshes stay cheap on a large site: alarm rows re-sent only on change, trend meters built once."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path

import dash
import numpy as np
import pandas as pd
import pytest

from aidc.clock import SteppedClock
from aidc.config import site_from_dict
from aidc.historian_config import HistorianConfig
from aidc.live import LiveState
from aidc.model import Batch, SeriesKey
from aidc.roles import Role
from aidc.sitegen import SiteTemplate, render_site
from analytics.alarms.engine import AlarmEngine
from dashboards import data as data_module
from dashboards.data import DashboardData, power_meters
from dashboards.pages.overview import alarm_update
from historian import open_historian

NOW = pd.Timestamp("2026-12-05 12:00", tz="UTC")


@pytest.fixture
def data(tmp_path: Path) -> Iterator[DashboardData]:
    """A two-rack site, its clock at NOW, with an empty historian."""
    site = site_from_dict(tomllib.loads(render_site(SiteTemplate(racks=2, data_dir=str(tmp_path)))))
    with open_historian(HistorianConfig(), tmp_path) as hist:
        yield DashboardData(site, LiveState(), hist, SteppedClock(NOW.value), AlarmEngine.from_site(site))


def _raise_hot_gpu(data: DashboardData) -> str:
    """Feed one hot GPU and evaluate past the raise delay; the alarm's id."""
    rack = next(iter(data.racks.values()))
    data.live.update(
        Batch(np.array([rack.gpu_temp[0]], dtype=object), np.ones(1, np.int64), np.array([97.0]), np.zeros(1, np.uint8))
    )
    data.alarms.evaluate(data.alarm_frame(), 0)
    data.alarms.evaluate(data.alarm_frame(), 10**12)
    return f"gpu_hot:{rack.name}"


def test_alarm_rows_are_resent_only_when_what_they_show_changes(data: DashboardData) -> None:
    """Same alarms as shown: no update; a new alarm, an acknowledgement or the buttons' state: the rows again."""
    quiet, digest = alarm_update(data, ack=True, shown=None)
    assert "No active alarms" in str(quiet)
    assert alarm_update(data, ack=True, shown=digest)[0] is dash.no_update

    alarm_id = _raise_hot_gpu(data)
    rows, raised = alarm_update(data, ack=True, shown=digest)
    assert raised != digest
    assert alarm_id in str(rows)
    assert alarm_update(data, ack=True, shown=raised) == (dash.no_update, raised)

    readonly, digest_ro = alarm_update(data, ack=False, shown=raised)  # a viewer's disabled buttons differ
    assert readonly is not dash.no_update
    assert digest_ro != raised

    data.alarms.acknowledge(alarm_id, "op", NOW.value)
    acked, digest_ack = alarm_update(data, ack=True, shown=raised)
    assert "acknowledged by op" in str(acked)
    assert digest_ack != raised


def test_power_trend_refresh_builds_no_meter_table_and_sums_each_line(
    data: DashboardData, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A power-trend refresh reuses the meters worked out at start and sums facility, IT and cooling in kW."""
    site = data.site
    values = {Role.FACILITY_POWER: 300.0, Role.IT_POWER_PDU_OUTPUT: 100.0, Role.COOLING_POWER: 40.0}
    ids, kw = [], {}
    for role, v in values.items():
        meters = power_meters(site, [role])
        assert meters, role
        ids += [(s, v / m.scale) for s, m in meters.items()]  # raw units that read v kW each
        kw[role] = v * len(meters)
    ts = np.arange((NOW - pd.Timedelta("50min")).value, NOW.value, 60 * 10**9, dtype=np.int64)
    sids = np.array([s for s, _ in ids for _ in ts], dtype=object)
    raw = np.array([v for _, v in ids for _ in ts])
    data.historian.write(Batch(sids, np.tile(ts, len(ids)), raw, np.zeros(len(sids), np.uint8)))
    data.historian.flush()

    def no_meters(*_: object) -> None:
        raise AssertionError("power_meters called on a refresh")

    parsed: list[str] = []
    parse = SeriesKey.parse
    monkeypatch.setattr(data_module, "power_meters", no_meters)

    def counted(sid: str) -> SeriesKey:
        parsed.append(sid)
        return parse(sid)

    monkeypatch.setattr(SeriesKey, "parse", staticmethod(counted))
    first = data.power_trend("1h")
    data._cache.clear()  # the next call computes again
    parsed.clear()
    again = data.power_trend("1h")

    assert parsed == []  # ids were parsed on the first refresh only
    pd.testing.assert_frame_equal(first, again)
    assert first["facility"].iloc[-1] == pytest.approx(kw[Role.FACILITY_POWER])
    assert first["it"].iloc[-1] == pytest.approx(kw[Role.IT_POWER_PDU_OUTPUT])
    assert first["cooling"].iloc[-1] == pytest.approx(kw[Role.COOLING_POWER])
