"""The simulator's HTTP devices: dcgm-exporter pages and Redfish services, one listener per port."""

from __future__ import annotations

from pathlib import Path

from aidc.config import Site
from aidc.errors import ConfigError
from simulators.dcgm_exporter import DcgmExporterSim, check_pages, plan_pages
from simulators.faults import FaultBook
from simulators.interface import FacilityPhysics
from simulators.redfish_service import RedfishService, plan_services

HTTP_PROTOCOLS = ("dcgm", "redfish")
HttpSim = DcgmExporterSim | RedfishService


def http_sims(
    site: Site,
    physics: FacilityPhysics,
    faults: FaultBook,
    pki_dir: Path,
    taken: frozenset[int] | set[int] = frozenset(),
) -> list[HttpSim]:
    """A listener per port for the site's DCGM and Redfish devices; ConfigError when a port is used twice."""
    bind = site.config.simulation.bind
    dcgm = [d for d in site.devices if d.config.protocol == "dcgm"]
    redfish = [d for d in site.devices if d.config.protocol == "redfish"]
    check_pages(dcgm)
    pages, services = plan_pages(dcgm), plan_services(redfish)
    for port, devs in [*pages.items(), *services.items()]:
        if port in taken or (port in pages and port in services):
            raise ConfigError(f"{devs[0].path}: port {port} is also used by another device or the control API")
    out: list[HttpSim] = [DcgmExporterSim(bind, port, devs, physics, faults, pki_dir) for port, devs in pages.items()]
    out += [RedfishService(bind, port, devs, physics, faults, pki_dir) for port, devs in services.items()]
    return out
