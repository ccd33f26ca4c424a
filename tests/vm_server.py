"""Historian test support: a real VictoriaMetrics (Debian's ``victoria-metrics``) on a free loopback port,
and deterministic telemetry batches.

It accepts InfluxDB line protocol at ``/api/v2/write``, so the influxdb-client write path is exercised
against a real server. Deduplication at 1 ms makes re-sent points overwrite themselves, as InfluxDB does.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from aidc.model import Batch, SeriesKey

NS = 1_000_000_000
HOUR = 3600 * NS

VM_BINARY = shutil.which("victoria-metrics") or "/usr/bin/victoria-metrics"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def require_vm() -> None:
    """Skip (or fail under CI=true) when the Debian package is not installed."""
    if not os.path.exists(VM_BINARY):
        msg = "needs Debian package victoria-metrics"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)


class VMServer:
    """One victoria-metrics process that can be stopped and started again on the same port and data."""

    def __init__(self, data_dir: Path, port: int | None = None, *, dedup: bool = True) -> None:
        self.data_dir = data_dir
        self.dedup = dedup  # False: keep every sample, so a test can count duplicates
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 30.0) -> None:
        """Start the server and wait until it answers ``/health``."""
        log = open(self.data_dir.parent / f"vm-{self.port}.log", "ab")
        self.proc = subprocess.Popen(
            [
                VM_BINARY,
                f"-storageDataPath={self.data_dir}",
                f"-httpListenAddr=127.0.0.1:{self.port}",
                "-retentionPeriod=100y",
                *(["-dedup.minScrapeInterval=1ms"] if self.dedup else []),
                "-search.latencyOffset=0s",
                "-loggerLevel=ERROR",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self._log = log
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"victoria-metrics exited with {self.proc.returncode}; see {log.name}")
            if self.healthy():
                return
            time.sleep(0.05)
        raise RuntimeError(f"victoria-metrics on port {self.port} not healthy after {timeout_s} s")

    def healthy(self) -> bool:
        """True when ``/health`` answers OK."""
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=1) as resp:  # noqa: S310 - loopback http
                return bool(resp.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        """Stop gracefully (VictoriaMetrics flushes what it accepted) and wait for the exit."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if getattr(self, "_log", None):
            self._log.close()

    def flush(self) -> None:
        """Make everything ingested so far searchable (``/internal/force_flush``)."""
        with urllib.request.urlopen(self.url + "/internal/force_flush", timeout=10):  # noqa: S310 - loopback
            pass


def vm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VMServer]:
    """Fixture body: a started server with its own data path, stopped afterwards."""
    require_vm()
    base = tmp_path_factory.mktemp("vm")
    server = VMServer(base / "data")
    server.start()
    try:
        yield server
    finally:
        server.stop()


vm = pytest.fixture(scope="module")(vm_server)


# ----------------------------------------------------------------- test data


def series_ids(devices: int = 4) -> np.ndarray:
    """Series ids for a few CDUs and PDUs."""
    ids = [SeriesKey.of("cdu", "flow_lpm", {"site": "dc1", "device": f"cdu-{i}"}).id for i in range(devices)]
    ids += [SeriesKey.of("pdu", "active_power_w", {"site": "dc1", "device": f"pdu-{i}"}).id for i in range(devices)]
    return np.array(ids, dtype=object)


def polls(
    t0_ns: int, hours: float, period_s: int = 5, devices: int = 4, seed: int = 1, per_batch: int = 60
) -> list[Batch]:
    """Batches of polls every ``period_s`` from ``t0_ns``; ~5 % bad samples, half of them without a value."""
    ids = series_ids(devices)
    rng = np.random.default_rng(seed)
    n = int(hours * 3600 / period_s)
    out = []
    for k in range(0, n, per_batch):
        steps = np.arange(k, min(k + per_batch, n))
        ts = t0_ns + np.repeat(steps * period_s * NS + 7_000_000, len(ids))
        m = len(ts)
        vals = rng.integers(0, 4000, m) / 4
        q = (rng.random(m) < 0.05).astype(np.uint8) * 2
        vals[(q == 2) & (rng.random(m) < 0.5)] = np.nan
        out.append(Batch(np.tile(ids, len(steps)), ts.astype(np.int64), vals, q))
    return out
