"""Debian's mbpoll (libmodbus), an independent Modbus client, reads the real simulator process."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from simulators.process import SimulatorProcess
from tests.debtools import require_tool
from tests.sim_helpers import site_doc, write_site

PDU = "pdu-h1-r01-01"
CDU = "cdu-h1-01"


@pytest.fixture(scope="module")
def paused_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorProcess]:
    """The simulated facility (real physics) in its own process, physics paused so values hold still."""
    require_tool("mbpoll")
    tmp = tmp_path_factory.mktemp("mbpoll")
    with SimulatorProcess(write_site(tmp, site_doc(tmp))) as sim:
        sim.pause()
        yield sim


def _mbpoll(port: int, *args: str) -> str:
    """Run mbpoll once against 127.0.0.1 with 0-based (PDU) addressing and return the value it printed."""
    out = subprocess.run(["mbpoll", "-m", "tcp", "-a", "1", "-p", str(port), "-0", "-1", "-o", "2", *args,
                          "127.0.0.1"], capture_output=True, text=True, timeout=20, check=True).stdout
    # mbpoll prints lines like "[16]: 	98765.5" for each value read.
    values = [line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("[")]
    assert values, out
    return values[0]


def test_mbpoll_reads_pdu_power_as_the_physics_says(paused_sim: SimulatorProcess) -> None:
    """The PDU's active power (big-endian FLOAT32 holding registers 16-17) equals the physics state."""
    port = paused_sim.site.device(PDU).config.port or 0
    read = float(_mbpoll(port, "-t", "4:float", "-B", "-r", "16"))
    expected = float(paused_sim.state()["devices"][PDU]["active_power_w"])
    assert expected > 0
    assert read == pytest.approx(expected, rel=1e-5)  # mbpoll prints six significant digits


def test_mbpoll_reads_cdu_temperature_as_the_physics_says(paused_sim: SimulatorProcess) -> None:
    """The CDU's TCS supply temperature (INT16 tenths in input register 0) equals the physics state."""
    port = paused_sim.site.device(CDU).config.port or 0
    raw = int(_mbpoll(port, "-t", "3", "-r", "0"))
    expected = float(paused_sim.state()["devices"][CDU]["tcs_supply_temp_c"])
    assert expected > 5
    assert raw / 10 == pytest.approx(expected, abs=0.051)
