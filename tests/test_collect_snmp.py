"""SNMP collection (collectors/snmp.py) against the simulator's SNMP agents over real loopback UDP sockets."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from aidc.errors import ConfigError
from aidc.model import Quality
from collectors.link import LinkState
from collectors.snmp import UPTIME_SLACK_S, SnmpLink
from tests import fake_physics
from tests.snmp_helpers import SECRETS, V2C_PDU, V3_PDU, snmp_rig, snmp_site
from tests.test_collect_modbus import make_site, polls, serve_now, until

POINTS = ("inlet1_voltage_v", "active_power_w", "inlet1_power_factor", "active_energy_wh")


@pytest.mark.timeout(60)
async def test_v3_authpriv_and_v2c_pdus_read_exact_and_good(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both PDUs (SNMPv3 authPriv SHA/AES and v2c) read every PDU2-MIB point good and exactly as served, scales applied."""
    monkeypatch.setattr(fake_physics, "COUNTER_RATE_PER_S", 0.0)
    async with snmp_rig(snmp_site(tmp_path, monkeypatch)) as rig:
        for dev in (V3_PDU, V2C_PDU):
            rig.physics.values[dev].update(
                inlet1_voltage_v=231.0, active_power_w=98765.0, inlet1_power_factor=0.97, active_energy_wh=123456789.0
            )
        serve_now(rig)
        for dev in (V3_PDU, V2C_PDU):
            await polls(rig, dev, 3)
            for point in POINTS:
                value, quality, reason = rig.value(dev, point)
                assert quality is Quality.GOOD, (dev, point, reason)
                expected = float(rig.physics.values[dev][point])  # type: ignore[arg-type]
                assert value == pytest.approx(expected, abs=1e-9), (dev, point)
            link = rig.engine.link(dev)
            assert link.state is LinkState.CONNECTED
            assert isinstance(link, SnmpLink)
            assert link.agent_restarts == 0  # no false restart from the sysUpTime check


