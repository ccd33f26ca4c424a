"""Device profiles: one TOML data file per device model, validated once into typed models (DESIGN.md §4).

Collectors plan their requests from these files and the simulators build their servers from the same files,
so the two sides cannot drift. A profile names its protocol, the measurement its points land in, device quirks
(``workarounds``) and its points. Each point: field name (unit in the name), address (Modbus table + address,
or an OPC-UA node id that may contain ``{device}``), data type and byte order, scale and offset, unit, role,
expected range, and for writable points min, max and the safe default to revert to. SNMP points carry the
numeric OID of one object instance (``oid``). The ``[source]`` table says where the map comes from: the vendor
document and its revision, or that the profile is aidc's own reference map (``published = false``).
"""

from __future__ import annotations

import enum
import functools
import math
import re
import tomllib
from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from aidc.config_errors import decode_utf8
from aidc.errors import ConfigError
from aidc.roles import Role

PROFILE_DIR = Path(__file__).resolve().parent.parent / "collectors" / "profiles"

MODBUS_MAX_READ_REGISTERS = 125  # Modbus application protocol spec, function codes 3 and 4.
MODBUS_MAX_WRITE_REGISTERS = 123  # function code 16.


class DataType(enum.StrEnum):
    """Register data types; the register count is in :data:`REGISTER_COUNT`."""

    INT16 = "INT16"
    UINT16 = "UINT16"
    INT32 = "INT32"
    UINT32 = "UINT32"
    INT64 = "INT64"
    UINT64 = "UINT64"
    FLOAT32 = "FLOAT32"
    FLOAT64 = "FLOAT64"
    BOOL = "BOOL"  # a coil or discrete input, or one bit of a register when ``bit`` is set


REGISTER_COUNT: dict[DataType, int] = {
    DataType.INT16: 1,
    DataType.UINT16: 1,
    DataType.INT32: 2,
    DataType.UINT32: 2,
    DataType.INT64: 4,
    DataType.UINT64: 4,
    DataType.FLOAT32: 2,
    DataType.FLOAT64: 4,
    DataType.BOOL: 1,
}


# SNMP value types (RFC 2578): INT32 Integer32, UINT32 Gauge32 / Unsigned32 (Counter32 when ``counter``), UINT64
# Counter64.
SNMP_TYPES = (DataType.INT32, DataType.UINT32, DataType.UINT64)


class ByteOrder(enum.StrEnum):
    """Byte order of a multi-register value, written as the order of bytes A (most significant) to D.

    ABCD: big-endian words in big-endian order (Modbus default). CDAB: word-swapped (little-endian word order).
    BADC: bytes swapped within each word. DCBA: fully little-endian.
    """

    ABCD = "ABCD"
    CDAB = "CDAB"
    BADC = "BADC"
    DCBA = "DCBA"


Table = Literal["coil", "discrete", "input", "holding"]
Protocol = Literal["modbus", "opcua", "snmp", "dcgm", "redfish"]
PROTOCOL_NAMES = {"modbus": "Modbus", "opcua": "OPC-UA", "snmp": "SNMP", "dcgm": "DCGM", "redfish": "Redfish"}
DeviceClass = Literal["rack_pdu", "meter", "ups", "cdu", "plant", "gpu_rack"]
OID_PATTERN = r"^1(\.(0|[1-9][0-9]{0,9})){2,127}$"  # numeric, no leading dot (RFC 2578: up to 128 arcs)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Workarounds(_Strict):
    """Device quirks gathered in one place (Telegraf-style)."""

    max_registers_per_read: int = Field(MODBUS_MAX_READ_REGISTERS, ge=1, le=MODBUS_MAX_READ_REGISTERS)
    # Some devices reject reads that span gaps between defined registers.
    no_gap_reads: bool = False
    max_nodes_per_read: int | None = Field(None, ge=1)
    # Sentinel raw values devices send for "no reading" (e.g. 0x7FFF on INT16 temperature probes).
    sentinels: tuple[float, ...] = ()
    # SNMP: OIDs per GET request (agents answer tooBig or drop long requests), and table columns read with GETBULK
    # (every point whose OID lies under one is read by walking that column, the rest by GET).
    max_oids_per_get: int = Field(24, ge=1, le=128)
    bulk_columns: tuple[str, ...] = ()
    max_repetitions: int = Field(25, ge=1, le=200)

    @model_validator(mode="after")
    def _check_columns(self) -> Workarounds:
        for col in self.bulk_columns:
            if not re.match(OID_PATTERN, col):
                raise ValueError(f"bulk_columns: {col!r} is not a numeric OID (e.g. 1.3.6.1.4.1.13742.6.5.2.3.1.4)")
        return self


