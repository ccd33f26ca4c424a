"""The all-writable oracle and the commissioned baselines (pump test, trim & respond in reach, the bin table)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from aidc.config import Site, site_from_dict
from app.evaluation.commissioning import commission_bin_table, commissioned_dp_max, commissioned_trim_respond, pump_test
from app.evaluation.harness import EvalSetup, evaluate
from app.evaluation.oracle import OracleController, cdu_groups
from control.baselines import BinTable, BinTableController, TrimRespondController
from control.policy import Limits, site_limits
from control.types import Decision, Setpoints, Snapshot
from simulators.facility import Facility
from simulators.interface import Setpoints as SimSetpoints
from simulators.weather import load_weather
from simulators.workload import ConstantWorkload
from tests.control_helpers import control_site
from tests.sim_helpers import site_doc

JULY = 195  # a hot Leesburg day: day of the year, from 0


def _mixed_site(tmp_path: Path) -> Site:
    """bench/control_sites.py's leesburg-mixed site, small: B200 inference racks on one CDU, GB200 training racks
    on the other, with its larger CRAH share, slower TCS loop and leakier silicon."""
    doc = site_doc(tmp_path, 8)
    doc["plant"]["crah_share"] = 0.2
    doc["simulation"]["physics"] = {"cdu_tau_s": 150.0, "cdu_flow_lpm_per_kw": 1.3, "leak_ref_frac": 0.13}
    for i, rack in enumerate(doc["halls"][0]["racks"]):
        if i < 4:
            rack.update(gpu_model="B200", gpus=64, rated_kw=120.0, workload="inference")
        else:
            rack.update(gpu_model="GB200", gpus=72, rated_kw=132.0, workload="training")
    return site_from_dict(doc, path=tmp_path / "site.toml")


class _Recording(OracleController):
    """The oracle, keeping every decision's setpoints."""

    def __init__(self, setup: EvalSetup, scope: str) -> None:
        super().__init__(setup, scope=scope)
        self.seen: list[Setpoints] = []

    def decide(self, snap: Snapshot) -> Decision:
        """The oracle's decision, recorded."""
        d = super().decide(snap)
        self.seen.append(d.setpoints)
        return d


