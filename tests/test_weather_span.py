"""A weather file shorter than the span a command asks for is refused in one line with a non-zero exit (it used
to be repeated as if it were a whole year): ``aidc evaluate-control``, ``aidc simulate``, the telemetry generator
and ``bench/sim_year.py``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from aidc.config import load_site
from aidc.errors import DataError
from app.cli import main
from simulators.runner import default_physics
from simulators.telemetry import generate
from tests.sim_helpers import site_doc, write_site

ROOT = Path(__file__).resolve().parents[1]
ONE_DAY = ["--days", "1", "--stride", "1", "--warmup-h", "1", "--controllers", "fixed", "--jobs", "1", "--json"]


def _cut_weather(path: Path, start: str = "2026-07-01T00", hours: int = 200) -> Path:
    """An Open-Meteo style CSV of ``hours`` hourly rows from ``start`` (a file cut short)."""
    t0 = np.datetime64(start, "h")
    rows = [f"{(t0 + np.timedelta64(k, 'h')).astype(object):%Y-%m-%dT%H:%M},{20 + k % 10},60\n" for k in range(hours)]
    path.write_text("time,temperature_2m,relative_humidity_2m\n" + "".join(rows))
    return path


def _site(tmp_path: Path, weather: Path, start: str = "2026-07-01T00:00:00Z") -> Path:
    doc = site_doc(tmp_path, 4)
    doc["site"]["weather"] = str(weather)
    doc.setdefault("simulation", {})["start"] = start
    return write_site(tmp_path, doc)


def test_evaluate_control_refuses_a_short_weather_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`aidc evaluate-control` on a 200-row weather file for a day it does not cover exits 2 with one line naming
    the file, what it holds and the span asked (it used to run on the 200 rows repeated, exit 0)."""
    weather = _cut_weather(tmp_path / "cut.csv")
    cfg = _site(tmp_path, weather)
    rc = main(["evaluate-control", "--config", str(cfg), "--weather", str(weather), *ONE_DAY])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert "\n" not in err
    assert str(weather) in err
    assert "the file holds 200 hours, 2026-07-01T00:00Z to 2026-07-09T08:00Z, not a whole year" in err
    # 14 commissioning days (counted for every controller), 1 h of warm-up, then the evaluated day
    assert "the evaluation (1 days of 2026) needs 2025-12-17T23:00Z to 2026-01-02T00:00Z" in err


def test_evaluate_control_runs_inside_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A weather file that covers the evaluated span (here a whole year) still evaluates."""
    weather = _cut_weather(tmp_path / "year.csv", "2026-01-01T00", 8760)
    cfg = _site(tmp_path, weather)
    rc = main(["evaluate-control", "--config", str(cfg), "--weather", str(weather), *ONE_DAY])
    assert rc == 0, capsys.readouterr().err


def test_the_simulator_refuses_a_weather_file_that_would_run_out(tmp_path: Path) -> None:
    """`aidc simulate` runs until stopped, so a weather file of 200 hours is refused at start, naming the file."""
    weather = _cut_weather(tmp_path / "cut.csv")
    site = load_site(_site(tmp_path, weather))
    with pytest.raises(DataError, match=r"cut\.csv: the file holds 200 hours.*the simulator runs open-ended"):
        default_physics(site)


def test_generated_telemetry_refuses_a_span_past_the_weather(tmp_path: Path) -> None:
    """Telemetry for 30 days from a 200-hour weather file is refused before simulating, naming both spans."""
    weather = _cut_weather(tmp_path / "cut.csv")
    site = load_site(_site(tmp_path, weather))
    with pytest.raises(DataError, match=r"the simulated telemetry needs 2026-07-01T00:00Z to 2026-07-31T00:00Z"):
        generate(site, duration_s=30 * 86400, schedule=None)


def test_sim_year_bench_refuses_a_short_weather_file(tmp_path: Path) -> None:
    """`bench/sim_year.py --weather cut.csv` exits non-zero with one line, not a year of repeated rows."""
    weather = _cut_weather(tmp_path / "cut.csv", "2026-01-01T00")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "sim_year.py"), "--racks", "1", "--weather", str(weather)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "the simulated year 2026 needs 2026-01-01T00:00Z to 2027-01-01T00:00Z" in proc.stderr


MEASURED = ROOT / "data" / "weather" / "openmeteo_DE-LU_2020-2024_hourly.csv.gz"


def test_evaluate_control_on_a_measured_year(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`aidc evaluate-control --weather <Open-Meteo 2020-2024> --year 2023` evaluates on 2023's measured hours;
    the default year 2026, which the file does not hold, exits 2 with one line naming the years to choose (it used
    to evaluate 2026 on 2020-2024 replayed by calendar date)."""
    cfg = _site(tmp_path, MEASURED)
    rc = main(["evaluate-control", "--config", str(cfg), "--weather", str(MEASURED), "--year", "2023", *ONE_DAY])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert json.loads(out)["weather"] == str(MEASURED)
    rc = main(["evaluate-control", "--config", str(cfg), "--weather", str(MEASURED), *ONE_DAY])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert "\n" not in err
    assert err.endswith("choose a year from 2020 to 2024")
    assert "the evaluation (1 days of 2026) needs 2025-12-17T23:00Z to 2026-01-02T00:00Z" in err
