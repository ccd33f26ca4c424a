"""Every point of every device of the simulated facility as one batch per step, built with array operations.

In-process readers that want the whole facility at once (the demo's history backfill) would otherwise ask the
facility device by device (:meth:`simulators.facility.Facility.device_arrays`: a dict per device and a float per
point), which cost more than the physics step itself at 32 racks. :class:`FacilityBatch` builds the series ids once
(the collectors' names: ``SeriesKey.of(measurement, point, tags)``, array points one series per element with the
profile's array tag) and, per step, fills one value array: racks and rack PDUs, most of the devices, column by
column over all of them; the few others (CDUs, the plant, the UPS, meters, and any rack or PDU whose readings carry
sensor noise, drift or a point this module does not know) through the facility's own ``device_arrays``.

The values are bit for bit those of the device-by-device path (the same float64 operations in the same order; the
PDUs' voltage ripple calls the same ``math.sin``): ``tests/test_demo_telemetry_batch.py`` compares the two step by step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aidc.config import DeviceRef
from aidc.model import Batch, SeriesKey
from simulators.facility import Facility
from simulators.physics import Arr

# The points the column path computes, per device kind (the keys of DevicePoints._rack and DevicePoints._pdu).
RACK_KEYS = frozenset(
    "rack_power_w it_energy_wh coolant_inlet_temp_c coolant_outlet_temp_c coolant_flow_lpm leak_detected "
    "condensation_risk gpus_throttled gpu_power_w gpu_temp_c gpu_util_pct gpu_clock_pct".split()
)
PDU_KEYS = frozenset(
    [f"inlet{i}_{q}" for i in (1, 2) for q in ("voltage_v", "current_a", "active_power_w", "power_factor")]
    + ["active_power_w", "active_energy_wh"]
)
RACK_ARRAYS = ("gpu_power_w", "gpu_temp_c", "gpu_util_pct")


@dataclass(frozen=True, slots=True)
class _Slots:
    """Where one column goes: output positions and, for each, the row of the column it takes."""

    out: np.ndarray
    src: np.ndarray


class FacilityBatch:
    """One :class:`aidc.model.Batch` of every point of every device per call (see the module's text)."""

    def __init__(self, fac: Facility) -> None:
        self.fac = fac
        pts = fac.points
        ids: list[str] = []
        # every device's points: name -> [(key, first slot, element count or 0 for a scalar)]
        self._layout: dict[str, list[tuple[str, int, int]]] = {}
        self._slow: list[str] = []  # the devices read device by device
        rack_cols: dict[str, tuple[list[int], list[int]]] = {}
        pdu_cols: dict[str, tuple[list[int], list[int]]] = {}
        self._pdus: list[DeviceRef] = []
        self._rack_devs: list[tuple[int, str]] = []  # (rack row, rack name) of every column-path rack device
        for dev in pts.devices.values():
            values = fac.device_arrays(dev.name)
            keys = [(p, p.sim or p.name) for p in dev.profile.points]
            known = RACK_KEYS if dev.kind == "rack" else PDU_KEYS if dev.kind == "pdu" else frozenset()
            column = (
                bool(known)
                and all(k in known for _, k in keys if k in values)
                and dev.name not in pts.noisy
                and dev.name not in pts.noisy_rel
            )
            row = fac.rack_index[dev.tags["rack"]] if column else -1
            if column and dev.kind == "pdu":
                self._pdus.append(dev)
            elif column:
                self._rack_devs.append((row, dev.tags["rack"]))
            layout: list[tuple[str, int, int]] = []
            for p, key in keys:
                v = values.get(key)
                if v is None:  # as the device-by-device path: a point the facility does not serve has no series
                    continue
                slot = len(ids)
                if p.array:
                    n = int(np.asarray(v).size)
                    tags = dict(dev.tags)
                    ids += [SeriesKey.of(dev.profile.measurement, p.name, {**tags, p.array_tag: str(i)}).id
                            for i in range(n)]  # fmt: skip
                else:
                    n = 0
                    ids.append(SeriesKey.of(dev.profile.measurement, p.name, dev.tags).id)
                layout.append((key, slot, n))
                if not column:
                    continue
                if dev.kind == "pdu":
                    col = pdu_cols.setdefault(key, ([], []))
                    col[0].append(slot)
                    col[1].append(len(self._pdus) - 1)
                elif n:  # a GPU array: the rack's slice of the facility's flat GPU arrays
                    start = int(fac.rack_offsets[row])
                    col = rack_cols.setdefault(key, ([], []))
                    col[0].extend(range(slot, slot + n))
                    col[1].extend(range(start, start + n))
                else:
                    col = rack_cols.setdefault(key, ([], []))
                    col[0].append(slot)
                    col[1].append(len(self._rack_devs) - 1)
            self._layout[dev.name] = layout
            if not column:
                self._slow.append(dev.name)
        self.series = np.array(ids, dtype=object)
        self._rack_slots = {k: _Slots(np.array(o, dtype=np.intp), np.array(s, dtype=np.intp))
                            for k, (o, s) in rack_cols.items()}  # fmt: skip
        self._pdu_slots = {k: _Slots(np.array(o, dtype=np.intp), np.array(s, dtype=np.intp))
                           for k, (o, s) in pdu_cols.items()}  # fmt: skip
        self._rack_rows = np.array([r for r, _ in self._rack_devs], dtype=np.intp)
        self._pdu_rows = np.array([fac.rack_index[d.tags["rack"]] for d in self._pdus], dtype=np.intp)
        self._quality = np.zeros(len(ids), dtype=np.uint8)

    def __len__(self) -> int:
        return len(self.series)

    def batch(self, t_ns: int) -> Batch:
        """Every point now, all good, stamped ``t_ns``; the series array is the same object at every call."""
        out = np.empty(len(self.series))
        self._racks(out)
        self._pdu(out)
        fac = self.fac
        slow = self._slow
        if fac.degradation is not None and fac.degradation.drifting:
            # A drifting sensor's device reads through the facility's degradation hook (over its column values).
            slow = slow + sorted(fac.degradation.drifting.intersection(self._layout).difference(slow))
        for name in slow:
            values = fac.device_arrays(name)
            for key, slot, n in self._layout[name]:
                v = values[key]
                if n:
                    out[slot : slot + n] = np.asarray(v, dtype=np.float64).ravel()
                else:
                    out[slot] = float(v)  # type: ignore[arg-type]
        n = len(self.series)
        return Batch(self.series, np.full(n, t_ns, dtype=np.int64), out, self._quality.copy())

    def _racks(self, out: Arr) -> None:
        """The rack controllers' points, column by column (the numbers of ``DevicePoints._rack``)."""
        if not self._rack_devs:
            return
        f, pts = self.fac, self.fac.points
        rows = self._rack_rows
        # Per-rack means of the SM clock exactly as DevicePoints computes them (a row mean when racks are equal).
        clock_pct = np.asarray(pts.rack_rows().clock_pct, dtype=np.float64)
        leaks = pts.leaks
        leak = (np.array([f"rack:{name}" in leaks for _, name in self._rack_devs], dtype=np.float64)
                if leaks else np.zeros(len(rows)))  # fmt: skip
        per_rack: dict[str, Arr] = {
            "rack_power_w": f.rack_power_w[rows],
            "it_energy_wh": f.rack_energy_wh[rows],
            "coolant_inlet_temp_c": f.rack_inlet_c[rows],
            "coolant_outlet_temp_c": f.rack_outlet_c[rows],
            "coolant_flow_lpm": f.rack_flow_lpm[rows],
            "leak_detected": leak,
            "condensation_risk": np.asarray(f.condensation_risk)[f.rack_cdu][rows].astype(np.float64),
            "gpus_throttled": np.asarray(f.rack_throttled)[rows].astype(np.float64),
            "gpu_clock_pct": clock_pct[rows],
        }
        gpu: dict[str, Arr] = {"gpu_power_w": f.gpu_power_w, "gpu_temp_c": f.gpu_temp_c}
        for key, s in self._rack_slots.items():
            if key in per_rack:
                out[s.out] = per_rack[key][s.src]
            elif key == "gpu_util_pct":
                out[s.out] = 100.0 * f.gpu_util[s.src]
            else:
                out[s.out] = gpu[key][s.src]

    def _pdu(self, out: Arr) -> None:
        """The rack PDUs' points, column by column (the operations of ``DevicePoints._pdu``, in its order)."""
        if not self._pdus:
            return
        f, pts = self.fac, self.fac.points
        r = self._pdu_rows
        total = f.rack_power_w[r]
        load = total / f.rack_rated_w[r]
        share1 = pts.pdu_share[r]
        cols: dict[str, Arr] = {"active_power_w": total, "active_energy_wh": f.rack_energy_wh[r]}
        pf = np.minimum(0.95 + 0.045 * load, 0.995)
        base = f.params.lv_voltage_v * (1.0 - 0.01 * load)
        for i, share in ((1, share1), (2, 1.0 - share1)):
            # The ripple through the same math.sin as the device-by-device path (numpy's sin may differ by an ulp).
            ripple = np.array([pts.ripple(d, 0.002 * i) for d in self._pdus])
            v = base * ripple
            cols[f"inlet{i}_voltage_v"] = v
            cols[f"inlet{i}_current_a"] = total * share / (3.0 * v * pf)
            cols[f"inlet{i}_active_power_w"] = total * share
            cols[f"inlet{i}_power_factor"] = pf
        for key, s in self._pdu_slots.items():
            out[s.out] = cols[key][s.src]
