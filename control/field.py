"""Field telemetry for the in-process evaluation: what the collectors would publish from the simulated devices.

``aidc evaluate-control --telemetry field`` feeds every controller what a deployed site's collectors deliver, not
the simulator's exact state (``--telemetry exact`` stays for diagnosis). Per device poll, the values the facility
serves (a callable ``values(device) -> {sim name or point name: value}``, the facility's ``device_values``) go
through the same chain as on site, in process (no sockets, so parallel evaluation workers never clash on ports):

1. **Sensor noise** (white, per poll, seeded), before the register: temperatures 0.1 K standard deviation (IEC 60751
   class A RTDs are within ±(0.15 + 0.002·|t|) K, so 0.1 K is a fair one-sigma); flows and pressures 1 % of
   reading (magnetic flow meters and differential-pressure transmitters in the field, ±0.5-1 % of reading);
   power 0.5 % of reading (an IEC 62053-22 class 0.5S meter's limit of error). Counters, booleans, integers and
   setpoints read back from registers carry no noise.
2. **The register**: a Modbus point is encoded the way the device firmware holds it (``(value - offset) / scale``
   rounded to the register type, saturated at the type's limits, counters wrapping, NaN as the type's "no reading"
   sentinel, in the point's byte order) and decoded by the collectors' own
   :class:`collectors.decode.RegisterDecoder`, so an INT16 tenths register reads in 0.1 K steps; an OPC-UA point is a
   typed node (Double, Float, an integer type, Boolean) as the simulator's server sends it.
3. **Quality** from the collectors' :class:`collectors.quality.QualityTracker` (NaN/inf and sentinels bad, stuck
   must-move points and out-of-range values uncertain), one tracker per device as each link has.
4. **Poll timing**: each device polls every ``poll_interval_s`` of its config at a seeded phase; a sample is
   stamped with its poll time and ages until the next successful poll. **Missing polls**: each poll is lost with
   probability 0.5 %, and a burst (a switch or gateway hiccup) of 3 to 6 consecutive polls starts with
   probability 0.05 % per poll; a lost poll publishes nothing, so the reading gets older.

The facility only changes when it steps, so :meth:`FieldTelemetry.poll_due` polls each device at most once per
call: the last poll due since the previous call that was not lost, stamped at its poll time, with the facility's
current values (the stuck check therefore counts calls, not polls). The evaluated supervisor calls it every
facility step; a baseline's snapshot calls it at each decision, and gets each device's latest poll. Output is a
kernel :class:`aidc.model.Batch` per call holding every device's poll (each sample with its own poll time; after a
lost poll, one batch per answering device), published to sinks (a :class:`aidc.live.LiveState`, the supervisor's
input sink) as collectors publish: arrays unpack to one series per element (tag ``array_tag``), and the series
array is built once and reused call after call, so the sinks map it without a lookup per series. OPC-UA devices of
one profile whose checks keep no state (the GPU racks) are converted and checked together. This module never
imports the simulators.
"""

from __future__ import annotations

import dataclasses
import math
import struct
import zlib
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from aidc.clock import format_ns
from aidc.config import DeviceRef, Site
from aidc.model import Batch
from aidc.profiles import DataType, Point
from collectors.decode import RegisterDecoder, byte_index, numpy_type, pymodbus_type
from collectors.plan import ModbusPlan, array_series_ids, plan_modbus, series_ids
from collectors.quality import QualityTracker

F64 = npt.NDArray[np.float64]
Values = Callable[[str], Mapping[str, object]]
Sink = Callable[[Batch], None]

FLOAT32_MAX = float(np.finfo(np.float32).max)
_FLOW_UNITS = frozenset({"l/min", "lpm", "m3/h", "m³/h", "l/s", "kg/s", "gpm"})
_PRESSURE_UNITS = frozenset({"pa", "kpa", "bar", "mbar", "psi"})
_POWER_UNITS = frozenset({"w", "kw", "mw", "va", "kva", "var", "kvar", "a", "v"})
_TEMP_UNITS = frozenset({"°c", "c", "k", "degc"})
_PLAIN = frozenset({float, int, bool, np.float64, np.float32, np.int64, np.bool_})  # numbers np.array converts
_TEXT = (str, bytes)


