"""Chaos: 3 minutes at 25k points/s into VictoriaMetrics (no dedup), the server down for 60 s, the writer
SIGKILLed twice: once during the outage, once between delivering a spooled chunk and acknowledging it.

What is checked is what the server really holds, read back with ``/api/v1/export``: every (series, timestamp)
of the deterministic sequence is there with its exact value (lost = 0, wrong = 0), nothing else is there, and
duplicates (the same sample stored twice, which at-least-once replay allows after the second kill) are counted
and reported. The rate is what the writer really handed over within the schedule, from its own log.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from tests.vm_server import VMServer, require_vm

SERIES = 500
RATE = 25_000.0  # points per second, above the 20k
DURATION = 180.0
BATCH_POINTS = 20_000  # the remote's chunk size: a resent chunk duplicates at most this many points


def wait_until(wall: float) -> None:
    """Sleep until a wall-clock instant of the scenario (the scenario is a schedule, not a speed)."""
    time.sleep(max(0.0, wall - time.time()))


def wait_for_file(path: Path, timeout_s: float) -> None:
    """Wait on state: until the writer creates ``path``."""
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not appear within {timeout_s}s")
        time.sleep(0.05)


def exported(url: str, t0_ns: int, t_end_ns: int) -> dict[str, tuple[list[int], list[float]]]:
    """Every stored sample of the chaos series: series tag -> (timestamps ms, values), duplicates included."""
    query = urllib.parse.urlencode(
        {"match[]": '{__name__="chaos_value"}', "start": f"{t0_ns / 1e9 - 60:.3f}", "end": f"{t_end_ns / 1e9:.3f}"}
    )
    out: dict[str, tuple[list[int], list[float]]] = {}
    with urllib.request.urlopen(f"{url}/api/v1/export?{query}", timeout=120) as resp:  # noqa: S310 - loopback
        for line in resp:
            row = json.loads(line)
            ts, vals = out.setdefault(row["metric"]["s"], ([], []))
            ts.extend(row["timestamps"])
            vals.extend(float(v) for v in row["values"])
    return out


def audit(stored: dict[str, tuple[list[int], list[float]]], total: int, t0_ns: int, period_ns: int) -> dict[str, int]:
    """Compare the server's samples with the deterministic sequence: lost, wrong, unexpected and duplicates."""
    lost = wrong = unexpected = duplicates = samples = 0
    for i in range(SERIES):
        ts, vals = stored.get(f"{i:04d}", ([], []))
        samples += len(ts)
        seen: Counter[int] = Counter()
        for t_ms, v in zip(ts, vals, strict=True):
            k, rem = divmod(t_ms * 1_000_000 - t0_ns, period_ns)
            if rem or not 0 <= k < total:
                unexpected += 1
                continue
            seen[k] += 1
            if v != ((k * SERIES + i) % 4000) / 4.0:
                wrong += 1
        lost += total - len(seen)
        duplicates += sum(c - 1 for c in seen.values())
    return {"samples": samples, "lost": lost, "wrong": wrong, "unexpected": unexpected, "duplicates": duplicates}


@pytest.mark.slow
@pytest.mark.needs_deb
@pytest.mark.timeout(600)
def test_outage_and_two_sigkills_lose_nothing_and_duplicates_are_counted(
    tmp_path: Path, record_property: pytest.RecordProperty
) -> None:
    """After a 60 s outage and SIGKILLs inside the outage and between delivery and ack, every point sent is stored
    with its value (lost = 0); duplicates from at-least-once replay are counted and reported."""
    require_vm()
    server = VMServer(tmp_path / "vmdata", dedup=False)
    server.start()
    start = time.time() + 2.0
    t0_ns = int(start * 1e9) // 1_000_000 * 1_000_000
    wdir = tmp_path / "w"
    hold = tmp_path / "hold"
    cmd = [
        sys.executable, "-m", "historian.chaos_writer", "--url", server.url, "--dir", str(wdir),
        "--series", str(SERIES), "--rate", str(RATE), "--duration", str(DURATION),
        "--t0-ns", str(t0_ns), "--start-wall", str(start), "--hold-before-ack", str(hold),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    writer = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE)
    period_ns = int(SERIES / RATE * 1e9)
    total = int(DURATION * 1e9 // period_ns)
    try:
        wait_until(start + 30)
        server.stop()  # really stopped: the process exits, the port closes
        wait_until(start + 55)
        writer.send_signal(signal.SIGKILL)  # kill 1: inside the outage, with chunks in the spool
        writer.wait()
        progress = int((wdir / "progress").read_text())
        assert 0 < progress < total
        hold.touch()  # the next delivered spool chunk waits before its ack
        writer = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE)
        wait_until(start + 90)
        server.start()  # same data path and port: replay begins, the first chunk is delivered and held
        wait_for_file(hold.with_suffix(".held"), 60)
        writer.send_signal(signal.SIGKILL)  # kill 2: delivered but not acknowledged
        writer.wait()
        hold.unlink()
        writer = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE)
        out, _ = writer.communicate(timeout=DURATION + 300)
        assert writer.returncode == 0
        figures = json.loads(out.decode().strip().splitlines()[-1])
        assert figures["max_spool_points"] > 0
        assert figures["dropped"] == 0
        accepted = [line.split() for line in (wdir / "accepted").read_text().splitlines()]
        batches = {int(k) for k, _ in accepted}
        assert batches == set(range(total)), "every batch was handed to the historian"
        on_time = {int(k) for k, wall in accepted if float(wall) <= start + DURATION + 5.0}
        rate = len(on_time) * SERIES / DURATION
        assert rate >= 20_000, f"only {rate:.0f} points/s were really handed over within the schedule"
        server.flush()
        t_end = t0_ns + int((DURATION + 60) * 1e9)
        deadline = time.monotonic() + 60
        result = audit(exported(server.url, t0_ns, t_end), total, t0_ns, period_ns)
        while result["lost"] and time.monotonic() < deadline:
            time.sleep(1.0)  # waiting on state: the server makes flushed data searchable asynchronously
            result = audit(exported(server.url, t0_ns, t_end), total, t0_ns, period_ns)
        result["expected"] = total * SERIES
        result["handed_over_points_per_s"] = int(rate)
        for k, v in result.items():
            record_property(k, v)
        print(f"chaos figures: {json.dumps(result)}")  # the note the issue asks for: lost and duplicates
        assert result["lost"] == 0
        assert result["wrong"] == 0
        assert result["unexpected"] == 0
        assert result["samples"] == total * SERIES + result["duplicates"]
        assert 0 < result["duplicates"] <= 2 * BATCH_POINTS, "kill 2 resends the held chunk: at-least-once"
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
        server.stop()
