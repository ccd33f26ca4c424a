"""The power guard's arithmetic: new rack power limits from the loads and ratings of the levels the racks feed.

Pure functions over plain figures (kW), so the rule can be read and tested apart from the live state and the writer
(:mod:`control.power_guard` runs it). The rule, per tick:

* **Ceiling.** A cappable rack's limit is never above its ceiling: the lower of what its limit point can hold and
  its PDU feed's guarded rating ``rating * (1 - headroom)``. The rack's own power controller holds that within the
  tick, so a surge on one rack never takes its feed over the rating, whatever the guard's sampling.
* **Cut.** Each level (a PDU feed, the UPS, the site) whose measured load is above its guarded rating sheds the
  excess from the cappable racks it feeds, **proportionally** to each rack's room (what it draws, or its limit if
  lower, minus its minimum limit). Racks go no lower than their minimum; what that leaves uncut is reported as
  ``short_kw`` for the level. Levels are taken feeds first, then the UPS, then the site, each on the limits the
  previous ones left (a kW cut at a rack lowers the UPS and the site by at least a kW).
* **Restore.** A capped rack whose every level reads below ``rating * (1 - headroom - hysteresis)`` is raised by at
  most ``step_kw``, and by no more in all, per level, than that level's margin below the same line: a rack raised
  by x kW can draw at most x kW more, so a restore never takes a level back over. A level with an unknown load
  holds its racks' limits where they are (no cut on a figure nobody has, no restore either).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class RackBudget:
    """One rack as the guard sees it: limits in force and allowed, and what it draws now (None: unknown)."""

    name: str
    cappable: bool
    floor_kw: float
    ceiling_kw: float
    limit_kw: float
    draw_kw: float | None


@dataclass(frozen=True, slots=True)
class Level:
    """A guarded level of the power chain: a PDU feed, the UPS or the site, and the racks (indices) it feeds."""

    name: str
    rating_kw: float
    load_kw: float | None
    racks: tuple[int, ...]

    def line_kw(self, frac: float) -> float:
        """``rating * (1 - frac)``."""
        return self.rating_kw * (1.0 - frac)


@dataclass
class Allocation:
    """New limits (per rack, in rack order) and why: the levels over their line, and what could not be cut."""

    limits_kw: list[float]
    over: list[str] = field(default_factory=list)  # "<level> <load> kW > <line> kW"
    short_kw: dict[str, float] = field(default_factory=dict)  # level -> kW the cappable racks could not shed
    restored: list[int] = field(default_factory=list)  # racks raised this tick


def allocate(
    racks: Sequence[RackBudget], levels: Sequence[Level], *, headroom: float, hysteresis: float, step_kw: float
) -> Allocation:
    """The limits for this tick (see the module docstring); non-cappable racks keep theirs."""
    target = [min(max(r.limit_kw, r.floor_kw), r.ceiling_kw) if r.cappable else r.limit_kw for r in racks]
    out = Allocation(target)
    for lv in levels:
        if lv.load_kw is None:
            continue
        line = lv.line_kw(headroom)
        excess = lv.load_kw - line
        if excess <= 0:
            continue
        out.over.append(f"{lv.name} {lv.load_kw:.1f} kW > {line:.1f} kW (rating {lv.rating_kw:g} kW)")
        members = [i for i in lv.racks if racks[i].cappable]
        base = {i: _base(target[i], racks[i].draw_kw) for i in members}
        room = {i: max(0.0, base[i] - racks[i].floor_kw) for i in members}
        total = sum(room.values())
        if total > 0:
            take = min(excess, total)
            for i in members:
                target[i] = min(target[i], max(racks[i].floor_kw, base[i] - take * room[i] / total))
        if excess > total + 1e-9:
            out.short_kw[lv.name] = excess - total
    _restore(racks, levels, target, out, headroom + hysteresis, step_kw)
    return out


def _base(limit_kw: float, draw_kw: float | None) -> float:
    """Where a cut starts from: the rack's draw, or its limit where that is lower (or the draw unknown)."""
    return limit_kw if draw_kw is None else min(limit_kw, draw_kw)


def _restore(
    racks: Sequence[RackBudget],
    levels: Sequence[Level],
    target: list[float],
    out: Allocation,
    frac: float,
    step_kw: float,
) -> None:
    """Raise capped racks whose every level has margin below ``rating * (1 - frac)`` (in place)."""
    of_rack: dict[int, list[Level]] = {}
    for lv in levels:
        for i in lv.racks:
            of_rack.setdefault(i, []).append(lv)
    raise_kw: dict[int, float] = {}
    for i, r in enumerate(racks):
        if not r.cappable or target[i] >= r.ceiling_kw or target[i] < r.limit_kw:  # at the top, or cut this tick
            continue
        mine = of_rack.get(i, [])
        if all(lv.load_kw is not None and lv.load_kw < lv.line_kw(frac) for lv in mine):
            raise_kw[i] = min(step_kw, r.ceiling_kw - target[i])
    scale = dict.fromkeys(raise_kw, 1.0)
    for lv in levels:
        members = [i for i in lv.racks if i in raise_kw]
        asked = sum(raise_kw[i] for i in members)
        if not members or lv.load_kw is None or asked <= 0:
            continue
        margin = lv.line_kw(frac) - lv.load_kw
        if asked > margin:
            for i in members:
                scale[i] = min(scale[i], max(0.0, margin) / asked)
    for i, kw in raise_kw.items():
        if kw * scale[i] > 0:
            target[i] += kw * scale[i]
            out.restored.append(i)
