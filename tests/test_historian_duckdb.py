"""The embedded DuckDB historian: storage, windows, rollups, retention, latest values and counters."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aidc.errors import ConfigError
from aidc.model import Batch, Quality, Sample, SeriesKey
from historian import HistorianConfig, SeriesSelector, open_historian
from historian.base import parse_window
from historian.duckdb_store import DuckDBHistorian
from tests.vm_server import HOUR, NS, polls

T0 = 1_767_225_600 * NS  # 2026-01-01T00:00Z, on an hour boundary
PDU = SeriesSelector.parse("pdu,*,active_power_w")


def reference(batches: list[Batch], selector: SeriesSelector, lo: int, hi: int, w: int, agg: str) -> pd.DataFrame:
    """What a windowed query must return, computed with pandas from the raw batches."""
    b = Batch.concat(batches)
    df = pd.DataFrame({"series": b.series, "ts": b.ts_ns, "value": b.values, "quality": b.quality})
    df = df[df["series"].map(selector.matches) & (df["ts"] >= lo) & (df["ts"] < hi)]
    df["b"] = df["ts"] // w * w
    g = df.sort_values("ts").groupby(["series", "b"])
    fn = {
        "mean": g["value"].mean(),
        "min": g["value"].min(),
        "max": g["value"].max(),
        "sum": g["value"].sum(min_count=1),
        "count": g["value"].count().astype(float),
        "last": g["value"].last(),
    }[agg]
    out = pd.DataFrame({"value": fn, "quality": g["quality"].max().astype(np.uint8)}).reset_index()
    out["ts"] = pd.to_datetime(out["b"], unit="ns", utc=True)
    return out[["ts", "series", "value", "quality"]].sort_values(["series", "ts"]).reset_index(drop=True)


def make_store(path: Path) -> DuckDBHistorian:
    """A file-backed store holding 3 hours of 5-second polls of 4 CDUs and 4 PDUs, rolled up."""
    h = DuckDBHistorian(path, raw_retention_days=1e6)
    for b in polls(T0, 3):
        h.write(b)
    h.flush()
    return h


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DuckDBHistorian]:
    """A shared read-only store (see make_store)."""
    h = make_store(tmp_path_factory.mktemp("duck") / "h.duckdb")
    yield h
    h.close()


@pytest.fixture
def own_store(tmp_path: Path) -> Iterator[DuckDBHistorian]:
    """A store the test may change."""
    h = make_store(tmp_path / "h.duckdb")
    yield h
    h.close()


def test_raw_query_returns_what_was_written(store: DuckDBHistorian) -> None:
    """A raw query returns every sample in [start, end) with its value (NaN if missing) and quality."""
    batch = Batch.concat(polls(T0, 3))
    got = store.query(PDU, T0 + 60 * NS, T0 + 120 * NS)
    mask = np.array([s.startswith("pdu") for s in batch.series]) & (batch.ts_ns >= T0 + 60 * NS)
    mask &= batch.ts_ns < T0 + 120 * NS
    assert len(got) == mask.sum() == 12 * 4
    assert got["ts"].dt.tz is not None
    want = pd.DataFrame({"series": batch.series[mask], "ts": batch.ts_ns[mask], "v": batch.values[mask]})
    want = want.sort_values(["series", "ts"]).reset_index(drop=True)
    np.testing.assert_array_equal(got["value"].to_numpy(), want["v"].to_numpy())


@pytest.mark.parametrize("agg", ["mean", "min", "max", "last", "sum", "count"])
@pytest.mark.parametrize(
    ("window", "lo_s", "hi_s"),
    [("1m", 0, 3 * 3600), ("15m", 437, 3 * 3600 - 71), ("1h", 61, 3 * 3600), ("45s", 10, 1000), ("2h", 0, 3 * 3600)],
)
def test_windowed_query_matches_pandas(store: DuckDBHistorian, agg: str, window: str, lo_s: int, hi_s: int) -> None:
    """Every aggregation over aligned and unaligned ranges equals a pandas computation on the raw data."""
    lo, hi = T0 + lo_s * NS, T0 + hi_s * NS
    got = store.query(PDU, lo, hi, window, agg)  # type: ignore[arg-type]
    want = reference(polls(T0, 3), PDU, lo, hi, parse_window(window), agg)
    pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=1e-12)


def test_rollups_give_the_same_answer_as_raw(own_store: DuckDBHistorian) -> None:
    """An hourly query answered from the rollup tables equals the same query computed from raw rows."""
    store = own_store
    with_rollups = store.query(PDU, T0, T0 + 3 * HOUR, "1h", "mean")
    store._watermark = dict.fromkeys(store._watermark, 0)  # force the raw path
    from_raw = store.query(PDU, T0, T0 + 3 * HOUR, "1h", "mean")
    pd.testing.assert_frame_equal(with_rollups, from_raw)


def test_long_range_uses_the_hourly_rollup(store: DuckDBHistorian) -> None:
    """The query planner reads rollup_1h for hourly windows, and rollup_1m for 15-minute windows."""
    sql_h = store._agg_sql(0, HOUR, T0, T0 + 3 * HOUR, "")
    sql_m = store._agg_sql(0, 15 * 60 * NS, T0, T0 + 3 * HOUR, "")
    assert "rollup_1h" in sql_h
    assert "rollup_1m" in sql_m
    assert "rollup_" not in store._agg_sql(0, 45 * NS, T0, T0 + 3 * HOUR, "")


def test_late_data_updates_rollups(own_store: DuckDBHistorian) -> None:
    """A sample arriving after its hour was rolled up is reflected in the hourly answer at once."""
    store = own_store
    sid = SeriesKey.of("pdu", "active_power_w", {"site": "dc1", "device": "pdu-0"}).id
    before = store.query(PDU, T0, T0 + HOUR, "1h", "count")
    store.write(Batch.from_samples([Sample(sid, T0 + 1, 1.0)]))
    after = store.query(PDU, T0, T0 + HOUR, "1h", "count")
    row = after["series"] == sid
    assert (after.loc[row, "value"].to_numpy() == before.loc[row, "value"].to_numpy() + 1).all()


def test_retention_deletes_old_raw_rows_but_keeps_rollups(tmp_path: Path) -> None:
    """Raw rows older than the retention are deleted at maintenance; hourly rollups still answer."""
    now_s = (T0 + 3 * HOUR) / NS
    h = DuckDBHistorian(tmp_path / "r.duckdb", raw_retention_days=1 / 24, clock=lambda: now_s)
    for b in polls(T0, 3):
        h.write(b)
    h.flush()
    raw = h.query(PDU, T0, T0 + 3 * HOUR)
    newest = raw["ts"].max()
    assert raw["ts"].min() >= newest - pd.Timedelta(hours=1)
    assert raw["ts"].min() < newest - pd.Timedelta(minutes=59)
    hourly = h.query(PDU, T0, T0 + 3 * HOUR, "1h", "count")
    assert sorted(hourly["ts"].unique()) == [pd.Timestamp(T0 + k * HOUR, unit="ns", tz="UTC") for k in range(3)]
    h.close()


def test_retention_counts_back_from_newest_data_on_a_simulated_clock(tmp_path: Path) -> None:
    """Data stamped by a simulated clock far behind the wall clock is not deleted by raw retention."""
    wall_s = (T0 + 400 * 24 * HOUR) / NS
    h = DuckDBHistorian(tmp_path / "sim.duckdb", raw_retention_days=1, clock=lambda: wall_s)
    for b in polls(T0, 3):
        h.write(b)
    h.flush()
    raw = h.query(PDU, T0, T0 + 3 * HOUR)
    assert raw["ts"].min() < pd.Timestamp(T0 + HOUR // 60, unit="ns", tz="UTC")
    h.close()


def test_latest_survives_reopen(tmp_path: Path) -> None:
    """latest() gives the newest sample per series, also after the file is closed and opened again."""
    path = tmp_path / "l.duckdb"
    h = DuckDBHistorian(path)
    batches = polls(T0, 1)
    for b in batches:
        h.write(b)
    first = h.latest(PDU)
    h.close()
    again = DuckDBHistorian(path)
    pd.testing.assert_frame_equal(again.latest(PDU), first)
    last = Batch.concat(batches)
    assert len(first) == 4
    assert (first["ts"] == pd.Timestamp(int(last.ts_ns.max()), unit="ns", tz="UTC")).all()
    again.close()


def test_quality_is_stored_and_returned(tmp_path: Path) -> None:
    """Quality round-trips, missing values come back as NaN, and a window reports its worst quality."""
    h = DuckDBHistorian(tmp_path / "q.duckdb")
    sid = "cdu,device=c1 supply_temp_c"
    h.write(
        Batch.from_samples(
            [
                Sample(sid, T0, 30.0),
                Sample(sid, T0 + NS, None, Quality.BAD, "timeout"),
                Sample(sid, T0 + 2 * NS, 31.0, Quality.UNCERTAIN),
            ]
        )
    )
    sel = SeriesSelector.parse("cdu,supply_temp_c")
    raw = h.query(sel, T0, T0 + 10 * NS)
    assert raw["quality"].tolist() == [0, 2, 1]
    assert np.isnan(raw["value"].iloc[1])
    win = h.query(sel, T0, T0 + 10 * NS, "10s", "mean")
    assert win["value"].tolist() == [30.5]
    assert win["quality"].tolist() == [2]
    h.close()


@pytest.mark.parametrize(
    ("values", "wrap", "delta", "wraps", "resets"),
    [
        ([10, 20, 35], None, 25, 0, 0),
        ([4294967290, 5, 15], 2**32, 21, 1, 0),  # UINT32 counter wraps
        ([1000, 2000, 3, 13], 2**32, 1013, 0, 1),  # meter replaced: reset, increase counted from zero
        ([1000, 2000, 3, 13], None, 1013, 0, 1),
    ],
)
def test_counter_deltas_wrap_and_reset(
    tmp_path: Path, values: list[int], wrap: int | None, delta: int, wraps: int, resets: int
) -> None:
    """Counter increases are wrap-aware: a drop of more than half the modulus is a wrap, otherwise a reset."""
    h = DuckDBHistorian(tmp_path / "c.duckdb")
    sid = "meter,device=m1 energy_wh"
    h.write(Batch.from_samples([Sample(sid, T0 + i * NS, float(v)) for i, v in enumerate(values)]))
    out = h.counter_deltas(SeriesSelector.parse("meter,energy_wh"), T0, T0 + 60 * NS, "1m", wrap=wrap)
    assert out[["delta", "wraps", "resets"]].values.tolist() == [[delta, wraps, resets]]
    h.close()


def test_readers_in_threads_while_writing(tmp_path: Path) -> None:
    """Reader threads query while the writer inserts, without errors and seeing only whole batches."""
    h = DuckDBHistorian(tmp_path / "t.duckdb")
    batches = polls(T0, 1, per_batch=12)
    errors: list[BaseException] = []
    done = threading.Event()

    def reader() -> None:
        try:
            while not done.is_set():
                n = len(h.query(PDU, T0, T0 + HOUR))
                assert n % (12 * 4) == 0
                h.latest(PDU)
        except BaseException as exc:  # reported to the test thread below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for b in batches:
        h.write(b)
    done.set()
    for t in threads:
        t.join()
    assert not errors
    assert len(h.query(PDU, T0, T0 + HOUR)) == len(Batch.concat(batches)) // 2
    h.close()


@pytest.mark.parametrize(
    ("text", "measurement", "tags", "field"),
    [
        ("pdu,*,active_power_w", "pdu", {}, "active_power_w"),
        ("pdu,rack=r03-*,active_power_w", "pdu", {"rack": "r03-*"}, "active_power_w"),
        ("pdu,rack=r03 active_power_w", "pdu", {"rack": "r03"}, "active_power_w"),
        ("pdu,rack=r03", "pdu", {"rack": "r03"}, None),
        ("pdu", "pdu", {}, None),
    ],
)
def test_selector_parse(text: str, measurement: str, tags: dict[str, str], field: str | None) -> None:
    """Selectors parse from the command-line forms."""
    sel = SeriesSelector.parse(text)
    assert (sel.measurement, sel.tags, sel.field) == (measurement, tags, field)


def test_selector_globs_match_series() -> None:
    """Globs match tag values and fields; unnamed tags are unconstrained; a named tag must exist."""
    sid = "pdu,device=pdu-r03-07a,rack=r03-07 active_power_w"
    assert SeriesSelector.parse("pdu,rack=r03-*,active_power_w").matches(sid)
    assert SeriesSelector.parse("p*,*,active_*").matches(sid)
    assert not SeriesSelector.parse("pdu,rack=r04-*,active_power_w").matches(sid)
    assert not SeriesSelector.parse("pdu,row=*,active_power_w").matches(sid)


def test_bad_window_and_agg_are_config_errors(store: DuckDBHistorian) -> None:
    """An unknown window unit or aggregation is one clear ConfigError naming the value."""
    with pytest.raises(ConfigError, match="'5 fortnights'"):
        store.query(PDU, T0, T0 + HOUR, "5 fortnights")
    with pytest.raises(ConfigError, match="'median'"):
        store.query(PDU, T0, T0 + HOUR, "1m", "median")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="timezone"):
        store.query(PDU, "2026-01-01T00:00", "2026-01-02T00:00")


def test_default_factory_is_duckdb_under_data_dir(tmp_path: Path) -> None:
    """With no [historian] table the factory opens historian.duckdb under the site's data directory."""
    h = open_historian(HistorianConfig(), tmp_path / "var")
    try:
        assert h.backend == "duckdb"
        h.write(polls(T0, 0.01)[0])
    finally:
        h.close()
    assert (tmp_path / "var" / "historian.duckdb").exists()
