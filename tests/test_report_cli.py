"""`aidc report` end to end: files written for a month with data, one clear line for each bad argument."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.report_fixture import MONTH, fixture_site, write_fixture


@pytest.fixture(scope="module")
def site_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A site file whose historian holds the fixture month."""
    tmp = tmp_path_factory.mktemp("cli")
    site = fixture_site(tmp)
    write_fixture(site)
    assert site.path is not None
    return site.path


def _aidc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app.cli", "report", *args], capture_output=True, text=True,
                          check=False, timeout=300)  # fmt: skip


def test_report_writes_html_pdf_and_json_under_the_data_dir(site_path: Path) -> None:
    """Without --out the files go to <data_dir>/reports, where the dashboard lists them; their paths are printed."""
    proc = _aidc("--config", str(site_path), "--month", MONTH)
    assert proc.returncode == 0, proc.stderr
    printed = [Path(line) for line in proc.stdout.split()]
    assert [p.suffix for p in printed] == [".html", ".pdf", ".json"]
    assert all(p.parent == site_path.parent / "var" / "reports" and p.stat().st_size > 0 for p in printed)


def _this_month() -> str:
    return pd.Timestamp.now(tz="UTC").strftime("%Y-%m")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--month", "2026-08"], "--month 2026-08: site fx1 has no utility-meter readings in that month"),
        (["--month", MONTH, "--site", "dc9"], "--site 'dc9': unknown site; {site} describes site 'fx1'"),
        (["--month", "2099-01"], "--month 2099-01: that month is in the future"),
        (["--month", "THIS"], "--month THIS: the month is incomplete until"),
        (["--month", "2026-13"], "--month '2026-13': expected a month as YYYY-MM, e.g. 2026-10"),
        (["--format", "eed", "--year", "2024"], "--year 2024: site fx1 has no utility-meter readings in that year"),
        (["--format", "eed", "--year", "2099"], "--year 2099: that year is in the future"),
        (["--format", "eed"], "--format eed needs --year YYYY"),
        ([], "give --month YYYY-MM (or --format eed --year YYYY)"),
    ],
)
def test_bad_arguments_give_one_clear_line(site_path: Path, args: list[str], expected: str) -> None:
    """Each bad argument is refused with exit status 2 and one line naming the option and the value."""
    args = [_this_month() if a == "THIS" else a for a in args]
    proc = _aidc("--config", str(site_path), *args)
    assert proc.returncode == 2, proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    want = expected.replace("THIS", _this_month()).replace("{site}", str(site_path))
    assert lines[0].startswith(f"aidc report: {want}"), lines[0]


def test_missing_site_file_is_one_line(tmp_path: Path) -> None:
    """A site file that does not exist is named in one line."""
    proc = _aidc("--config", str(tmp_path / "nope.toml"), "--month", MONTH)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"aidc report: {tmp_path / 'nope.toml'}: cannot read site file: No such file or directory"]


def test_historian_held_by_another_process_is_one_line(site_path: Path) -> None:
    """While another process holds the DuckDB file the command says so in one line instead of a traceback."""
    from aidc.config import load_site
    from historian import open_historian

    site = load_site(site_path)
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from aidc.config import load_site; "
                               "from historian import open_historian; s = load_site(sys.argv[1]); "
                               "h = open_historian(s.config.historian, s.data_dir); print('held', flush=True); "
                               "time.sleep(120)", str(site_path)], stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        proc = _aidc("--config", str(site_path), "--month", MONTH)
    finally:
        holder.kill()
        holder.wait()
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"aidc report: the historian under {site.data_dir} is held by another process")
    with open_historian(site.config.historian, site.data_dir):
        pass  # released again
