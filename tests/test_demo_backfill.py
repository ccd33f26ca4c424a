"""The demo's history at first start (issue 23): an empty historian gets its past simulated before going live, /health
answers 503 with the backfill's progress meanwhile, and then the forecasts, tenants' bills and a predictive alarm
are there at once; `aidc init` writes tenants; a new, empty historian says so."""

from __future__ import annotations

import argparse
import contextlib
import io
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from aidc.clock import SteppedClock
from aidc.config import load_site
from aidc.errors import ConfigError
from app.backfill import MIN_DAYS, history_start, plan_history
from app.backfill_job import history_days
from app.cli import main
from app.job import MainJob
from tests.demo_stack import GROUP, TOKEN, FirstHourDemo, get
from tests.sim_helpers import free_port_block


def _site(tmp_path: Path, racks: int = 1) -> Path:
    """A site written by `aidc init` (tenants included) on free ports, data under tmp_path."""
    base = free_port_block(racks + 4)
    path = tmp_path / "site.toml"
    argv = ["init", "--racks", str(racks), "--base-port", str(base), "--opcua-port", str(free_port_block(2)),
            "--data-dir", str(tmp_path / "var"), "-o", str(path)]  # fmt: skip
    with contextlib.redirect_stderr(io.StringIO()):
        assert main(argv) == 0
    return path


def test_history_starts_at_midnight_on_the_first_of_last_month_site_time() -> None:
    """By default the history begins at 00:00 site time on the 1st of last month; --history-days N goes N days back."""
    site = load_site_text()
    now = pd.Timestamp("2026-12-07T09:17:00Z")
    assert pd.Timestamp(history_start(site, now.value, None), tz="UTC") == pd.Timestamp("2026-11-01T04:00:00Z")
    jan = pd.Timestamp("2027-01-02T12:00:00Z")  # EST now, EST on 1 December
    assert pd.Timestamp(history_start(site, jan.value, None), tz="UTC") == pd.Timestamp("2026-12-01T05:00:00Z")
    assert jan.value - history_start(site, jan.value, None) >= MIN_DAYS * 86_400 * 10**9
    nine = history_start(site, now.value, 9)
    assert pd.Timestamp(nine, tz="UTC") == pd.Timestamp("2026-11-28T09:15:00Z")  # on the 5-minute grid
    assert plan_history(site, now.value, 0) is None
    plan = plan_history(site, now.value, None)
    assert plan is not None
    assert plan.start_ns < plan.auto_from_ns < plan.fault_start_ns < plan.end_ns
    assert plan.outages
    assert all(plan.start_ns <= o.start_ns < o.end_ns <= plan.end_ns for o in plan.outages)


def load_site_text() -> Any:
    """The generated 4-rack site in America/New_York (not written anywhere)."""
    from aidc.config import site_from_dict
    from aidc.sitegen import SiteTemplate, render_site

    return site_from_dict(tomllib.loads(render_site(SiteTemplate(racks=4, tenants=True))))


def test_history_days_flag_then_environment() -> None:
    """--history-days wins, else AIDC_HISTORY_DAYS, else the default span; bad values are one line naming them."""
    assert history_days(3, {"AIDC_HISTORY_DAYS": "0"}) == 3
    assert history_days(None, {"AIDC_HISTORY_DAYS": "0"}) == 0
    assert history_days(None, {}) is None
    with pytest.raises(ConfigError, match="AIDC_HISTORY_DAYS='two'"):
        history_days(None, {"AIDC_HISTORY_DAYS": "two"})
    with pytest.raises(ConfigError, match="--history-days -1"):
        history_days(-1, {})


def test_init_writes_tenants_leasing_racks(tmp_path: Path) -> None:
    """`aidc init` writes [[tenants]]: one tenant leases half the racks, another a quarter; the file loads."""
    site = load_site(_site(tmp_path, racks=8))
    leases = {t.name: t.racks for t in site.config.tenants}
    assert leases == {
        "acme": ("h1-r01-01", "h1-r01-02", "h1-r01-03", "h1-r01-04"),
        "globex": ("h1-r01-05", "h1-r01-06"),
    }


def test_query_on_an_empty_store_names_its_folder(tmp_path: Path) -> None:
    """`aidc query` against a historian that holds nothing says "no data in <data_dir>" and exits 2."""
    path = _site(tmp_path)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(["query", "--config", str(path), "latest", "pdu,*,active_power_w"])
    assert rc == 2
    lines = err.getvalue().strip().splitlines()
    assert len(lines) == 1, lines
    assert f"no data in {tmp_path / 'var'}" in lines[0], lines


