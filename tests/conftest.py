"""Shared pytest fixtures for the core."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from aidc.config import Site, site_from_dict
from aidc.sitegen import SiteTemplate, render_site


def site_dict(racks: int = 4, **kw: Any) -> dict[str, Any]:
    """A generated site document as a dict (tests mutate it to make broken files)."""
    return tomllib.loads(render_site(SiteTemplate(racks=racks, **kw)))


@pytest.fixture
def small_site(tmp_path: Path) -> Site:
    """A valid 4-rack simulated site whose data directory is under tmp_path."""
    doc = site_dict(4, data_dir=str(tmp_path / "var"))
    return site_from_dict(doc, source="small.toml", path=tmp_path / "small.toml")


DATA = Path(__file__).resolve().parents[1] / "data"  # the bundled real data (data/README.md)
