"""The simulated CDUs' flow and pump power follow their racks' load and dp, and their meters read with noise."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pytest

from aidc.config import site_from_dict
from aidc.sitegen import SiteTemplate, render_site
from simulators.facility import Facility
from simulators.weather import constant_weather


@dataclass(frozen=True)
class SplitWorkload:
    """The first CDU's racks at ``high`` utilisation, every other rack at ``low``."""

    high: float
    low: float
    racks: int

    def rack_util(self, t_ns: int) -> npt.NDArray[np.float64]:
        """Per-rack utilisation: the first four racks (one CDU) high, the rest low."""
        out = np.full(self.racks, self.low)
        out[:4] = self.high
        return out


def _facility(high: float, low: float, *, noise: bool = False) -> Facility:
    doc = tomllib.loads(render_site(SiteTemplate(racks=8, start="2026-07-01T00:00:00Z")))
    doc["simulation"].setdefault("physics", {})["tcs_flow_per_k"] = 0.006  # PG25's viscosity effect (off by default)
    site = site_from_dict(doc)
    return Facility(
        site, weather=constant_weather(18.0, 60.0), workload=SplitWorkload(high, low, 8), sensor_noise=noise
    )


def test_cdus_under_more_load_pass_more_flow_at_the_same_dp() -> None:
    """Two CDUs at the same dp setpoint but 95 % against 40 % load read different flows and pump power."""
    fac = _facility(0.95, 0.4)
    for _ in range(30):
        fac.step(60.0)
    busy, idle = fac.cdu_flow_lpm
    assert busy > idle * 1.002  # warmer (thinner) coolant flows more at a held dp
    assert fac.cdu_pump_w[0] > fac.cdu_pump_w[1]
    assert fac.cdu_heat_w[0] > 1.5 * fac.cdu_heat_w[1]
    assert fac.cdu_dp_kpa[0] == pytest.approx(fac.cdu_dp_kpa[1])


def test_equal_load_gives_equal_flow_and_dp_still_sets_it() -> None:
    """Equal loads give equal flows; a higher dp setpoint still gives more flow (the pump's curve)."""
    fac = _facility(0.7, 0.7)
    fac.step(60.0)
    assert fac.cdu_flow_lpm[0] == pytest.approx(fac.cdu_flow_lpm[1])
    before = float(fac.cdu_flow_lpm[0])
    fac.write_point(fac.cdu_names[0], "dp_setpoint_kpa", 160.0)
    fac.step(60.0)
    assert fac.cdu_flow_lpm[0] > before * 1.1


def test_cdu_meters_read_with_relative_noise() -> None:
    """With sensor noise, a CDU's flow, pump power and heat readings move poll to poll around the physics."""
    fac = _facility(0.7, 0.7, noise=True)
    name = fac.cdu_names[0]
    readings = []
    for _ in range(20):
        fac.step(1.0)
        v = fac.device_values(name)
        exact = (float(fac.cdu_flow_lpm[0]), float(fac.cdu_pump_w[0]))
        flow, pump = v["flow_lpm"], v["pump_power_w"]
        assert isinstance(flow, float)
        assert isinstance(pump, float)
        readings.append((flow / exact[0] - 1.0, pump / exact[1] - 1.0))
    rel = np.array(readings)
    assert (np.abs(rel) < 0.05).all()  # noise, not a different quantity
    assert rel[:, 0].std() > 0.0005
    assert rel[:, 1].std() > 0.0005
    assert len(set(np.round(rel[:, 0], 6))) > 10  # not a frozen value
