"""The power chain's meters and their loads in kW: shared by the dashboard's Power chain page and the power guard.

A meter is a scalar power point of the site with a chain role (facility power, UPS output and input, PDU output,
and on request rack power or a rack's power limit), with its series id, device, rack tag and scale to kW. Loads are
sums of the latest good readings, and a sum with an unknown part is unknown (None), never a partial figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from aidc.config import Site
from aidc.model import SeriesKey
from aidc.roles import Role
from analytics.energy import kpi

CHAIN_ROLES = (Role.FACILITY_POWER, Role.IT_POWER_UPS_OUTPUT, Role.UPS_INPUT_POWER, Role.IT_POWER_PDU_OUTPUT)


@dataclass(frozen=True, slots=True)
class Meter:
    """A power point of the chain: its series, device, rack tag and scale to kW."""

    series: str
    device: str
    rack: str
    scale_kw: float


def chain_meters(site: Site, roles: Sequence[Role] = CHAIN_ROLES) -> dict[Role, list[Meter]]:
    """The chain's power points by role, in one pass over the site's devices (a 1,000-rack site has thousands)."""
    out: dict[Role, list[Meter]] = {r: [] for r in roles}
    for dev in site.devices:
        for p in dev.profile.points:
            role = dev.role_of(p.name)
            if role in out and not p.array:
                sid = SeriesKey.of(dev.profile.measurement, p.name, dev.tags).id
                out[role].append(Meter(sid, dev.name, dev.tags.get("rack", ""), kpi.power_scale(p.name, p.unit)))
    return out


def loads_kw(values: npt.NDArray[np.float64], meters: Sequence[Meter]) -> tuple[float | None, list[float | None]]:
    """Sum (kW) of the meters' latest good ``values`` (in meter order; NaN unknown; the sum None if any part is
    unknown or there is no meter), and each meter's own."""
    each = [None if not np.isfinite(v) else float(v) * m.scale_kw for v, m in zip(values, meters, strict=True)]
    total = None if not each or any(v is None for v in each) else float(sum(v for v in each if v is not None))
    return total, each
