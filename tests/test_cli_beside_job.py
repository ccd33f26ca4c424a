"""The data commands beside a running job: the same answers through its API as from the store, never a lock fight.

Each command runs once with no job (it opens the DuckDB store itself, in this process), then again in a child
process while a "job" in this process holds the store open and serves it through the real API on a loopback port,
with the local credential written as the main job writes it. The child has no token in its environment and could
not open the store if it tried (DuckDB's file lock is per process), so equal output means the API path answered.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from aidc.config import load_site
from aidc.sitegen import SiteTemplate, render_site
from api.app import create_app
from api.auth import ApiRole, Identity, TokenStore, digest
from api.context import ApiContext
from api.local import LocalCredential, credential_path, write_local_credential
from api.server import ApiServer
from app.cli import main
from historian import open_historian
from tests import tenant_fixture
from tests.report_fixture import MONTH, fixture_site, write_fixture

TOKEN = "local-cli-token-0123456789abcdef"
SIM_START = "2026-07-01T00:00:00Z"


@pytest.fixture(scope="module")
def sim_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-rack simulated site with 2.5 days of full telemetry (5-min samples) in its historian."""
    from simulators.telemetry import generate

    path = tmp_path_factory.mktemp("sim") / "site.toml"
    path.write_text(render_site(SiteTemplate(racks=2, start=SIM_START, data_dir="var")), encoding="utf-8")
    site = load_site(path)
    telemetry = generate(site, duration_s=int(2.5 * 86400), sample_s=300, schedule=None)
    with open_historian(site.config.historian, site.data_dir) as hist:
        for batch in telemetry.batches():
            hist.write(batch)
        hist.flush()
    return path


@pytest.fixture(scope="module")
def report_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report fixture's month (October 2026) of known meter data."""
    site = fixture_site(tmp_path_factory.mktemp("report"))
    write_fixture(site)
    assert site.path is not None
    return site.path


