"""Exploration telemetry from the simulated facility and the learned plant model trained on it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aidc.config import Site, site_from_dict
from aidc.errors import DataError
from aidc.model import SeriesKey
from aidc.roles import Role
from analytics.plant_model import FEATURES, TARGETS, PlantModel, plant_frame
from analytics.store import load_metadata, load_model, save_model
from simulators.telemetry import ExplorationSchedule, Telemetry, generate
from tests.conftest import site_dict

# Four days: with three, the held-out half day's cooling power (cold water on a hot afternoon, after the power-cap
# physics) lay outside everything the 2.5 training days had explored, a test of extrapolation rather than fit.
DAYS = 4


@pytest.fixture(scope="module")
def site() -> Site:
    """A 4-rack simulated site."""
    return site_from_dict(site_dict(4, start="2026-07-01T00:00:00Z"), source="plant.toml")


@pytest.fixture(scope="module")
def telemetry(site: Site) -> Telemetry:
    """Four simulated days sampled every 5 min with safe exploration."""
    return generate(site, duration_s=DAYS * 86400.0, schedule=ExplorationSchedule(seed=3))


def test_series_are_the_collectors_series(site: Site, telemetry: Telemetry) -> None:
    """Every scalar point appears under its collector series id, array points once per GPU with tag gpu=<i>."""
    cols = set(telemetry.frame.columns)
    for dev in site.devices:
        for p in dev.profile.points:
            if p.array:
                first = SeriesKey.of(dev.profile.measurement, p.name, {**dev.tags, p.array_tag: "0"}).id
                assert first in cols
            elif not p.writable or dev.role_of(p.name) is not Role.HEARTBEAT:
                assert SeriesKey.of(dev.profile.measurement, p.name, dev.tags).id in cols
    assert len(telemetry.frame) == DAYS * 288


def test_counters_wrap_like_registers(site: Site, telemetry: Telemetry) -> None:
    """Counter series stay below their register modulus, as a collector decodes them."""
    for dev in site.devices:
        for p in dev.profile.points:
            if p.modulus:
                sid = SeriesKey.of(dev.profile.measurement, p.name, dev.tags).id
                assert telemetry.frame[sid].max() < p.modulus


def test_exploration_is_safe_and_varied(site: Site, telemetry: Telemetry) -> None:
    """Setpoints move in held steps within profile limits, the W32 class and the CDU approach, and cover a range."""
    data = plant_frame(telemetry.frame, telemetry.roles)
    tcs, dp, fws = data["tcs_supply_sp_c"], data["tcs_dp_sp_kpa"], data["fws_supply_sp_c"]
    assert tcs.between(18.0, 45.0).all()
    assert dp.between(40.0, 250.0).all()
    assert fws.between(12.0, 32.0).all()
    assert (tcs >= fws + 3.0 - 0.051).all()  # approach kept (0.1 K register resolution)
    assert tcs.max() - tcs.min() >= 3.0
    assert dp.max() - dp.min() >= 30.0
    changes = int((fws.diff().abs() > 0).sum())
    assert 10 <= changes <= len(fws) // 4  # held for tens of minutes, not changed every sample
    assert data["gpu_temp_max_c"].max() < 85.0


def test_plant_model_learns_and_scores_candidates(telemetry: Telemetry, tmp_path: Path) -> None:
    """Trained on 3.5 days, the model predicts the next half day's PUE and hottest GPU closely, vectorised."""
    data = plant_frame(telemetry.frame, telemetry.roles)
    split = data.index[0] + pd.Timedelta(hours=84)
    model = PlantModel.fit(data[data.index < split], max_iter=150)
    test = data[data.index >= split]
    scores = model.evaluate(test)
    assert scores["pue_mae"] < 0.02
    assert scores["gpu_temp_max_c_mae"] < 2.0
    # 500 candidates around the current state in one call.
    cand = pd.DataFrame(np.repeat(test[list(FEATURES)].iloc[[0]].to_numpy(), 500, axis=0), columns=list(FEATURES))
    cand["tcs_supply_sp_c"] = np.linspace(*model.ranges["tcs_supply_sp_c"], 500)
    pred = model.predict(cand)
    assert len(pred) == 500
    for t in TARGETS:
        assert (pred[f"{t}_p10"] <= pred[f"{t}_p50"]).all()
        assert (pred[f"{t}_p50"] <= pred[f"{t}_p90"]).all()
    assert not pred["extrapolating"].any()
    # Warmer TCS supply gives hotter GPUs across the explored range.
    assert pred["gpu_temp_max_c_p50"].iloc[-1] > pred["gpu_temp_max_c_p50"].iloc[0] + 2.0
    outside = cand.iloc[:1].assign(tcs_supply_sp_c=60.0)
    assert model.predict(outside)["extrapolating"].all()
    path = save_model(model, tmp_path / "plant.joblib", model.metadata())
    assert load_metadata(path)["features"] == list(FEATURES)
    pd.testing.assert_frame_equal(load_model(path).predict(cand), pred)


def test_plant_frame_names_missing_role(telemetry: Telemetry) -> None:
    """Telemetry without a needed role gives one DataError naming the role."""
    roles = {s: r for s, r in telemetry.roles.items() if r is not Role.OUTDOOR_WETBULB}
    with pytest.raises(DataError, match="no series with role outdoor_wetbulb"):
        plant_frame(telemetry.frame, roles)