@pytest.mark.timeout(1200)  # two oracles on a mixed site: ~290 s on a loaded 2-core machine, more in CI beside others
def test_all_writable_oracle_is_never_worse_than_uniform_and_sets_mixed_cdus_apart(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a mixed site (B200 inference and GB200 training on separate CDUs), the all-writable oracle uses no more
    facility energy than the uniform one, keeps every constraint, writes the chilled water, and gives the two
    CDUs different TCS or dp."""
    monkeypatch.setattr("app.evaluation.oracle.SEARCH_CHW", True)  # the chilled-water search, off by default
    site = _mixed_site(tmp_path)
    lim = site_limits(site)
    setup = EvalSetup(site, lim, load_weather("builtin:leesburg"), days=JULY + 1, stride=1, first_day=JULY,
                      warmup_h=1.0, commissioning_days=0)  # the oracles do not commission: one July day, not 15
    assert cdu_groups(setup) == ((0,), (1,))
    uni = _Recording(setup, "uniform")
    k_uni = evaluate(setup, uni, uni.bind)
    allw = _Recording(setup, "all-writable")
    k_all = evaluate(setup, allw, allw.bind)
    assert (uni.scope, allw.scope) == ("uniform", "all-writable")
    assert k_all.facility_kwh <= k_uni.facility_kwh
    for k in (k_uni, k_all):
        assert k.violation_minutes == k.throttle_minutes == k.below_dew_minutes == k.above_class_minutes == 0
    assert all(s.tcs_c[0] == s.tcs_c[1] and s.dp_kpa[0] == s.dp_kpa[1] for s in uni.seen)
    assert all(math.isnan(s.chw_c) for s in uni.seen), "the uniform oracle leaves the chilled water alone"
    assert any(s.tcs_c[0] != s.tcs_c[1] or s.dp_kpa[0] != s.dp_kpa[1] for s in allw.seen)
    assert all(lim.chw_lo <= s.chw_c <= lim.chw_hi for s in allw.seen)


def test_cdu_groups_share_setpoints_only_between_alike_cdus_on_large_sites(tmp_path: Path) -> None:
    """Up to 8 CDUs each get their own setpoints; beyond that CDUs with alike racks share one, and a CDU of other
    GPU models or workloads gets its own."""
    doc = site_doc(tmp_path, 40)
    for i, rack in enumerate(doc["halls"][0]["racks"]):
        if 8 <= i < 12:  # the third CDU's racks
            rack.update(gpu_model="B200", gpus=64, rated_kw=120.0)
        if 12 <= i < 16:  # the fourth CDU's
            rack["workload"] = "inference"
    site = site_from_dict(doc, path=tmp_path / "site.toml")
    setup = EvalSetup(site, site_limits(site), load_weather("builtin:leesburg"), days=1)
    assert cdu_groups(setup) == ((0, 1, 4, 5, 6, 7, 8, 9), (2,), (3,))
    assert cdu_groups(setup, max_groups=10) == tuple((i,) for i in range(10))


def test_oracle_scope_is_checked(tmp_path: Path) -> None:
    """An unknown oracle scope is one clear error naming it."""
    site = control_site(tmp_path)
    setup = EvalSetup(site, site_limits(site), load_weather("builtin:leesburg"), days=1)
    with pytest.raises(Exception, match="oracle scope 'everything'"):
        OracleController(setup, scope="everything")


def _dp_unreached_minutes(setup: EvalSetup, ctl: TrimRespondController) -> float:
    """Minutes of the evaluated day (warm-up included) with any CDU's pump at full speed short of its setpoint."""
    minutes = [0.0]

    def bind(fac: Facility) -> None:
        step = fac.step

        def counted(dt_s: float) -> None:
            step(dt_s)
            if bool(np.any(fac.dp_not_reached)):
                minutes[0] += dt_s / 60.0

        fac.step = counted  # type: ignore[method-assign]

    evaluate(setup, ctl, bind)
    return minutes[0]


def test_pump_test_finds_the_reachable_dp_and_trim_respond_stays_inside_it(tmp_path: Path) -> None:
    """The pump test finds a dp the CDU pumps reach below the profile's 250 kPa; trim & respond commissioned with it
    never leaves a dp setpoint unreached, where the profile's range does."""
    site = control_site(tmp_path)
    lim = site_limits(site)
    setup = EvalSetup(site, lim, load_weather("builtin:leesburg"), days=JULY + 1, stride=1, first_day=JULY,
                      warmup_h=1.0)
    reach = pump_test(setup)
    assert reach.shape == (len(lim.cdu_names),)
    assert (reach < lim.dp_hi).all()
    top = commissioned_dp_max(setup)
    assert lim.dp_lo < top < float(reach.min())
    ctl = commissioned_trim_respond(setup)
    assert ctl.dp == (lim.dp_lo, top)
    assert ctl.cfg.i == 0, "every CDU's request counts"
    assert ctl.cfg.request_margin_k == lim.cfg.gpu_margin_k + 3.0
    assert _dp_unreached_minutes(setup, ctl) == 0
    assert _dp_unreached_minutes(setup, TrimRespondController(lim)) > 0, "the profile's range runs past the pumps"


def _full_load_ok(site: Site, lim: Limits, table: BinTable, hours: list[int]) -> list[str]:
    """Hours of the tuning year at which the table's setpoints (clipped as the controller clips them) let a GPU
    past limit − margin at full load, or leave a dp unreached."""
    weather = load_weather("builtin:leesburg")
    n_racks = sum(1 for _ in site.racks())
    t0 = int(np.datetime64("2026-01-01T00:00", "ns").astype(np.int64))
    fac = Facility(site, weather=weather, workload=ConstantWorkload(1.0, n_racks), start_ns=t0)
    ctl = BinTableController(lim, table)
    bad = []
    for h in hours:
        t = t0 + h * 3_600_000_000_000
        fac.settle_at(t)
        db, wb = weather.at(t)
        n = len(lim.cdu_names)
        snap = Snapshot(t, lim.cdu_names, np.full(n, 60.0), np.full(n, 100.0), np.full(n, 30.0), np.full(n, 50.0),
                        np.full(n, 100.0), lim.safe.copy(), 20.0, db, wb, 1000.0, 900.0, 100.0)
        sp = ctl.decide(snap).setpoints
        w = fac.what_if(SimSetpoints(sp.tcs_c[None, :], sp.dp_kpa[None, :], np.array([sp.fws_c]),
                                     np.array([sp.chw_c])))
        hot = (w.gpu_temp_max_c[0] - (w.gpu_limit_c - lim.cfg.gpu_margin_k)).max()
        if hot > 0 or w.dp_not_reached.any() or w.gpus_throttled.any():
            bad.append(f"hour {h}: {db:.1f} °C, {hot:+.2f} K over limit − margin")
    return bad


def test_bin_table_is_monotone_and_keeps_the_margin_at_full_load(tmp_path: Path) -> None:
    """The commissioned bin table follows the outdoor air (FWS and TCS never colder, dp never lower, in a warmer
    bin: free cooling makes cold water cheap in cold weather), spans the tuning year, and at full load keeps every
    GPU below limit − margin on sampled hours of the tuning year."""
    site = control_site(tmp_path)
    lim = site_limits(site)
    weather = load_weather("builtin:leesburg")
    setup = EvalSetup(site, lim, weather, days=1)
    table = commission_bin_table(setup, weather)
    assert table.sink == "drybulb"
    assert len(table.upper_c) > 10
    assert table.upper_c[-1] >= float(np.max(weather.drybulb_c))
    assert (np.diff(table.fws_c) >= 0).all()
    assert (np.diff(table.tcs_c) >= 0).all()
    assert (np.diff(table.dp_kpa) >= 0).all()
    assert table.fws_c[-1] > table.fws_c[0], "warmer water in hot weather than in cold"
    assert (table.tcs_c >= table.fws_c + lim.cfg.cdu_approach_k - 1e-9).all()
    assert ((lim.chw_lo <= table.chw_c) & (table.chw_c <= lim.chw_hi)).all()
    assert _full_load_ok(site, lim, table, list(range(0, 8760, 73))) == []


def _snap(lim: Limits, db: float, wb: float) -> Snapshot:
    n = len(lim.cdu_names)
    return Snapshot(0, lim.cdu_names, np.full(n, 70.0), np.full(n, 80.0), np.full(n, 30.0), np.full(n, 50.0),
                    np.full(n, 400.0), lim.safe.copy(), 24.0, db, wb, 4000.0, 3600.0, 200.0)


def test_bin_table_controller_looks_up_the_bin_and_clips_to_the_limits(tmp_path: Path) -> None:
    """The controller steps to the bin of the outdoor dry bulb (the warmest bin when it is unknown) and clips what
    the table says to the site's bounds, the CDU approach and the dew-point margin."""
    lim = site_limits(control_site(tmp_path))
    table = BinTable("drybulb", np.array([10.0, 20.0, 30.0]), np.array([5.0, 20.0, 60.0]),
                     np.array([0.0, 26.0, 70.0]), np.array([0.0, 120.0, 900.0]), np.array([1.0, 14.0, 40.0]))
    ctl = BinTableController(lim, table)
    cold = ctl.decide(_snap(lim, -5.0, -6.0)).setpoints
    assert cold.fws_c == lim.fws_lo
    assert cold.dp_kpa[0] == lim.dp_lo
    assert cold.chw_c == lim.chw_lo
    assert cold.tcs_c[0] == pytest.approx(max(lim.tcs_lo, lim.fws_lo + lim.cfg.cdu_approach_k))
    mid = ctl.decide(_snap(lim, 15.0, 10.0)).setpoints
    assert (mid.fws_c, mid.tcs_c[0], mid.dp_kpa[0], mid.chw_c) == (20.0, 26.0, 120.0, 14.0)
    hot = ctl.decide(_snap(lim, 45.0, 25.0)).setpoints
    assert (hot.fws_c, hot.tcs_c[0], hot.dp_kpa[0], hot.chw_c) == (lim.fws_hi, lim.tcs_hi, lim.dp_hi, lim.chw_hi)
    assert ctl.decide(_snap(lim, math.nan, math.nan)).setpoints.fws_c == lim.fws_hi
    humid = ctl.decide(_snap(lim, 15.0, 14.9)).setpoints  # dew point ≈ 14.8 °C: TCS at least 2 K above it
    assert humid.tcs_c[0] >= 14.8 + lim.cfg.dew_margin_k
    with pytest.raises(ValueError, match="ascending"):
        BinTable("drybulb", np.array([20.0, 10.0]), *(np.zeros(2),) * 4)
