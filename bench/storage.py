"""Historian benchmark: bytes per point of the DuckDB historian against VictoriaMetrics on the same data, query
latency on both, DuckDB ingest, and the InfluxDB write path into VictoriaMetrics against a plain POST.

    python bench/storage.py                 # 12 h of a 32-rack facility at 10 s, a month of 1,000 racks' meters
    python bench/storage.py --racks 8 --hours 2 --month-days 3     # a quick run

The data shape (``FacilityShape``): per rack two PDUs (active power, an energy counter, voltage, current, power
factor), six inlet/outlet temperatures and four 8-GPU servers (per-GPU power and temperature): 80 series a rack, plus
five facility series. Values are AR(1) noise around a load that changes every 15 minutes, rounded to each register's
resolution (1 W, 0.1 V, 0.01 A, 0.01, 0.1 °C, 1 °C for GPUs, 1 Wh counters); about 3 % of the devices are out once
for 10-60 minutes (their series have a gap). The same batches go to the DuckDB historian through its write path
(rollups, compaction and retention at their defaults, maintenance every minute of data time) and, as InfluxDB line
protocol, to VictoriaMetrics. Sizes: VictoriaMetrics' data and indexdb folders after ``/internal/force_flush`` and
``/internal/force_merge``; DuckDB's file, WAL and Parquet parts after a CHECKPOINT.

Starts its own victoria-metrics on a free loopback port. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import gzip as gzip_mod
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import urllib3

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aidc.model import Batch, SeriesKey
from historian import HistorianConfig, SeriesSelector, open_historian
from historian.duckdb_store import DuckDBHistorian
from historian.forward import RemoteHistorian
from historian.lineproto import LineEncoder, to_line_protocol
from historian.victoria import VictoriaReader
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


def bench_duckdb_ingest(tmp: Path) -> tuple[float, float, float]:
    """Points/s into a fresh DuckDB file from collector batches, rollups included (wall clock, and per second of this
    process' CPU, all threads: the figure a loaded machine does not move); then points/s of compacting those rows to
    a Parquet part (maintenance the writer thread runs once ``hot_max_rows`` are hot, timed apart)."""
    batches = collector_batches(150, 1_767_225_600 * NS)
    h = DuckDBHistorian(tmp / "ingest.duckdb", raw_retention_days=1e6, hot_max_rows=2**62)
    h.write(batches[0])  # series registration, not part of the steady state
    t, cpu = time.perf_counter(), time.process_time()
    for b in batches[1:]:
        h.write(b)
    h.flush()
    dt, cpu_s = time.perf_counter() - t, time.process_time() - cpu
    points = sum(len(b) for b in batches[1:])
    t = time.perf_counter()
    moved = h.compact()
    compact_s = time.perf_counter() - t
    h.close()
    rate = points / dt
    print(
        f"duckdb ingest: {points:,} points in {dt:.2f} s from {len(batches[0]):,}-point batches = {rate:,.0f} points/s"
        f" ({points / cpu_s:,.0f} per CPU second; a commit, with its WAL fsync, per batch)"
    )
    print(f"  compaction of {moved:,} hot rows to a sorted Parquet part: {moved / compact_s:,.0f} points/s")
    return rate, points / cpu_s, moved / compact_s


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


DAY_S = 86_400
SERIES_PER_RACK = 80


@dataclass(frozen=True)
class FacilityShape:
    """A facility's telemetry, deterministic from ``seed`` (see the module docstring)."""

    racks: int = 32
    hours: float = 24.0
    period_s: float = 10.0
    t0_ns: int = 0
    site: str = "dc1"
    seed: int = 7

    def series(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(series ids, kind of each, device of each)."""
        ids: list[str] = []
        kinds: list[str] = []
        devs: list[str] = []

        def add(measurement: str, field: str, tags: dict[str, str], kind: str, dev: str) -> None:
            ids.append(SeriesKey.of(measurement, field, tags | {"device": dev}).id)
            kinds.append(kind)
            devs.append(dev)

        for r in range(self.racks):
            tags = {"site": self.site, "hall": "h1", "rack": f"r{r:04d}"}
            for p in ("a", "b"):
                for f, k in (("active_power_w", "pw"), ("energy_wh", "en"), ("voltage_v", "v"), ("current_a", "i"),
                             ("pf", "pf")):  # fmt: skip
                    add("pdu", f, tags, k, f"r{r:04d}-pdu-{p}")
            for pos in ("top", "mid", "bottom"):
                for f, k in (("inlet_c", "ti"), ("outlet_c", "to")):
                    add("rack_env", f, tags | {"pos": pos}, k, f"r{r:04d}-env")
            for srv in range(4):
                for g in range(8):
                    for f, k in (("power_w", "gp"), ("temp_c", "gt")):
                        add("gpu", f, tags | {"gpu": str(g)}, k, f"r{r:04d}-s{srv}")
        for f, k in (("facility_power_w", "fp"), ("facility_energy_wh", "fe"), ("cooling_power_w", "pw"),
                     ("supply_c", "ti"), ("return_c", "to")):  # fmt: skip
            add("facility", f, {"site": self.site}, k, "facility")
        return np.array(ids, dtype=object), np.array(kinds), np.array(devs)

    @property
    def ticks(self) -> int:
        """Polls in the data set."""
        return int(self.hours * 3600 / self.period_s)

    def batches(self, ticks_per_batch: int = 6, only: tuple[str, ...] = ()) -> Iterator[Batch]:
        """The polls, ``ticks_per_batch`` to a batch, oldest first; only series of the kinds in ``only`` if given."""
        ids, kinds, devs = self.series()
        keep = np.isin(kinds, list(only)) if only else np.ones(len(ids), dtype=bool)
        ids, kinds, devs = ids[keep], kinds[keep], devs[keep]
        n = len(ids)
        rng = np.random.default_rng(self.seed)
        udev, dev_of = np.unique(devs, return_inverse=True)
        out_at = np.full(len(udev), -1)
        out_len = np.zeros(len(udev), dtype=np.int64)
        down = rng.choice(len(udev), max(1, len(udev) // 33), replace=False)
        out_at[down] = rng.integers(0, max(1, self.ticks), len(down))
        out_len[down] = (rng.integers(600, 3600, len(down)) / self.period_s).astype(np.int64)
        base = {"pw": 9000.0, "fp": 1.3e5 * self.racks / 10, "v": 230.0, "i": 40.0, "pf": 0.97, "ti": 24.0,
                "to": 36.0, "gp": 550.0, "gt": 62.0}  # fmt: skip
        resolution = {"pw": 1.0, "fp": 1.0, "v": 0.1, "i": 0.01, "pf": 0.01, "ti": 0.1, "to": 0.1, "gp": 1.0,
                      "gt": 1.0, "en": 1.0, "fe": 1.0}  # fmt: skip
        sigma = {"pw": 60, "fp": 300, "v": 0.6, "i": 0.3, "pf": 0.004, "ti": 0.15, "to": 0.3, "gp": 25, "gt": 1.2}
        level = np.array([base.get(k, 0.0) for k in kinds]) * rng.uniform(0.9, 1.1, n)
        step = np.array([resolution[k] for k in kinds])
        sig = np.array([sigma.get(k, 0.0) for k in kinds])
        steady = np.isin(kinds, ["v", "pf", "ti"])  # follow no load
        it_meter, fac_meter = kinds == "en", kinds == "fe"
        energy = np.where(it_meter | fac_meter, rng.uniform(1e6, 5e7, n), 0.0)
        noise = np.zeros(n)
        load, hours_per_tick = 1.0, self.period_s / 3600
        buf: list[tuple[np.ndarray, int, np.ndarray]] = []
        for t in range(self.ticks):
            if t % max(1, int(900 / self.period_s)) == 0:
                load = rng.uniform(0.6, 1.0)
            noise = 0.9 * noise + rng.normal(0.0, 1.0, n) * sig * 0.45
            x = np.where(steady, level + noise, level * (0.5 + 0.5 * load) + noise)
            # Counters integrate the power they meter: a PDU's ~9 kW, the facility's IT load x ~1.3.
            energy += np.where(it_meter, 9000 * load, 0.0) * hours_per_tick * rng.uniform(0.95, 1.05, n)
            energy += np.where(fac_meter, 9000 * 2 * self.racks * 1.3 * load * hours_per_tick, 0.0)
            x = np.where(it_meter | fac_meter, energy, x)
            up = ~((out_at[dev_of] >= 0) & (t >= out_at[dev_of]) & (t < out_at[dev_of] + out_len[dev_of]))
            buf.append((np.flatnonzero(up), self.t0_ns + int(t * self.period_s * NS), np.round(x / step) * step))
            if len(buf) == ticks_per_batch or t == self.ticks - 1:
                sel = np.concatenate([b[0] for b in buf])
                yield Batch(
                    ids[sel],
                    np.concatenate([np.full(len(b[0]), b[1], dtype=np.int64) for b in buf]),
                    np.concatenate([b[2][b[0]] for b in buf]),
                    np.zeros(len(sel), np.uint8),
                )
                buf = []


class DataClock:
    """The historian's clock during a replay: the newest data written, so rollups close every minute of data."""

    def __init__(self, t_ns: int) -> None:
        self.t = t_ns / NS

    def __call__(self) -> float:
        return self.t


def vm_post(http: urllib3.PoolManager, vm: VMServer, enc: LineEncoder, batch: Batch) -> None:
    """Write one batch to VictoriaMetrics as line protocol (the bytes the historian's remote path posts)."""
    for body, _n in enc.encode(batch).chunks(BATCH_POINTS):
        r = http.request("POST", vm.url + "/api/v2/write?precision=ns", body=body)
        assert r.status == 204, (r.status, r.data[:200])


def vm_settle(vm: VMServer, partitions: list[str]) -> int:
    """Force a flush and a merge of every partition, wait until the folders stop changing; bytes of data + indexdb."""
    vm.flush()
    for prefix in partitions:
        with urllib.request.urlopen(f"{vm.url}/internal/force_merge?partition_prefix={prefix}", timeout=600):  # noqa: S310
            pass
    last, stable = -1, 0
    while stable < 3:  # the merge runs in the background
        time.sleep(1.0)
        size = sum(dir_bytes(vm.data_dir / d) for d in ("data", "indexdb"))
        stable = stable + 1 if size == last else 0
        last = size
    return last


def dir_bytes(path: Path) -> int:
    """Bytes of the regular files under ``path``."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def vm_count(reader: VictoriaReader, end_ns: int, span_s: float) -> int:
    """Samples VictoriaMetrics holds in the ``span_s`` before ``end_ns``."""
    q = f'sum(count_over_time({{__name__!=""}}[{int(span_s)}s]))'
    res = reader._prom("/api/v1/query", {"query": q, "time": f"{(end_ns // NS) - 0.001:.3f}"})
    return int(float(res[0]["value"][1])) if res else 0


def timed(fn: Callable[[], object], repeat: int = 3) -> tuple[float, object]:
    """Median seconds of ``repeat`` calls after one warm-up call, and the last result."""
    out = fn()
    lat = []
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        lat.append(time.perf_counter() - t)
    return statistics.median(lat), out


def frame_rows(out: object) -> int:
    """Rows of a query's frame, or of a tuple of frames."""
    frames = out if isinstance(out, tuple) else (out,)
    return sum(len(f) for f in frames if isinstance(f, pd.DataFrame))


def bench_facility(tmp: Path, vm: VMServer, shape: FacilityShape) -> dict[str, float]:
    """Bytes per point on both stores for the same facility data, and the raw / Overview queries timed on both."""
    clock = DataClock(shape.t0_ns)
    h = DuckDBHistorian(tmp / "facility.duckdb", clock=clock)  # default tiers and compaction
    http, enc, reader = urllib3.PoolManager(), LineEncoder(), VictoriaReader(vm.url, timeout_s=600)
    n = 0
    duck_s = vm_s = 0.0
    for b in shape.batches():
        clock.t = int(b.ts_ns.max()) / NS
        t = time.perf_counter()
        h.write(b)
        duck_s += time.perf_counter() - t
        t = time.perf_counter()
        vm_post(http, vm, enc, b)
        vm_s += time.perf_counter() - t
        n += len(b)
    h.flush()
    h._con.execute("CHECKPOINT")
    h.release_retired()  # merged parts wait 30 s for readers before they are deleted; none is reading
    duck_bytes = h.disk_bytes()
    parts = h._parts.bytes() if h._parts is not None else 0
    end = shape.t0_ns + int(shape.ticks * shape.period_s * NS)
    days = sorted({time.strftime("%Y_%m", time.gmtime(d)) for d in (shape.t0_ns // NS, end // NS)})
    vm_bytes = vm_settle(vm, days)
    held = vm_count(reader, end, shape.hours * 3600 + 60)
    assert h.row_count() == n, (h.row_count(), n)
    assert held == n, f"VictoriaMetrics holds {held:,} samples, {n:,} were written"
    print(f"facility: {shape.racks} racks x {SERIES_PER_RACK} series + 5 facility series, {shape.hours:g} h at "
          f"{shape.period_s:g} s: {n:,} points written to both (DuckDB {n / duck_s:,.0f} points/s with rollups "
          f"and compaction, VictoriaMetrics {n / vm_s:,.0f} points/s over HTTP)")  # fmt: skip
    print(
        f"  DuckDB: {duck_bytes:,} bytes = {duck_bytes / n:.3f} bytes/point ({parts:,} in Parquet parts, "
        f"{duck_bytes - parts:,} in the DuckDB file and WAL: hot rows, hourly rollups, series, free blocks)"
    )
    print(f"  VictoriaMetrics: {vm_bytes:,} bytes = {vm_bytes / n:.3f} bytes/point (data + indexdb after flush, merge)")
    # Queries, the same call on both: raw day of one rack, and the Overview's (latest values, 24 h power trend).
    rack = SeriesSelector.parse("*,rack=r0001,*")
    power = SeriesSelector.parse("pdu,*,active_power_w")
    fac = SeriesSelector.parse("facility,*,*")
    lo = end - 86_400 * NS
    q: dict[str, float] = {}
    for name, duck_fn, vm_fn in [
        ("rack_day_raw", lambda: h.query(rack, lo, end), lambda: reader.fetch(rack, lo, end)),
        ("overview_latest", lambda: (h.latest(power), h.latest(fac)),
         lambda: (reader.fetch_latest(power), reader.fetch_latest(fac))),
        ("overview_trend", lambda: (h.query(power, lo, end, "5m", "mean"), h.query(fac, lo, end, "5m", "mean")),
         lambda: (reader.fetch(power, lo, end, "5m", "mean"), reader.fetch(fac, lo, end, "5m", "mean"))),
    ]:  # fmt: skip
        q[f"{name}_s"], d_out = timed(duck_fn)
        q[f"victoria_{name}_s"], v_out = timed(vm_fn)
        rows_d, rows_v = frame_rows(d_out), frame_rows(v_out)
        print(f"  {name}: DuckDB {q[f'{name}_s'] * 1000:.1f} ms ({rows_d:,} rows), VictoriaMetrics "
              f"{q[f'victoria_{name}_s'] * 1000:.1f} ms ({rows_v:,} rows)")  # fmt: skip
    h.close()
    return {"points": n, "duckdb_bytes": duck_bytes, "parts_bytes": parts, "victoria_bytes": vm_bytes, **q}


def rollup_row_bytes(tmp: Path, shape: FacilityShape) -> float:
    """Bytes per 1-minute rollup row in a Parquet part: the facility file reopened with raw retention expired."""
    src = tmp / "facility.duckdb"
    end = shape.t0_ns + int(shape.ticks * shape.period_s * NS)
    h = DuckDBHistorian(src, raw_retention_days=1e-9, clock=lambda: end / NS)
    h.flush()
    con = h._con
    rows, files = con.execute("SELECT sum(rows), list(file) FROM parts WHERE tbl = 'rollup_1m'").fetchone()  # type: ignore[misc]
    size = sum((Path(str(src) + ".parts") / f).stat().st_size for f in files or [])
    h.close()
    return size / rows if rows else float("nan")


def bench_month_pue(tmp: Path, vm: VMServer, racks: int, days: int, period_s: float, end_ns: int) -> dict[str, float]:
    """A month of hourly energy-based PUE for a ``racks``-rack site, the same query on both stores.

    Data: every PDU's energy counter (two a rack) and the facility's, at ``period_s``. The query: each meter's last
    reading per hour; PUE per hour = facility energy / IT energy of that hour (differences of the hourly sums).
    """
    shape = FacilityShape(racks, days * 24, period_s, end_ns - days * DAY_S * NS, site="dc2")
    _ids, kinds, _ = shape.series()
    keep = np.isin(kinds, ["en", "fe"])
    clock = DataClock(shape.t0_ns)
    h = DuckDBHistorian(tmp / "month.duckdb", clock=clock)
    http, enc, reader = urllib3.PoolManager(), LineEncoder(), VictoriaReader(vm.url, timeout_s=600)
    n = 0
    t = time.perf_counter()
    for b in shape.batches(ticks_per_batch=max(1, int(3600 / period_s)), only=("en", "fe")):
        bb = b
        clock.t = int(bb.ts_ns.max()) / NS
        h.write(bb)
        vm_post(http, vm, enc, bb)
        n += len(bb)
    h.flush()
    vm.flush()
    print(f"month: {n:,} meter readings ({int(keep.sum()):,} meters, {days} days at {period_s:g} s) written to both "
          f"in {time.perf_counter() - t:.0f} s")  # fmt: skip
    it = SeriesSelector.parse("pdu,*,energy_wh")
    fac = SeriesSelector.parse("facility,*,facility_energy_wh")
    lo, hi = shape.t0_ns, end_ns

    def pue(read: Callable[..., pd.DataFrame]) -> pd.Series:
        it_h = read(it, lo, hi, "1h", "last").groupby("ts")["value"].sum()
        fac_h = read(fac, lo, hi, "1h", "last").groupby("ts")["value"].sum()
        return (fac_h.diff() / it_h.diff()).dropna()

    duck_s, d = timed(lambda: pue(h.query), repeat=3)
    vm_s, v = timed(lambda: pue(reader.fetch), repeat=3)
    assert isinstance(d, pd.Series)
    assert isinstance(v, pd.Series)
    assert len(d), "no hourly PUE computed: the meters did not count"
    assert len(v), "no hourly PUE from VictoriaMetrics"
    print(f"  hourly PUE over {days} days: DuckDB {duck_s:.3f} s ({len(d)} hours, median {d.median():.3f}), "
          f"VictoriaMetrics {vm_s:.3f} s ({len(v)} hours, median {v.median():.3f})")  # fmt: skip
    h.close()
    return {"duckdb_s": duck_s, "victoria_s": vm_s, "hours": float(len(d))}


def extrapolate(bytes_per_point: float, rollup_row: float, racks: int, period_s: float, days: float) -> float:
    """GB on disk for ``racks`` racks after ``days`` under the default tiers (raw 30 d, 1-min and hourly rollups
    for ever): raw points at the measured compacted bytes/point, rollup rows at the measured bytes per row."""
    cfg = HistorianConfig()
    series = racks * SERIES_PER_RACK + 5
    raw = series * min(days, cfg.raw_retention_days) * DAY_S / period_s * bytes_per_point
    one_min_days = max(0.0, min(days, cfg.rollup_1m_retention_days or days) - cfg.raw_retention_days)
    minutes = series * one_min_days * 1440 * rollup_row
    hours = series * days * 24 * rollup_row
    return (raw + minutes + hours) / 1e9


def main() -> int:
    """Run the measurements and print the JSON summary last."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--racks", type=int, default=32, help="racks of the facility data set (80 series a rack)")
    ap.add_argument("--hours", type=float, default=12.0, help="hours of facility data (24: a whole day)")
    ap.add_argument("--period-s", type=float, default=10.0, help="poll period of the facility data")
    ap.add_argument("--month-racks", type=int, default=1000, help="racks of the PUE query's site")
    ap.add_argument("--month-days", type=int, default=30, help="days of meter data for the PUE query")
    ap.add_argument("--month-period-s", type=float, default=600.0, help="meter period of the PUE query's data")
    ap.add_argument("--gzip", action="store_true", help="gzip the influx comparison's bodies (both sides)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="aidc-bench-"))
    end = time.time_ns() // (DAY_S * NS) * DAY_S * NS  # today, 00:00 UTC: "latest" queries look back from now
    shape = FacilityShape(args.racks, args.hours, args.period_s, end - int(args.hours * 3600) * NS)
    vm = VMServer(tmp / "vmdata")
    try:
        duck, duck_cpu, compact_rate = bench_duckdb_ingest(tmp)
        vm.start()
        fac = bench_facility(tmp, vm, shape)
        row = rollup_row_bytes(tmp, shape)
        pue = bench_month_pue(tmp, vm, args.month_racks, args.month_days, args.month_period_s, end)
        vm.stop()
        shutil.rmtree(tmp / "vmdata", ignore_errors=True)
        (tmp / "vmdata").mkdir()
        vm.start()
        influx, raw = bench_influx_path(tmp, vm, args.gzip)
        vm.stop()
        month = bench_month_query(tmp)
    finally:
        vm.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    n = fac["points"]
    duck_bpp, vm_bpp = fac["duckdb_bytes"] / n, fac["victoria_bytes"] / n
    # The parts are what grows with the data (the DuckDB file holds at most hot_max_rows raw rows, plus hourly
    # rollups counted separately below): the extrapolation uses their bytes per point.
    part_bpp = fac["parts_bytes"] / n
    days_1m = HistorianConfig().rollup_1m_retention_days
    tier_1m = "for ever" if days_1m is None else f"to {days_1m:g} d"
    month_gb = extrapolate(part_bpp, row, 1000, args.period_s, 30)
    year_gb = extrapolate(part_bpp, row, 1000, args.period_s, 365)
    print(f"1,000 racks at {args.period_s:g} s under the default tiers (raw 30 d at {part_bpp:.3f} bytes/point in "
          f"parts, 1-min rollups {tier_1m} and hourly ones for ever at {row:.1f} bytes/row): {month_gb:.1f} GB for a "
          f"month, {year_gb:.1f} GB for a year")  # fmt: skip
    print(
        json.dumps(
            {
                "data_shape": f"{args.racks} racks, {SERIES_PER_RACK}+5 series, {args.hours:g} h, {args.period_s:g} s",
                "points": n,
                "duckdb_bytes_per_point": round(duck_bpp, 3),
                "victoria_bytes_per_point": round(vm_bpp, 3),
                "duckdb_to_victoria": round(duck_bpp / vm_bpp, 2),
                "duckdb_parts_bytes_per_point": round(part_bpp, 3),
                "rollup_1m_bytes_per_row": round(row, 2),
                "month_1000_racks_gb": round(month_gb, 1),
                "year_1000_racks_gb": round(year_gb, 1),
                "month_hourly_pue_1000_racks_s": round(pue["duckdb_s"], 4),
                "victoria_month_hourly_pue_1000_racks_s": round(pue["victoria_s"], 4),
                "month_pue_racks": args.month_racks,
                **{k: round(v, 4) for k, v in fac.items() if k.endswith("_s")},
                "duckdb_points_per_s": round(duck),
                "duckdb_points_per_cpu_s": round(duck_cpu),
                "load_average_1m": round(os.getloadavg()[0], 2),
                "duckdb_compact_points_per_s": round(compact_rate),
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
