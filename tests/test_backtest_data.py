"""Backtests on real traces nobody here wrote (bundled under data/), the trace readers and `aidc backtest` errors."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from aidc.datasets import load_series, read_series
from aidc.errors import DataError
from app.cli import main
from tests.conftest import DATA

TRACES = [
    # (file, extra CLI arguments); every trace must beat daily seasonal naive (MASE < 1) at 1 h and at 24 h
    ("cluster_util/alibaba2018_300s.csv.gz", ["--step", "5min"]),
    ("cluster_util/azure2019_300s.csv.gz", ["--step", "5min"]),
    ("gpu_power/cbsugpu07_usage_stats.txt.gz", []),  # Cornell A100
    ("gpu_power/cbsugpu05_usage_stats.txt.gz", []),  # Cornell 2x A40, about 18 % of hours missing
]


@pytest.mark.parametrize(("name", "extra"), TRACES, ids=[t[0].split("/")[1] for t in TRACES])
def test_backtest_beats_seasonal_naive_on_real_trace(
    name: str, extra: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """`aidc backtest` on a real trace scores MASE < 1 at 1 h and 24 h with P10-P90 coverage near 80 %."""
    with threadpool_limits(1):  # the machine is shared; one thread avoids OpenMP spinning under contention
        assert main(["backtest", "--data", str(DATA / name), "--horizon", "1h,24h", "--json", *extra]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["horizon"] for r in rows] == ["1h", "24h"]
    for row in rows:
        assert row["mase"] < 1.0, row
        assert 0.65 <= row["coverage_80"] <= 0.95, row


CORNELL_LIKE = (
    "\ufeffname\ttimestamp\tpowerave\ttempave\n"
    "gpu\t2025-10-31 09:00:00.000\t73.5\t35\n"
    "gpu\t2025-10-31 08:00:00.000\t72.5\t35\n"
    "gpu\t2025-10-31 06:00:00.000\t70.0\t34\n"
    "\n(3 rows affected)\n\n\nCompletion time: 2025-10-31T10:35:47.0119102-04:00\n"
)


def test_reader_handles_bom_trailer_newest_first_and_gaps(tmp_path: Path) -> None:
    """A Cornell-style TSV (BOM, newest first, SQL trailer, a missing hour) becomes an hourly series with a NaN."""
    f = tmp_path / "gpu.txt"
    f.write_text(CORNELL_LIKE, encoding="utf-8")
    s = load_series(f)
    assert s.name == "powerave"
    assert list(s.index) == list(pd.date_range("2025-10-31T06:00Z", periods=4, freq="h"))
    assert s.isna().tolist() == [False, True, False, False]
    assert s.iloc[-1] == 73.5


def test_reader_without_timestamps_uses_step(tmp_path: Path) -> None:
    """Row i of a file without a timestamp column is at start + i x step."""
    f = tmp_path / "util.csv"
    f.write_text("cpu_util_percent,mem\n10,1\n20,2\n30,3\n", encoding="utf-8")
    s = load_series(f, step="5min", start="2018-01-01T00:00Z")
    assert s.tolist() == [10.0, 20.0, 30.0]
    assert s.index[2] == pd.Timestamp("2018-01-01T00:10Z")


@pytest.mark.parametrize(
    ("text", "kwargs", "message"),
    [
        ("a,b\n1,2\n", {}, "no timestamp column"),
        ("ts,v\n2026-01-01T00:00Z,1\n2026-01-01T01:00Z,x\n", {}, "row 3, column 'v': 'x' is not a number"),
        ("ts,v\n2026-01-01T00:00Z,1\nyesterday,2\n", {}, "row 3, column 'ts': 'yesterday' is not a timestamp"),
        ("ts,v\n2026-01-01T00:00Z,1\n", {"column": "power"}, "no column 'power'"),
        ("", {}, "file is empty"),
    ],
)
def test_bad_files_give_one_line_naming_file_and_field(
    tmp_path: Path, text: str, kwargs: dict[str, str], message: str
) -> None:
    """Malformed files raise DataError naming the file and the row or column at fault."""
    f = tmp_path / "bad.csv"
    f.write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match=message) as info:
        load_series(f, **kwargs)
    assert str(info.value).startswith(str(f))


def test_cli_bad_file_is_one_line_without_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`aidc backtest` on a malformed file exits 2 with one line on stderr naming the file."""
    f = tmp_path / "bad.csv"
    f.write_text("ts,v\n2026-01-01T00:00Z,1\n2026-01-01T01:00Z,oops\n", encoding="utf-8")
    assert main(["backtest", "--data", str(f)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert str(f) in err
    assert "oops" in err


def _hourly(values: dict[int, str], n: int = 24 * 21) -> str:
    """An hourly CSV with a daily cycle, some rows replaced by ``values`` (row index: text)."""
    t0 = pd.Timestamp("2026-01-01T00:00Z")
    rows = [f"{(t0 + pd.Timedelta(hours=i)).isoformat()},{values.get(i, str(100 + i % 24))}" for i in range(n)]
    return "timestamp,it_power_kw\n" + "\n".join(rows) + "\n"


def test_reader_excludes_infinite_and_absurd_values_and_counts_them(tmp_path: Path) -> None:
    """inf, -inf, -1e300 and float32's 3.4e38 are bad readings: excluded as missing and counted with the first
    one's row; text that is not a number is still refused."""
    f = tmp_path / "meter.csv"
    f.write_text(_hourly({5: "inf", 9: "-1e300", 12: "-inf", 30: "3.4028235e38", 40: ""}), encoding="utf-8")
    s, excluded = read_series(f)
    assert excluded is not None
    assert (excluded.count, excluded.first_row, excluded.first_value) == (4, 7, "inf")
    assert str(excluded) == "4 bad values (infinite or beyond ±1e+15) excluded as missing, the first inf at row 7"
    assert s.isna().sum() == 5  # the four bad readings and the empty cell
    assert s.abs().max() < 200
    f.write_text(_hourly({}), encoding="utf-8")
    assert read_series(f)[1] is None


@pytest.mark.parametrize("as_json", [False, True])
def test_cli_backtest_states_the_excluded_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], as_json: bool
) -> None:
    """`aidc backtest` on data with inf and -1e300 runs (it was a scikit-learn traceback) and its output states how
    many values it excluded."""
    f = tmp_path / "meter.csv"
    f.write_text(_hourly({300: "inf", 420: "-1e300"}), encoding="utf-8")
    with threadpool_limits(1):
        rc = main(["backtest", "--data", str(f), "--horizon", "1h", *(["--json"] if as_json else [])])
    out = capsys.readouterr().out
    assert rc == 0
    if as_json:
        rows = json.loads(out)
        assert [r["excluded_values"] for r in rows] == [2]
        assert all(r["mae"] == r["mae"] and abs(r["mae"]) < 1e6 for r in rows)  # finite, not NaN
    else:
        assert "2 bad values (infinite or beyond ±1e+15) excluded as missing, the first inf at row 302" in out


def test_cli_backtest_on_only_bad_values_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A series whose values are nearly all bad readings is refused in one line that says they were excluded."""
    f = tmp_path / "meter.csv"
    f.write_text(_hourly({i: "-1e300" for i in range(24 * 21 - 50)}), encoding="utf-8")
    assert main(["backtest", "--data", str(f)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "only 50 values; need at least 100 to backtest; 454 bad values" in err
