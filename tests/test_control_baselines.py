"""Baseline controllers (G36 trim & respond, expert rule) and the ``aidc evaluate-control`` command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from app.cli import main
from control.baselines import ExpertController, TrimRespond, TrimRespondController
from control.policy import TrimRespondConfig, site_limits
from control.types import Setpoints, Snapshot
from tests.control_helpers import control_site
from tests.sim_helpers import site_doc, write_site

S = 1_000_000_000


def _snap(limits, t_ns=0, gpu=70.0, db=10.0, wb=8.0, valve=50.0) -> Snapshot:  # type: ignore[no-untyped-def]
    n = len(limits.cdu_names)
    return Snapshot(t_ns, limits.cdu_names, np.full(n, gpu), np.full(n, 80.0), np.full(n, 30.0), np.full(n, valve),
                    np.full(n, 400.0), limits.safe.copy(), 24.0, db, wb, 4000.0, 3600.0, 200.0)


@pytest.mark.parametrize(
    ("requests", "expected"),
    [(0, 0.98), (2, 0.98), (3, 1.0), (10, 1.0)],
)
def test_trim_and_respond_step_from_full(requests: int, expected: float) -> None:
    """From SP0 = 1 after Td: trim 0.02 with at most I requests, respond (clipped at SPmax) with more."""
    tr = TrimRespond(TrimRespondConfig())
    tr.update(0, 0)
    assert tr.update(900 * S, requests) == pytest.approx(expected)


def test_trim_and_respond_timing_and_response_cap() -> None:
    """Nothing changes before Td or between steps of T; the response per step is capped at SPres-max."""
    cfg = TrimRespondConfig(sp0=0.5)
    tr = TrimRespond(cfg)
    assert tr.update(0, 10) == 0.5
    assert tr.update(600 * S, 10) == 0.5, "still within Td = 900 s"
    assert tr.update(900 * S, 10) == pytest.approx(0.57), "8 requests beyond I = 2 respond at most +0.07"
    assert tr.update(1000 * S, 10) == pytest.approx(0.57), "next step only after T = 300 s"
    assert tr.update(1200 * S, 3) == pytest.approx(0.60), "one request beyond I responds +0.03"
    assert tr.update(1500 * S, 0) == pytest.approx(0.58)


def test_trim_and_respond_reset_maps_dp_first_then_temperatures(tmp_path: Path) -> None:
    """Reset 0 is warm water at the lowest dp, 0.5 the highest dp still warm, 1 the coldest water."""
    lim = site_limits(control_site(tmp_path))
    ctl = TrimRespondController(lim)
    n = len(lim.cdu_names)
    warm, mid, cold = ctl.setpoints(0.0, n), ctl.setpoints(0.5, n), ctl.setpoints(1.0, n)
    assert warm.dp_kpa[0] == lim.dp_lo
    assert mid.dp_kpa[0] == lim.dp_hi
    assert warm.tcs_c[0] == mid.tcs_c[0] == lim.tcs_hi
    assert cold.tcs_c[0] == lim.tcs_lo
    assert cold.fws_c == lim.fws_lo


def test_expert_tracks_the_free_cooling_limit_and_the_approach(tmp_path: Path) -> None:
    """With the trim & respond cap relaxed, FWS = dry bulb + approach and TCS = FWS + CDU approach."""
    lim = site_limits(control_site(tmp_path))
    ctl = ExpertController(lim, "chiller_drycooler")
    ctl.tr.x = 0.0
    ctl.tr.start_ns = -(10**15)
    sp: Setpoints = ctl.decide(_snap(lim, t_ns=0, db=15.0, wb=10.0)).setpoints
    assert sp.fws_c == pytest.approx(20.0)
    assert sp.tcs_c[0] == pytest.approx(20.0 + lim.cfg.cdu_approach_k)
    tower = ExpertController(lim, "chiller_tower")
    tower.tr.x, tower.tr.start_ns = 0.0, -(10**15)
    assert tower.decide(_snap(lim, db=15.0, wb=10.0)).setpoints.fws_c == pytest.approx(14.0)
    hot = ctl.decide(_snap(lim, db=40.0, wb=24.0)).setpoints
    assert hot.fws_c == pytest.approx(lim.fws_hi), "clipped at the W-class"


def test_evaluate_control_json_has_every_controller_and_kpi(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`aidc evaluate-control --json` runs each named controller on the same day and reports the issue's KPIs."""
    doc = site_doc(tmp_path, 8)
    doc["control"] = {"commissioning_days": 0.5}
    cfg = write_site(tmp_path, doc)
    rc = main(["evaluate-control", "--config", str(cfg), "--days", "1", "--stride", "1", "--warmup-h", "1",
               "--controllers", "fixed,trim_respond,expert,aidc,oracle", "--carbon", "350", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["evaluated_minutes"] == 2 * 1440  # the evaluated day and the commissioning day, for every controller
    assert set(out["controllers"]) == {"fixed", "trim_respond", "expert", "aidc", "oracle"}
    for k in out["controllers"].values():
        for key in ("facility_kwh", "cooling_kwh", "it_kwh", "pue", "violation_minutes", "throttle_minutes",
                    "kgco2", "decision_ms"):
            assert key in k
        assert k["kgco2"] == pytest.approx(k["facility_kwh"] * 0.35, rel=1e-3)
    assert out["controllers"]["fixed"]["setpoint_changes"] == 0
    assert out["commissioning"]["days"] == 1


def test_evaluate_control_rejects_an_unknown_controller(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown controller name is one error line, not a traceback."""
    cfg = write_site(tmp_path, site_doc(tmp_path, 4))
    rc = main(["evaluate-control", "--config", str(cfg), "--days", "1", "--controllers", "pid"])
    assert rc == 2
    assert "unknown controller 'pid'" in capsys.readouterr().err


def test_oracle_keeps_every_constraint_and_beats_fixed_on_a_hot_day(tmp_path: Path) -> None:
    """On a July day the oracle (true physics through the what-if interface) keeps every GPU below limit − margin,
    never throttles or condenses, and uses less facility energy than the fixed defaults; the hindsight best fixed
    setpoint is one the evaluation found violation-free, with a constant chilled-water setpoint inside its bounds."""
    from app.evaluation.evaluate import EvalSetup, OracleController, best_fixed, evaluate
    from control.baselines import FixedController
    from simulators.weather import load_weather

    site = control_site(tmp_path, racks=8)
    lim = site_limits(site)
    setup = EvalSetup(site, lim, load_weather("builtin:leesburg"), days=196, stride=1, first_day=195, warmup_h=2.0,
                      commissioning_days=0)  # the hot day alone: neither controller commissions
    fixed = evaluate(setup, FixedController(lim))
    oracle = OracleController(setup)
    k = evaluate(setup, oracle, oracle.bind)
    assert k.violation_minutes == 0
    assert k.throttle_minutes == 0
    assert k.below_dew_minutes == 0
    assert k.above_class_minutes == 0
    assert k.facility_kwh < fixed.facility_kwh
    sp, bf = best_fixed(setup)
    assert bf.violation_minutes == 0
    assert bf.facility_kwh <= fixed.facility_kwh + 1e-6
    assert lim.tcs_lo <= sp[0] <= lim.tcs_hi
    assert lim.chw_lo <= sp[3] <= lim.chw_hi


@pytest.mark.parametrize("value", ["inf", "-1e300", "1e300"])
def test_evaluate_control_carbon_file_with_an_impossible_value_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    """`aidc evaluate-control --carbon file.csv` with inf or -1e300 in avg_CI exits 2 with one line naming the file,
    line and value (an inf used to make every kg CO2 figure inf, exit 0)."""
    cfg = write_site(tmp_path, site_doc(tmp_path, 4))
    carbon = tmp_path / "ci.csv"
    carbon.write_text("avg_CI\n" + "".join(f"{value if h == 5 else 400}\n" for h in range(48)), encoding="utf-8")
    rc = main(["evaluate-control", "--config", str(cfg), "--days", "1", "--controllers", "fixed", "--carbon",
               str(carbon)])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [
        f"aidc evaluate-control: {carbon}: line 7: avg_CI {float(value)} is not a gCO2/kWh value (0 to 3000)"
    ]