@pytest.mark.timeout(60)
async def test_unanswered_requests_are_bad_then_recover(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An agent that stops answering (drop fault) makes its points bad with a timeout; when it answers they are good."""
    async with snmp_rig(snmp_site(tmp_path, monkeypatch)) as rig:
        await polls(rig, V2C_PDU, 1)
        rig.facility.faults.inject(V2C_PDU, "drop")
        # Under load the staleness check may mark the point bad first ("stale: ..."); the link's timeout follows.
        await until(lambda: any(w in rig.value(V2C_PDU, "active_power_w")[2] for w in ("timeout", "no reply")))
        assert rig.value(V2C_PDU, "active_power_w")[1] is Quality.BAD
        await polls(rig, V3_PDU, 1)
        assert rig.value(V3_PDU, "active_power_w")[1] is Quality.GOOD  # the other agent is unaffected
        rig.facility.faults.clear(V2C_PDU)
        await until(lambda: rig.value(V2C_PDU, "active_power_w")[1] is Quality.GOOD)


@pytest.mark.timeout(60)
async def test_agent_error_status_marks_points_bad_and_keeps_polling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An agent answering genErr makes the points bad with the error; the link stays up and recovers."""
    async with snmp_rig(snmp_site(tmp_path, monkeypatch)) as rig:
        await polls(rig, V3_PDU, 1)
        link = rig.engine.link(V3_PDU)
        rig.facility.faults.inject(V3_PDU, "exception", 4)
        await until(lambda: rig.value(V3_PDU, "inlet1_voltage_v")[1] is Quality.BAD)
        assert "genErr" in rig.value(V3_PDU, "inlet1_voltage_v")[2]
        assert link.state is LinkState.CONNECTED
        rig.facility.faults.clear(V3_PDU)
        await until(lambda: rig.value(V3_PDU, "inlet1_voltage_v")[1] is Quality.GOOD)


@pytest.mark.timeout(60)
async def test_v3_agent_restart_is_rediscovered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A restarted v3 agent (new engine boots and time, sysUpTime from 0) is read good again without an engine restart."""
    async with snmp_rig(snmp_site(tmp_path, monkeypatch)) as rig:
        await polls(rig, V3_PDU, 2)
        link = rig.engine.link(V3_PDU)
        assert isinstance(link, SnmpLink)
        # Down for longer than the uptime check's slack: a restart is seen as sysUpTime short of its last value
        # plus the time elapsed less the slack, so a shorter outage right after the agent started can pass unseen.
        rig.facility.faults.inject(V3_PDU, "restart", UPTIME_SLACK_S + 0.5)
        await until(lambda: rig.value(V3_PDU, "active_power_w")[1] is Quality.BAD)
        await until(lambda: rig.value(V3_PDU, "active_power_w")[1] is Quality.GOOD)
        await polls(rig, V3_PDU, 2)
        assert rig.value(V3_PDU, "inlet1_power_factor")[1] is Quality.GOOD
        assert link.agent_restarts == 1  # seen by its sysUpTime (TimeTicks) starting again from 0
        assert rig.engine.restarts == 0


@pytest.mark.timeout(60)
async def test_wrong_key_reads_bad_and_never_logs_a_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A collector with the wrong v3 key gets no good value, and no secret appears in any log line."""
    site = snmp_site(tmp_path, monkeypatch)
    caplog.set_level(logging.DEBUG)
    async with snmp_rig(site) as rig:
        await polls(rig, V2C_PDU, 1)
        monkeypatch.setenv("AIDC_TEST_SNMP_AUTH", "wrong-key-123")  # the agent already holds the right one
        link = rig.engine.link(V3_PDU)
        await link.close()  # the next poll fails; the link reconnects with the new (wrong) key
        await until(lambda: rig.value(V3_PDU, "active_power_w")[1] is Quality.BAD)
        await until(lambda: not rig.engine.health()[V3_PDU].up)
    text = caplog.text + "".join(str(b.reasons) for b in rig.batches)
    for secret in (*SECRETS.values(), "wrong-key-123"):
        assert secret not in text


def test_missing_secret_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A v3 key variable that is not set is a ConfigError naming the device and the variable, not the value."""
    from collectors.snmp import auth_data

    site = snmp_site(tmp_path, monkeypatch)
    monkeypatch.delenv("AIDC_TEST_SNMP_PRIV")
    with pytest.raises(ConfigError, match=f"device {V3_PDU}: environment variable AIDC_TEST_SNMP_PRIV"):
        auth_data(site.device(V3_PDU))


@pytest.mark.parametrize(
    ("snmp", "message"),
    [
        ({"version": "3", "user": "u", "auth_key_env": "A"}, "needs priv_key_env"),
        ({"version": "3", "user": "u", "security_level": "authNoPriv", "auth_key_env": "A"}, "allow_insecure"),
        ({"version": "2c"}, "community_env"),
        ({"version": "3", "user": "u", "auth_key_env": "A", "priv_key_env": "B", "auth_protocol": "MD5"}, "SHA"),
    ],
)
def test_bad_snmp_settings_are_refused_with_one_line(tmp_path: Path, snmp: dict[str, object], message: str) -> None:
    """Insecure or incomplete [snmp] tables are refused by the site loader with one line naming the key."""

    def edit(doc: dict[str, object]) -> None:
        pdu = doc["halls"][0]["racks"][0]["pdu"]  # type: ignore[index]
        pdu.update(protocol="snmp", profile="raritan-px3-snmp", snmp=snmp)
        pdu.pop("unit_id", None)

    with pytest.raises(ConfigError, match=message) as err:
        make_site(tmp_path, edit=edit)
    assert "\n" not in str(err.value)
    assert "halls[0].racks[0].pdu" in str(err.value)


def test_snmp_device_needs_its_snmp_table(tmp_path: Path) -> None:
    """protocol = "snmp" without [snmp] is one clear line."""

    def edit(doc: dict[str, object]) -> None:
        pdu = doc["halls"][0]["racks"][0]["pdu"]  # type: ignore[index]
        pdu.update(protocol="snmp", profile="raritan-px3-snmp")

    with pytest.raises(ConfigError, match=r"SNMP devices need 'port' and an \[snmp\] table"):
        make_site(tmp_path, edit=edit)


def test_snmp_table_on_a_modbus_device_is_refused(tmp_path: Path) -> None:
    """An [snmp] table on a Modbus device (a half-edited site file) is one clear line, not silently ignored."""

    def edit(doc: dict[str, object]) -> None:
        doc["halls"][0]["racks"][0]["pdu"]["snmp"] = {"version": "2c", "community_env": "X"}  # type: ignore[index]

    with pytest.raises(ConfigError, match=r"halls\[0\].racks\[0\].pdu.*\[snmp\] table on a modbus device"):
        make_site(tmp_path, edit=edit)


def test_demo_listing_names_snmp_agents_by_address(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo's listing of where devices listen shows an SNMP PDU at snmp://host:port, never "None"."""
    from app.commands.run import listening_lines

    site = snmp_site(tmp_path, monkeypatch)
    pdu = next(d for d in site.devices if d.name == V3_PDU)
    lines = listening_lines(site)
    assert not any(line.strip().startswith("None") for line in lines)
    assert any(
        line.strip().startswith(f"snmp://{pdu.config.host}:{pdu.config.port}") and V3_PDU in line for line in lines
    )
