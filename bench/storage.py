"""Historian benchmark: DuckDB ingest, the InfluxDB write path into VictoriaMetrics against a plain POST,
and the latency of an hourly-rollup query over a month of 1-minute data for 1,000 series.

    python bench/storage.py

Starts its own victoria-metrics on a free loopback port. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import gzip as gzip_mod
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

from aidc.model import Batch, SeriesKey
from historian import HistorianConfig, SeriesSelector, open_historian
from historian.duckdb_store import DuckDBHistorian
from historian.forward import RemoteHistorian
from historian.lineproto import LineEncoder, to_line_protocol
from tests.vm_server import VMServer

NS = 1_000_000_000
DEVICES, POINTS_PER_DEVICE = 2_000, 10  # one poll of a hall: 20,000 points per collector batch
BATCH_POINTS = 20_000  # points per POST on both sides of the influx comparison
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


def bench_influx_path(tmp: Path, vm: VMServer, gzip: bool = False) -> tuple[float, float]:
    """The historian's influxdb-client path against a plain POST of the same line-protocol bytes.

    Ours is timed end to end from the collector ``Batch`` (line protocol built, chunked, posted through
    influxdb-client, forwarder bookkeeping); the ceiling posts the same bytes, prebuilt (and pre-gzipped when
    gzip is on), with a bare urllib3 pool. Same server, same batches, one request per 20,000-point batch on
    both sides; the two alternate batch by batch, taking turns going first, so server load drifts evenly.
    """
    cfg = HistorianConfig.model_validate(
        {"backend": "victoriametrics", "keep_local": False,
         "remote": {"url": vm.url, "gzip": gzip, "batch_points": BATCH_POINTS}, "spool": {"dir": str(tmp / "spool")}}
    )  # fmt: skip
    h = open_historian(cfg, tmp)
    assert isinstance(h, RemoteHistorian)
    http = urllib3.PoolManager()
    headers = {"Content-Type": "text/plain; charset=utf-8"} | ({"Content-Encoding": "gzip"} if gzip else {})
    url = vm.url + "/api/v2/write?precision=ns"
    t_now = (time.time_ns() - 6 * 3600 * NS) // NS * NS
    n, rounds = 60, 5
    warm = collector_batches(1, t_now - 60 * NS)[0]
    h.write(warm)  # series into the encoder's cache and the server's index: not the steady state
    enc = LineEncoder()
    assert enc.encode(warm).data == enc.encode(warm).data == to_line_protocol(warm).data  # cached == fresh
    runs = {"influx": [], "raw": []}  # type: dict[str, list[float]]
    for rnd in range(rounds):
        batches = collector_batches(n, t_now + rnd * n * 5 * NS, seed=rnd)
        payloads = [to_line_protocol(b).data for b in batches]  # the exact bytes our path posts
        bodies = [zlib_gzip(p) for p in payloads] if gzip else payloads
        spent = {"influx": 0.0, "raw": 0.0}
        for k, (b, body) in enumerate(zip(batches, bodies, strict=True)):
            for side in ("influx", "raw") if k % 2 == 0 else ("raw", "influx"):
                t = time.perf_counter()
                if side == "influx":
                    h.write(b)
                else:
                    r = http.request("POST", url, body=body, headers=headers)
                    assert r.status == 204, r.status
                spent[side] += time.perf_counter() - t
        points = sum(len(b) for b in batches)
        for side in spent:
            runs[side].append(points / spent[side])
    assert h.spool.depth_points == 0
    assert h.rejected_points == 0
    h.close()
    influx, raw = statistics.median(runs["influx"]), statistics.median(runs["raw"])
    ratios = ", ".join(f"{i / r:.2f}" for i, r in zip(runs["influx"], runs["raw"], strict=True))
    setup = f"gzip {'on' if gzip else 'off'} on both sides, {BATCH_POINTS:,} points per POST, same bytes, same server"
    print(f"influxdb-client path into VictoriaMetrics: {influx:,.0f} points/s (from the Batch: builds line protocol)")
    print(f"plain HTTP POST of prebuilt line protocol:   {raw:,.0f} points/s (the ceiling)")
    print(f"  {setup}; medians of {rounds} rounds of {n} batches, per-round ratios {ratios}")
    print(f"ratio: {influx / raw:.2f} (goal >= 0.7)")
    return influx, raw


def zlib_gzip(data: bytes) -> bytes:
    """Gzip as influxdb-client does it (level 9 is Python's default for gzip.compress)."""
    return gzip_mod.compress(data)


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
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gzip", action="store_true", help="gzip the influx comparison's bodies (both sides)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="aidc-bench-"))
    vm = VMServer(tmp / "vmdata")
    try:
        duck = bench_duckdb_ingest(tmp)
        vm.start()
        influx, raw = bench_influx_path(tmp, vm, args.gzip)
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
                "influx_gzip": args.gzip,
                "influx_batch_points": BATCH_POINTS,
                "month_hourly_rollup_s": round(month, 5),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
