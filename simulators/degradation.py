"""Slowly developing physical faults: the kind a predictive-maintenance system is meant to catch days ahead.

Each :class:`SlowFault` starts at ``start_ns`` and grows linearly over ``ramp_days`` to ``severity`` (and keeps
growing at that rate afterwards, as wear does):

- ``fouling`` (a rack): the GPUs' junction-to-coolant thermal resistance rises by ``severity`` (0.6: +60 %), as
  deposits build up in the cold plates' micro-channels;
- ``pump_wear`` (a CDU): the pump's wire-to-water efficiency falls by ``severity`` (0.4: to 60 % of new), so it
  draws more power for the same flow and head (worn impeller, bearing losses);
- ``strainer`` (a CDU): the CDU's internal pressure drop (exchanger + strainer) grows by ``severity`` times its clean
  value, so the pump speeds up to hold the loop's differential pressure and, at full speed, flow falls;
- ``sensor_drift`` (a rack): the rack's coolant-inlet temperature sensor reads ``severity`` kelvin high at the end of
  the ramp (calibration drift); the physics is untouched, only the reading.

:class:`Degradation` is attached to a :class:`simulators.facility.Facility` as ``facility.degradation``; the
facility calls :meth:`rack_rth_factor`, :meth:`hydraulics` and :meth:`readings` from three one-line hooks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from aidc.config import Site
from simulators.interface import PointValue
from simulators.layout import Layout
from simulators.physics import Arr

Kind = Literal["fouling", "pump_wear", "strainer", "sensor_drift"]
KINDS: tuple[str, ...] = ("fouling", "pump_wear", "strainer", "sensor_drift")
DAY_NS = 86_400 * 10**9


@dataclass(frozen=True, slots=True)
class SlowFault:
    """One slow fault on one device (a rack for fouling and sensor drift, a CDU for pump wear and strainer)."""

    kind: Kind
    device: str  # rack name or CDU device name
    start_ns: int
    ramp_days: float
    severity: float

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"slow fault {self.kind!r}: expected one of {', '.join(KINDS)}")
        if not self.ramp_days > 0 or not self.severity > 0:
            raise ValueError(f"slow fault {self.kind} on {self.device}: ramp_days and severity must be positive")

    def level(self, t_ns: int) -> float:
        """How far the fault has developed at ``t_ns``, in units of ``severity`` (0 before it starts)."""
        if t_ns <= self.start_ns:
            return 0.0
        return self.severity * (t_ns - self.start_ns) / (self.ramp_days * DAY_NS)


class Degradation:
    """The slow faults of one facility, resolved to rack and CDU indices."""

    def __init__(
        self,
        faults: Sequence[SlowFault],
        *,
        rack_index: dict[str, int],
        cdu_index: dict[str, int],
        rack_controllers: dict[str, str],
    ) -> None:
        self.faults = tuple(faults)
        self.n_racks, self.n_cdus = len(rack_index), len(cdu_index)
        self._rack: list[tuple[int, SlowFault]] = []
        self._cdu: list[tuple[int, SlowFault]] = []
        self._drift: dict[str, SlowFault] = {}
        for f in self.faults:
            if f.kind in ("fouling", "sensor_drift"):
                if f.device not in rack_index:
                    raise ValueError(f"slow fault {f.kind}: {f.device!r} is not a rack")
                if f.kind == "fouling":
                    self._rack.append((rack_index[f.device], f))
                else:
                    self._drift[rack_controllers[f.device]] = f
            else:
                if f.device not in cdu_index:
                    raise ValueError(f"slow fault {f.kind}: {f.device!r} is not a CDU")
                self._cdu.append((cdu_index[f.device], f))

    @classmethod
    def for_facility(cls, fac: Layout, site: Site, faults: Sequence[SlowFault]) -> Degradation:
        """Resolve device names against a facility's layout (rack and CDU indices) and the site's rack controllers."""
        controllers = {r.name: r.controller.name for _, r in site.racks() if r.controller is not None}
        return cls(faults, rack_index=fac.rack_index, cdu_index=fac.cdu_index, rack_controllers=controllers)

    @property
    def drifting(self) -> frozenset[str]:
        """The devices (rack controllers) whose readings :meth:`readings` changes."""
        return frozenset(self._drift)

    def rack_rth_factor(self, t_ns: int) -> Arr:
        """Per-rack multiplier on the GPUs' thermal resistance (cold-plate fouling)."""
        out = np.ones(self.n_racks)
        for i, f in self._rack:
            out[i] *= 1.0 + f.level(t_ns)
        return out

    def hydraulic_key(self, t_ns: int) -> bytes:
        """Changes when the hydraulic state does (quantised to 0.1 % of each fault's level)."""
        return np.array([round(f.level(t_ns), 3) for _, f in self._cdu]).tobytes()

    def hydraulics(
        self, t_ns: int, flow: Arr, speed: Arr, head_internal: Arr, head_loop: Arr
    ) -> tuple[Arr, Arr, Arr, Arr]:
        """Flow, speed, total head and the pumps' efficiency factors (1 new) after pump wear and strainer clogging.

        A clogged strainer multiplies the internal drop; holding the loop's dp on the same quadratic curves the pump
        needs speed × sqrt(total head / clean head) (affinity laws); beyond full speed the flow scales down.
        """
        eff_arr = np.ones(flow.shape[-1])  # per CDU; broadcasts over what-if candidates (N x CDUs)
        clog = np.ones(flow.shape[-1])
        for i, f in self._cdu:
            if f.kind == "pump_wear":
                eff_arr[i] *= max(1.0 - f.level(t_ns), 0.05)
            else:
                clog[i] += f.level(t_ns)
        clean = head_loop + head_internal
        head = head_loop + head_internal * clog
        need = speed * np.sqrt(head / np.maximum(clean, 1e-9))
        scale = np.minimum(1.0, 1.0 / np.maximum(need, 1e-9))
        return flow * scale, np.minimum(need, 1.0), head * scale * scale, eff_arr

    def readings(self, device: str, values: dict[str, PointValue], t_ns: int) -> dict[str, PointValue]:
        """Device readings with drifting sensors applied (the physics keeps the true value)."""
        f = self._drift.get(device)
        if f is None or "coolant_inlet_temp_c" not in values:
            return values
        out = dict(values)
        out["coolant_inlet_temp_c"] = float(out["coolant_inlet_temp_c"]) + f.level(t_ns)  # type: ignore[arg-type]
        return out