@dataclass(frozen=True)
class FieldModel:
    """Sensor noise and poll losses (see the module docstring for the sources)."""

    temp_sigma_k: float = 0.1
    flow_rel: float = 0.01
    pressure_rel: float = 0.01
    power_rel: float = 0.005
    loss: float = 0.005  # probability that one poll is lost
    burst: float = 0.0005  # probability that a burst of lost polls starts at a poll
    burst_polls: tuple[int, int] = (3, 6)  # a burst loses this many consecutive polls (inclusive)


def noise_of(p: Point, model: FieldModel) -> tuple[float, float]:
    """(absolute, relative) standard deviation of a point's sensor noise, by its unit; none for setpoints,
    counters, booleans and integer registers that hold counts or states."""
    if p.writable or p.counter or p.type is DataType.BOOL:
        return 0.0, 0.0
    unit = p.unit.strip().lower()
    if unit in _TEMP_UNITS:
        return model.temp_sigma_k, 0.0
    if unit in _FLOW_UNITS:
        return 0.0, model.flow_rel
    if unit in _PRESSURE_UNITS:
        return 0.0, model.pressure_rel
    if unit in _POWER_UNITS:
        return 0.0, model.power_rel
    return 0.0, 0.0


def _number(v: object) -> float:
    """A served scalar as a float (None, sequences and strings: NaN, which the quality check marks bad)."""
    if isinstance(v, bool | int | float | np.integer | np.floating):
        return float(v)
    return math.nan


_INT_LIMITS = {
    dt: (int(np.iinfo(numpy_type(dt)).min), int(np.iinfo(numpy_type(dt)).max))  # type: ignore[type-var]
    for dt in (DataType.INT16, DataType.UINT16, DataType.INT32, DataType.UINT32, DataType.INT64, DataType.UINT64)
}


def register_raw(p: Point, value: float) -> int | float:
    """The raw number a device's register holds for an engineering value: scaled, rounded to an integer type,
    saturated at its limits (counters wrap), NaN as the type's "no reading" sentinel (most negative signed, largest
    unsigned), FLOAT32 limited to its range."""
    raw = (value - p.offset) / p.scale
    if p.type is DataType.FLOAT64:
        return raw
    if p.type is DataType.FLOAT32:
        return raw if math.isnan(raw) else max(-FLOAT32_MAX, min(FLOAT32_MAX, raw))
    if p.type is DataType.BOOL:
        return 1 if raw and not math.isnan(raw) else 0
    lo, hi = _INT_LIMITS[p.type]
    if math.isnan(raw):
        return lo if lo < 0 else hi
    if math.isinf(raw):
        return hi if raw > 0 else lo
    n = round(raw)
    if p.counter:
        n %= hi - lo + 1
        return n + lo * 2 if n > hi else n
    return max(lo, min(hi, n))


lo_f32, hi_f32 = -FLOAT32_MAX, FLOAT32_MAX


def _raw_bounds(dt: DataType) -> tuple[float | None, float | None, float]:
    """(low, high, no-reading raw) of an integer register type; (None, None, NaN) for floats."""
    if dt not in _INT_LIMITS:
        return None, None, math.nan
    lo, hi = _INT_LIMITS[dt]
    return float(lo), float(hi), float(lo if lo < 0 else hi)


