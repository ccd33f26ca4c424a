"""Remote backends against a real VictoriaMetrics: parity with DuckDB, store and forward, local + remote."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aidc.model import Batch
from historian import HistorianConfig, SeriesSelector, open_historian
from historian.base import Historian
from historian.duckdb_store import DuckDBHistorian
from historian.fanout import FanoutHistorian
from historian.forward import RemoteHistorian
from tests.vm_server import HOUR, NS, VMServer, free_port, polls, require_vm
from tests.vm_server import vm as vm  # fixture

SELECTORS = ["pdu,*,active_power_w", "cdu,device=cdu-[12],flow_lpm", "*,site=dc1,*"]


def recent_hour() -> int:
    """The start of the hour three hours ago (VictoriaMetrics refuses samples far in the future)."""
    return (time.time_ns() - 3 * HOUR) // HOUR * HOUR


def vm_config(url: str, **remote: object) -> HistorianConfig:
    """A victoriametrics-only historian config."""
    return HistorianConfig.model_validate(
        {"backend": "victoriametrics", "keep_local": False, "remote": {"url": url, **remote}}
    )


def wait_for(predicate: object, timeout_s: float = 60.0) -> None:
    """Poll a condition until true (waiting on state, not on a fixed sleep)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def pair(vm: VMServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Historian, Historian, int]]:
    """The same three hours of data written to DuckDB and to VictoriaMetrics."""
    t0 = recent_hour()
    base = tmp_path_factory.mktemp("parity")
    duck = DuckDBHistorian(base / "p.duckdb", raw_retention_days=1e6)
    remote = open_historian(vm_config(vm.url), base)
    for b in polls(t0, 3):
        duck.write(b)
        remote.write(b)
    duck.flush()
    vm.flush()
    n = len(duck.query(SeriesSelector.parse("*"), t0, t0 + 3 * HOUR))
    wait_for(lambda: len(remote.query(SeriesSelector.parse("*"), t0, t0 + 3 * HOUR)) == n)
    yield duck, remote, t0
    duck.close()
    remote.close()


@pytest.mark.needs_deb
@pytest.mark.parametrize("selector", SELECTORS)
@pytest.mark.parametrize(
    ("window", "agg", "lo_s", "hi_s"),
    [
        (None, None, 0, 3 * 3600),
        (None, None, 123, 4000),
        ("1m", "mean", 0, 3 * 3600),
        ("10m", "max", 123, 3 * 3600 - 17),
        ("1h", "count", 0, 3 * 3600),
        ("1h", "last", 61, 3 * 3600),
        ("7m", "sum", 10, 9000),
        ("15m", "min", 0, 3 * 3600),
        (None, "mean", 100, 9000),
    ],
)
def test_parity_duckdb_victoriametrics(
    pair: tuple[Historian, Historian, int], selector: str, window: str | None, agg: str | None, lo_s: int, hi_s: int
) -> None:
    """The same data in DuckDB and VictoriaMetrics answers the same query with the same numbers and qualities."""
    duck, remote, t0 = pair
    sel = SeriesSelector.parse(selector)
    lo, hi = t0 + lo_s * NS, t0 + hi_s * NS
    a = duck.query(sel, lo, hi, window, agg)  # type: ignore[arg-type]
    b = remote.query(sel, lo, hi, window, agg)  # type: ignore[arg-type]
    assert len(a) > 0
    pd.testing.assert_frame_equal(a, b)


@pytest.mark.needs_deb
def test_parity_latest_and_counter_deltas(pair: tuple[Historian, Historian, int]) -> None:
    """latest() and counter_deltas() agree between DuckDB and VictoriaMetrics."""
    duck, remote, t0 = pair
    sel = SeriesSelector.parse("cdu,*,flow_lpm")
    pd.testing.assert_frame_equal(duck.latest(sel), remote.latest(sel))
    a = duck.counter_deltas(sel, t0, t0 + 3 * HOUR, "1h", wrap=1000.0)
    b = remote.counter_deltas(sel, t0, t0 + 3 * HOUR, "1h", wrap=1000.0)
    pd.testing.assert_frame_equal(a, b)


