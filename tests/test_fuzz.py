"""A bounded run of the fuzz campaign (bench/fuzz.py): hostile Modbus and OPC-UA peers and mutated configs."""

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
    """A few seconds of hostile replies, hostile OPC-UA values and mutated site files / profiles: no traceback, no
    engine stop, no point lost or published with a value the device never served."""
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "fuzz.py"), "--modbus-replies", "3000", "--opcua-values", "400",
         "--configs", "400", "--hostile-per-profile", "2", "--max-seconds", "60", "--seed", "7"],
        capture_output=True, text=True, timeout=170, env=dict(os.environ, PYTHONPATH=str(REPO)), check=False,
    )  # fmt: skip
    assert proc.stdout.strip(), proc.stderr[-3000:]
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    assert figures["modbus_replies"] >= 3000, proc.stdout
    assert figures["opcua_values"] >= 400, proc.stdout
    assert figures["configs"] == 400
    assert (figures["tracebacks"], figures["engine_stops"], figures["points_lost"]) == (0, 0, 0), proc.stdout
    assert proc.returncode == 0