class _Device:
    """One device's encoder, decoder, quality tracker, noise and series, built once."""

    def __init__(self, dev: DeviceRef, points: Sequence[Point], model: FieldModel) -> None:
        self.dev = dev
        self.points = tuple(points)
        self.keys = [p.sim or p.name for p in self.points]
        self.by_name = {p.name: p for p in self.points}
        self._any_array = any(p.array for p in self.points)
        self._ones = tuple(1 for _ in self.points)
        self.model = model
        self.modbus = dev.profile.protocol == "modbus"
        self.layout: tuple[int, ...] | None = None
        self.series: npt.NDArray[np.object_] = np.empty(0, dtype=object)
        self.tracker: QualityTracker | None = None
        self._sig = [noise_of(p, model) for p in self.points]
        if self.modbus:
            sub = dataclasses.replace(dev, profile=dev.profile.model_copy(update={"points": self.points}))
            self._codec(plan_modbus(sub))
            self._relayout(tuple(1 for _ in self.points))

    def _codec(self, plan: ModbusPlan) -> None:
        """The register encoder and the collectors' decoder of a Modbus plan."""
        self.plan = plan
        self.decoder = RegisterDecoder(self.plan)
        self.registers = np.zeros(2 * self.plan.n_registers, dtype=np.uint8)
        self.bits = np.zeros(self.plan.n_bits, dtype=bool)
        by_type: dict[DataType, tuple[list[int], list[int]]] = {}  # type -> (points, byte positions)
        self._numeric: list[int] = []
        self._slow: list[int] = []
        self._flags: list[tuple[int, int, int]] = []  # point, register offset, bit (-1: whole register)
        self._coils: list[tuple[int, int]] = []
        for i, (p, off) in enumerate(zip(self.plan.points, self.plan.offsets, strict=True)):
            if p.table in ("coil", "discrete"):
                self._coils.append((i, off))
            elif p.type is DataType.BOOL:
                self._flags.append((i, off, -1 if p.bit is None else p.bit))
            else:
                self._numeric.append(i)
                if p.counter or p.type in (DataType.INT64, DataType.UINT64):
                    self._slow.append(i)  # exact Python integers: wrapping, or beyond float precision
                    continue
                idx, pos = by_type.setdefault(p.type, ([], []))
                idx.append(i)
                # The inverse of the decoder's gather: a point's big-endian bytes go where the decoder reads
                # them from (its word and byte order applied).
                pos += byte_index(off, p.registers, p.byte_order)
        self._types = [
            (numpy_type(dt), np.array(idx, dtype=np.intp), np.array(pos, dtype=np.intp), *_raw_bounds(dt))
            for dt, (idx, pos) in by_type.items()
        ]
        self._pscale = np.array([p.scale for p in self.plan.points], dtype=np.float64)
        self._poffset = np.array([p.offset for p in self.plan.points], dtype=np.float64)

    def _relayout(self, layout: tuple[int, ...]) -> None:
        """Series, tracker and noise for a layout (array lengths), as a collector link rebuilds on a change."""
        series: list[Any] = []
        expanded: list[Point] = []
        scalar = series_ids(self.dev, self.points)
        for p, n, sid in zip(self.points, layout, scalar, strict=True):
            series.extend(array_series_ids(self.dev, p, n) if p.array else [sid])
            expanded.extend([p] * n)
        self.series = np.array(series, dtype=object)
        self.tracker = QualityTracker(expanded, sentinels=self.dev.profile.workarounds.sentinels)
        self.layout = layout
        self._relayout_arrays(layout)

    def _relayout_arrays(self, layout: tuple[int, ...]) -> None:
        """Per-sample noise and type arrays for a layout."""
        sig_abs = np.repeat([s[0] for s in self._sig], layout)
        sig_rel = np.repeat([s[1] for s in self._sig], layout)
        self._noisy = np.flatnonzero((sig_abs > 0) | (sig_rel > 0))
        self._sig_abs, self._sig_rel = sig_abs[self._noisy], sig_rel[self._noisy]
        self._float32 = np.repeat([p.type is DataType.FLOAT32 for p in self.points], layout)
        ints = [p.type not in (DataType.FLOAT32, DataType.FLOAT64) for p in self.points]
        self._int = np.repeat(ints, layout)
        self._has_float32, self._has_int = bool(self._float32.any()), bool(self._int.any())
        self._scale = np.repeat([p.scale for p in self.points], layout)
        self._offset = np.repeat([p.offset for p in self.points], layout)
        self._unit = bool(np.all(self._scale == 1.0) and np.all(self._offset == 0.0))

    def _served(self, served: Mapping[str, object]) -> tuple[F64, tuple[int, ...]]:
        """The served values in point order, arrays expanded, and their layout."""
        got = [served.get(k) for k in self.keys]
        if not self._any_array and all(type(v) in _PLAIN for v in got):  # the usual scalar device: one conversion
            return np.array(got, dtype=np.float64), self._ones
        parts: list[F64] = []
        for p, v in zip(self.points, got, strict=True):
            if p.array and v is not None and not isinstance(v, _TEXT):
                try:
                    parts.append(np.asarray(v, dtype=np.float64).ravel())
                    continue
                except (TypeError, ValueError):
                    pass
            parts.append(np.array([_number(v)]))
        return np.concatenate(parts), tuple(len(a) for a in parts)

    def _noise(self, x: F64, rng: np.random.Generator) -> None:
        if len(self._noisy):
            v = x[self._noisy]
            x[self._noisy] = v + rng.standard_normal(len(v)) * (self._sig_abs + self._sig_rel * np.abs(v))

    def poll(self, served: Mapping[str, object], ts_ns: int, rng: np.random.Generator | None) -> Batch:
        """One poll: noise (``rng`` None: none), the register or node, decoding and quality; one batch."""
        x, layout = self._served(served)
        if layout != self.layout:
            self._relayout(layout)
        if rng is not None:
            self._noise(x, rng)
        if self.modbus:
            eng = np.empty(len(x), dtype=np.float64)
            raw = self._through_registers(x, eng)
        else:
            raw, eng = self._through_node(x)
        assert self.tracker is not None
        values, quality, reasons = self.tracker.assess(raw, eng)
        return Batch(self.series, np.full(len(values), ts_ns, dtype=np.int64), values, quality.copy(), reasons)

    def _through_registers(self, x: F64, eng: F64) -> F64:
        """Encode as the firmware would, decode with the collectors' decoder; the raw values."""
        pts = self.plan.points
        regs = self.registers.view(">u2")
        for _i, off, _bit in self._flags:  # a register of flags only: cleared, then its bits set below
            regs[off] = 0
        raw = (x - self._poffset) / self._pscale
        for dtype, idx, pos, lo, hi, nan_raw in self._types:
            r = raw[idx]
            if lo is not None:  # an integer register: rounded and saturated; no reading is the type's sentinel
                nan = np.isnan(r)
                r = np.where(nan, nan_raw, np.clip(np.rint(np.where(nan, 0.0, r)), lo, hi))
            else:
                r = np.clip(r, lo_f32, hi_f32) if dtype.itemsize == 4 else r
            self.registers[pos] = r.astype(dtype).view(np.uint8)
        for i in self._slow:  # counters wrap at the register width as the meter firmware does
            self._put(i, register_raw(pts[i], float(x[i])))
        for i, off, bit in self._flags:  # whole registers first, then the bits OR-ed in (as the device does)
            on = bool(register_raw(pts[i], float(x[i])))
            if bit < 0:
                regs[off] = 1 if on else 0
            elif on:
                regs[off] |= 1 << bit
        for i, off in self._coils:
            self.bits[off] = bool(register_raw(pts[i], float(x[i])))
        return self.decoder.decode_into(self.registers, self.bits, eng).copy()

    def _put(self, i: int, raw: int | float) -> None:
        """One numeric point's raw value into the poll buffer."""
        p = self.plan.points[i]
        dt = numpy_type(p.type)
        pos = byte_index(self.plan.offsets[i], p.registers, p.byte_order)
        self.registers[pos] = np.array([raw]).astype(dt).view(np.uint8)

    def _through_node(self, x: F64) -> tuple[F64, F64]:
        """A typed OPC-UA node: Float rounds to single precision, integer nodes to integers (NaN: 0, bad)."""
        raw = x if self._unit else (x - self._offset) / self._scale
        if self._has_float32:
            raw = np.where(self._float32, raw.astype(np.float32).astype(np.float64), raw)
        if self._has_int:
            nan = np.isnan(raw)
            raw = np.where(self._int & ~nan, np.round(raw), raw)
        eng = raw if self._unit else raw * self._scale + self._offset
        return raw, eng

    def read(self, served: Mapping[str, object], point: Point) -> float:
        """One point's value as the device holds it (a write's read-back): through its register or node, no noise."""
        x = _number(served.get(point.sim or point.name))
        if self.modbus:
            raw = register_raw(point, x)
            if point.type is DataType.BOOL:
                return float(raw)
            # The same conversion as the decoder applies to a whole poll (struct code, then scale and offset).
            code = struct.Struct(">" + pymodbus_type(point.type).value[0])
            back = code.unpack(
                code.pack(int(raw) if point.type not in (DataType.FLOAT32, DataType.FLOAT64) else float(raw))
            )[0]
            return float(back) * point.scale + point.offset
        raw_f = (x - point.offset) / point.scale
        if point.type is DataType.FLOAT32:
            raw_f = float(np.float32(raw_f))
        elif point.type is not DataType.FLOAT64 and math.isfinite(raw_f):
            raw_f = float(round(raw_f))
        return raw_f * point.scale + point.offset


