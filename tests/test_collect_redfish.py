"""Redfish source against the simulated Redfish service over HTTPS on loopback (FakePhysics)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from aidc.errors import ConfigError
from aidc.model import Batch, Quality
from collectors.engine import Engine
from collectors.link import LinkState
from collectors.redfish import RedfishLink
from collectors.writer import Actor, SetpointWriter
from simulators.http_server import self_signed
from simulators.redfish_service import RedfishService
from tests.http_rig import PASSWORD, PASSWORD_ENV, http_facility, http_rig, http_site
from tests.test_collect_modbus import Rig, expected, polls, serve_now, until

RACK, CDU = "rack-h1-r01-03", "cdu-h1-01"


@pytest.fixture(autouse=True)
def _password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)


def service(rig: Rig) -> RedfishService:
    """The simulated Redfish service."""
    return next(h for h in rig.facility.http if isinstance(h, RedfishService))


async def test_every_point_over_https_with_a_session_and_a_pinned_certificate(tmp_path: Path) -> None:
    """Chassis and CoolingUnit points read what the physics serves, over one session; the certificate is pinned."""
    site = http_site(tmp_path)
    async with http_rig(site, "redfish") as rig:
        rig.physics.values[CDU]["alarm_word"] = 0
        rig.physics.values[RACK]["leak_detected"] = True
        serve_now(rig)
        await polls(rig, CDU, 3)
        await polls(rig, RACK, 3)
        for dev in (RACK, CDU):
            for p in site.device(dev).profile.points:
                value, quality, reason = rig.value(dev, p.name)
                assert quality is Quality.GOOD, (dev, p.name, reason)
                if not p.counter:
                    assert value == pytest.approx(expected(rig, dev, p.name)), (dev, p.name)
        assert rig.value(CDU, "alarm_health")[0] == 0.0  # Status.Health "OK"
        assert rig.value(RACK, "leak_detected")[0] == 1.0  # DetectorState "Critical"
        assert len(service(rig).sessions) == 1  # both devices on one login
        pins = json.loads((site.data_dir / "pki" / "known_servers.json").read_text())
        assert list(pins) == [str(site.device(RACK).config.endpoint)]


async def test_restart_forgets_sessions_and_the_link_logs_in_again(tmp_path: Path) -> None:
    """A service restart drops the session: the link sees 401, logs in again and its points are good again."""
    site = http_site(tmp_path)
    async with http_rig(site, "redfish") as rig:
        await polls(rig, RACK, 1)
        link = rig.engine.link(RACK)
        sim = service(rig)
        before = set(sim.sessions)
        rig.facility.faults.inject(RACK, "restart", 0.3)
        # A new session proves the link saw the restart (the service forgot the old one); whether a poll fell into the
        # 0.3 s the service was down, taking the link out of CONNECTED for a moment, depends on the machine's load.
        await until(lambda: bool(sim.sessions) and not set(sim.sessions) & before)
        await until(lambda: link.state is LinkState.CONNECTED)
        await polls(rig, RACK, 2)
        assert rig.value(RACK, "rack_power_w")[1] is Quality.GOOD
        sim.sessions.clear()  # the session expires on the service's side
        await until(lambda: bool(sim.sessions))
        await polls(rig, RACK, 2)
        assert rig.value(RACK, "coolant_flow_lpm")[1] is Quality.GOOD


async def test_timeout_truncated_json_and_wrong_types_read_bad(tmp_path: Path) -> None:
    """A late reply, a truncated body, a string or a null where a number belongs: those points bad, the rest good."""
    site = http_site(tmp_path)
    async with http_rig(site, "redfish") as rig:
        await polls(rig, CDU, 1)
        rig.facility.faults.inject(CDU, "delay", 2.0)
        await until(lambda: rig.value(CDU, "flow_lpm")[2].startswith("timeout:"))
        assert rig.value(CDU, "flow_lpm")[1] is Quality.BAD
        rig.facility.faults.clear(CDU)
        await until(lambda: rig.value(CDU, "flow_lpm")[1] is Quality.GOOD)

        sim = service(rig)
        real_refresh = sim.refresh
        env = "/redfish/v1/Chassis/rack-h1-r01-03/EnvironmentMetrics"
        pump = "/redfish/v1/ThermalEquipment/CDUs/CDU1/Pumps/1"

        def hostile(only: str | None = None) -> None:
            real_refresh(only)
            sim.docs[env] = sim.docs[env][:25]  # truncated JSON
            doc = json.loads(sim.docs[pump])
            doc["PumpSpeedPercent"]["Reading"] = "37.0"
            sim.docs[pump] = json.dumps(doc).encode()

        sim.refresh = hostile  # type: ignore[method-assign]
        await until(lambda: "not JSON" in rig.value(RACK, "rack_power_w")[2])
        assert rig.value(RACK, "it_energy_wh")[1] is Quality.BAD
        assert rig.value(RACK, "coolant_flow_lpm")[1] is Quality.GOOD
        await until(lambda: rig.value(CDU, "pump_speed_pct")[2] == "not a number: str")
        assert rig.value(CDU, "pump_speed_pct")[1] is Quality.BAD
        sim.refresh = real_refresh  # type: ignore[method-assign]
        rig.facility.faults.inject(CDU, "nan")  # the service shows null readings
        await until(lambda: rig.value(CDU, "tcs_supply_temp_c")[2] == "null (no reading)")
        assert rig.value(CDU, "alarm_leak")[1] is Quality.GOOD  # status flags stay


async def test_changed_certificate_is_refused(tmp_path: Path) -> None:
    """A service whose certificate differs from the pinned one is refused with the reason; no point reads good."""
    site = http_site(tmp_path)
    pki = site.data_dir / "pki"
    pki.mkdir(parents=True)
    (pki / "known_servers.json").write_text(json.dumps({str(site.device(RACK).config.endpoint): "00" * 32}))
    async with http_rig(site, "redfish") as rig:
        link = rig.engine.link(RACK)
        await until(lambda: "server certificate changed" in link.last_error)
        assert not rig.engine.health()[RACK].up
        assert not service(rig).sessions


async def test_basic_auth_and_a_refused_login(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Basic auth reads without a session; a wrong password is refused with one clear reason."""

    def basic(doc: dict[str, Any]) -> None:
        for r in doc["halls"][0]["racks"][2:4]:
            r["controller"]["redfish"]["auth"] = "basic"

    site = http_site(tmp_path, basic)
    async with http_rig(site, "redfish") as rig:
        await polls(rig, RACK, 2)
        assert rig.value(RACK, "rack_power_w")[1] is Quality.GOOD
        assert len(service(rig).sessions) == 1  # the CDU's session login only
        monkeypatch.setenv(PASSWORD_ENV, "wrong")
        service(rig).sessions.clear()
        link = rig.engine.link(CDU)
        await until(lambda: "login as 'aidc' refused (HTTP 401)" in link.last_error)


