"""AI load scenarios (simulators/scenarios.py): seeded, stateless in absolute time, synchronised, and hard."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from aidc.config import Site
from aidc.errors import ConfigError
from simulators.facility import Facility
from simulators.scenarios import SCENARIOS, HallScenario, MixedScenario, TraceScenario, scenario_workload
from simulators.trace import load_trace
from simulators.weather import constant_weather
from simulators.workload import inference_level, utc_day
from tests.conftest import DATA

T0 = utc_day(2026, 3, 1)
MIN_NS = 60_000_000_000
DAY_NS = 86_400_000_000_000


def _series(w: object, start_ns: int, step_s: float, n: int) -> np.ndarray:
    """Every rack's utilisation at ``n`` instants ``step_s`` apart (rows: instants)."""
    step = round(step_s * 1e9)
    return np.array([w.rack_util(start_ns + k * step) for k in range(n)])  # type: ignore[attr-defined]


def test_unknown_scenario_is_a_config_error(small_site: Site) -> None:
    """An unknown scenario name is one ConfigError line naming the value and every known scenario."""
    with pytest.raises(ConfigError) as err:
        scenario_workload("ai-stepz", small_site, seed=0)
    assert "'ai-stepz'" in str(err.value)
    assert all(name in str(err.value) for name in SCENARIOS)
    with pytest.raises(ConfigError, match="seed"):
        scenario_workload("ai-steps", small_site, seed=-1)


def test_steady_is_the_sites_own_workload(small_site: Site) -> None:
    """``steady`` returns None: the facility keeps the site's own workload, as before scenarios."""
    assert scenario_workload("steady", small_site, seed=0) is None


@pytest.mark.parametrize("name", ["ai-steps", "checkpoint-stalls", "mixed", "trace-replay"])
def test_same_seed_same_series_other_seed_other_series(small_site: Site, name: str) -> None:
    """Two sources from one seed give identical series, also when asked in another order; another seed differs."""
    a = scenario_workload(name, small_site, seed=7)
    b = scenario_workload(name, small_site, seed=7)
    c = scenario_workload(name, small_site, seed=8)
    fwd = _series(a, T0, 60.0, 2 * 1440)
    # b answers a later year first: draws are keyed by year, so the order of questions changes nothing.
    b.rack_util(utc_day(2031, 6, 1))  # type: ignore[union-attr]
    assert np.array_equal(fwd, _series(b, T0, 60.0, 2 * 1440))
    assert not np.array_equal(fwd, _series(c, T0, 60.0, 2 * 1440))


def test_other_seed_other_step_times(small_site: Site) -> None:
    """ai-steps' step times come from the seed: two seeds put their first steps of a year at different times."""
    firsts = []
    for seed in (1, 2, 3):
        w = scenario_workload("ai-steps", small_site, seed=seed)
        assert isinstance(w, HallScenario)
        ts, vs = w.timeline.knots(2026)
        firsts.append(next(t for t, a, b in zip(ts, vs, vs[1:], strict=False) if a != b))
    assert len(set(firsts)) == 3


@pytest.mark.parametrize("name", ["ai-steps", "mixed", "trace-replay"])
def test_the_load_at_an_instant_does_not_depend_on_the_facility_start(small_site: Site, name: str) -> None:
    """Two facilities on one scenario, started a day apart and stepped differently, see the same load at the same
    instant (the evaluation builds a fresh facility per day, and controllers must all see one load)."""
    w = scenario_workload(name, small_site, seed=11)
    weather = constant_weather(20.0, 50.0)
    at = T0 + 5 * 3_600_000_000_000 + 17 * MIN_NS
    early = Facility(small_site, weather=weather, workload=w, start_ns=at - DAY_NS)
    late = Facility(small_site, weather=weather, workload=scenario_workload(name, small_site, seed=11),
                    start_ns=at - 3 * MIN_NS)  # fmt: skip
    for _ in range(24):
        early.step(3600.0)
    for _ in range(3):
        late.step(60.0)
    assert early.t_ns == late.t_ns == at
    assert np.array_equal(early.rack_util, late.rack_util)


def test_ai_steps_step_the_whole_hall_between_idle_and_full_within_a_minute(small_site: Site) -> None:
    """Over 13 days ai-steps crosses half load upward at least 20 times, each time from every rack at or below
    10 % to every rack at or above 90 % within one minute, and spends 30-70 % of the time at full."""
    w = scenario_workload("ai-steps", small_site, seed=0)
    u = _series(w, T0, 10.0, 13 * 8640)
    mean = u.mean(axis=1)
    rising = np.flatnonzero((mean[:-1] < 0.5) & (mean[1:] >= 0.5))
    rising = rising[(rising >= 3) & (rising + 4 < len(u))]
    assert len(rising) >= 20
    for k in rising:
        assert u[k - 2].max() <= 0.10, k
        assert u[k + 4].min() >= 0.90, k  # 60 s after
    full = float((mean >= 0.9).mean())
    assert 0.3 <= full <= 0.7
    assert float(((mean > 0.1) & (mean < 0.9)).mean()) < 0.01  # ramps only: seconds, not minutes
    assert float((u.max(axis=1) - u.min(axis=1)).max()) <= 0.06  # every rack together, a percent or two apart