def device_phase(seed: int, device: str, interval_s: float) -> float:
    """Seeded offset of a device's polls within its interval (as the collectors spread their polls)."""
    return (zlib.crc32(f"{seed}:{device}".encode()) / 2**32) * interval_s


class _Group:
    """OPC-UA devices of one profile and point selection whose quality checks keep no state (no must-move and no
    counter point, e.g. every GPU rack's arrays): polled together, one quality check and one batch per call, each
    sample stamped with its own device's poll time. The checks being stateless, the result is the same as a
    tracker per device."""

    def __init__(self, members: list[_Device]) -> None:
        self.members = members
        self.layout: tuple[tuple[int, ...], ...] | None = None
        self.full: _Device | None = None  # a pseudo device over the concatenated points, for noise and checks

    def poll(
        self,
        served: list[Mapping[str, object]],
        ts: list[int],
        polled: npt.NDArray[np.bool_],
        rng: np.random.Generator | None,
    ) -> Batch:
        """One batch of the polled members' samples (``served`` and ``ts`` per member; unpolled ones dropped)."""
        parts: list[F64] = []
        layouts: list[tuple[int, ...]] = []
        for d, sv, ok in zip(self.members, served, polled.tolist(), strict=True):
            if ok or d.layout is None:
                x, lay = d._served(sv)
            else:  # not polled: placeholders in its last layout, dropped from the batch
                lay = d.layout
                x = np.full(sum(lay), math.nan)
            parts.append(x)
            layouts.append(lay)
        layout = tuple(layouts)
        if layout != self.layout:
            self._relayout(layout)
        assert self.full is not None
        x = np.concatenate(parts)
        full = self.full
        if rng is not None:
            full._noise(x, rng)
        raw, eng = full._through_node(x)
        assert full.tracker is not None
        values, quality, reasons = full.tracker.assess(raw, eng)
        stamps = np.repeat(np.asarray(ts, dtype=np.int64), self._sizes)
        if polled.all():
            return Batch(full.series, stamps, values, quality.copy(), reasons)
        keep = np.repeat(polled, self._sizes)
        return Batch(
            full.series[keep],
            stamps[keep],
            values[keep],
            quality[keep],
            [r for r, k in zip(reasons, keep.tolist(), strict=True) if k] if reasons else [],
        )

    def _relayout(self, layout: tuple[tuple[int, ...], ...]) -> None:
        for d, lay in zip(self.members, layout, strict=True):
            if lay != d.layout:
                d._relayout(lay)
        first = self.members[0]
        full = _Device.__new__(_Device)
        full.points = tuple(p for d in self.members for p in d.points)
        full._sig = [s for d in self.members for s in d._sig]
        full.dev = first.dev
        flat = tuple(n for lay in layout for n in lay)
        # The pseudo device's own series are the members' (each with its device's tags).
        full._relayout_arrays(flat)
        full.series = np.concatenate([d.series for d in self.members])
        full.tracker = QualityTracker(
            [p for d in self.members for p, n in zip(d.points, d.layout or (), strict=True) for _ in range(n)],
            sentinels=first.dev.profile.workarounds.sentinels,
        )
        self.full = full
        self._sizes = np.array([len(d.series) for d in self.members], dtype=np.intp)
        self.layout = layout