@pytest.fixture(scope="module")
def tenant_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tenant fixture's month with two tenants."""
    return tenant_fixture.build(tmp_path_factory.mktemp("tenants"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def job(site_path: Path, *, token: str = TOKEN, serve: bool = True) -> Iterator[Path]:
    """This process plays the main job: it holds the store, serves the API and writes the local credential."""
    site = load_site(site_path)
    port = _free_port()
    cred = LocalCredential(f"http://127.0.0.1:{port}", token, "operator", "local-cli", os.getpid())
    with open_historian(site.config.historian, site.data_dir) as hist:
        tokens = TokenStore({digest(TOKEN): Identity("local-cli", ApiRole.OPERATOR)})
        server = ApiServer(create_app(ApiContext(site=site, historian=hist, tokens=tokens)), port=port)
        if serve:
            server.start()
        path = write_local_credential(site.data_dir, cred)
        try:
            yield path
        finally:
            path.unlink()
            if serve:
                server.stop()


def local(argv: list[str]) -> tuple[int, str, str]:
    """Run ``aidc`` in this process (no job: it opens the store itself)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


def child(argv: list[str]) -> tuple[int, str, str]:
    """Run ``aidc`` in another process with no API token in its environment."""
    env = {k: v for k, v in os.environ.items() if k != "AIDC_API_TOKENS"}
    proc = subprocess.run([sys.executable, "-m", "app.cli", *argv], capture_output=True, text=True, check=False,
                          timeout=300, env=env)  # fmt: skip
    return proc.returncode, proc.stdout, proc.stderr


def both(site_path: Path, argv: list[str]) -> tuple[tuple[int, str, str], tuple[int, str, str]]:
    """The command's (status, stdout, stderr) without a job, then beside one."""
    alone = local(argv)
    with job(site_path):
        beside = child(argv)
    return alone, beside


# Each case: the command line ({site} is the site file), split at spaces.
CASES = {
    "latest": "query --config {site} latest pdu,*,active_power_w",
    "latest-json": "query --config {site} --json latest cdu,*,tcs_supply_temp_c",
    "range-window": "query --config {site} range pdu,*,active_power_w --from 2026-07-02T00:00Z --to 2026-07-02T03:00Z "
    "--window 1h --agg max",
    "range-empty": "query --config {site} range pdu,*,nope --from 2026-07-02T00:00Z --to=-1h",
    "range-bad-window": "query --config {site} range pdu,*,active_power_w --from=-1d --window 5x",
    "pue-daily": "pue --config {site} --from 2026-07-01T00:00Z --to 2026-07-03T00:00Z --period day",
    "pue-json": "pue --config {site} --from 2026-07-01T06:00Z --to 2026-07-02T06:00Z --category 2 --json",
    "forecast-short": "forecast --config {site} --to 2026-07-03T00:00Z --days 7",
    "faults": "faults --config {site} --healthy-from 2026-07-01T00:00Z --healthy-to 2026-07-03T00:00Z "
    "--from 2026-07-02T00:00Z --to 2026-07-03T12:00Z --json",
}


@pytest.mark.parametrize("case", list(CASES))
def test_same_answer_with_and_without_the_job(sim_site: Path, case: str) -> None:
    """query, pue, forecast and faults print the same thing (or the same one-line refusal) beside a running job."""
    argv = CASES[case].replace("{site}", str(sim_site)).split()
    alone, beside = both(sim_site, argv)
    assert beside == alone
    assert alone[0] == 0 or (alone[0] == 2 and len(alone[2].strip().splitlines()) == 1), alone


def test_forecast_short_history_is_its_clear_line_beside_the_job(sim_site: Path) -> None:
    """With 2.5 days of telemetry `aidc forecast` says it needs 7 days (not a traceback), through the job's API."""
    with job(sim_site):
        rc, out, err = child(["forecast", "--config", str(sim_site), "--to", "2026-07-03T00:00Z", "--days", "7"])
    assert (rc, out) == (2, "")
    assert err.strip().splitlines() == [
        "aidc forecast: forecast: need at least 7 days of telemetry to fit the workload and plant models"
    ]


def test_pue_and_latest_give_figures_beside_the_job(tmp_path: Path) -> None:
    """The issue's done-when commands exit 0 with figures beside the job: the last hour's PUE, the latest power."""
    from simulators.telemetry import generate

    now = pd.Timestamp.now(tz="UTC")
    start = (now - pd.Timedelta("3h")).floor("5min")
    path = tmp_path / "site.toml"
    path.write_text(render_site(SiteTemplate(racks=2, start=start.isoformat(), data_dir="var")), encoding="utf-8")
    site = load_site(path)
    with open_historian(site.config.historian, site.data_dir) as hist:
        for batch in generate(
            site, duration_s=int((now - start).total_seconds()) + 120, sample_s=60, schedule=None
        ).batches():
            hist.write(batch)
        hist.flush()
    with job(path):
        pue = child(["pue", "--config", str(path), "--from=-1h", "--to", "now"])
        latest = child(["query", "--config", str(path), "latest", "pdu,*,active_power_w"])
    assert pue[0] == 0, pue[2]
    row = pue[1].splitlines()[3].split()
    assert 1.0 < float(row[3]) < 1.5, pue[1]  # the PUE column of the one period
    assert latest[0] == 0, latest[2]
    assert latest[1].count("active_power_w") == 2
    assert "good" in latest[1]


def test_tenants_same_with_and_without_the_job(tenant_site: Path) -> None:
    """`aidc tenants` gives the same table, CSV and JSON beside the job."""
    for fmt in ("table", "csv", "json"):
        argv = ["tenants", "--config", str(tenant_site), "--month", "2026-10", "--format", fmt]
        alone, beside = both(tenant_site, argv)
        assert alone[0] == 0, alone[2]
        assert beside == alone, fmt


def test_report_same_with_and_without_the_job(report_site: Path, tmp_path: Path) -> None:
    """`aidc report` writes the month's report (and the EED export) to the same places with the same content."""
    data = report_site.parent / "var" / "reports"
    argv = ["report", "--config", str(report_site), "--month", MONTH, "--no-pdf"]
    alone = local(argv)
    figures = (data / f"pue-report-fx1-{MONTH}.json").read_text(encoding="utf-8")
    with job(report_site):
        beside = child(argv)
        to_out = child([*argv, "--out", str(tmp_path / "out")])
        eed = child(["report", "--config", str(report_site), "--format", "eed", "--year", "2026"])
    assert alone[0] == 0, alone[2]
    assert beside == alone
    assert (data / f"pue-report-fx1-{MONTH}.json").read_text(encoding="utf-8") == figures
    assert to_out[0] == 0, to_out[2]
    assert [Path(p).parent for p in to_out[1].split()] == [tmp_path / "out"] * 2
    assert (tmp_path / "out" / f"pue-report-fx1-{MONTH}.json").read_text(encoding="utf-8") == figures
    assert eed == local(["report", "--config", str(report_site), "--format", "eed", "--year", "2026"])


def test_locked_store_without_a_job_is_one_line(sim_site: Path) -> None:
    """A store held by a process that is no aidc job (no credential) gives one line naming it, not a traceback."""
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from aidc.config import load_site; "
                               "from historian import open_historian; s = load_site(sys.argv[1]); "
                               "h = open_historian(s.config.historian, s.data_dir); print('held', flush=True); "
                               "time.sleep(120)", str(sim_site)], stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        outs = [
            child(["pue", "--config", str(sim_site), "--from", "2026-07-01T00:00Z", "--to", "2026-07-02T00:00Z"]),
            child(["forecast", "--config", str(sim_site), "--to", "2026-07-03T00:00Z"]),
        ]
    finally:
        holder.kill()
        holder.wait()
    for rc, out, err in outs:
        assert (rc, out) == (2, "")
        (line,) = err.strip().splitlines()
        assert "is held by another process and no aidc job answers for it" in line, line


def test_job_whose_api_does_not_answer_is_one_line(sim_site: Path) -> None:
    """A live job (its pid alive) whose API does not listen: one line naming the job and its URL, exit 2."""
    with job(sim_site, serve=False) as cred:
        rc, out, err = child(["query", "--config", str(sim_site), "latest", "pdu,*,active_power_w"])
    assert (rc, out) == (2, "")
    (line,) = err.strip().splitlines()
    assert line.startswith(f"aidc query: the aidc job (pid {os.getpid()}, {cred}) holds the historian but its API")
    assert "does not answer" in line


def test_unexpected_http_error_is_one_line_with_its_status(sim_site: Path) -> None:
    """A credential the job does not accept gives one line with the HTTP status and the API's message."""
    with job(sim_site, token="not-the-jobs-token-0123456789"):
        rc, out, err = child(["query", "--config", str(sim_site), "latest", "pdu,*,active_power_w"])
    assert (rc, out) == (2, "")
    (line,) = err.strip().splitlines()
    assert "HTTP 401: unknown or revoked token" in line, line


def test_credential_of_a_dead_job_is_ignored(sim_site: Path) -> None:
    """A credential left by a job that died (its pid gone) is ignored: the command opens the store itself."""
    site = load_site(sim_site)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)  # fmt: skip
    cred = LocalCredential("http://127.0.0.1:9", TOKEN, "operator", "local-cli", int(dead.stdout))
    path = write_local_credential(site.data_dir, cred)
    try:
        assert oct(path.stat().st_mode & 0o777) == "0o600"
        rc, out, _ = local(["query", "--config", str(sim_site), "latest", "pdu,*,active_power_w"])
    finally:
        credential_path(site.data_dir).unlink()
    assert rc == 0
    assert out.count("active_power_w") == 2