def test_checkpoint_stalls_are_synchronised_across_racks(small_site: Site) -> None:
    """checkpoint-stalls runs near 93 %, dips every rack together to 15-25 % every 30-60 min for 1-4 min, and now
    and then falls to idle for 10-40 min (a failure)."""
    w = scenario_workload("checkpoint-stalls", small_site, seed=4)
    u = _series(w, T0, 60.0, 13 * 1440)
    mean = u.mean(axis=1)
    assert float((u.max(axis=1) - u.min(axis=1)).max()) <= 0.06
    stall = (mean > 0.1) & (mean < 0.3)
    starts = np.flatnonzero(stall[1:] & ~stall[:-1]) + 1
    assert 13 * 24 * 60 / 66 <= len(starts) <= 13 * 24 * 2 + 1  # one per 30-60 min of running plus its dip
    assert 0.8 < float((mean > 0.85).mean()) < 0.97
    idle = mean < 0.1
    runs = np.diff(np.flatnonzero(np.diff(np.r_[0, idle.astype(int), 0])))[::2]  # lengths of idle runs, minutes
    assert len(runs) >= 3
    assert runs.min() >= 9
    assert runs.max() <= 41


def test_mixed_hall_trains_on_half_the_racks_and_serves_inference_on_the_rest(small_site: Site) -> None:
    """In ``mixed`` the first half of the racks train (stalling together) and the rest follow the diurnal
    inference curve of the site's time zone, within the per-rack jitter."""
    w = scenario_workload("mixed", small_site, seed=5)
    assert isinstance(w, MixedScenario)
    assert w.training.tolist() == [True, True, False, False]
    tz = ZoneInfo(small_site.config.site.timezone)
    u = _series(w, T0, 300.0, 2 * 288)
    for k, row in enumerate(u):
        level = inference_level(T0 + k * 300 * 1_000_000_000, tz)
        assert np.all(np.abs(row[2:] - level) <= 0.03)
    assert (u[:, 0] < 0.3).any()
    assert (u[:, 0] > 0.85).any()
    assert float(np.abs(u[:, 0] - u[:, 1]).max()) <= 0.06


def test_trace_replay_replays_the_bundled_gpu_power_traces(small_site: Site) -> None:
    """trace-replay gives rack 0 the cbsugpu05 trace and rack 1 the cbsugpu07 trace, mapped from average power as
    simulators.trace does, at their hourly values on the hour of the rack's offset replay clock."""
    w = scenario_workload("trace-replay", small_site, seed=9)
    assert isinstance(w, TraceScenario)
    files = [DATA / "gpu_power" / "cbsugpu05_usage_stats.txt.gz", DATA / "gpu_power" / "cbsugpu07_usage_stats.txt.gz"]
    for rack, path in enumerate(files):
        util = load_trace(Path(path), column="powerave").util
        for hour in (493_000, 493_017, 500_123):  # hours since the Unix epoch (2026-2027)
            t_s = hour * 3600.0 - float(w.offset_s[rack])
            got = w.rack_util(round(t_s * 1e9))[rack]
            assert got == pytest.approx(util[hour % len(util)], abs=1e-6)
    assert len(set(np.round(w.offset_s, 3))) == len(w.offset_s)  # per-rack offsets


def test_a_step_heats_the_hottest_gpu_within_minutes(small_site: Site) -> None:
    """Closed loop: under ai-steps at the safe default setpoints, stepped at 60 s, the hottest GPU is at least 10 K
    hotter three minutes after an idle-to-full step than just before it, what makes the scenario hard."""
    w = scenario_workload("ai-steps", small_site, seed=3)
    assert isinstance(w, HallScenario)
    ts, vs = w.timeline.knots(2026)
    ups = [t for t, a, b in zip(ts, vs, vs[1:], strict=False) if a < 0.1 and b > 0.9]
    up = ups[2]
    fac = Facility(small_site, weather=constant_weather(25.0, 40.0), workload=w, start_ns=round((up - 1800) * 1e9))
    temps: dict[int, float] = {}
    for _ in range(40):
        fac.step(60.0)
        temps[round(fac.t_ns / 1e9 - up)] = float(fac.gpu_temp_c.max())
    before = max(v for k, v in temps.items() if -120 <= k <= 0)
    after = next(v for k, v in temps.items() if 120 < k <= 180)
    assert after - before >= 10.0
