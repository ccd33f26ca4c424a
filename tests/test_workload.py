"""Workload profiles and trace replay: shapes, bounds, determinism, real trace files and clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aidc.errors import ConfigError, DataError
from simulators.trace import load_trace
from simulators.workload import (
    TRAIN_DIP,
    ConstantWorkload,
    build_workload,
    daily_profile,
    utc_day,
    workload_for_site,
)
from tests.conftest import DATA

START = utc_day(2026, 7, 6)  # a Monday
NS_MIN = 60_000_000_000


def sample(kind: str, minutes: int, racks: int = 8, seed: int = 1, tz: str = "UTC") -> np.ndarray:
    """Utilisation of every rack at one-minute steps."""
    wl = build_workload([kind] * racks, start_ns=START, seed=seed, timezone=tz)
    return np.array([wl.rack_util(START + m * NS_MIN) for m in range(minutes)])


@pytest.mark.parametrize("kind", ["training", "inference", "idle"])
def test_profiles_stay_within_zero_and_one(kind: str) -> None:
    """Every synthetic profile stays in [0, 1] over a week."""
    u = sample(kind, 7 * 1440 // 10)
    assert ((u >= 0.0) & (u <= 1.0)).all()


def test_training_is_high_with_checkpoint_dips_on_every_rack() -> None:
    """Training runs above 85 % most of the time and every rack dips for checkpoints within an hour."""
    u = sample("training", 180)
    assert np.median(u) > 0.85
    for rack in u.T:
        dips = rack < TRAIN_DIP + 0.1
        assert 0.03 < dips.mean() < 0.25
        assert dips[:60].any()


def test_inference_peaks_in_the_afternoon_and_drops_at_weekends() -> None:
    """Inference load is higher mid-afternoon than before dawn (local time), and lower on Saturday."""
    tz = "America/New_York"
    wl = build_workload(["inference"] * 4, start_ns=START, seed=3, timezone=tz)
    weekday = daily_profile(wl, START + 4 * 3600 * 10**9)  # Monday 00:00 EDT
    saturday = daily_profile(wl, START + (5 * 24 + 4) * 3600 * 10**9)
    per_hour = weekday.reshape(24, -1).mean(axis=1)
    assert per_hour[13:17].mean() > per_hour[1:5].mean() + 0.3
    assert 12 <= int(per_hour.argmax()) <= 17
    assert saturday.mean() < weekday.mean()


def test_same_seed_same_workload_and_racks_differ() -> None:
    """A seed reproduces the workload exactly; racks do not move in lock step."""
    a, b = sample("training", 120, seed=5), sample("training", 120, seed=5)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, sample("training", 120, seed=6))
    assert not np.allclose(a[:, 0], a[:, 1])


def test_constant_workload() -> None:
    """ConstantWorkload returns its level for every rack."""
    assert ConstantWorkload(0.4, 3).rack_util(START).tolist() == [0.4, 0.4, 0.4]


def test_unknown_kind_and_missing_trace_are_config_errors() -> None:
    """An unknown workload kind, or 'trace' with no trace file, is a ConfigError naming the key."""
    with pytest.raises(ConfigError, match="'gaming' is not one of"):
        build_workload(["gaming"], start_ns=START, seed=1)
    with pytest.raises(ConfigError, match=r"simulation\.trace"):
        workload_for_site(["trace"], START, 1, "UTC", None, None)


@pytest.mark.parametrize(
    ("name", "step_s", "rows"),
    [
        ("cluster_util/alibaba2018_300s.csv.gz", 300.0, 2243),
        ("cluster_util/azure2019_300s.csv.gz", 300.0, 8640),
    ],
)
def test_cluster_traces_load(name: str, step_s: float, rows: int) -> None:
    """Each cluster utilisation trace loads with its step from the file name and values in [0, 1]."""
    tr = load_trace(DATA / name)
    assert tr.step_s == step_s
    assert len(tr.util) == rows
    assert 0.0 <= tr.util.min() < tr.util.max() <= 1.0
    if "azure" in name:
        assert tr.util.max() == pytest.approx(1.0)


@pytest.mark.parametrize("name", ["cbsugpu05_usage_stats.txt.gz", "cbsugpu07_usage_stats.txt.gz"])
@pytest.mark.parametrize("column", ["utilave", "powerave"])
def test_gpu_usage_stats_load(name: str, column: str) -> None:
    """The GPU telemetry exports load (BOM, newest first, trailer) as hourly utilisation in [0, 1]."""
    tr = load_trace(DATA / "gpu_power" / name, column=column)
    assert tr.step_s == 3600.0
    assert len(tr.util) > 5000
    assert 0.0 <= tr.util.min() < tr.util.max() <= 1.0


def test_trace_workload_replays_the_trace() -> None:
    """Racks on the trace workload follow the trace (within jitter and per-rack gain)."""
    path = DATA / "cluster_util" / "alibaba2018_300s.csv.gz"
    wl = workload_for_site(["trace"] * 4, START, 1, "UTC", path, None)
    assert wl.trace is not None
    for k in (0, 500, 1500):
        t_ns = START + k * 300 * 10**9
        expected = [wl.trace.at(k * 300.0 + float(off)) for off in wl.trace_offset_s]
        assert np.allclose(wl.rack_util(t_ns), expected, atol=0.1)


def test_gpu_stats_gap_rule_fills_short_gaps_and_splices_long_ones(tmp_path: Path) -> None:
    """Gaps up to six hours are interpolated; longer gaps are cut out and the series spliced."""
    header = "\ufeffname\ttimestamp\tpowerave\tutilave\n"
    hours = [0, 1, 4, 5, 20, 21]  # a 2-hour gap (filled) and a 14-hour gap (spliced)
    utils = [0, 10, 40, 50, 80, 90]
    rows = "".join(
        f"gpu\t2025-01-01 {h % 24:02d}:00:00.000\t100\t{u}\n" if h < 24 else ""
        for h, u in reversed(list(zip(hours, utils, strict=True)))
    )
    text = header + rows + "(6 rows affected)\n\nCompletion time: 2025-10-31T10:35:47\n"
    path = tmp_path / "t_usage_stats.txt"
    path.write_text(text, encoding="utf-8")
    tr = load_trace(path)
    assert tr.util.tolist() == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.8, 0.9])


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("x_300s.csv", "cpu_util_percent\n10\nabc\n", "row 3, column 'cpu_util_percent': 'abc' is not a number"),
        ("x_300s.csv", "foo,bar\n1,2\n", "has neither cpu_util_percent nor cpu_usage"),
        ("x_usage_stats.txt", "name\ttimestamp\tutilave\ng\tnot-a-date\t5\n", "row 2, column 'timestamp': 'not-a-date' is not a timestamp"),
        ("x_usage_stats.txt", "name\ttimestamp\ng\t2025-01-01 00:00\n", "no column 'utilave' (columns: name, timestamp)"),
        ("x.parquet", "PAR1", "unknown trace format"),
    ],
)
def test_malformed_trace_is_one_clear_line(tmp_path: Path, name: str, content: str, message: str) -> None:
    """Malformed trace files raise a one-line DataError naming the file and the row or field."""
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError) as err:
        load_trace(path)
    assert str(path.resolve()) in str(err.value)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("column", ["cpu_util_percent", "cpu_usage"])
def test_cluster_trace_with_bad_readings_replays_them_as_gaps(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, column: str
) -> None:
    """inf and -1e300 in a cluster trace are bad readings: a warning counts them and they replay as an
    interpolated gap, not as full load (inf) or NaN power."""
    path = tmp_path / "x_300s.csv"
    path.write_text(f"{column}\n10\n20\ninf\n40\n-1e300\n60\n", encoding="utf-8")
    with caplog.at_level("WARNING", logger="aidc.datasets"):
        tr = load_trace(path)
    top = 100.0 if column == "cpu_util_percent" else 60.0
    assert tr.util.tolist() == pytest.approx([v / top for v in (10, 20, 30, 40, 50, 60)])
    assert "2 bad values (infinite or beyond ±1e+15) excluded as missing, the first inf at row 4" in caplog.text
