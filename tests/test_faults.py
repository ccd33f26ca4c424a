"""Slow physical faults in the simulator and their prediction from telemetry (device and cause named)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aidc.config import Site, site_from_dict
from aidc.sitegen import SiteTemplate, render_site
from analytics.alarms.faults import ROLES, FaultDetector, device_frame
from simulators.degradation import DAY_NS, Degradation, SlowFault
from simulators.facility import Facility
from simulators.telemetry import ExplorationSchedule, generate

START = pd.Timestamp("2026-07-01T00:00Z")


@pytest.fixture(scope="module")
def site() -> Site:
    """Eight racks on two CDUs."""
    return site_from_dict(tomllib.loads(render_site(SiteTemplate(racks=8, start=START.isoformat()))))


def _facility(site: Site, faults: list[SlowFault]) -> Facility:
    fac = Facility(site, start_ns=START.value)
    if faults:
        fac.degradation = Degradation.for_facility(fac, site, faults)
    return fac


def test_fault_level_grows_linearly() -> None:
    """A slow fault is zero before its start, reaches its severity at the end of the ramp and keeps growing."""
    f = SlowFault("fouling", "r1", 0, 10.0, 0.5)
    assert f.level(0) == 0.0
    assert f.level(5 * DAY_NS) == pytest.approx(0.25)
    assert f.level(20 * DAY_NS) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="expected one of"):
        SlowFault("rust", "r1", 0, 1.0, 1.0)  # type: ignore[arg-type]


def test_unknown_device_is_refused(site: Site) -> None:
    """A fault on a device the facility does not have is refused naming it."""
    fac = Facility(site, start_ns=START.value)
    with pytest.raises(ValueError, match="'cdu-h1-01' is not a rack"):
        Degradation.for_facility(fac, site, [SlowFault("fouling", "cdu-h1-01", 0, 1.0, 1.0)])


def test_physical_effects(site: Site) -> None:
    """Fouling heats the rack's GPUs, pump wear costs pump power, a clogged strainer speeds the pump, drift skews a reading."""
    t0 = START.value
    faults = [
        SlowFault("fouling", "h1-r01-01", t0, 1.0, 0.5),
        SlowFault("pump_wear", "cdu-h1-01", t0, 1.0, 0.3),
        SlowFault("strainer", "cdu-h1-02", t0, 1.0, 1.0),
        SlowFault("sensor_drift", "h1-r01-05", t0, 1.0, 2.0),
    ]
    healthy, faulty = _facility(site, []), _facility(site, faults)
    for fac in (healthy, faulty):
        fac.step(86400.0)
    g = faulty._gpu_rack == 0
    assert faulty.gpu_temp_c[g].mean() > healthy.gpu_temp_c[g].mean() + 5.0
    assert faulty.gpu_temp_c[~g & (faulty._gpu_rack < 4)].mean() == pytest.approx(
        healthy.gpu_temp_c[~g & (healthy._gpu_rack < 4)].mean(), abs=0.5)  # fmt: skip
    assert faulty.cdu_pump_w[0] == pytest.approx(healthy.cdu_pump_w[0] / 0.7, rel=1e-6)
    assert faulty.cdu_flow_lpm[0] == pytest.approx(healthy.cdu_flow_lpm[0])
    assert faulty.cdu_speed[1] > healthy.cdu_speed[1] * 1.1
    truth = float(faulty.rack_inlet_c[4])
    reading = float(faulty.device_values("rack-h1-r01-05")["coolant_inlet_temp_c"])  # type: ignore[arg-type]
    assert reading == pytest.approx(truth + 2.0)


def _signals(site: Site, days: float, faults: list[SlowFault]) -> pd.DataFrame:
    fac = _facility(site, faults)
    tel = generate(site, duration_s=days * 86400, sample_s=300, schedule=ExplorationSchedule(seed=3), facility=fac)
    rack_cdu = {r: c.name for h in site.config.halls for c in h.cdus for r in c.racks}
    return device_frame(tel.frame, tel.roles, rack_cdu)


def test_detector_names_device_and_cause(site: Site) -> None:
    """Each of four slow faults raises one predictive alarm naming its device and cause; a clean run raises none."""
    rack_cdu = {r: c.name for h in site.config.halls for c in h.cdus for r in c.racks}
    t1 = START.value + 4 * DAY_NS
    faults = [
        SlowFault("fouling", "h1-r01-02", t1, 10.0, 0.6),
        SlowFault("pump_wear", "cdu-h1-01", t1, 10.0, 0.4),
        SlowFault("strainer", "cdu-h1-02", t1, 10.0, 4.0),
        SlowFault("sensor_drift", "h1-r01-07", t1, 10.0, 5.0),
    ]
    split = START + pd.Timedelta("4D")
    signals = _signals(site, 10.0, faults)
    det = FaultDetector.fit(signals[signals.index < split], rack_cdu)
    alarms = det.scan(signals[signals.index >= split])
    assert sorted((a.device, a.kind) for a in alarms) == sorted((f.device, f.kind) for f in faults)
    assert all(
        "pump" in a.cause or "strainer" in a.cause or "fouling" in a.cause or "sensor" in a.cause for a in alarms
    )
    clean = _signals(site, 10.0, [])
    det = FaultDetector.fit(clean[clean.index < split], rack_cdu)
    assert det.scan(clean[clean.index >= split]) == []


