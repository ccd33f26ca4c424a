"""``aidc init`` (write a site file) and ``aidc check`` (validate one and list its devices)."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import sys
from pathlib import Path
from typing import Any

from aidc.config import Site, load_site
from aidc.errors import ConfigError
from aidc.sitegen import MIX_SECRETS, SiteTemplate, climate_location, render_site
from app.cli import COMMAND_MODULES


def register(sub: Any) -> None:
    """Add ``init`` and ``check``."""
    p = sub.add_parser("init", help="write a working site file for a simulated facility")
    p.add_argument("--racks", type=int, default=32, help="number of GPU racks (default 32)")
    p.add_argument("--climate", type=Path, help="weather file (EPW or CSV) for the site; default bundled Leesburg VA")
    p.add_argument("--name", default="dc1", help="site name (the site tag of every series)")
    p.add_argument("--base-port", type=int, default=15000, help="first Modbus TCP port (default 15000)")
    p.add_argument("--opcua-port", type=int, default=4840, help="first OPC-UA port (default 4840)")
    p.add_argument("--data-dir", default=None, help="data directory written into the file (default var/NAME)")
    p.add_argument("--mix", action="store_true", help="mix vendors and sources: Modbus and SNMPv3 PDUs, OPC-UA, "
                   "DCGM and Redfish GPU telemetry, a Redfish CDU; every port from --base-port")  # fmt: skip
    p.add_argument("-o", "--output", type=Path, help="write here instead of standard output")
    p.set_defaults(func=cmd_init)

    c = sub.add_parser("check", help="validate a site file and list its devices")
    c.add_argument("--config", type=Path, required=True, help="site file")
    c.add_argument("--json", action="store_true", help="machine-readable output")
    c.set_defaults(func=cmd_check)


def cmd_init(args: argparse.Namespace) -> int:
    """Write the site file."""
    t = SiteTemplate(racks=args.racks, name=args.name, base_port=args.base_port, opcua_port=args.opcua_port,
                     data_dir=args.data_dir or f"var/{args.name}", tenants=True, mix=args.mix)
    if not 1024 <= args.base_port <= 65000:
        raise ConfigError(f"--base-port {args.base_port}: choose a port between 1024 and 65000")
    if args.climate is not None:
        climate: Path = args.climate.resolve()
        if not climate.is_file():
            raise ConfigError(f"--climate {args.climate}: no such file")
        loc = climate_location(climate)
        overrides: dict[str, Any] = {"climate": str(climate)}
        if loc is not None:
            overrides.update(latitude=loc[0], longitude=loc[1], elevation_m=loc[2], timezone=loc[3])
        t = dataclasses.replace(t, **overrides)
    text = render_site(t)
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text, encoding="utf-8")
        load_site(args.output)  # what we write must load
        print(f"wrote {args.output} ({args.racks} racks)", file=sys.stderr)
    if args.mix:
        print("the site reads its secrets from the environment; set them before `aidc simulate` and `aidc run`:",
              file=sys.stderr)
        for name, what in MIX_SECRETS.items():
            print(f"  export {name}=...   # {what} (8+ characters)", file=sys.stderr)
    return 0


def stage_checks(site: Site) -> None:
    """Run the site-file checks the stages own (``check_site(site)`` in a command module, e.g. the simulators' check
    of ``[simulation.physics]``, whose parameters the kernel cannot know); ConfigError names the file and key."""
    for name in COMMAND_MODULES:
        check = getattr(importlib.import_module(name), "check_site", None)
        if check is not None:
            check(site)


def cmd_check(args: argparse.Namespace) -> int:
    """Validate every table (the kernel's models at load, then the stages' own checks) and list devices."""
    site = load_site(args.config)
    stage_checks(site)
    rows = [
        {"device": d.name, "kind": d.kind, "profile": d.profile.name, "address": d.config.address,
         "poll_interval_s": d.config.poll_interval_s}
        for d in site.devices
    ]
    if args.json:
        print(json.dumps({"site": site.name, "devices": rows}, indent=2))
    else:
        print(f"site {site.name}: {len(rows)} devices, {sum(len(d.profile.points) for d in site.devices)} points")
        for r in rows:
            print(f"  {r['device']:<24} {r['kind']:<6} {r['profile']:<18} {r['address']}")
    return 0
