"""The power chain from the live state: utility → UPS → rows of PDUs → PDU → rack, load and headroom at each level.

The meters and their sums are :mod:`analytics.power_chain`'s (the power guard reads the same). Ratings come from
the site file: the UPS's ``rated_kw``, each rack's ``rated_kw`` (its PDU is sized for it), a
row's sum of its racks; the utility feed has no rating in the site file, so its headroom is not shown (and says
so). Rack and row headroom are those of :func:`analytics.leasing.headroom.summary` (rated minus measured), the
figures the placement API answers with. Loads are the latest good readings (as the floor map's); an unknown reading
stays unknown (never 0), and a sum with an unknown part is unknown.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aidc.roles import Role
from analytics.leasing.headroom import RackState, summary
from analytics.power_chain import Meter, chain_meters, loads_kw
from dashboards.data import DashboardData

LEVELS = ("utility", "UPS", "row", "PDU", "rack")


@dataclass(frozen=True, slots=True)
class Node:
    """One element of the chain."""

    level: str
    name: str
    parent: str | None
    load_kw: float | None
    capacity_kw: float | None
    note: str = ""

    @property
    def headroom_kw(self) -> float | None:
        """Capacity minus load (None where either is unknown)."""
        return None if self.load_kw is None or self.capacity_kw is None else self.capacity_kw - self.load_kw

    @property
    def utilisation(self) -> float | None:
        """Load as a share of capacity (None where either is unknown)."""
        if self.load_kw is None or not self.capacity_kw:
            return None
        return self.load_kw / self.capacity_kw


def _kw(data: DashboardData, meters: list[Meter]) -> tuple[float | None, list[float | None]]:
    """Sum (kW) of the latest good values of ``meters`` (None if any is unknown), and each meter's own."""
    return loads_kw(data.live.values([m.series for m in meters]) if meters else np.zeros(0), meters)


def chain(data: DashboardData, meter_map: dict[Role, list[Meter]] | None = None) -> list[Node]:
    """Every element of the chain, parents before children (``meter_map``: :func:`chain_meters`, built once)."""
    site = data.site
    ups_cfg = site.config.ups
    meters = chain_meters(site) if meter_map is None else meter_map
    facility, _ = _kw(data, meters[Role.FACILITY_POWER])
    ups_out, _ = _kw(data, meters[Role.IT_POWER_UPS_OUTPUT])
    ups_in, _ = _kw(data, meters[Role.UPS_INPUT_POWER])
    pdus = meters[Role.IT_POWER_PDU_OUTPUT]
    _, pdu_kw = _kw(data, pdus)
    pdu_of_rack = {m.rack: kw for m, kw in zip(pdus, pdu_kw, strict=True)}
    pdu_name = {m.rack: m.device for m in pdus}
    nodes = [Node("utility", "utility feed", None, facility, None, "no utility rating in the site file")]
    losses = "" if ups_in is None or ups_out is None else f"; UPS losses {ups_in - ups_out:,.1f} kW"
    nodes.append(Node("UPS", ups_cfg.name, "utility", ups_out, ups_cfg.rated_kw, f"output{losses}"))
    rack_kw = data.floor("power").set_index("rack")["value"]
    states = [
        RackState(
            r.name,
            r.hall,
            r.row,
            r.cdu or "",
            r.rated_kw,
            None if not np.isfinite(rack_kw.get(r.name, np.nan)) else float(rack_kw[r.name]),
        )
        for r in data.racks.values()
    ]
    head = summary(states, [], ups_cfg.rated_kw, data.gpu_limit_c)
    rows: dict[str, list[str]] = {}
    for r in data.racks.values():
        rows.setdefault(f"{r.hall}/{r.row}", []).append(r.name)
    row_sums = head["rows"]
    assert isinstance(row_sums, dict)  # summary()'s documented shape
    for row, names in rows.items():
        loads = [pdu_of_rack.get(n) for n in names]
        pdu_total = None if any(v is None for v in loads) else float(sum(v for v in loads if v is not None))
        nodes.append(Node("row", row, ups_cfg.name, pdu_total, row_sums[row]["rated_kw"], "sum of its PDUs"))
    for r in data.racks.values():
        row = f"{r.hall}/{r.row}"
        if r.name in pdu_of_rack:
            nodes.append(Node("PDU", pdu_name[r.name], row, pdu_of_rack[r.name], r.rated_kw, "output"))
        parent = pdu_name.get(r.name, row)
        power = rack_kw.get(r.name, np.nan)
        nodes.append(Node("rack", r.name, parent, None if not np.isfinite(power) else float(power), r.rated_kw))
    return nodes


def most_loaded(nodes: list[Node]) -> Node | None:
    """The element closest to its rating (highest utilisation), if any has both."""
    rated = [n for n in nodes if n.utilisation is not None]
    return max(rated, key=lambda n: n.utilisation or 0.0, default=None)
