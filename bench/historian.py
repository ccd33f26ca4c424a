"""Historian benchmark: DuckDB ingest, the InfluxDB write path into VictoriaMetrics against a plain POST,
and the latency of an hourly-rollup query over a month of 1-minute data for 1,000 series.

    python bench/historian.py

Starts its own victoria-metrics on a free loopback port. The last line is one JSON object.
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import urllib3

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aidc.historian import HistorianConfig, SeriesSelector, open_historian
from aidc.historian.duckdb_store import DuckDBHistorian
from aidc.historian.forward import RemoteHistorian
from aidc.historian.lineproto import to_line_protocol
from aidc.model import Batch, SeriesKey
from tests.vm_server import VMServer

NS = 1_000_000_000
DEVICES, POINTS_PER_DEVICE = 2_000, 10  # one poll of a hall: 20,000 points per collector batch
FIELDS = ["active_power_w", "energy_wh", "voltage_v", "current_a", "pf", "inlet_c", "outlet_c", "flow_lpm",
          "supply_c", "return_c"]  # fmt: skip


def collector_ids() -> np.ndarray:
    """Series ids of one hall poll: DEVICES devices x POINTS_PER_DEVICE fields."""
    ids = [
        SeriesKey.of("pdu", f, {"site": "dc1", "hall": "h1", "rack": f"r{d // 20:03d}", "device": f"p{d}"}).id
        for d in range(DEVICES)
        for f in FIELDS[:POINTS_PER_DEVICE]
    ]  # fmt: skip
    return np.array(ids, dtype=object)


def collector_batches(n: int, t0_ns: int, period_ns: int = 5 * NS, seed: int = 0) -> list[Batch]:
    """``n`` polls as the collectors hand them over: one timestamp per poll, values on a 0.25 grid."""
    ids = collector_ids()
    rng = np.random.default_rng(seed)
    m = len(ids)
    return [
        Batch(
            ids, np.full(m, t0_ns + k * period_ns, dtype=np.int64), rng.integers(0, 4000, m) / 4, np.zeros(m, np.uint8)
        )
        for k in range(n)
    ]


def bench_duckdb_ingest(tmp: Path) -> float:
    """Points/s into a fresh DuckDB file from collector batches, rollups included."""
    batches = collector_batches(150, 1_767_225_600 * NS)
    h = DuckDBHistorian(tmp / "ingest.duckdb", raw_retention_days=1e6)
    h.write(batches[0])  # series registration, not part of the steady state
    t = time.perf_counter()
    for b in batches[1:]:
        h.write(b)
    h.flush()
    dt = time.perf_counter() - t
    points = sum(len(b) for b in batches[1:])
    h.close()
    rate = points / dt
    print(
        f"duckdb ingest: {points:,} points in {dt:.2f} s from {len(batches[0]):,}-point batches = {rate:,.0f} points/s"
    )
    return rate


def bench_influx_path(tmp: Path, vm: VMServer) -> tuple[float, float]:
    """The historian's influxdb-client path (line protocol built + posted) against a plain POST of the same bytes."""
    cfg = HistorianConfig.model_validate(
        {"backend": "victoriametrics", "keep_local": False,
         "remote": {"url": vm.url, "gzip": False, "batch_points": 20_000}, "spool": {"dir": str(tmp / "spool")}}
    )  # fmt: skip
    h = open_historian(cfg, tmp)
    assert isinstance(h, RemoteHistorian)
    http = urllib3.PoolManager()
    t_now = (time.time_ns() - 6 * 3600 * NS) // NS * NS
    n = 60
    runs = {"influx": [], "raw": []}  # type: dict[str, list[float]]
    for rnd in range(3):
        b_influx = collector_batches(n, t_now + rnd * 2 * n * 5 * NS, seed=rnd)
        b_raw = collector_batches(n, t_now + (rnd * 2 + 1) * n * 5 * NS, seed=rnd)
        payloads = [to_line_protocol(b).data for b in b_raw]
        t = time.perf_counter()
        for b in b_influx:
            h.write(b)
        runs["influx"].append(n * len(b_influx[0]) / (time.perf_counter() - t))
        t = time.perf_counter()
        for p in payloads:
            r = http.request("POST", vm.url + "/api/v2/write?precision=ns", body=p)
            assert r.status == 204, r.status
        runs["raw"].append(n * len(b_raw[0]) / (time.perf_counter() - t))
    h.close()
    influx, raw = statistics.median(runs["influx"]), statistics.median(runs["raw"])
    print(f"influxdb-client path into VictoriaMetrics: {influx:,.0f} points/s (builds line protocol, no gzip)")
    print(f"plain HTTP POST of prebuilt line protocol:   {raw:,.0f} points/s (the ceiling)")
    print(f"ratio: {influx / raw:.2f} (goal >= 0.7)")
    return influx, raw


def bench_month_query(tmp: Path) -> float:
    """Seconds to read the hourly rollup of one series for the last day, in a month of 1-min data x 1,000 series."""
    ids = np.array(
        [SeriesKey.of("rack", "power_w", {"site": "dc1", "rack": f"r{i:04d}"}).id for i in range(1000)], dtype=object
    )
    t0 = 1_767_225_600 * NS
    minutes = 30 * 1440
    h = DuckDBHistorian(tmp / "month.duckdb", raw_retention_days=1e6, rollup_every_s=1e9)
    rng = np.random.default_rng(1)
    t = time.perf_counter()
    for day in range(30):
        ts = t0 + (day * 1440 + np.arange(1440, dtype=np.int64)) * 60 * NS
        m = 1440 * len(ids)
        h.write(
            Batch(np.repeat(ids, 1440), np.tile(ts, len(ids)), rng.integers(0, 400000, m) / 4, np.zeros(m, np.uint8))
        )
    h.flush()
    load_s = time.perf_counter() - t
    print(f"month of 1-min data for 1,000 series: {minutes * 1000:,} points loaded and rolled up in {load_s:.1f} s")
    sel = SeriesSelector.parse("rack,rack=r0042,power_w")
    end = t0 + minutes * 60 * NS
    h.query(sel, end - 86400 * NS, end, "1h", "mean")  # warm the cursor
    lat = []
    for _ in range(7):
        t = time.perf_counter()
        df = h.query(sel, end - 86400 * NS, end, "1h", "mean")
        lat.append(time.perf_counter() - t)
    assert len(df) == 24
    t = time.perf_counter()
    full = h.query(sel, t0, end, "1h", "mean")
    full_s = time.perf_counter() - t
    h.close()
    med = statistics.median(lat)
    print(f"hourly rollup, one series, last day: {med * 1000:.1f} ms (median of 7)")
    print(f"hourly rollup, one series, whole month: {full_s * 1000:.1f} ms ({len(full)} rows)")
    return med


def main() -> int:
    """Run the three measurements and print the JSON summary last."""
    tmp = Path(tempfile.mkdtemp(prefix="aidc-bench-"))
    vm = VMServer(tmp / "vmdata")
    try:
        duck = bench_duckdb_ingest(tmp)
        vm.start()
        influx, raw = bench_influx_path(tmp, vm)
        vm.stop()
        month = bench_month_query(tmp)
    finally:
        vm.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        json.dumps(
            {
                "duckdb_points_per_s": round(duck),
                "influx_points_per_s": round(influx),
                "raw_post_points_per_s": round(raw),
                "influx_to_raw_ratio": round(influx / raw, 3),
                "month_hourly_rollup_s": round(month, 5),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
