"""Shared helpers for the simulator tests: site files on free loopback ports."""

from __future__ import annotations

import random
import socket
import tomllib
from pathlib import Path
from typing import Any

import tomli_w

from aidc.config import Site, load_site
from aidc.sitegen import SiteTemplate, render_site

FAKE_PHYSICS = "tests.fake_physics:FakePhysics"


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_block(n: int) -> int:
    """First of ``n`` consecutive free loopback ports (plus one below it for the control API)."""
    rng = random.Random()
    # Below the kernel's ephemeral range: a client's own ephemeral port never takes the block, and a client
    # connecting before the server listens can never connect to itself (which reads its own request back).
    try:
        ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 32768
    for _ in range(200):
        base = rng.randrange(10000, max(10001, ephemeral_low - n))
        if all(_bindable(p) for p in range(base - 1, base + n)):
            return base
    raise RuntimeError(f"no block of {n} free ports found")


def site_doc(tmp_path: Path, racks: int = 4) -> dict[str, Any]:
    """A generated site document on free ports with its data directory under tmp_path."""
    base = free_port_block(racks * 2 + 8)
    opcua = free_port_block(4)
    text = render_site(SiteTemplate(racks=racks, base_port=base, opcua_port=opcua, data_dir=str(tmp_path / "var")))
    doc = tomllib.loads(text)
    doc["api"] = {"port": free_port_block(1)}  # the main job's REST API, off the default 8081 a real job may hold
    return doc


def write_site(tmp_path: Path, doc: dict[str, Any], name: str = "site.toml") -> Path:
    """Write a site document to a file and return its path."""
    path = tmp_path / name
    path.write_text(tomli_w.dumps(doc), encoding="utf-8")
    return path


def make_site(tmp_path: Path, racks: int = 4) -> Site:
    """A loaded site on free ports."""
    return load_site(write_site(tmp_path, site_doc(tmp_path, racks)))
