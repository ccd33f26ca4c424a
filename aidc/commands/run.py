"""``aidc run`` (the main job against a facility) and ``aidc demo`` (the same against the simulated facility)."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import signal
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from aidc import loop as aidc_loop
from aidc.app import MainJob
from aidc.config import Site, load_site
from aidc.errors import ConfigError
from aidc.sitegen import SiteTemplate, render_site

DEMO_DIR = Path("var/demo")


def register(sub: Any) -> None:
    """Add ``run`` and ``demo``."""
    r = sub.add_parser("run", help="run the main job (collectors, historian, live summary) for a site")
    r.add_argument("--config", type=Path, required=True, help="site file")
    _common(r)
    r.set_defaults(func=cmd_run)

    d = sub.add_parser("demo", help="start the simulated facility and run the main job against it")
    d.add_argument("--config", type=Path, help=f"site file (default: {DEMO_DIR}/site.toml, generated if missing)")
    d.add_argument("--racks", type=int, default=32, help="racks of the generated demo facility (default 32)")
    d.add_argument("--speed", type=float, default=None, help="simulated seconds per wall second (default: site's)")
    _common(d)
    d.set_defaults(func=cmd_demo)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--duration", type=float, default=None, help="stop after this many wall seconds")
    p.add_argument("--summary-every", type=float, default=5.0, help="seconds between summary lines (default 5)")


def _say(text: str) -> None:
    print(text, flush=True)


def cmd_run(args: argparse.Namespace) -> int:
    """Run the main job until Ctrl-C or ``--duration``."""
    aidc_loop.stop_on_sigterm()
    site = load_site(args.config)
    job = MainJob.build(site)
    with contextlib.suppress(KeyboardInterrupt):
        aidc_loop.run(job.run(duration_s=args.duration, summary_every_s=args.summary_every, printer=_say))
    return 0


def demo_site(config: Path | None, racks: int) -> Path:
    """The demo's site file: the one given, or a generated one kept under var/demo."""
    if config is not None:
        return config
    path = DEMO_DIR / "site.toml"
    if path.exists():
        existing = load_site(path)
        if sum(1 for _ in existing.racks()) == racks:
            return path
    # The site's data directory is the demo folder itself (relative paths resolve against the site file).
    text = render_site(dataclasses.replace(SiteTemplate(racks=racks), data_dir="."))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def listening_lines(site: Site) -> list[str]:
    """Where every device listens, grouped by endpoint so gateways and shared servers read clearly."""
    by_endpoint: dict[str, list[str]] = defaultdict(list)
    for dev in site.devices:
        c = dev.config
        key = f"modbus://{c.host}:{c.port}" if c.protocol == "modbus" else str(c.endpoint)
        label = f"{dev.name} (unit {c.unit_id})" if c.protocol == "modbus" else dev.name
        by_endpoint[key].append(label)
    lines = []
    for endpoint, names in by_endpoint.items():
        shown = ", ".join(names)
        if len(names) > 4:
            shown = f"{', '.join(names[:3])} ... {names[-1]} ({len(names)} devices)"
        lines.append(f"  {endpoint:<40} {shown}")
    return lines


def cmd_demo(args: argparse.Namespace) -> int:
    """Start the simulator process, then the main job against it; Ctrl-C stops both."""
    from simulators.process import SimulatorProcess  # the demo is the one place the app starts simulators

    aidc_loop.stop_on_sigterm()  # SIGTERM as Ctrl-C: the simulator child is stopped in the finally below
    if args.racks < 1:
        raise ConfigError(f"--racks {args.racks}: need at least one rack")
    path = demo_site(args.config, args.racks)
    site = load_site(path)
    _say(f"aidc demo: site {site.name} from {path} ({sum(1 for _ in site.racks())} racks, {len(site.devices)} devices)")
    _say("starting the simulated facility (its own process) ...")
    sim = SimulatorProcess(path, speed=args.speed)
    try:
        sim.start()
        _say(f"simulated facility ready; every device answers on {site.config.simulation.bind}:")
        for line in listening_lines(site):
            _say(line)
        _say(f"fault-injection API (loopback only): http://127.0.0.1:{site.config.simulation.control_port}/faults")
        job = MainJob.build(site)
        _say(f"historian: {type(job.historian).__name__} under {site.data_dir}; collecting (Ctrl-C stops) ...")
        with contextlib.suppress(KeyboardInterrupt):
            aidc_loop.run(job.run(duration_s=args.duration, summary_every_s=args.summary_every, printer=_say))
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM before the job ran (e.g. while the simulator starts)
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the child's shutdown short
        code = sim.stop()
        print(f"simulated facility stopped (exit {code})", file=sys.stderr)
    return 0