async def test_power_limit_and_cdu_setpoint_writes_are_clamped_read_back_and_audited(tmp_path: Path) -> None:
    """The writer PATCHes a rack's PowerLimit SetPoint and a CDU's supply setpoint, clamps, reads back and audits."""
    site = http_site(tmp_path)
    async with http_rig(site, "redfish") as rig:
        await rig.engine.wait_connected(RACK)
        assert isinstance(rig.engine.link(RACK), RedfishLink)
        writer = SetpointWriter(rig.engine, tmp_path / "audit")
        op = Actor("power-guard", "operator")
        r = await writer.write(op, RACK, "rack_power_limit_w", 95_000.0, "feed A near its rating")
        assert r.ok, r.error
        assert (r.old, r.new, r.readback) == (200_000.0, 95_000.0, 95_000.0)
        r = await writer.write(op, CDU, "tcs_supply_temp_setpoint_c", 99.0, "test clamp")
        assert r.ok, r.error
        assert (r.new, r.clamped, r.readback) == (45.0, True, 45.0)
        assert service(rig).writes == [
            (RACK, "rack_power_limit_w", 95_000.0),
            (CDU, "tcs_supply_temp_setpoint_c", 45.0),
        ]
        assert [e["point"] for e in writer.audit_log()] == ["rack_power_limit_w", "tcs_supply_temp_setpoint_c"]
        await polls(rig, RACK, 2)
        assert rig.value(RACK, "rack_power_limit_w")[0] == 95_000.0


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c.update(endpoint="http://127.0.0.1:8443"), "plain http sends the Redfish password in clear"),
        (lambda c: c.pop("redfish"), "Redfish devices need 'redfish.username'"),
        (lambda c: c["redfish"].pop("password_env"), "username and password_env go together"),
        (lambda c: c.update(endpoint="https://bmc-1/redfish"), "name the port explicitly"),
        (lambda c: c["redfish"].update(max_in_flight=0), "max_in_flight"),
    ],
)
def test_bad_redfish_config_is_one_clear_line(tmp_path: Path, edit: Any, message: str) -> None:
    """A Redfish device over plain http, without a login, or with a bad URL is refused with one line naming it."""

    def bad(doc: dict[str, Any]) -> None:
        edit(doc["halls"][0]["racks"][2]["controller"])

    with pytest.raises(ConfigError) as err:
        http_site(tmp_path, bad)
    text = str(err.value)
    assert message in text
    assert "halls[0].racks[2].controller" in text
    assert "\n" not in text


