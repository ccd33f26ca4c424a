"""Debian's net-snmp tools (snmpget, snmpwalk), an independent SNMP manager, read the simulator's agents."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from aidc.model import Quality
from tests import fake_physics
from tests.debtools import require_tool
from tests.snmp_helpers import SECRETS, V2C_PDU, V3_PDU, snmp_rig, snmp_site
from tests.test_collect_modbus import Rig, polls

COLUMN = "1.3.6.1.4.1.13742.6.5.2.3.1.4"  # PDU2-MIB measurementsInletSensorValue


async def _run(*argv: str) -> str:
    """Run a net-snmp tool without blocking the loop the agents answer from; its stdout."""
    env = dict(os.environ, MIBS="", MIBDIRS="/nonexistent")  # numeric OIDs only: no MIB files needed or loaded
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=20)
    assert proc.returncode == 0, err.decode()
    return out.decode()


def _credentials(rig: Rig, device: str) -> list[str]:
    cfg = rig.site.device(device).config
    s = cfg.snmp
    assert s is not None
    if s.version == "2c":
        return ["-v2c", "-c", SECRETS["AIDC_TEST_SNMP_COMMUNITY"], f"127.0.0.1:{cfg.port}"]
    return ["-v3", "-l", "authPriv", "-u", s.user or "", "-a", "SHA", "-A", SECRETS["AIDC_TEST_SNMP_AUTH"],
            "-x", "AES", "-X", SECRETS["AIDC_TEST_SNMP_PRIV"], f"127.0.0.1:{cfg.port}"]  # fmt: skip


def _aidc_raw(rig: Rig, device: str) -> dict[str, int]:
    """What aidc's SNMP source read, back in raw units, by OID."""
    out = {}
    for p in rig.site.device(device).profile.points:
        value, quality, reason = rig.value(device, p.name)
        assert quality is Quality.GOOD, (device, p.name, reason)
        assert value is not None
        assert p.oid is not None
        out[p.oid] = round((value - p.offset) / p.scale)
    return out


@pytest.mark.timeout(60)
async def test_snmpget_and_snmpwalk_read_what_aidc_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """snmpget (v2c and v3 authPriv SHA/AES) and snmpwalk of the PDU2-MIB inlet sensor column return the values
    aidc's SNMP source read from the same agents."""
    require_tool("snmpget", "snmp")
    require_tool("snmpwalk", "snmp")
    monkeypatch.setattr(fake_physics, "COUNTER_RATE_PER_S", 0.0)  # values hold still between the two readers
    async with snmp_rig(snmp_site(tmp_path, monkeypatch)) as rig:
        for dev in (V3_PDU, V2C_PDU):
            await polls(rig, dev, 2)
            aidc = _aidc_raw(rig, dev)
            creds = _credentials(rig, dev)
            got = await _run("snmpget", "-On", "-Oqv", *creds, *aidc)
            assert [int(x) for x in got.split()] == list(aidc.values()), dev
            walked = await _run("snmpwalk", "-On", "-Oq", *creds, COLUMN)
            # The agent's MIB view ends with this table: net-snmp notes the endOfMibView after the last row.
            rows = [
                line.split(None, 1) for line in walked.splitlines() if line.startswith(".") and "No more" not in line
            ]
            assert {k.lstrip("."): int(v) for k, v in rows} == aidc, dev
        uptime = await _run("snmpget", "-On", "-Oqv", "-Ot", *_credentials(rig, V3_PDU), "1.3.6.1.2.1.1.3.0")
        assert int(uptime) > 0  # the agent's sysUpTime, in hundredths of a second
