"""``aidc simulate`` refuses broken site files with one clear line, starts on a good one, and ``aidc fault`` works."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from app.cli import main
from simulators.process import SimulatorProcess
from tests.sim_helpers import FAKE_PHYSICS, site_doc, write_site


def _bad_port(doc: dict[str, Any]) -> None:
    doc["halls"][0]["racks"][0]["pdu"]["port"] = 70000


def _unknown_profile(doc: dict[str, Any]) -> None:
    doc["halls"][0]["cdus"][0]["profile"] = "no-such-cdu"


def _duplicate_device(doc: dict[str, Any]) -> None:
    doc["halls"][0]["racks"][1]["pdu"]["name"] = doc["halls"][0]["racks"][0]["pdu"]["name"]


def _missing_key(doc: dict[str, Any]) -> None:
    del doc["ups"]["rated_kw"]


def _wrong_type(doc: dict[str, Any]) -> None:
    doc["simulation"]["tick_s"] = "fast"


def _port_clash(doc: dict[str, Any]) -> None:
    doc["plant"]["endpoint"] = f"opc.tcp://127.0.0.1:{doc['ups']['port']}/aidc/plant"


@pytest.mark.parametrize(
    ("breaker", "expected"),
    [
        (_bad_port, "halls[0].racks[0].pdu.port: 70000 is not a TCP port"),
        (_unknown_profile, "halls[0].cdus[0].profile: unknown profile 'no-such-cdu'"),
        (_duplicate_device, "halls[0].racks[1].pdu.name: duplicate device 'pdu-h1-r01-01'"),
        (_missing_key, "ups: missing key 'rated_kw'"),
        (_wrong_type, "simulation.tick_s: 'fast'"),
        (_port_clash, "plant.endpoint: port"),
    ],
)
def test_broken_site_files_fail_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              breaker: Callable[[dict[str, Any]], None], expected: str) -> None:
    """Each broken file makes ``aidc simulate`` exit non-zero with exactly one line naming the file and key."""
    doc = site_doc(tmp_path)
    breaker(doc)
    path = write_site(tmp_path, doc, "broken.toml")
    status = main(["simulate", "--config", str(path), "--physics", FAKE_PHYSICS])
    err = capsys.readouterr().err.strip().splitlines()
    assert status != 0
    assert len(err) == 1, err
    assert str(path) in err[0]
    assert expected in err[0]


def test_broken_file_from_the_shell_is_one_line(tmp_path: Path) -> None:
    """Run as a separate process, a broken file gives exit status 2 and a single stderr line, no traceback."""
    doc = site_doc(tmp_path)
    _bad_port(doc)
    path = write_site(tmp_path, doc, "broken.toml")
    proc = subprocess.run([sys.executable, "-m", "app.cli", "simulate", "--config", str(path)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2
    expected = f"aidc simulate: {path}: halls[0].racks[0].pdu.port: 70000 is not a TCP port"
    assert proc.stderr.strip().splitlines() == [expected]


def test_port_in_use_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A device port another program holds is reported in one line naming the port and the device."""
    doc = site_doc(tmp_path)
    path = write_site(tmp_path, doc)
    port = doc["halls"][0]["racks"][0]["pdu"]["port"]
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", port))
        blocker.listen()
        status = main(["simulate", "--config", str(path), "--physics", FAKE_PHYSICS])
    err = capsys.readouterr().err.strip().splitlines()
    assert status != 0
    assert len(err) == 1, err
    assert f"127.0.0.1:{port}" in err[0]
    assert "pdu-h1-r01-01" in err[0]


def test_simulate_starts_lists_devices_and_takes_faults(tmp_path: Path) -> None:
    """A good site starts, prints one line per device plus a summary, and ``aidc fault`` injects and clears."""
    path = write_site(tmp_path, site_doc(tmp_path))
    with SimulatorProcess(path) as sim:
        fault = subprocess.run([sys.executable, "-m", "app.cli", "fault", "--config", str(path), "cdu-h1-01",
                                "exception", "6"], capture_output=True, text=True, timeout=60, check=False)
        devices = {d["device"]: d for d in sim.request("GET", "/devices")}
        sim.clear()
        cleared = {d["device"]: d for d in sim.request("GET", "/devices")}
        bad = subprocess.run([sys.executable, "-m", "app.cli", "fault", "--config", str(path), "cdu-h1-01",
                              "melt"], capture_output=True, text=True, timeout=60, check=False)
        status = sim.stop()
        output = sim.output
    lines = output.strip().splitlines()
    assert fault.returncode == 0, fault.stderr
    assert devices["cdu-h1-01"]["faults"] == {"exception": 6}
    assert cleared["cdu-h1-01"]["faults"] == {}
    assert all(d["listening"] for d in devices.values())
    assert bad.returncode == 2
    assert "unknown fault 'melt'" in bad.stderr
    assert status == 0
    for name in devices:
        assert any(line.startswith(name + " ") for line in lines), name
    assert any(line.startswith("simulating ") and "OPC-UA servers" in line for line in lines)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0): read its state
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(")")[-1].split()[0] != "Z"


def test_a_simulator_started_by_a_job_exits_when_the_job_is_killed(tmp_path: Path) -> None:
    """A simulator started through SimulatorProcess (its own entry point) stops by itself after its job's SIGKILL."""
    path = write_site(tmp_path, site_doc(tmp_path))
    job = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from simulators.process import SimulatorProcess\n"
        "sim = SimulatorProcess(Path(sys.argv[1])).start()\n"
        "assert sim.args[1:3] == ['-m', 'simulators'], sim.args\n"
        "print(sim.proc.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", job, str(path)], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parents[1])
    child: int | None = None
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert _alive(child)
        parent.kill()
        parent.wait(timeout=30)
        for _ in range(300):  # bounded wait on state: up to 30 s for the watchdog's clean stop
            if not _alive(child):
                break
            time.sleep(0.1)
        assert not _alive(child), "the simulator outlived its job"
    finally:
        parent.kill()
        if child is not None and child > 1:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