def _run_key(d: _Device) -> tuple[str, tuple[str, ...]] | None:
    """What Modbus devices polled together share (profile and points); None for a device that polls alone."""
    return (d.dev.profile.name, tuple(d.keys)) if d.modbus and not d._any_array else None


class _ModbusRun:
    """Modbus devices of one profile and point selection, next to each other in the poll order (the CDUs of a hall):
    when every one of them answers, their registers are encoded and decoded in one pass over a joined plan (each
    device's registers after the one before's), noise drawn in the same order as one by one, and each device's own
    quality tracker and batch as one by one, so the samples are the same."""

    def __init__(self, members: list[_Device]) -> None:
        self.members = members
        first = members[0]
        regs = bits = 0
        offsets: list[int] = []
        for d in members:
            p = d.plan
            offsets += [o + (bits if q.table in ("coil", "discrete") else regs) for q, o in zip(p.points, p.offsets,
                                                                                                 strict=True)]
            regs, bits = regs + p.n_registers, bits + p.n_bits
        points = tuple(q for d in members for q in d.plan.points)
        plan = ModbusPlan(first.plan.device, points, np.concatenate([d.plan.series for d in members]), (),
                          tuple(offsets), regs, bits)
        self.codec = _Device.__new__(_Device)
        self.codec._codec(plan)
        sizes = [len(d.points) for d in members]
        self.bounds = np.cumsum([0, *sizes]).tolist()
        noisy = [d._noisy + a for d, a in zip(members, self.bounds, strict=False)]
        self.noisy = np.concatenate(noisy)
        self.sig_abs = np.concatenate([d._sig_abs for d in members])
        self.sig_rel = np.concatenate([d._sig_rel for d in members])

    def poll(self, served: list[Mapping[str, object]], ts: list[int], rng: np.random.Generator | None
             ) -> list[Batch] | None:
        """Every member's batch of one poll (``served`` and ``ts`` per member); None where a member's layout is not
        the scalar one (arrays): then they poll one by one."""
        xs: list[F64] = []
        for d, sv in zip(self.members, served, strict=True):
            x, layout = d._served(sv)
            if layout != d.layout:
                return None
            xs.append(x)
        x = np.concatenate(xs)
        if rng is not None and len(self.noisy):  # the members' draws one after another: the same numbers
            v = x[self.noisy]
            x[self.noisy] = v + rng.standard_normal(len(v)) * (self.sig_abs + self.sig_rel * np.abs(v))
        eng = np.empty(len(x), dtype=np.float64)
        raw = self.codec._through_registers(x, eng)
        out: list[Batch] = []
        b = self.bounds
        for k, (d, t) in enumerate(zip(self.members, ts, strict=True)):
            assert d.tracker is not None
            values, quality, reasons = d.tracker.assess(raw[b[k]:b[k + 1]], eng[b[k]:b[k + 1]])
            out.append(Batch(d.series, np.full(len(values), t, dtype=np.int64), values, quality.copy(), reasons))
        return out


