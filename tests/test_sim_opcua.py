"""OPC-UA servers built from the profiles, read and written by an asyncua client over loopback."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from asyncua import Client, ua
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from cryptography.x509.oid import ExtendedKeyUsageOID

from aidc.config import site_from_dict
from simulators.faults import FaultBook
from simulators.opcua_server import OpcUaEndpoint
from simulators.process import SimulatorProcess
from tests.fake_physics import FakePhysics
from tests.sim_helpers import site_doc, write_site

RACK = "rack-h1-r01-01"
SP_NODE = "ns=2;s=plant-1.FWS.SupplyTempSetpoint"
FWS_NODE = "ns=2;s=plant-1.FWS.SupplyTemp"


async def test_hall_server_exposes_racks_and_enforces_max_nodes_per_read(tmp_path: Path) -> None:
    """Rack nodes carry the physics values (GPU arrays as Double[]); reads above MaxNodesPerRead are refused."""
    doc = site_doc(tmp_path)
    site = site_from_dict(doc, path=tmp_path / "s.toml")
    physics = FakePhysics(site)
    racks = [d for d in site.devices if d.kind == "rack"]
    ep = OpcUaEndpoint(racks[0].config.endpoint or "", racks, physics,
                       FaultBook({d.name: d.profile for d in site.devices}), tmp_path / "pki")
    await ep.start()
    try:
        physics.values[RACK]["gpu_temp_c"] = [61.0, 62.5, 63.0, 64.25]
        physics.values[RACK]["rack_power_w"] = 123456.0
        await ep.refresh()
        async with Client(ep.endpoint) as client:
            temps = await client.get_node(f"ns=2;s={RACK}.Gpu.Temp").read_value()
            power = await client.get_node(f"ns=2;s={RACK}.Power").read_value()
            limit = await client.get_node(ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerRead)\
                .read_value()
            nodes = [client.get_node(f"ns=2;s={r.name}.{leaf}") for r in racks
                     for leaf in ("Power", "Energy", "Coolant.InletTemp", "Coolant.OutletTemp", "Coolant.Flow",
                                  "LeakDetected", "GpusThrottled", "Gpu.Power", "Gpu.Temp", "Gpu.Util")] * 2
            small = await client.read_values(nodes[:limit])
            params = ua.ReadParameters()
            for node in nodes[: limit + 1]:  # one raw Read service call, not split by the client library
                params.NodesToRead.append(ua.ReadValueId(NodeId=node.nodeid, AttributeId=ua.AttributeIds.Value))
            with pytest.raises(ua.UaStatusCodeError):
                await client.uaclient.read(params)
    finally:
        await ep.stop()
    assert temps == [61.0, 62.5, 63.0, 64.25]
    assert power == 123456.0
    assert limit == 50
    assert len(small) == 50


async def _client_cert(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "client.der", tmp_path / "client.pem"
    await setup_self_signed_certificate(key, cert, "urn:aidc:test:client", "localhost",
                                        [ExtendedKeyUsageOID.CLIENT_AUTH], {"commonName": "aidc test client"})
    return cert, key


async def _secure_client(url: str, cert: Path, key: Path, password: str) -> Client:
    client = Client(url)
    client.application_uri = "urn:aidc:test:client"
    await client.set_security_string(f"Basic256Sha256,SignAndEncrypt,{cert},{key}")
    client.set_user("operator")
    client.set_password(password)
    return client


async def test_sign_and_encrypt_with_username(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A SignAndEncrypt plant needs the right password; writes reach the physics; the certificate is reused."""
    monkeypatch.setenv("AIDC_TEST_PLANT_PW", "correct horse")
    doc = site_doc(tmp_path)
    doc["plant"]["security"] = {"policy": "Basic256Sha256", "mode": "SignAndEncrypt", "username": "operator",
                                "password_env": "AIDC_TEST_PLANT_PW"}
    site = site_from_dict(doc, path=tmp_path / "s.toml")
    physics = FakePhysics(site)
    plant = site.device("plant-1")
    book = FaultBook({d.name: d.profile for d in site.devices})
    pki = tmp_path / "pki"
    ep = OpcUaEndpoint(plant.config.endpoint or "", [plant], physics, book, pki)
    await ep.start()
    cert, key = await _client_cert(tmp_path)
    try:
        async with await _secure_client(ep.endpoint, cert, key, "correct horse") as client:
            await client.get_node(SP_NODE).write_value(ua.Variant(18.5, ua.VariantType.Double))
            setpoint = await client.get_node(SP_NODE).read_value()
        with pytest.raises(ua.UaStatusCodeError):
            async with await _secure_client(ep.endpoint, cert, key, "wrong"):
                pass
        with pytest.raises(ua.UaError):
            async with Client(ep.endpoint):  # no security, anonymous: no such endpoint
                pass
    finally:
        await ep.stop()
    server_cert = next(pki.glob("*.cert.der")).read_bytes()
    again = OpcUaEndpoint(plant.config.endpoint or "", [plant], physics, book, pki)
    await again.start()
    await again.stop()
    assert setpoint == 18.5
    assert physics.writes == [("plant-1", "fws_supply_temp_setpoint_c", 18.5)]
    assert next(pki.glob("*.cert.der")).read_bytes() == server_cert


async def test_fws_setpoint_write_moves_the_real_plant(tmp_path: Path) -> None:
    """Against the real simulator process at speed 60, writing the FWS setpoint drives the supply temperature to it."""
    path = write_site(tmp_path, site_doc(tmp_path))
    with SimulatorProcess(path, speed=60) as sim:
        url = sim.site.device("plant-1").config.endpoint or ""
        async with Client(url) as client:
            supply = client.get_node(FWS_NODE)
            start = float(await supply.read_value())
            target = start - 4.0
            await client.get_node(SP_NODE).write_value(ua.Variant(target, ua.VariantType.Double))
            async with asyncio.timeout(60):
                current = start
                while abs(current - target) > 0.5 * abs(start - target):
                    await asyncio.sleep(0.2)
                    current = float(await supply.read_value())
            setpoint = float(await client.get_node(SP_NODE).read_value())
        state = sim.state()
    assert setpoint == pytest.approx(target)
    assert abs(current - target) < abs(start - target)
    assert state["devices"]["plant-1"]["fws_supply_temp_setpoint_c"] == pytest.approx(target)
