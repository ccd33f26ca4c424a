"""Helpers for the SNMP tests: a small site with SNMP PDUs (v3 authPriv and v2c), its agents and an engine."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from aidc.clock import ScaledClock
from aidc.config import Site
from collectors.engine import EngineOptions
from collectors.link import LinkOptions
from simulators.runner import SimulatedFacility
from tests.fake_physics import FakePhysics
from tests.test_collect_modbus import POLL_S, Rig, engine_on, make_site

V3_PDU = "pdu-h1-r01-01"
V2C_PDU = "pdu-h1-r01-02"
SECRETS = {
    "AIDC_TEST_SNMP_AUTH": "auth-secret-8x",
    "AIDC_TEST_SNMP_PRIV": "priv-secret-8y",
    "AIDC_TEST_SNMP_COMMUNITY": "community-secret-z",
}
V3 = {
    "version": "3",
    "user": "aidc",
    "auth_protocol": "SHA",
    "priv_protocol": "AES",
    "auth_key_env": "AIDC_TEST_SNMP_AUTH",
    "priv_key_env": "AIDC_TEST_SNMP_PRIV",
}
V2C = {"version": "2c", "community_env": "AIDC_TEST_SNMP_COMMUNITY"}


def snmp_pdus(doc: dict[str, Any]) -> None:
    """Turn the first two racks' PDUs into SNMP PDUs (PDU2-MIB profile): one v3 authPriv, one v2c."""
    for i, settings in ((0, V3), (1, V2C)):
        pdu = doc["halls"][0]["racks"][i]["pdu"]
        pdu.update(
            protocol="snmp", profile="raritan-px3-snmp", snmp=dict(settings), timeout_s=0.3, poll_interval_s=0.25
        )  # pysnmp v3 takes tens of ms a request: stale only after 0.75 s
        pdu.pop("unit_id", None)


def snmp_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Site:
    """A two-rack site on free ports whose PDUs speak SNMP, the secrets in the environment."""
    for k, v in SECRETS.items():
        monkeypatch.setenv(k, v)
    return make_site(tmp_path, edit=snmp_pdus)


async def _tick(fac: SimulatedFacility) -> None:
    while True:
        await asyncio.sleep(POLL_S / 2)
        fac.physics.step(POLL_S / 2)
        for agent in fac.agents.values():
            agent.refresh()


@contextlib.asynccontextmanager
async def snmp_rig(site: Site, stuck_polls: int = 10_000) -> AsyncIterator[Rig]:
    """The site's SNMP agents (FakePhysics, ticking) and an engine polling only the SNMP devices."""
    physics = FakePhysics(site)
    fac = SimulatedFacility(site, physics, speed=1.0)
    fac.clock = ScaledClock.starting_now(physics.t_ns, 1.0)
    for agent in fac.agents.values():
        await agent.start()
    task = asyncio.create_task(_tick(fac))
    options = EngineOptions(link=LinkOptions(stuck_polls=stuck_polls, backoff_initial_s=0.05))
    try:
        async with engine_on(fac, options, "snmp") as rig:
            yield rig
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        for agent in fac.agents.values():
            await agent.stop()