class FieldTelemetry:
    """Polls the devices of a site as its collectors would; see the module docstring.

    ``points``: device name -> the point names to publish (default: every device, every point); the evaluation
    passes what a snapshot reads, as polling the rest would only cost time. ``model`` None publishes exact values
    (no noise, no lost polls) through the same registers and quality checks.
    """

    def __init__(
        self,
        site: Site,
        values: Values,
        *,
        seed: int = 0,
        model: FieldModel | None = FieldModel(),
        points: Mapping[str, Collection[str]] | None = None,
        start_ns: int = 0,
    ) -> None:
        self.values = values
        self.model = model
        by_name = {d.name: d for d in site.devices}
        wanted = points if points is not None else {d.name: [p.name for p in d.profile.points] for d in site.devices}
        self.devices: list[_Device] = []
        for name in sorted(wanted):
            dev = by_name[name]
            pts = [p for p in dev.profile.points if p.name in set(wanted[name])]
            if pts:
                self.devices.append(_Device(dev, pts, model or FieldModel()))
        self.index = {d.dev.name: i for i, d in enumerate(self.devices)}
        # Stateless OPC-UA devices of one profile and selection go in groups; the rest poll one by one.
        groups: dict[tuple[str, tuple[str, ...]], list[int]] = {}
        self.single: list[int] = []
        for i, d in enumerate(self.devices):
            if d.modbus or any(p.must_move or p.counter for p in d.points):
                self.single.append(i)
            else:
                groups.setdefault((d.dev.profile.name, tuple(p.name for p in d.points)), []).append(i)
        self.groups = [(np.array(ix, dtype=np.intp), _Group([self.devices[i] for i in ix])) for ix in groups.values()]
        # Runs of single Modbus devices of one profile and selection, in poll order (see _ModbusRun).
        runs: list[list[int]] = []
        for i in self.single:
            key = _run_key(self.devices[i])
            if runs and key is not None and key == _run_key(self.devices[runs[-1][0]]):
                runs[-1].append(i)
            else:
                runs.append([i])
        self.runs = [(ix, _ModbusRun([self.devices[i] for i in ix]) if len(ix) > 1 else None) for ix in runs]
        n = len(self.devices)
        self.interval_ns = np.array([int(d.dev.config.poll_interval_s * 1e9) for d in self.devices], dtype=np.int64)
        phase = np.array(
            [int(device_phase(seed, d.dev.name, d.dev.config.poll_interval_s) * 1e9) for d in self.devices],
            dtype=np.int64,
        )
        # The last poll at or before start_ns on each device's own grid (phase + k * interval): the collectors ran
        # before the evaluated loop starts, so its first call finds a reading of every device.
        self.next_ns = start_ns - (start_ns - phase) % self.interval_ns
        self.burst_until_ns = np.zeros(n, dtype=np.int64)
        self.sched_rng = np.random.default_rng([seed, 1])
        self.noise_rng = np.random.default_rng([seed, 2])
        self.polls = 0
        self.lost = 0
        self._combined: tuple[tuple[int, ...], npt.NDArray[np.object_], list[Batch]] | None = None

    def poll(self, device: str, ts_ns: int) -> Batch:
        """One poll of ``device`` now, stamped ``ts_ns`` (never lost; noise as the model says)."""
        d = self.devices[self.index[device]]
        return d.poll(self.values(device), ts_ns, self.noise_rng if self.model is not None else None)

    def _schedule(self, t_ns: int) -> npt.NDArray[np.int64]:
        """Advance every device's poll schedule to ``t_ns``: per device, the time of its last poll since the last
        call that was not lost, or -1 (none due, or all lost)."""
        good = np.full(len(self.devices), -1, dtype=np.int64)
        due = self.next_ns <= t_ns
        if not due.any():
            return good
        counts = np.where(due, (t_ns - self.next_ns) // self.interval_ns + 1, 0)
        model = self.model
        self.polls += int(counts.sum())
        if model is None:
            good = np.where(due, self.next_ns + (counts - 1) * self.interval_ns, -1)
            self.next_ns += counts * self.interval_ns
            return good
        width = int(counts.max())
        u = self.sched_rng.random((width, 2, len(self.devices)))
        span = self.sched_rng.integers(model.burst_polls[0], model.burst_polls[1] + 1, size=len(self.devices))
        k = np.arange(width)[:, None]
        live = k < counts
        ts = self.next_ns + k * self.interval_ns
        if (live & (u[:, 1] < model.burst)).any() or (self.burst_until_ns > self.next_ns).any():
            for j in range(width):  # a burst starts or runs: poll by poll, every device at once
                start = live[j] & (ts[j] >= self.burst_until_ns) & (u[j, 1] < model.burst)
                self.burst_until_ns = np.where(start, ts[j] + span * self.interval_ns, self.burst_until_ns)
                lost = live[j] & ((ts[j] < self.burst_until_ns) | (u[j, 0] < model.loss))
                self.lost += int(lost.sum())
                good = np.where(live[j] & ~lost, ts[j], good)
        else:
            ok = live & (u[:, 0] >= model.loss)
            self.lost += int((live & ~ok).sum())
            good = np.where(ok, ts, -1).max(axis=0)
        self.next_ns += counts * self.interval_ns
        return good

    def poll_due(self, t_ns: int) -> list[Batch]:
        """The samples of every device poll due up to ``t_ns`` since the last call: per device the last poll that
        was not lost, stamped at its poll time, with the values served now. Usually one batch (every device
        answered: one series array, reused call after call, so the sinks map it without a lookup); after a lost
        poll, one batch per answering device or group."""
        good = self._schedule(t_ns)
        rng = self.noise_rng if self.model is not None else None
        out: list[Batch] = []
        for members, run in self.runs:
            stamps = good[members].tolist()
            if run is not None and min(stamps) >= 0:
                got = run.poll([self.values(self.devices[i].dev.name) for i in members], stamps, rng)
                if got is not None:
                    out += got
                    continue
            for i, ts in zip(members, stamps, strict=True):
                if ts >= 0:
                    d = self.devices[i]
                    out.append(d.poll(self.values(d.dev.name), ts, rng))
        whole = len(out) == len(self.single)
        for ix, g in self.groups:
            polled = good[ix] >= 0
            if not polled.any():
                whole = False
                continue
            whole = whole and bool(polled.all())
            served = [self.values(d.dev.name) if ok else {} for d, ok in zip(g.members, polled.tolist(), strict=True)]
            out.append(g.poll(served, good[ix].tolist(), polled, rng))
        if not whole or len(out) < 2:
            return out
        return [self._combine(out)]

    def _combine(self, parts: list[Batch]) -> Batch:
        """One batch of every device's poll, its series array cached while the layout stays."""
        key = tuple(id(b.series) for b in parts)
        if self._combined is None or self._combined[0] != key:
            self._combined = (key, np.concatenate([b.series for b in parts]), parts)  # parts: keep the ids alive
        reasons: list[str] = []
        if any(b.reasons for b in parts):
            for b in parts:
                reasons += b.reasons or [""] * len(b)
        return Batch(
            self._combined[1],
            np.concatenate([b.ts_ns for b in parts]),
            np.concatenate([b.values for b in parts]),
            np.concatenate([b.quality for b in parts]),
            reasons,
        )

    def feed(self, t_ns: int, *sinks: Sink) -> int:
        """Poll every due device and hand each batch to every sink; the number of batches."""
        batches = self.poll_due(t_ns)
        for b in batches:
            for sink in sinks:
                sink(b)
        return len(batches)


class FieldWriter:
    """The setpoint writer of the evaluated loop (``control.supervisor.Writer``), in process: checks the actor and
    the point as :class:`collectors.writer.SetpointWriter` does, clamps to the profile's min/max, writes what the
    register or node can hold through ``write(device, point, value)`` (the facility's ``write_point``) and reads
    it back through the same register or node (``values``). Counts writes instead of an audit file: the
    supervisor's own audit lines record every write of a decision."""

    def __init__(
        self, site: Site, write: Callable[[str, str, float], None], values: Values, now_ns: Callable[[], int]
    ) -> None:
        self._write = write
        self.values = values
        self.now_ns = now_ns
        self.by_name = {d.name: d for d in site.devices}
        self._codecs: dict[str, _Device] = {}
        self.writes = 0
        self.changes = 0  # writes that changed what the device holds (heartbeats excluded)
        self.errors = 0
        self._stamp: tuple[int | None, str] = (None, "")  # the last write's time and its ISO form

    def _codec(self, device: str) -> _Device:
        c = self._codecs.get(device)
        if c is None:
            dev = self.by_name[device]
            c = self._codecs[device] = _Device(dev, dev.profile.points, FieldModel())
        return c

    def held(self, device: str, point: str, value: float) -> float:
        """The value the device's register or node holds after writing ``value`` (clamped, then its resolution)."""
        c = self._codec(device)
        p = c.by_name[point]
        v = min(p.max, max(p.min, value)) if p.min is not None and p.max is not None else value
        return c.read({p.sim or p.name: v}, p)

    async def write(self, actor: Any, device: str, point: str, value: float, why: str) -> Any:
        """Clamp, write, read back; a :class:`collectors.writer.WriteResult` (refusals raise ``WriteRefused``)."""
        from collectors.writer import WriteRefused, WriteResult, admit, check_role

        check_role(str(getattr(actor, "name", actor)), getattr(actor, "role", None))
        dev = self.by_name.get(device)
        if dev is None:
            raise WriteRefused(f"no device {device!r}")
        p, new = admit(dev, point, value)
        c = self._codec(device)
        hb = dev.profile.heartbeat
        beat = hb is not None and hb.point == point
        held = float(round(new)) if beat else self.held(device, point, new)
        # A heartbeat is not read around its write (the device's watchdog takes it; reading the whole device twice
        # every beat would double the evaluation's cost); every setpoint is read before and after, as on site.
        old = None if beat else c.read(self.values(device), p)
        self._write(device, point, held)
        readback = held if beat else c.read(self.values(device), p)
        now = self.now_ns()
        if now != self._stamp[0]:  # a heartbeat writes every controlled device at one instant: formatted once
            self._stamp = (now, format_ns(now))
        error = ""
        if not abs(readback - new) <= abs(p.scale) / 2 + 1e-6 * max(1.0, abs(new)):
            error = f"read back {readback:g} after writing {new:g}"  # e.g. a device in local fallback
        self.writes += 1
        self.errors += bool(error)
        if not beat and readback != old:
            self.changes += 1
        return WriteResult(
            self._stamp[1],
            getattr(actor, "name", str(actor)),
            actor.role,
            device,
            point,
            old,
            value,
            new,
            readback,
            new != value,
            why,
            not error,
            error,
        )
