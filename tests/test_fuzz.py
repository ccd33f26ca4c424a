"""A bounded run of the fuzz campaign (bench/fuzz.py): hostile Modbus, OPC-UA and SNMP peers and mutated configs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(180)
def test_bounded_fuzz_campaign_has_no_tracebacks_stops_or_lost_points() -> None:
    """A few seconds of hostile Modbus replies, OPC-UA values, SNMP responses, DCGM pages and Redfish resources and
    mutated site files / profiles: no traceback, no engine stop, no point lost or published with a value the device
    never served."""
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "fuzz.py"), "--modbus-replies", "3000", "--opcua-values", "400",
         "--snmp-replies", "300", "--http-replies", "800", "--configs", "400", "--hostile-per-profile", "2",
         "--max-seconds", "140", "--seed", "7"],
        capture_output=True, text=True, timeout=170, env=dict(os.environ, PYTHONPATH=str(REPO)), check=False,
    )  # fmt: skip
    assert proc.stdout.strip(), proc.stderr[-3000:]
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    assert figures["modbus_replies"] >= 3000, proc.stdout
    assert figures["opcua_values"] >= 400, proc.stdout
    assert figures["snmp_replies"] >= 300, proc.stdout
    assert figures["http_replies"] >= 800, proc.stdout
    assert figures["configs"] == 400
    assert (figures["tracebacks"], figures["engine_stops"], figures["points_lost"]) == (0, 0, 0), proc.stdout
    assert (figures["lost_by_kind"], figures["cut_short"]) == ({}, False), proc.stdout
    assert proc.returncode == 0


@pytest.mark.timeout(180)
def test_fuzz_campaign_stops_at_its_deadline_and_says_so() -> None:
    """Targets it cannot meet in time: the run still ends near --deadline-s, prints its JSON and says it was cut
    short (it failed its purpose, so the exit status is 1)."""
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "fuzz.py"), "--modbus-replies", "1000000000", "--opcua-values", "0",
         "--http-replies", "0", "--configs", "1000000000", "--hostile-per-profile", "1", "--deadline-s", "20", "--seed", "3"],
        capture_output=True, text=True, timeout=170, env=dict(os.environ, PYTHONPATH=str(REPO)), check=False,
    )  # fmt: skip
    assert proc.stdout.strip(), proc.stderr[-3000:]
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    assert figures["cut_short"] is True
    assert "CUT SHORT" in proc.stdout
    assert 0 < figures["modbus_replies"] < 1_000_000_000
    assert 0 < figures["configs"] < 1_000_000_000
    assert figures["points_lost"] == 0, proc.stdout
    assert proc.returncode == 1