def test_run_says_when_its_historian_is_new(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`aidc run` on a data directory without history says so at start, in one line naming the directory."""
    from app.commands.run import start_parts

    job = MainJob.build(load_site(_site(tmp_path)), clock=SteppedClock(pd.Timestamp("2026-12-07T09:00Z").value))
    args = argparse.Namespace(no_dashboard=True, port=None, no_control=True, no_api=True, api_port=None)
    _, alarms = start_parts(job, args, demo=False)
    alarms.close()
    job.historian.close()
    assert f"no history in {tmp_path / 'var'}: a new, empty historian" in capsys.readouterr().out.splitlines()


@pytest.mark.timeout(1800)  # the shared demo simulates a month of history first (minutes)
@pytest.mark.xdist_group(GROUP)
def test_demo_simulates_its_history_then_answers_at_once(first_hour_demo: FirstHourDemo) -> None:
    """A demo on an empty historian: /health 503 with the backfill's progress, then 200; at once the IT-load and PUE
    forecasts have P10/P50/P90, a tenant has IT energy, the slow CDU fault is a predictive alarm (the suite's shared
    demo, tests/demo_stack.py; its fixture checks that the history stays for a later start)."""
    demo = first_hour_demo
    url = demo.api
    starting = demo.starting
    assert starting is not None, "no /health 503 with the backfill's progress while the demo started"
    assert set(starting["backfill"]) >= {"phase", "fraction", "simulated_time"}
    assert 0.0 <= starting["backfill"]["fraction"] <= 1.0
    assert get(url + "/health")[0] == 200
    status, load = get(url + "/api/v1/forecast", TOKEN)
    assert status == 200, load
    assert load["p10"] <= load["p50"] <= load["p90"]
    status, pue = get(url + "/api/v1/forecast/pue", TOKEN)
    assert status == 200, pue
    assert pue["rows"]
    assert all(r["pue_p10"] <= r["pue_p50"] <= r["pue_p90"] for r in pue["rows"])
    alarms = get(url + "/api/v1/alarms", TOKEN)[1]["predictive"]
    assert any(a["rule"] == "predicted_pump_wear" for a in alarms), alarms
    site = load_site(demo.site)
    # The month the history began in (last month when it reaches back that far) is billed to the tenants.
    tz = site.config.site.timezone
    begun = pd.Timestamp(starting["backfill"]["from"]).tz_convert(tz).strftime("%Y-%m")
    status, bill = get(url + f"/api/v1/tenants?month={begun}", TOKEN)
    assert status == 200, bill
    assert any(t["it_kwh"] > 0 for t in bill["tenants"]), bill
    assert "no history in" in demo.log.read_text(encoding="utf-8")


def test_progress_bar_prints_a_line_per_tenth_off_a_terminal() -> None:
    """Off a terminal the progress bar prints one line per tenth done, with the share and the simulated site time."""
    from app.backfill import Progress
    from app.backfill_job import ProgressBar

    start = pd.Timestamp("2026-11-01T04:00:00Z").value
    progress = Progress(phase="simulating", start_ns=start, end_ns=start + 10 * 86_400 * 10**9, sim_ns=start)
    out = io.StringIO()
    bar = ProgressBar(progress, "America/New_York", stream=out)
    for day in (0, 0, 1, 2, 5, 5):
        progress.sim_ns = start + day * 86_400 * 10**9
        bar.draw()
    lines = out.getvalue().splitlines()
    assert len(lines) == 4, lines
    assert lines[0].startswith("history [....")
    assert "  0% 2026-11-01 00:00 EDT" in lines[0]
    assert " 50% 2026-11-05 23:00 EST" in lines[-1]  # DST ended on 1 November


def test_a_later_start_reuses_the_history_and_names_an_interrupted_one(tmp_path: Path) -> None:
    """A historian that holds the site's data gets no backfill; an interrupted backfill is named in one line."""
    from aidc.model import Batch, SeriesKey
    from app.backfill_job import MARKER, start_history

    site = load_site(_site(tmp_path))
    job = MainJob.build(site, clock=SteppedClock(pd.Timestamp("2026-12-07T09:00Z").value))
    lines: list[str] = []
    try:
        key = SeriesKey.of("meter", "energy_kwh", {"site": site.name, "device": "meter-utility"}).id
        job.historian.write(Batch(np.array([key], dtype=object), np.array([job.clock.now_ns()]), np.array([1.0]),
                                  np.zeros(1, dtype=np.uint8)))  # fmt: skip
        assert start_history(job, None, printer=lines.append) is None
        (site.data_dir / MARKER).write_text('{"from": "2026-11-01T04:00:00Z", "to": "2026-12-07T09:00:00Z", '
                                            '"complete": false}')  # fmt: skip
        assert start_history(job, None, printer=lines.append) is None
    finally:
        job.historian.close()
    assert not job.before_collect
    assert lines[0] == f"history: reusing what {site.data_dir} holds (no backfill)"
    assert lines[1].startswith("history: the backfill of 2026-11-01T04:00:00Z to 2026-12-07T09:00:00Z was interrupted")


def test_history_batches_reuse_their_series_arrays_through_an_outage(tmp_path: Path) -> None:
    """While the same device is down, every step's batch (and the supervisor's part of it) reuses one series array,
    so the sinks map it without a lookup per series; the lost device's series are left out after its bad mark."""
    import dataclasses

    from app.backfill import HistoryRun, Outage

    site = load_site(_site(tmp_path))
    now = pd.Timestamp("2026-12-07T09:00Z").value
    plan = plan_history(site, now, 1)
    assert plan is not None
    step = int(plan.step_s * 10**9)
    pdu = next(r.pdu for _, r in site.racks() if r.pdu is not None).name
    t0 = plan.start_ns + 2 * step
    plan = dataclasses.replace(plan, outages=(Outage(pdu, t0, t0 + 10 * step),))
    run = HistoryRun(site, plan)
    first = run.batch(t0)  # the stale watchdog's bad mark
    assert any(f"device={pdu}," in s and q == 2 for s, q in zip(first.series, first.quality, strict=True))
    a, b = run.batch(t0 + step), run.batch(t0 + 2 * step)
    assert a.series is b.series
    assert not any(f"device={pdu}," in s for s in a.series)
    assert run.needed(a).series is run.needed(b).series
    assert len(run.batch(t0 + 10 * step)) > len(a)  # back after the outage
