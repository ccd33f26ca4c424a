"""Chaos: 3 minutes at 25k points/s into VictoriaMetrics, the server down for 60 s, the writer SIGKILLed once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.vm_server import VMServer, require_vm

SERIES = 500
RATE = 25_000.0  # points per second, above the 20k
DURATION = 180.0


def wait_until(wall: float) -> None:
    """Sleep until a wall-clock instant of the scenario (the scenario is a schedule, not a speed)."""
    time.sleep(max(0.0, wall - time.time()))


def count_points(url: str, t_end_ns: int) -> int:
    """Distinct stored points of the chaos series, counted by the server."""
    query = f'sum(count_over_time({{__name__="chaos_value"}}[{int(DURATION + 600)}s]))'
    body = urllib.parse.urlencode({"query": query, "time": f"{t_end_ns / 1e9:.3f}", "nocache": "1"}).encode()
    with urllib.request.urlopen(url + "/api/v1/query", body, timeout=60) as resp:  # noqa: S310 - loopback
        result = json.load(resp)["data"]["result"]
    return int(float(result[0]["value"][1])) if result else 0


@pytest.mark.slow
@pytest.mark.needs_deb
@pytest.mark.timeout(600)
def test_outage_and_sigkill_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    """After a 60 s server outage and a SIGKILL of the writer, every point sent is stored exactly once."""
    require_vm()
    server = VMServer(tmp_path / "vmdata")
    server.start()
    start = time.time() + 2.0
    t0_ns = int(start * 1e9) // 1_000_000 * 1_000_000
    cmd = [
        sys.executable, "-m", "historian.chaos_writer", "--url", server.url, "--dir", str(tmp_path / "w"),
        "--series", str(SERIES), "--rate", str(RATE), "--duration", str(DURATION),
        "--t0-ns", str(t0_ns), "--start-wall", str(start),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    writer = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE)
    try:
        wait_until(start + 30)
        server.stop()  # really stopped: the process exits, the port closes
        wait_until(start + 60)
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        progress = int((tmp_path / "w" / "progress").read_text())
        assert 0 < progress < DURATION * RATE / SERIES
        writer = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE)
        wait_until(start + 90)
        server.start()  # same data path and port
        out, _ = writer.communicate(timeout=DURATION + 300)
        assert writer.returncode == 0
        figures = json.loads(out.decode().strip().splitlines()[-1])
        assert figures["resumed_at"] == progress
        assert figures["max_spool_points"] > 0
        assert figures["dropped"] == 0
        sent = figures["points"]
        assert sent / DURATION >= 20_000
        server.flush()
        t_end = t0_ns + int((DURATION + 60) * 1e9)
        deadline = time.monotonic() + 60
        stored = count_points(server.url, t_end)
        while stored < sent and time.monotonic() < deadline:
            time.sleep(0.5)  # waiting on state: the server makes flushed data searchable asynchronously
            stored = count_points(server.url, t_end)
        assert stored == sent
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
        server.stop()
