"""The aidc learning core and its online plant model: commissioning, the uncertainty gate across seasons, and the
model's spread and distance."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import numpy as np
import pytest

from aidc.errors import DataError
from analytics.plant_model import ONLINE_FEATURES, OnlinePlantModel
from control.evaluate import DAY_NS, EvalSetup, SimPlant, run_day
from control.guard import verify
from control.learner import LearningController
from control.policy import site_limits
from control.types import Setpoints
from simulators.weather import load_weather
from tests.control_helpers import control_site


def _setup(tmp_path: Path) -> EvalSetup:
    site = control_site(tmp_path, racks=8, commissioning_days=2.0)
    return EvalSetup(site, site_limits(site), load_weather("builtin:leesburg"), warmup_h=0.0)


def test_summer_trained_model_in_winter_explores_within_bounds(tmp_path: Path) -> None:
    """A model trained on July telemetry is not trusted in January: the core explores with bounded, verified steps
    and never jumps to an extreme."""
    setup = _setup(tmp_path)
    lim = setup.limits
    ctl = LearningController(lim)
    july = setup.year_start_ns + 181 * DAY_NS
    for d in range(3):
        run_day(setup, ctl, july + d * DAY_NS, None, warmup_h=0.0)
    assert ctl.model is not None, "commissioning ended with a trained model"
    fac = setup.facility(setup.year_start_ns + (365 + 15) * DAY_NS)  # the next January
    plant = SimPlant(setup.site, lim, setup.builder, fac)
    fac.step(300.0)
    states = []
    for _ in range(24):
        snap = plant.snapshot()
        dec = ctl.decide(snap)
        states.append(dec.state)
        v = verify(dec.setpoints, snap.current, snap, lim)
        assert v.ok, v.reasons
        plant.apply(dec.setpoints)
        fac.step(300.0)
    assert states[0] == "learning", "January weather is far from the July training data"
    assert float(np.max(fac.gpu_temp_c)) < float(lim.gpu_ceiling_c.min())


def test_commissioning_explores_and_keeps_the_margin(tmp_path: Path) -> None:
    """Commissioning varies every setpoint within the limits while the hottest GPU stays below limit − margin."""
    setup = _setup(tmp_path)
    ctl = LearningController(setup.limits)
    seen = []
    orig = ctl.decide

    def spy(snap):  # type: ignore[no-untyped-def]
        dec = orig(snap)
        seen.append((dec.setpoints.tcs_c.mean(), dec.setpoints.dp_kpa.mean(), dec.setpoints.fws_c,
                     float(np.max(snap.gpu_max_c - setup.limits.gpu_ceiling_c))))
        return dec

    ctl.decide = spy  # type: ignore[method-assign]
    run_day(setup, ctl, setup.year_start_ns + 181 * DAY_NS, None, warmup_h=0.0)
    a = np.array(seen)
    assert np.ptp(a[:, 0]) > 4
    assert np.ptp(a[:, 1]) > 40
    assert np.ptp(a[:, 2]) > 4
    assert a[:, 3].max() <= 0.0


def test_online_model_spread_and_distance_grow_away_from_the_data() -> None:
    """Far from the training rows the distance exceeds one scaled unit; near them it is small, and a fit on a
    smooth function predicts it closely."""
    rng = np.random.default_rng(0)
    x = np.column_stack([rng.uniform(40, 90, 2000), rng.uniform(20, 30, 2000), rng.uniform(15, 22, 2000),
                         rng.uniform(25, 35, 2000), rng.uniform(80, 160, 2000), rng.uniform(20, 28, 2000)])
    y = {"facility_power_kw": 40 * x[:, 0] + 3 * (x[:, 5] - x[:, 1]) ** 2, "gpu_margin_c": x[:, 3] - 60}
    m = OnlinePlantModel.fit(x, y)
    assert m.provenance["features"] == list(ONLINE_FEATURES)
    near = x[:5] + 0.01
    far = near.copy()
    far[:, 1] = -5.0  # winter
    assert (m.distance(near) < 1.5).all()
    assert (m.distance(far) > 3.0).all()
    mu, sd = m.predict(near)["facility_power_kw"]
    assert mu == pytest.approx(y["facility_power_kw"][:5], rel=0.01)
    assert (m.predict(far)["facility_power_kw"][1] > sd).all()


def test_online_model_needs_enough_rows() -> None:
    """Fitting on too few rows is a DataError that says how many there were."""
    with pytest.raises(DataError, match="only 10 training rows"):
        OnlinePlantModel.fit(np.ones((10, 6)), {"facility_power_kw": np.ones(10)})


def test_measured_gpu_hotter_than_predicted_makes_the_core_choose_colder(tmp_path: Path) -> None:
    """When the hottest GPU measures warmer than the model predicts at the plant's current state, the miss is fed
    back into every candidate's GPU prediction, so the core picks setpoints no warmer than before, and colder
    once the miss is large."""
    setup = _setup(tmp_path)
    ctl = LearningController(setup.limits)
    july = setup.year_start_ns + 181 * DAY_NS
    for d in range(3):
        run_day(setup, ctl, july + d * DAY_NS, None, warmup_h=0.0)
    fac = setup.facility(july + 3 * DAY_NS + 12 * 3_600_000_000_000)
    plant = SimPlant(setup.site, setup.limits, setup.builder, fac)
    fac.step(300.0)
    snap = plant.snapshot()
    calm = copy.deepcopy(ctl)
    plain = calm.decide(snap)
    assert plain.state == "deciding"
    assert calm.bias_k < 1.0, "an ordinary snapshot leaves the correction small"
    # The same instant, but every GPU reads 6 K hotter than the plant model knows (a fouled cold plate, say).
    hot = dataclasses.replace(snap, gpu_max_c=snap.gpu_max_c + 6.0)
    for _ in range(6):
        dec = ctl.decide(hot)
    assert ctl.bias_k > 2.0
    assert dec.setpoints.tcs_c.mean() < plain.setpoints.tcs_c.mean() - 0.5


def test_a_loop_still_settling_does_not_teach_a_huge_cdu_approach(tmp_path: Path) -> None:
    """TCS supply far above its setpoint while the CDU's FWS valve is part-open is a loop settling after a
    setpoint change, not a saturated exchanger: the learnt approach stays at the policy value (it pinned TCS at
    FWS + 20 K all winter before); with the valve wide open it is learnt, and capped."""
    setup = _setup(tmp_path)
    lim = setup.limits
    ctl = LearningController(lim)
    fac = setup.facility(setup.year_start_ns + 10 * DAY_NS)
    fac.step(300.0)
    snap = SimPlant(setup.site, lim, setup.builder, fac).snapshot()
    n = len(snap.cdu_names)
    cold = Setpoints(np.full(n, 18.0), snap.current.dp_kpa, 12.0)
    settling = dataclasses.replace(snap, current=cold, tcs_supply_c=np.full(n, 31.0), fws_supply_c=12.0,
                                   valve_pct=np.full(n, 60.0))
    ctl.observe(settling)
    assert ctl.approach_k == pytest.approx(lim.cfg.cdu_approach_k)
    saturated = dataclasses.replace(settling, tcs_supply_c=np.full(n, 17.5), fws_supply_c=12.0,
                                    current=Setpoints(np.full(n, 15.0), snap.current.dp_kpa, 12.0),
                                    valve_pct=np.full(n, 100.0))
    ctl.observe(saturated)
    assert ctl.approach_k == pytest.approx(5.8, abs=0.05)
    ctl.observe(dataclasses.replace(saturated, tcs_supply_c=np.full(n, 40.0)))
    assert ctl.approach_k <= 10.0