def test_detector_needs_healthy_history(site: Site) -> None:
    """Too short a healthy window is refused with a message naming the device and model."""
    from aidc.errors import DataError

    rack_cdu = {r: c.name for h in site.config.halls for c in h.cdus for r in c.racks}
    signals = _signals(site, 0.1, [])
    with pytest.raises(DataError, match="healthy samples for h1-r01-01 thermal"):
        FaultDetector.fit(signals, rack_cdu)
    assert np.isfinite(signals.to_numpy()).any()


def test_short_models_are_left_out_and_kept_from_the_last_fit(site: Site) -> None:
    """With skip_short a model short of healthy rows is listed instead of fitted; merging keeps its previous fit."""
    from aidc.errors import DataError

    rack_cdu = {r: c.name for h in site.config.halls for c in h.cdus for r in c.racks}
    signals = _signals(site, 0.4, [])
    old = FaultDetector.fit(signals, rack_cdu)
    patchy = signals.copy()
    patchy.loc[patchy.index[10:], [c for c in patchy if c.startswith("h1-r01-03:")]] = np.nan
    with pytest.raises(DataError, match="10 healthy samples for h1-r01-03 thermal; need 48"):
        FaultDetector.fit(patchy, rack_cdu)
    new = FaultDetector.fit(patchy, rack_cdu, skip_short=True)
    assert new.short == {"h1-r01-03:thermal": 10, "h1-r01-03:inlet": 10}
    assert new.keys() == old.keys() - set(new.short)
    merged = new.merged(old)
    assert merged.keys() == old.keys()
    assert merged.short == {}


def test_faults_cli_records_alarm_for_the_api(tmp_path: Path) -> None:
    """`aidc faults --write` finds a fouling rack and records the alarm where the API reads it; without a healthy
    window it learns the baseline itself, or says it is still learning."""
    import json
    import subprocess
    import sys

    from aidc.config import load_site
    from api.context import tail_jsonl
    from historian import open_historian

    path = tmp_path / "site.toml"
    # Eight GPUs a rack and only the points the detector reads keep the store small (and the test quick).
    template = SiteTemplate(racks=8, gpus_per_rack=8, rated_kw=20.0, start=START.isoformat(), data_dir="var")
    path.write_text(render_site(template), encoding="utf-8")
    site = load_site(path)
    fac = _facility(site, [SlowFault("fouling", "h1-r01-06", START.value + 4 * DAY_NS, 10.0, 0.6)])
    tel = generate(site, duration_s=8 * 86400, sample_s=300, schedule=ExplorationSchedule(seed=5), facility=fac,
                   keep=lambda d, p: d.role_of(p.name) in ROLES)  # fmt: skip
    with open_historian(site.config.historian, site.data_dir) as hist:
        for batch in tel.batches():
            hist.write(batch)
        hist.flush()
    proc = subprocess.run(
        [sys.executable, "-m", "app.cli", "faults", "--config", str(path), "--healthy-from", "2026-07-01T00:00Z",
         "--healthy-to", "2026-07-05T00:00Z", "--from", "2026-07-05T00:00Z", "--to", "2026-07-09T00:00Z",
         "--write", "--json"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    alarms = json.loads(proc.stdout)
    assert [(a["device"], a["kind"]) for a in alarms] == [("h1-r01-06", "fouling")]
    logged = tail_jsonl(site.data_dir / "alarms" / "predictive.jsonl", 10)
    assert logged[0]["device"] == "h1-r01-06"
    assert logged[0]["severity"] == "predictive"
    # Without a healthy window the baseline is learnt as the job's service does: the week before --from, here the
    # four clean days from 07-01; two days before --from there is not yet enough history, and it says so.
    learnt = subprocess.run(
        [sys.executable, "-m", "app.cli", "faults", "--config", str(path), "--from", "2026-07-05T00:00Z",
         "--to", "2026-07-09T00:00Z", "--json"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert learnt.returncode == 0, learnt.stderr
    assert [(a["device"], a["kind"]) for a in json.loads(learnt.stdout)] == [("h1-r01-06", "fouling")]
    assert "baseline 2026-06-29 00:00 to 2026-07-05 00:00 UTC" in learnt.stderr
    early = subprocess.run(
        [sys.executable, "-m", "app.cli", "faults", "--config", str(path), "--from", "2026-07-02T00:00Z",
         "--to", "2026-07-03T00:00Z"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert early.returncode == 0, early.stderr
    assert "no predictive alarms: fault prediction learning: 23.9 of 48 hours of clean history" in early.stdout