class Point(_Strict):
    """One point of a device profile."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    unit: str = ""
    role: Role | None = None
    description: str = ""
    # Modbus addressing.
    table: Table | None = None
    address: int | None = Field(None, ge=0, le=65535)
    type: DataType = DataType.FLOAT32
    byte_order: ByteOrder = ByteOrder.ABCD
    bit: int | None = Field(None, ge=0, le=15)
    # OPC-UA addressing: node id, may contain ``{device}``; array nodes unpack to one series per index.
    node: str | None = None
    array: bool = False
    array_tag: str = "gpu"
    # SNMP addressing: the numeric OID of one object instance (table column + index).
    oid: str | None = Field(None, pattern=OID_PATTERN)
    # Engineering value = raw * scale + offset.
    scale: float = 1.0
    offset: float = 0.0
    # Expected physical range: values outside are ``uncertain`` (out_of_range).
    range: tuple[float, float] | None = None
    # Counters (energy): monotonically increasing, wrap at the type's modulus.
    counter: bool = False
    # Points that must change between polls when the equipment runs (stuck detection after N polls).
    must_move: bool = False
    writable: bool = False
    min: float | None = None
    max: float | None = None
    safe_default: float | None = None
    # Name of the simulator quantity feeding this point (defaults to the point name).
    sim: str | None = None

    @model_validator(mode="after")
    def _check(self) -> Point:
        if self.writable:
            if self.min is None or self.max is None or self.safe_default is None:
                raise ValueError(f"point {self.name}: writable points need min, max and safe_default")
            if not self.min <= self.safe_default <= self.max:
                raise ValueError(
                    f"point {self.name}: safe_default {self.safe_default} is outside [{self.min}, {self.max}]"
                )
        if self.range is not None and self.range[0] >= self.range[1]:
            raise ValueError(f"point {self.name}: range {list(self.range)} is empty")
        if self.bit is not None and self.type is not DataType.BOOL:
            raise ValueError(f"point {self.name}: bit is only valid with type BOOL")
        # Values that make decoding or writing meaningless: every reading would decode to the offset (scale 0),
        # to NaN (non-finite), or a write could not be inverted back into a register value.
        if self.scale == 0 or not math.isfinite(self.scale):
            raise ValueError(f"point {self.name}: scale {self.scale} must be a finite, non-zero number")
        if not math.isfinite(self.offset):
            raise ValueError(f"point {self.name}: offset {self.offset} must be finite")
        for what, v in (("min", self.min), ("max", self.max), ("safe_default", self.safe_default)):
            if v is not None and not math.isfinite(v):
                raise ValueError(f"point {self.name}: {what} {v} must be finite")
        if self.range is not None and not all(math.isfinite(x) for x in self.range):
            raise ValueError(f"point {self.name}: range {list(self.range)} must be finite")
        if self.min is not None and self.max is not None and self.min >= self.max:
            raise ValueError(f"point {self.name}: min {self.min} must be below max {self.max}")
        if self.writable and self.table in ("input", "discrete"):
            raise ValueError(f"point {self.name}: writable, but Modbus {self.table} points are read-only")
        in_registers = self.address is not None and self.table in ("input", "holding")
        if in_registers and (self.address or 0) + REGISTER_COUNT[self.type] > 65536:
            raise ValueError(f"point {self.name}: address {self.address} + {self.registers} registers runs past 65535")
        return self

    @property
    def registers(self) -> int:
        """Number of 16-bit registers the point occupies (1 for coils and discrete inputs)."""
        return REGISTER_COUNT[self.type]

    @property
    def modulus(self) -> float | None:
        """Counter wrap modulus in engineering units, for unsigned counter types."""
        bits = {DataType.UINT16: 16, DataType.UINT32: 32, DataType.UINT64: 64}.get(self.type)
        if not self.counter or bits is None:
            return None
        return float(2**bits) * self.scale


class Heartbeat(_Strict):
    """A register or node the supervisor must keep changing; the device reverts to safe setpoints if not."""

    point: str
    timeout_s: float = Field(60.0, gt=0)


class Source(_Strict):
    """Where a profile's map comes from: a vendor's published document (with its revision) or aidc's own map."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    device_class: DeviceClass = Field(alias="class")
    document: str = Field(min_length=1)
    revision: str = Field(min_length=1)
    published: bool = True
    url: str = ""
    note: str = ""

    @model_validator(mode="after")
    def _check(self) -> Source:
        if self.published and self.document.lower().startswith(("none", "not public")):
            raise ValueError(f"document {self.document!r} with published = true: name the vendor document, or set "
                             "published = false")
        return self