def test_row_limit_is_the_same_on_both_paths(sim_site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A range past the row limit is refused with the same line by the local store and by the job's API."""
    from analytics import answers

    monkeypatch.setattr(answers, "MAX_ROWS", 3)  # in this process: the local path and the in-process job both see it
    argv = CASES["range-window"].replace("{site}", str(sim_site)).split()
    alone = local(argv)
    with job(sim_site):
        beside = local(argv)  # the credential is live: this run goes through the API, served in this process
    assert beside == alone
    assert alone[0] == 2
    assert alone[2].strip().splitlines() == [
        "aidc query: 6 samples match, more than the limit of 3: narrow the selector or the range, "
        "or aggregate with a window"
    ]


def test_garbled_credential_is_named_and_the_store_still_answers(
    sim_site: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A torn local credential (no job wrote it whole) is named in a warning, never a traceback, and the command
    answers from the store as it does with no job."""
    path = credential_path(load_site(sim_site).data_dir)
    rc0, out0, _ = local(["query", "--config", str(sim_site), "latest", "pdu,*,active_power_w"])
    path.write_text('{"url": "http://127.0.0.1:8081", "pid": "x"', encoding="utf-8")
    try:
        with caplog.at_level(logging.WARNING, logger="api.local"):
            rc, out, err = local(["query", "--config", str(sim_site), "latest", "pdu,*,active_power_w"])
    finally:
        path.unlink()
    assert (rc, out) == (rc0, out0)
    assert rc == 0
    assert "Traceback" not in err
    assert any(str(path) in r.getMessage() and "ignoring it" in r.getMessage() for r in caplog.records)


def test_forecast_figures_same_with_and_without_the_job(tmp_path: Path) -> None:
    """With 8 days of telemetry `aidc forecast` prints the same P10/P50/P90 table beside the job as alone."""
    from simulators.telemetry import ExplorationSchedule, generate

    path = tmp_path / "site.toml"
    path.write_text(render_site(SiteTemplate(racks=2, start=SIM_START, data_dir="var")), encoding="utf-8")
    site = load_site(path)
    with open_historian(site.config.historian, site.data_dir) as hist:
        for batch in generate(site, duration_s=8 * 86400, sample_s=300, schedule=ExplorationSchedule(seed=3)).batches():
            hist.write(batch)
        hist.flush()
    argv = ["forecast", "--config", str(path), "--to", "2026-07-09T00:00Z", "--days", "8", "--horizon", "6h"]
    alone, beside = both(path, argv)
    assert alone[0] == 0, alone[2]
    assert beside == alone
    assert alone[1].startswith("forecast from 2026-07-08 23:55:00+00:00")
    assert len(alone[1].splitlines()) == 2 + 2  # the header lines and a row every 3 hours
