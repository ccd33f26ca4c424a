"""Shared rig for the DCGM and Redfish tests: a generated site whose racks read dcgm-exporter pages and Redfish
chassis and whose first CDU is a Redfish CoolingUnit, served by the bundled simulators over loopback sockets."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from aidc.clock import ScaledClock
from aidc.config import Site
from collectors.engine import EngineOptions
from collectors.link import LinkOptions
from simulators.runner import SimulatedFacility
from tests.fake_physics import FakePhysics
from tests.test_collect_modbus import POLL_S, Rig, engine_on, free_block, make_site

PASSWORD_ENV = "AIDC_TEST_REDFISH_PASSWORD"
PASSWORD = "s3cret-bmc"


def http_site(tmp_path: Path, edit: Callable[[dict[str, Any]], None] | None = None) -> Site:
    """Two racks on DCGM (one page per host for the first, one federated page for the second), two more racks'
    chassis and the first CDU on one Redfish service over HTTPS with a session login; everything else Modbus/OPC-UA.
    The HTTP ports are free ones the generated site does not use (its own block is drawn apart)."""

    def convert(doc: dict[str, Any]) -> None:
        taken = _ports(doc)
        base = free_block(3)
        while taken & set(range(base - 1, base + 4)):
            base = free_block(3)
        hall = doc["halls"][0]
        r1, r2 = hall["racks"][0], hall["racks"][1]
        page = f"http://127.0.0.1:{base}"
        r1["controller"] = {
            "name": r1["controller"]["name"],
            "protocol": "dcgm",
            "profile": "gpu-rack-dcgm",
            "dcgm": {"urls": [f"{page}/n0/metrics", f"{page}/n1/metrics"]},
        }
        r2["controller"] = {
            "name": r2["controller"]["name"],
            "protocol": "dcgm",
            "profile": "gpu-rack-dcgm",
            "dcgm": {"urls": [f"{page}/metrics"], "hostnames": ["gpu-b1", "gpu-b2"]},
        }
        redfish = {"username": "aidc", "password_env": PASSWORD_ENV}
        for r in hall["racks"][2:4]:
            r["controller"] = {
                "name": r["controller"]["name"],
                "protocol": "redfish",
                "profile": "rack-redfish",
                "endpoint": f"https://127.0.0.1:{base + 1}",
                "redfish": dict(redfish),
            }
        cdu = hall["cdus"][0]
        for k in ("host", "port", "unit_id"):
            cdu.pop(k)
        cdu |= {
            "protocol": "redfish",
            "profile": "cdu-redfish",
            "endpoint": f"https://127.0.0.1:{base + 1}",
            "redfish": {**redfish, "id": "CDU1"},
        }
        for d in [*(r["controller"] for r in hall["racks"][:4]), cdu]:
            d["poll_interval_s"], d["timeout_s"] = POLL_S, 0.5
        if edit is not None:
            edit(doc)

    return make_site(tmp_path, racks=4, edit=convert)


def _ports(doc: Any) -> set[int]:
    """Every port a site document names: ``port`` / ``*_port`` keys and the ports of ``scheme://host:port`` URLs."""
    out: set[int] = set()
    if isinstance(doc, dict):
        for k, v in doc.items():
            if isinstance(v, int) and str(k).endswith("port"):
                out.add(v)
            else:
                out |= _ports(v)
    elif isinstance(doc, list):
        for v in doc:
            out |= _ports(v)
    elif isinstance(doc, str) and (m := re.match(r"^[a-z.+-]+://[^/]*:(\d+)", doc)):
        out.add(int(m.group(1)))
    return out


@contextlib.asynccontextmanager
async def http_facility(site: Site, physics: FakePhysics | None = None) -> AsyncIterator[SimulatedFacility]:
    """Only the site's HTTP simulators (instant to start), refreshed from the physics every half poll."""
    physics = physics or FakePhysics(site)
    fac = SimulatedFacility(site, physics, speed=1.0)
    for hs in fac.http:
        await hs.start()
    fac.clock = ScaledClock.starting_now(physics.t_ns, 1.0)

    async def tick() -> None:
        while True:
            await asyncio.sleep(POLL_S / 2)
            physics.step(POLL_S / 2)
            for hs in fac.http:
                hs.refresh()

    task = asyncio.create_task(tick())
    try:
        yield fac
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        for hs in fac.http:
            await hs.stop()


@contextlib.asynccontextmanager
async def http_rig(
    site: Site, protocol: str, *, stuck_polls: int = 10_000, physics: FakePhysics | None = None
) -> AsyncIterator[Rig]:
    """HTTP simulators plus an engine over the site's devices of ``protocol``."""
    opts = EngineOptions(link=LinkOptions(stuck_polls=stuck_polls))
    async with http_facility(site, physics) as fac, engine_on(fac, opts, protocol) as rig:
        yield rig
