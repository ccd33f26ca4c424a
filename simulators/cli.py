"""``aidc simulate`` (run the simulated facility in the foreground) and ``aidc fault`` (inject or clear faults)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tomllib
from pathlib import Path
from typing import Any

from aidc.config import Site, load_site, site_from_dict
from aidc.errors import ConfigError
from aidc.sitegen import SiteTemplate, render_site
from simulators.control_api import control_host, control_request
from simulators.faults import Fault
from simulators.physics import site_params
from simulators.runner import SimulatedFacility, default_physics, listen_address, load_physics_factory, serve


def register(sub: Any) -> None:
    """Add ``simulate`` and ``fault``."""
    p = sub.add_parser("simulate", help="run the simulated facility: physics and every device server")
    p.add_argument("--config", type=Path, help="site file (default: a generated facility, see --racks)")
    p.add_argument("--racks", type=int, help="without --config: simulate a generated facility with N racks")
    p.add_argument("--speed", type=float, help="simulated seconds per wall second (overrides simulation.speed)")
    p.add_argument("--physics", help=argparse.SUPPRESS)  # module:Class, for tests that need a stand-in physics
    p.set_defaults(func=cmd_simulate)

    f = sub.add_parser("fault", help="inject or clear a fault on a simulated device")
    f.add_argument("--config", type=Path, required=True, help="site file of the running simulator")
    f.add_argument("device", help="device name, or * with --clear for every device")
    f.add_argument("fault", nargs="?", help=f"one of: {', '.join(x.value for x in Fault)}")
    f.add_argument("value", nargs="?", type=float, help="seconds (delay, restart) or exception code")
    f.add_argument("--clear", action="store_true", help="clear the fault (or every fault of the device)")
    f.set_defaults(func=cmd_fault)


def check_site(site: Site) -> None:
    """``aidc check``'s hook: the ``[simulation.physics]`` overrides name known parameters within their ranges."""
    site_params(site)


def _site(args: argparse.Namespace) -> Site:
    if args.config is not None:
        if args.racks is not None:
            raise ConfigError("--racks only applies without --config (the site file lists its racks)")
        return load_site(args.config)
    racks = 32 if args.racks is None else args.racks
    return site_from_dict(tomllib.loads(render_site(SiteTemplate(racks=racks))),
                          source=f"<generated {racks}-rack site>", path=Path.cwd() / "site.toml")


def cmd_simulate(args: argparse.Namespace) -> int:
    """Run until Ctrl-C / SIGTERM."""
    if args.speed is not None and not 0 < args.speed <= 100000:
        raise ConfigError(f"--speed {args.speed:g}: choose a speed in (0, 100000]")
    site = _site(args)
    factory = load_physics_factory(args.physics) if args.physics else default_physics
    physics = factory(site)
    asyncio.run(serve(site, physics, speed=args.speed, on_ready=_announce))
    return 0


def _announce(fac: SimulatedFacility) -> None:
    for d in fac.site.devices:
        print(f"{d.name:<24} {d.kind:<6} {d.profile.name:<18} {listen_address(d, fac.bind)}")
    sim = fac.site.config.simulation
    print(f"simulating {fac.site.name}: {len(fac.site.devices)} devices on {len(fac.ports)} Modbus ports and "
          f"{len(fac.endpoints)} OPC-UA servers" + (f", {len(fac.agents)} SNMP agents" if fac.agents else "")
          + (f", {len(fac.http)} HTTP listeners (DCGM exporter pages, Redfish)" if fac.http else "") + "; "
          f"speed {fac.speed:g}x, tick {fac.tick_s:g} s; "
          f"control API http://{control_host(fac.bind)}:{sim.control_port}; clock {fac.clock_path}; Ctrl-C stops",
          flush=True)
    sys.stdout.flush()


def cmd_fault(args: argparse.Namespace) -> int:
    """Inject or clear through the running simulator's control API."""
    site = load_site(args.config)
    sim = site.config.simulation
    if args.clear:
        body: dict[str, Any] = {"device": args.device}
        if args.fault:
            body["fault"] = args.fault
        reply = control_request(control_host(sim.bind), sim.control_port, "POST", "/faults/clear", body)
    else:
        if not args.fault:
            raise ConfigError("fault: name a fault to inject (or use --clear)")
        body = {"device": args.device, "fault": args.fault}
        if args.value is not None:
            body["value"] = args.value
        reply = control_request(control_host(sim.bind), sim.control_port, "POST", "/faults", body)
    print(json.dumps(reply))
    return 0
