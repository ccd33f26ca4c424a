"""OPC-UA collection and the commissioning CLI against the bundled simulators over real loopback sockets."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import tomli_w
from asyncua import ua

from aidc.model import Quality
from app.cli import main
from collectors.engine import EngineOptions
from collectors.link import LinkOptions, LinkState
from collectors.opcua import OpcUaLink, SubscriptionOptions
from collectors.writer import Actor, SetpointWriter
from simulators.runner import SimulatedFacility
from tests.fake_physics import GPUS
from tests.test_collect_modbus import Rig, engine_on, facility_for, make_site, polls, rig_for, until

pytestmark = pytest.mark.asyncio(loop_scope="module")

LIMIT = ua.NodeId(ua.Int32(ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerRead))


def all_good(rig: Rig, device: str) -> bool:
    """Whether every point (arrays per GPU) of an OPC-UA device is good."""
    dev = rig.site.device(device)
    for p in dev.profile.points:
        tags = [{p.array_tag: str(i)} for i in range(GPUS)] if p.array else [{}]
        for t in tags:
            if rig.value(device, p.name, **t)[1] is not Quality.GOOD:
                return False
    return True


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def shared(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SimulatedFacility]:
    """One simulated facility (all servers) shared by this module's tests: OPC-UA servers take seconds to start."""
    site = make_site(tmp_path_factory.mktemp("shared"))
    async with facility_for(site, protocol=None) as fac:
        yield fac


async def test_opcua_polling_arrays_limits_restart_and_writer(shared: SimulatedFacility, tmp_path: Path) -> None:
    """Polled reads: arrays unpack per GPU; reads split to MaxNodesPerRead re-read after a restart; writes clamp."""
    async with engine_on(shared, protocol="opcua") as rig:
        await until(lambda: all_good(rig, "rack-h1-r01-01") and all_good(rig, "plant-1"))
        assert rig.value("rack-h1-r01-01", "gpu_temp_c", gpu="3")[0] == pytest.approx(
            rig.physics.values["rack-h1-r01-01"]["gpu_temp_c"][3])  # type: ignore[index]
        link = rig.engine.link("plant-1")
        assert isinstance(link, OpcUaLink)
        assert len(link.rt["plant-1"].reads) == 1
        ep = rig.facility.listener_of("plant-1")
        await ep.server.get_node(LIMIT).write_value(ua.Variant(4, ua.VariantType.UInt32))  # type: ignore[union-attr]
        rig.facility.faults.inject("plant-1", "restart", 0.3)
        await until(lambda: link.state is not LinkState.CONNECTED)
        await until(lambda: link.state is LinkState.CONNECTED)
        await polls(rig, "plant-1", 1)
        assert len(link.rt["plant-1"].reads) == 6  # 24 nodes (issue 9 added 8 plant points) in reads of at most 4
        assert all_good(rig, "plant-1")
        writer = SetpointWriter(rig.engine, tmp_path / "audit")
        r = await writer.write(Actor("ctl", "operator"), "plant-1", "fws_supply_temp_setpoint_c", 55.0, "test")
        assert r.ok, r.error
        assert (r.new, r.readback) == (40.0, pytest.approx(40.0))
        assert rig.physics.values["plant-1"]["fws_supply_temp_setpoint_c"] == pytest.approx(40.0)


async def test_opcua_subscriptions_come_back_after_server_restart(shared: SimulatedFacility) -> None:
    """Subscriptions (sampling interval, queue, absolute deadband) deliver changes again after a server restart."""
    opts = EngineOptions(link=LinkOptions(stuck_polls=10_000), subscription=SubscriptionOptions(
        enabled=True, sampling_ms=20, queue_size=1, deadband="absolute", deadband_value=0.01))
    async with engine_on(shared, options=opts, protocol="opcua") as rig:
        await until(lambda: all_good(rig, "rack-h1-r01-02"))
        link = rig.engine.link("rack-h1-r01-02")
        rig.facility.faults.inject("rack-h1-r01-02", "restart", 0.3)
        await until(lambda: link.state is not LinkState.CONNECTED)
        await until(lambda: link.state is LinkState.CONNECTED)
        rig.physics.values["rack-h1-r01-02"]["rack_power_w"] = 123456.0
        await until(lambda: rig.value("rack-h1-r01-02", "rack_power_w")[0] == 123456.0)
        assert rig.value("rack-h1-r01-02", "rack_power_w")[1] is Quality.GOOD


async def test_opcua_sign_and_encrypt_with_username(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Basic256Sha256 SignAndEncrypt session with username/password and a pinned server certificate reads good."""
    monkeypatch.setenv("AIDC_TEST_OPCUA_PW", "s3cret")

    def edit(doc: dict[str, Any]) -> None:
        port = doc["plant"]["endpoint"].split(":")[2].split("/")[0]
        doc["plant"]["security"] = {
            "policy": "Basic256Sha256", "mode": "SignAndEncrypt", "username": "operator",
            "password_env": "AIDC_TEST_OPCUA_PW",
            "trusted_server_certs": [str(tmp_path / "var" / "pki" / f"127.0.0.1_{port}.cert.der")],
        }

    async with rig_for(make_site(tmp_path, edit=edit), protocol="opcua") as rig:
        await until(lambda: all_good(rig, "plant-1"))
        assert (tmp_path / "var" / "pki" / "aidc-collector-cert.der").is_file()  # generated and kept


async def test_collect_once_prints_every_point_and_unreachable_devices(
    shared: SimulatedFacility, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``aidc collect --once`` prints every point good; a device that is down is listed unreachable, the rest print."""
    site = shared.site
    cfg = tmp_path / "site.toml"
    cfg.write_bytes(tomli_w.dumps(site.config.model_dump(mode="json", exclude_none=True)).encode())
    shared.faults.clear_all()
    await until(lambda: all(ep.running for ep in shared.endpoints.values()))
    rc = await asyncio.to_thread(main, ["collect", "--config", str(cfg), "--once", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert all(d["status"] == "ok" for d in report["devices"])
    assert {p["quality"] for d in report["devices"] for p in d["points"]} == {"good"}
    assert len(report["devices"]) == len(site.devices)
    await shared.listener_of("ups-1").stop()  # last test of the module
    rc = await asyncio.to_thread(main, ["collect", "--config", str(cfg), "--once"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "ups-1 (modbus://" in out
    assert "UNREACHABLE" in out
    assert "pdu-h1-r01-01 (" in out
    assert "gpu_temp_c[3]" in out