@pytest.mark.parametrize("bound", [1, 3])
async def test_requests_in_flight_stay_within_max_in_flight(tmp_path: Path, bound: int) -> None:
    """A slow service never sees more requests at once than redfish.max_in_flight, whatever the resources per poll."""

    def limit(doc: dict[str, Any]) -> None:
        doc["halls"][0]["cdus"][0]["redfish"]["max_in_flight"] = bound
        for r in doc["halls"][0]["racks"][2:4]:
            r["controller"]["redfish"]["max_in_flight"] = bound

    site = http_site(tmp_path, limit)
    async with http_rig(site, "redfish") as rig:
        rig.facility.faults.inject(CDU, "delay", 0.05)  # six CDU resources per poll, each answered late
        await polls(rig, CDU, 3)
        assert service(rig).listener.most_in_flight == bound


async def test_collect_once_lists_every_dcgm_and_redfish_point(tmp_path: Path) -> None:
    """One-shot collection (aidc collect --once) reads every DCGM and Redfish device with good quality."""
    site = http_site(tmp_path)
    async with http_facility(site) as fac:
        devices = [d for d in site.devices if d.config.protocol in ("dcgm", "redfish")]
        got = await Engine(devices, clock=fac.clock, data_dir=site.data_dir).collect_once()
    assert sorted(got) == sorted(d.name for d in devices)
    for name, batch in got.items():
        assert isinstance(batch, Batch), (name, batch)
        assert (batch.quality == 0).all(), (name, batch.reasons)


async def test_error_status_stuck_reading_and_dropped_service(tmp_path: Path) -> None:
    """An HTTP 503 reads bad and recovers; a frozen must-move reading is uncertain (stuck); a dropped service is stale."""
    site = http_site(tmp_path)
    async with http_rig(site, "redfish", stuck_polls=3) as rig:
        await polls(rig, RACK, 2)
        rig.facility.faults.inject(RACK, "exception")
        await until(lambda: "HTTP 503" in rig.value(RACK, "coolant_flow_lpm")[2])
        assert rig.value(RACK, "coolant_flow_lpm")[1] is Quality.BAD
        rig.facility.faults.clear(RACK)
        await until(lambda: rig.value(RACK, "coolant_flow_lpm")[1] is Quality.GOOD)
        vals = rig.physics.values[CDU]

        async def moving() -> None:  # the TCS supply wanders, as a real probe reads
            while True:
                vals["tcs_supply_temp_c"] = float(vals["tcs_supply_temp_c"]) + 0.01  # type: ignore[arg-type]
                await asyncio.sleep(0.01)

        mover = asyncio.create_task(moving())
        try:
            await polls(rig, CDU, 4)
            assert rig.value(CDU, "tcs_supply_temp_c")[1] is Quality.GOOD
            rig.facility.faults.inject(CDU, "stuck")
            await until(lambda: rig.value(CDU, "tcs_supply_temp_c")[2].startswith("stuck"))
            assert rig.value(CDU, "tcs_supply_temp_c")[1] is Quality.UNCERTAIN
            assert rig.value(CDU, "flow_lpm")[1] is Quality.GOOD  # not a must-move point
            rig.facility.faults.clear(CDU)
        finally:
            mover.cancel()
        rig.facility.faults.inject(RACK, "drop")
        await until(lambda: rig.value(RACK, "rack_power_w")[2].startswith("stale"))
        assert rig.value(RACK, "rack_power_w")[1] is Quality.BAD


async def test_listed_certificates_are_the_only_ones_trusted(tmp_path: Path) -> None:
    """With trusted_server_certs the service's certificate must be listed (nothing is pinned on first use); another
    certificate is refused with the reason."""
    other = tmp_path / "other-cert.pem"
    self_signed(other, tmp_path / "other-key.pem", "127.0.0.1")
    port = [0]

    def trust(certs: list[str]) -> Any:
        def edit(doc: dict[str, Any]) -> None:
            cdu = doc["halls"][0]["cdus"][0]
            port[0] = int(cdu["endpoint"].rsplit(":", 1)[1])
            for dev in [cdu, *(r["controller"] for r in doc["halls"][0]["racks"][2:4])]:
                dev["redfish"]["trusted_server_certs"] = [c.replace("PORT", str(port[0])) for c in certs]

        return edit

    listed = str(tmp_path / "var" / "pki" / "redfish-sim-PORT-cert.pem")
    site = http_site(tmp_path, trust([str(other)]))
    async with http_rig(site, "redfish") as rig:
        await until(lambda: "is not in trusted_server_certs; refused" in rig.engine.link(CDU).last_error)
        assert not service(rig).sessions
    site = http_site(tmp_path, trust([listed, str(other)]))
    async with http_rig(site, "redfish") as rig:
        await polls(rig, CDU, 2)
        assert rig.value(CDU, "flow_lpm")[1] is Quality.GOOD
    assert not (site.data_dir / "pki" / "known_servers.json").exists()