class Profile(_Strict):
    """A device model: protocol, measurement, quirks and points."""

    name: str
    protocol: Protocol
    measurement: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    manufacturer_style: str = ""
    description: str = ""
    # Bundled profiles all carry one; a site's own profiles may leave it out.
    source: Source | None = None
    workarounds: Workarounds = Workarounds()
    heartbeat: Heartbeat | None = None
    points: tuple[Point, ...]

    @model_validator(mode="after")
    def _check(self) -> Profile:
        names = [p.name for p in self.points]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate point names {dupes}")
        for p in self.points:
            if self.protocol == "modbus":
                if p.table is None or p.address is None:
                    raise ValueError(f"point {p.name}: Modbus points need table and address")
                if p.table in ("coil", "discrete") and p.type is not DataType.BOOL:
                    raise ValueError(f"point {p.name}: {p.table} points are BOOL")
                if p.writable and p.table not in ("holding", "coil"):
                    raise ValueError(f"point {p.name}: only holding registers and coils are writable")
            elif self.protocol == "snmp":
                if p.oid is None:
                    raise ValueError(f"point {p.name}: SNMP points need an oid")
                if p.writable or p.array:
                    raise ValueError(f"point {p.name}: SNMP points are read-only scalars here (no writable, no array)")
                if p.type not in SNMP_TYPES:
                    allowed = ", ".join(SNMP_TYPES)
                    raise ValueError(f"point {p.name}: type {p.type} is not an SNMP number type ({allowed})")
            elif p.node is None:  # OPC-UA node id, DCGM field (collectors/dcgm.py), Redfish resource (redfish.py)
                need = "a node id" if self.protocol == "opcua" else "node"
                raise ValueError(f"point {p.name}: {PROTOCOL_NAMES[self.protocol]} points need {need}")
        if self.protocol == "snmp":
            oids = [p.oid for p in self.points]
            dup = sorted({o for o in oids if o is not None and oids.count(o) > 1})
            if dup:
                raise ValueError(f"points share oid {dup[0]}")
        self._check_overlaps()
        if self.heartbeat and self.heartbeat.point not in names:
            raise ValueError(f"heartbeat point {self.heartbeat.point!r} is not a point of this profile")
        return self

    def _check_overlaps(self) -> None:
        used: dict[tuple[str, int], str] = {}
        for p in self.points:
            if self.protocol != "modbus" or p.table is None or p.address is None or p.bit is not None:
                continue
            for reg in range(p.address, p.address + p.registers):
                other = used.get((p.table, reg))
                if other is not None:
                    raise ValueError(f"points {other} and {p.name} overlap at {p.table} register {reg}")
                used[(p.table, reg)] = p.name

    def point(self, name: str) -> Point:
        """The point called ``name``; KeyError names the profile."""
        for p in self.points:
            if p.name == name:
                return p
        raise KeyError(f"profile {self.name} has no point {name!r}")

    def by_role(self, role: Role) -> list[Point]:
        """Points with the given role."""
        return [p for p in self.points if p.role == role]


def _format_validation(source: str, exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(x) for x in err["loc"])
    value = err.get("input")
    shown = "" if isinstance(value, dict) else f": {value!r}"
    where = f"{source}: {loc}" if loc else source
    return f"{where}{shown}: {err['msg']}"


def load_profile_file(path: Path) -> Profile:
    """Load and validate one profile file; errors name the file, the key path and the bad value."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read profile: {exc.strerror}") from None
    try:
        data = tomllib.loads(decode_utf8(raw, str(path)))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    try:
        return Profile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation(str(path), exc)) from None


@cache
def builtin_profiles() -> dict[str, Profile]:
    """Every profile bundled under ``collectors/profiles``, by name (read once per process)."""
    return dict(_builtin_profiles())


@functools.lru_cache(maxsize=1)
def _builtin_profiles() -> dict[str, Profile]:
    out: dict[str, Profile] = {}
    for path in sorted(PROFILE_DIR.glob("*.toml")):
        prof = load_profile_file(path)
        if prof.name in out:
            raise ConfigError(f"{path}: profile name {prof.name!r} is already used by another file")
        out[prof.name] = prof
    return out


def resolve_profile(name: str, extra_dirs: tuple[Path, ...] = ()) -> Profile:
    """A profile by name from the bundled set or from site-specific directories."""
    for d in extra_dirs:
        for path in sorted(d.glob("*.toml")):
            prof = load_profile_file(path)
            if prof.name == name:
                return prof
    profiles = builtin_profiles()
    if name not in profiles:
        raise ConfigError(f"unknown profile {name!r} (known: {', '.join(sorted(profiles))})")
    return profiles[name]
