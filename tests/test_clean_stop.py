"""Clean stop: SIGTERM stops `aidc demo` and `aidc run` as Ctrl-C does (simulator child gone, ports free, data
flushed), and stop hooks (setpoint revert) run while the devices are still connected."""

from __future__ import annotations

import asyncio
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import duckdb
import pytest

from aidc.config import load_site
from app.job import MainJob
from simulators.process import SimulatorProcess
from tests.sim_helpers import FAKE_PHYSICS, make_site, site_doc, write_site

REPO = Path(__file__).resolve().parents[1]


def _lines(proc: subprocess.Popen[str]) -> queue.Queue[str]:
    """Stdout lines of a child, read by a thread so the test can wait with a deadline."""
    q: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            q.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return q


def _wait_for(q: queue.Queue[str], pattern: str, timeout_s: float) -> list[str]:
    """Lines read until one matches ``pattern`` (a regular expression)."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            line = q.get(timeout=0.5)
        except queue.Empty:
            continue
        seen.append(line)
        if re.search(pattern, line):
            return seen
    raise AssertionError(f"{pattern!r} not printed within {timeout_s}s:\n{''.join(seen)[-2000:]}")


def _simulators_of(config: Path) -> list[int]:
    """Pids of live processes running ``aidc simulate`` on this site file."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"simulate" in cmd and str(config).encode() in cmd:
            pids.append(int(d.name))
    return pids


def _listening(port: int) -> bool:
    """Whether something still accepts connections on a loopback port (TIME_WAIT leftovers do not count)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


def _ports(config: Path) -> list[int]:
    site = load_site(config)
    ports = {d.config.port for d in site.devices if d.config.port is not None}
    ports |= {urlparse(str(d.config.endpoint)).port for d in site.devices if d.config.endpoint}
    return sorted(p for p in (*ports, site.config.simulation.control_port) if p is not None)


def _stored(config: Path) -> int:
    site = load_site(config)
    con = duckdb.connect(str(site.data_dir / "historian.duckdb"), read_only=True)
    try:
        row = con.execute("select count(*) from points_all").fetchone()
    finally:
        con.close()
    return int(row[0]) if row else 0


@pytest.mark.timeout(180)
def test_sigterm_stops_demo_and_its_simulator_child(tmp_path: Path) -> None:
    """SIGTERM to `aidc demo`: exit 0, the simulator child is stopped, every port is free, points are stored."""
    config = write_site(tmp_path, site_doc(tmp_path, racks=1))
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "demo", "--config", str(config), "--summary-every", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    try:
        q = _lines(proc)
        _wait_for(q, "stored", 120)
        assert _simulators_of(config), "the simulator child runs while the demo runs"
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in _simulators_of(config):  # leave nothing behind even when the test fails
            os.kill(pid, signal.SIGKILL)
    assert proc.stderr is not None
    err = proc.stderr.read()
    assert proc.returncode == 0, err[-2000:]
    assert "simulated facility stopped" in err
    assert "Traceback" not in err
    assert _simulators_of(config) == []
    assert not [p for p in _ports(config) if _listening(p)], "no simulator port is left listening"
    assert _stored(config) > 0


@pytest.mark.timeout(180)
def test_sigterm_stops_run_and_flushes(tmp_path: Path) -> None:
    """SIGTERM to `aidc run`: exit 0 and what was collected is in the historian (the final flush ran)."""
    config = write_site(tmp_path, site_doc(tmp_path, racks=1))
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    with SimulatorProcess(config, physics=FAKE_PHYSICS):
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "run", "--config", str(config), "--summary-every", "1"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
        )  # fmt: skip
        try:
            _wait_for(_lines(proc), r"stored [1-9]", 60)  # points reached the store before the signal
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.stderr is not None
    assert proc.returncode == 0, proc.stderr.read()[-2000:]
    assert _stored(config) > 0
    spool = load_site(config).data_dir / "writer-spool"
    assert not any(p.stat().st_size for p in spool.glob("*.seg")), "nothing left waiting in the writer spool"


async def test_stop_hooks_run_while_devices_are_connected(tmp_path: Path) -> None:
    """On cancellation (what Ctrl-C and SIGTERM do) the stop hooks, e.g. a setpoint revert, run before the engine
    closes its connections, then the writer flushes."""
    site = make_site(tmp_path, racks=1)
    job = MainJob.build(site)
    seen: list[bool] = []

    async def revert() -> None:
        seen.append(job.engine._task is not None and not job.engine._task.done())

    job.on_stop.append(revert)
    task = asyncio.create_task(job.run(summary_every_s=0.2, printer=lambda _: None))
    await asyncio.sleep(1.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == [True]