@pytest.mark.needs_deb
def test_outage_spools_then_replays_in_order(tmp_path: Path) -> None:
    """While the server is down batches go to the spool; when it returns they are replayed and nothing is lost."""
    require_vm()
    server = VMServer(tmp_path / "vmdata", free_port())
    server.start()
    h = open_historian(vm_config(server.url, backoff_initial_s=0.05, backoff_max_s=0.5), tmp_path)
    assert isinstance(h, RemoteHistorian)
    t0 = recent_hour()
    batches = polls(t0, 0.5)
    try:
        h.write(batches[0])
        server.stop()
        for b in batches[1:]:
            h.write(b)
        assert h.spool.depth_points == sum(len(b) for b in batches[1:])  # one line per sample
        stats = h.stats_batch(time.time_ns())
        depth = dict(zip(stats.series, stats.values, strict=True))
        assert depth["aidc_historian,backend=victoriametrics spool_depth_points"] == h.spool.depth_points
        server.start()
        assert h.wait_drained(60)
        server.flush()
        sel = SeriesSelector.parse("*")
        want = Batch.concat(batches)
        wait_for(lambda: len(h.query(sel, t0, t0 + HOUR)) == len(want))
        got = h.query(sel, t0, t0 + HOUR)
        assert got["value"].sum() == pytest.approx(np.nansum(want.values))
        assert h.stats_batch(time.time_ns()).values[0] == 0
    finally:
        h.close()
        server.stop()


@pytest.mark.needs_deb
def test_unreachable_at_start_keeps_collecting_into_spool(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A remote that is down at start gives one warning line; writes are spooled and survive a restart."""
    require_vm()
    port = free_port()
    cfg = vm_config(f"http://127.0.0.1:{port}", backoff_initial_s=0.05, backoff_max_s=0.5)
    h = open_historian(cfg, tmp_path)
    assert "unreachable at start" in caplog.text
    t0 = recent_hour()
    batches = polls(t0, 0.2)
    for b in batches:
        h.write(b)
    assert isinstance(h, RemoteHistorian)
    depth = h.spool.depth_points
    assert depth > 0
    h.close()
    server = VMServer(tmp_path / "vmdata", port)
    server.start()
    try:
        h2 = open_historian(cfg, tmp_path)
        assert isinstance(h2, RemoteHistorian)
        assert h2.wait_drained(60)
        server.flush()
        want = len(Batch.concat(batches))
        wait_for(lambda: len(h2.query(SeriesSelector.parse("*"), t0, t0 + HOUR)) == want)
        h2.close()
    finally:
        server.stop()


@pytest.mark.needs_deb
def test_spool_full_drops_newest_and_counts(tmp_path: Path) -> None:
    """A full spool refuses new chunks and counts their points as dropped; the oldest are kept."""
    require_vm()
    cfg = HistorianConfig.model_validate(
        {
            "backend": "victoriametrics",
            "keep_local": False,
            "remote": {"url": f"http://127.0.0.1:{free_port()}", "batch_points": 100},
            "spool": {"max_mb": 0.05},
        }
    )
    h = open_historian(cfg, tmp_path)
    assert isinstance(h, RemoteHistorian)
    try:
        for b in polls(recent_hour(), 1):
            h.write(b)
        assert h.spool.dropped_points > 0
        assert h.spool.depth_bytes <= cfg.spool.max_bytes
        stats = dict(zip(*(lambda s: (s.series, s.values))(h.stats_batch(time.time_ns())), strict=True))
        assert stats["aidc_historian,backend=victoriametrics dropped_points_total"] == h.spool.dropped_points
    finally:
        h.close()


@pytest.mark.needs_deb
def test_local_plus_remote(vm: VMServer, tmp_path: Path) -> None:
    """keep_local writes to the DuckDB hot store and to the remote; reads come from the hot store."""
    cfg = HistorianConfig.model_validate({"backend": "victoriametrics", "keep_local": True, "remote": {"url": vm.url}})
    h = open_historian(cfg, tmp_path)
    assert isinstance(h, FanoutHistorian)
    t0 = recent_hour() - 2 * HOUR  # before the parity data in the shared server
    batches = polls(t0, 0.1, devices=2, seed=7)
    sel = SeriesSelector.parse("pdu,device=pdu-1,active_power_w")
    try:
        for b in batches:
            h.write(b)
        local = h.query(sel, t0, t0 + HOUR)
        vm.flush()
        wait_for(lambda: len(h.remote.query(sel, t0, t0 + 360 * NS)) == len(local))
        pd.testing.assert_frame_equal(h.remote.query(sel, t0, t0 + 360 * NS), local)
        assert (tmp_path / "historian.duckdb").exists()
    finally:
        h.close()
