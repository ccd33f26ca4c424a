"""Headroom and the placement query: binding constraints by hand, and states learned from simulated telemetry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aidc.config import load_site
from aidc.errors import DataError
from aidc.sitegen import SiteTemplate, render_site
from analytics.leasing.headroom import CduState, RackState, can_place, cdu_capacity_kw, fit_thermal, summary
from analytics.leasing.headroom_data import seasonal_p90, states
from historian import open_historian
from simulators.facility import Facility
from simulators.telemetry import generate


def _racks(**over: float | None) -> dict[str, RackState]:
    base = {"power_kw": 100.0, "p90_kw": 110.0, "gpu_max_c": 70.0, "thermal_k_per_kw": 0.1}
    base.update(over)
    return {
        n: RackState(n, "h1", "r01", "cdu-1", 132.0, base["power_kw"], base["p90_kw"], base["gpu_max_c"], 30.0,
                     base["thermal_k_per_kw"], 0.88)
        for n in ("a", "b")
    }  # fmt: skip


CDU = {"cdu-1": CduState("cdu-1", "h1", 176.0, 50.0, 900.0, 30.0, 38.0)}


def test_cdu_capacity_is_lower_of_valve_and_flow_bounds() -> None:
    """Capacity = heat/valve share (352 kW here) unless the flow at 15 K of rise allows less (896 kW here)."""
    assert cdu_capacity_kw(CDU["cdu-1"]) == pytest.approx(352.0)
    tight = CduState("c", "h1", 176.0, 50.0, 300.0, 30.0, 38.0)
    assert cdu_capacity_kw(tight) == pytest.approx(1020 * 3900 * 300 / 60000 * 15 / 1000)


@pytest.mark.parametrize(
    ("racks", "kw", "ok", "binding"),
    [
        (_racks(), 20.0, True, "rack power P90 next 4 h at a"),
        (_racks(), 50.0, False, "rack power P90 next 4 h at a"),
        (_racks(p90_kw=100.0, thermal_k_per_kw=1.0), 30.0, False, "GPU thermal margin at a"),
        (_racks(thermal_k_per_kw=None), 1.0, False, "unknown: rack a: no learned GPU thermal response"),
    ],
)
def test_placement_binding_constraint(racks: dict[str, RackState], kw: float, ok: bool, binding: str) -> None:
    """Can N kW more run? The answer and the constraint that binds, worked out by hand for each case."""
    # 20 kW over two racks: 10 kW each, P90 120 of 132 kW (9 % slack) binds before GPU 71 of 84 °C (15 %).
    # 50 kW: P90 135 > 132. 30 kW at 1 K/kW: GPU 85 > 84.
    p = can_place(racks, CDU, ["a", "b"], kw, 4.0)
    assert p.ok is ok
    assert p.binding == binding


def test_placement_cdu_binds() -> None:
    """A CDU at 80 % valve (capacity 220 kW, 176 kW in use) cannot take 60 kW more (52.8 kW of it to liquid)."""
    cdu = {"cdu-1": CduState("cdu-1", "h1", 176.0, 80.0, 900.0, 30.0, 38.0)}
    p = can_place(_racks(power_kw=60.0, p90_kw=60.0, thermal_k_per_kw=0.01), cdu, ["a", "b"], 60.0, 2.0)
    assert not p.ok
    assert p.binding == "CDU heat capacity at cdu-1"
    (c,) = [c for c in p.constraints if c.name == "CDU heat capacity"]
    assert c.slack == pytest.approx(220.0 - 176.0 - 52.8)


def test_placement_bad_input() -> None:
    """Unknown racks and negative kW are refused naming the value."""
    with pytest.raises(DataError, match="unknown rack 'zz'"):
        can_place(_racks(), CDU, ["zz"], 1.0, 1.0)
    with pytest.raises(DataError, match="kw -1"):
        can_place(_racks(), CDU, ["a"], -1.0, 1.0)


def test_fit_thermal_recovers_slope() -> None:
    """The least-squares slope of GPU rise over rack power is recovered; a flat load gives no fit."""
    x = np.linspace(60, 120, 100)
    assert fit_thermal(x, 5 + 0.2 * x) == pytest.approx(0.2)
    assert fit_thermal(np.full(100, 90.0), np.full(100, 20.0)) is None


def test_seasonal_p90_uses_same_hours_of_day() -> None:
    """The P90 for the next hours comes from the same hours of past days, not the whole day."""
    idx = pd.date_range("2026-07-01", periods=7 * 288, freq="5min", tz="UTC")
    power = pd.Series(np.where(idx.hour < 12, 50.0, 100.0), index=idx)
    assert seasonal_p90(power, pd.Timestamp("2026-07-08T01:00Z"), 4) == pytest.approx(50.0)
    assert seasonal_p90(power, pd.Timestamp("2026-07-08T13:00Z"), 4) == pytest.approx(100.0)


def test_states_from_simulated_telemetry(tmp_path: Path) -> None:
    """From two simulated days: rack power and CDU heat match the simulator, and placement answers both ways."""
    path = tmp_path / "site.toml"
    path.write_text(render_site(SiteTemplate(racks=2, start="2026-07-01T00:00:00Z", data_dir="var")))
    site = load_site(path)
    fac = Facility(site)
    tel = generate(site, duration_s=2 * 86400, sample_s=300, schedule=None, facility=fac)
    with open_historian(site.config.historian, site.data_dir) as hist:
        for batch in tel.batches():
            hist.write(batch)
        hist.flush()
        now = tel.frame.index[-1] + pd.Timedelta("1min")
        racks, cdus, ups = states(hist, site, now, 4.0)
    name = "h1-r01-01"
    assert racks[name].power_kw == pytest.approx(fac.rack_power_w[0] / 1000, rel=0.02)
    assert cdus["cdu-h1-01"].heat_kw == pytest.approx(fac.cdu_heat_w[0] / 1000, rel=0.05)
    assert racks[name].thermal_k_per_kw is not None
    assert racks[name].thermal_k_per_kw > 0
    small = can_place(racks, cdus, [name], 1.0, 4.0, ups_rated_kw=ups)
    assert small.ok, small
    big = can_place(racks, cdus, [name], 500.0, 4.0, ups_rated_kw=ups)
    assert not big.ok
    assert big.binding is not None
    view = summary(list(racks.values()), list(cdus.values()), ups, 87.0)
    assert set(view) == {"racks", "rows", "cdus", "halls"}
