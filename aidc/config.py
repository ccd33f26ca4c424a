"""Site configuration: one TOML file describes a facility; validated once into typed models.

Every error names the file, the key path and the bad value
(``site.toml: halls[0].racks[3].pdu.port: 70000 is not a TCP port``) and is raised as :class:`ConfigError`,
which the CLI prints as one line.
"""

from __future__ import annotations

import ipaddress
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from aidc.clock import NS, parse_time
from aidc.config_errors import decode_utf8, format_validation_error
from aidc.errors import ConfigError
from aidc.historian_config import HistorianConfig
from aidc.http_config import DcgmOptions, RedfishOptions, check_http_url
from aidc.power_guard_config import PowerGuardConfig
from aidc.profiles import Profile, resolve_profile
from aidc.roles import Role
from aidc.site_tables import ControlConfig, DashboardConfig, ReportConfig
from aidc.snmp_config import SnmpSettings
from aidc.tenant_config import CarbonConfig, TenantLease, check_tenants


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OpcUaSecurity(_Strict):
    """OPC-UA session security. Secrets are never in the file: the password comes from ``password_env``."""

    policy: Literal["None", "Basic256Sha256"] = "None"
    mode: Literal["None", "Sign", "SignAndEncrypt"] = "None"
    username: str | None = None
    password_env: str | None = None
    # Client certificate and key (generated on first use when missing) and trusted server certificates.
    certificate: Path | None = None
    private_key: Path | None = None
    trusted_server_certs: tuple[Path, ...] = ()
    # Policy None on a device with writable points lets anyone on the network path change setpoints: refused
    # unless this is set explicitly (the generated demo sets it, and says so).
    allow_insecure: bool = False

    @model_validator(mode="after")
    def _check(self) -> OpcUaSecurity:
        if (self.policy == "None") != (self.mode == "None"):
            raise ValueError(f"policy {self.policy!r} and mode {self.mode!r} must both be None or neither")
        if self.username and not self.password_env:
            raise ValueError(f"username {self.username!r} needs password_env (the password is never in the file)")
        if self.username and self.policy == "None":
            raise ValueError(
                f"username {self.username!r} with policy 'None' would send the password in clear: "
                "use policy 'Basic256Sha256' with mode 'Sign' or 'SignAndEncrypt'"
            )
        return self


class DeviceConfig(_Strict):
    """A device the collectors poll: protocol, endpoint, profile and poll interval."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    protocol: Literal["modbus", "opcua", "snmp", "dcgm", "redfish"]
    profile: str
    poll_interval_s: float = Field(10.0, gt=0, le=3600)
    timeout_s: float = Field(2.0, gt=0, le=120)
    # Modbus TCP.
    host: str = "127.0.0.1"
    port: int | None = None
    unit_id: int = 1
    # OPC-UA.
    endpoint: str | None = None
    security: OpcUaSecurity = OpcUaSecurity()
    # SNMP (UDP ``port`` on ``host``).
    snmp: SnmpSettings | None = None
    # DCGM exporter pages and Redfish service options (aidc/http_config.py); Redfish's base URL is ``endpoint``.
    dcgm: DcgmOptions = DcgmOptions()
    redfish: RedfishOptions = RedfishOptions()
    # Role overrides per point name (the same meter model serves as utility meter or sub-meter).
    roles: dict[str, Role] = {}

    @field_validator("port")
    @classmethod
    def _port(cls, v: int | None) -> int | None:
        if v is not None and not 1 <= v <= 65535:
            raise ValueError(f"{v} is not a TCP port")
        return v

    @field_validator("unit_id")
    @classmethod
    def _unit(cls, v: int) -> int:
        if not 0 <= v <= 247:
            raise ValueError(f"{v} is not a Modbus unit id (0-247)")
        return v

    @field_validator("host")
    @classmethod
    def _host(cls, v: str) -> str:
        if not v or any(c.isspace() for c in v):
            raise ValueError(f"{v!r} is not a host name or address")
        return v

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is not None and info.data.get("protocol") == "redfish":
            return check_http_url(v, schemes=("https", "http"))  # a Redfish service's base URL
        if v is not None and not v.startswith("opc.tcp://"):
            raise ValueError(f"{v!r} is not an OPC-UA endpoint URL (opc.tcp://host:port/path)")
        return v

    @model_validator(mode="after")
    def _check_protocol(self) -> DeviceConfig:
        if self.protocol == "modbus" and self.port is None:
            raise ValueError("Modbus devices need 'port'")
        if self.protocol == "snmp" and (self.port is None or self.snmp is None):
            raise ValueError("SNMP devices need 'port' and an [snmp] table (version, credentials)")
        if self.protocol != "snmp" and self.snmp is not None:
            raise ValueError(f"an [snmp] table on a {self.protocol} device: set protocol = 'snmp' or remove it")
        if self.protocol == "opcua" and self.endpoint is None:
            raise ValueError("OPC-UA devices need 'endpoint'")
        if self.protocol == "dcgm" and not self.dcgm.urls:
            raise ValueError("DCGM devices need 'dcgm.urls' (the dcgm-exporter pages, e.g. http://10.0.0.5:9400/metrics)")
        if self.protocol == "redfish":
            if self.endpoint is None:
                raise ValueError("Redfish devices need 'endpoint' (the service's base URL, https://host:port)")
            if self.redfish.username is None:
                raise ValueError("Redfish devices need 'redfish.username' and 'redfish.password_env'")
            if self.endpoint.startswith("http://") and not self.redfish.allow_insecure:
                raise ValueError(
                    f"endpoint {self.endpoint!r}: plain http sends the Redfish password in clear; use https "
                    "or set redfish.allow_insecure = true"
                )
        return self

    @property
    def address(self) -> str:
        """Where the device listens, for logs and listings."""
        if self.protocol == "modbus":
            return f"modbus://{self.host}:{self.port} unit {self.unit_id}"
        if self.protocol == "snmp":
            return f"snmp://{self.host}:{self.port}"
        if self.protocol == "dcgm":
            return ", ".join(self.dcgm.urls)
        if self.protocol == "redfish":
            return f"{self.endpoint} ({self.redfish.id or self.name})"
        return str(self.endpoint)


class RackConfig(_Strict):
    """A GPU rack, its PDU and its rack controller."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    row: str
    gpu_model: str = "GB200"
    gpus: int = Field(72, ge=1, le=1024)
    rated_kw: float = Field(132.0, gt=0, le=500)
    workload: Literal["training", "inference", "trace", "idle"] | None = None
    pdu: DeviceConfig | None = None
    controller: DeviceConfig | None = None
    # The power guard ([power_guard]): whether it may lower this rack's power limit, how far, and the rating of
    # the rack's PDU feed (None: sized for the rack, its rated_kw).
    cappable: bool = False
    min_power_limit_kw: float | None = Field(None, gt=0, le=500)
    pdu_rated_kw: float | None = Field(None, gt=0, le=1000)


class CduConfig(DeviceConfig):
    """A coolant distribution unit and the racks it serves."""

    racks: tuple[str, ...] = Field(min_length=1)
    design_flow_lpm: float | None = Field(None, gt=0)


class HallConfig(_Strict):
    """A data hall: racks and the CDUs that cool them."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    workload: Literal["training", "inference", "trace", "idle"] | None = None
    racks: tuple[RackConfig, ...] = Field(min_length=1)
    cdus: tuple[CduConfig, ...] = Field(min_length=1)


class PlantConfig(DeviceConfig):
    """The cooling plant serving the facility water system."""

    type: Literal["chiller_drycooler", "chiller_tower", "chiller_only"] = "chiller_drycooler"
    crah_share: float = Field(0.12, ge=0, le=0.5)


class UpsConfig(DeviceConfig):
    """The UPS system feeding the IT load."""

    rated_kw: float = Field(gt=0)


class MeterConfig(DeviceConfig):
    """A utility meter or sub-meter; its purpose sets the roles of its energy and power points."""

    purpose: Literal["utility", "cooling", "other"] = "utility"


class SiteInfo(_Strict):
    """Site identity, location, liquid-cooling class and weather source."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")
    timezone: str = "UTC"
    latitude: float = Field(0.0, ge=-90, le=90)
    longitude: float = Field(0.0, ge=-180, le=180)
    elevation_m: float = 0.0
    ashrae_class: Literal["W17", "W27", "W32", "W40", "W45", "W+"] = "W32"
    weather: str = "builtin:leesburg"
    data_dir: Path = Path("var")
    profile_dirs: tuple[Path, ...] = ()

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{v!r} is not an IANA time zone") from None
        return v

    @property
    def max_fws_supply_c(self) -> float | None:
        """The W-class limit on facility water supply temperature (None for W+)."""
        return {"W17": 17.0, "W27": 27.0, "W32": 32.0, "W40": 40.0, "W45": 45.0}.get(self.ashrae_class)


class SimulationConfig(_Strict):
    """How the bundled simulators run this site (ignored for a real facility)."""

    bind: str = "127.0.0.1"
    speed: float = Field(1.0, gt=0, le=100000)
    start: str = "now"  # ISO-8601 time, or "now" (rounded down to the minute)
    tick_s: float = Field(1.0, gt=0, le=600)
    workload: Literal["training", "inference", "trace", "idle"] = "training"
    trace: Path | None = None
    seed: int = 1
    control_port: int = 8049
    physics: dict[str, float] = {}

    @field_validator("start")
    @classmethod
    def _start(cls, v: str) -> str:
        if v != "now":
            try:
                parse_time(v)
            except ConfigError:
                raise ValueError(f"{v!r} is not an ISO-8601 time or 'now'") from None
        return v

    def start_ns(self) -> int:
        """Simulated start time, UTC ns."""
        if self.start == "now":
            return time.time_ns() // (60 * NS) * (60 * NS)
        return parse_time(self.start)

    @field_validator("bind")
    @classmethod
    def _bind(cls, v: str) -> str:
        try:
            ipaddress.ip_address(v)
        except ValueError:
            raise ValueError(f"{v!r} is not an IP address") from None
        return v


class ApiSettings(_Strict):
    """The ``[api]`` table: the REST API and ``/metrics`` the main job serves beside the dashboard.

    Tokens come from the environment (``AIDC_API_TOKENS``) or from ``token_file``, never from the site file itself.
    """

    enabled: bool = True
    host: str = "127.0.0.1"  # loopback unless the operator opens it on purpose
    port: int = Field(8081, ge=1, le=65535)
    token_file: Path | None = None  # hashed entries from `aidc api-token --append`; relative to the site file

    @field_validator("host")
    @classmethod
    def _host(cls, v: str) -> str:
        try:
            ipaddress.ip_address(v)
        except ValueError:
            raise ValueError(f"{v!r} is not an IP address") from None
        return v


class SiteConfig(_Strict):
    """A whole facility."""

    site: SiteInfo
    simulation: SimulationConfig = SimulationConfig()
    halls: tuple[HallConfig, ...] = Field(min_length=1)
    plant: PlantConfig
    ups: UpsConfig
    meters: tuple[MeterConfig, ...] = ()
    historian: HistorianConfig = HistorianConfig()
    tenants: tuple[TenantLease, ...] = ()  # leases of racks to tenants (aidc/tenant_config.py)
    carbon: CarbonConfig = CarbonConfig()
    api: ApiSettings = ApiSettings()
    # The policy tables of the stages (aidc/site_tables.py): typed here so that a bad key fails at load.
    control: ControlConfig = ControlConfig()
    dashboard: DashboardConfig = DashboardConfig()
    report: ReportConfig = ReportConfig()
    power_guard: PowerGuardConfig = PowerGuardConfig()


@dataclass(frozen=True, slots=True)
class DeviceRef:
    """A device with its location in the site, resolved profile and series tags."""

    kind: Literal["pdu", "rack", "cdu", "plant", "ups", "meter"]
    path: str  # key path in the site file, for messages
    config: DeviceConfig
    profile: Profile
    tags: dict[str, str]

    @property
    def name(self) -> str:
        """Device name (unique in the site)."""
        return self.config.name

    def role_of(self, point: str) -> Role | None:
        """Role of a point on this device: site override, meter purpose, else the profile's."""
        if point in self.config.roles:
            return self.config.roles[point]
        if isinstance(self.config, MeterConfig):
            role = _METER_ROLES.get((self.config.purpose, point))
            if role is not None:
                return role
        return self.profile.point(point).role


_METER_ROLES: dict[tuple[str, str], Role] = {
    ("utility", "energy_kwh"): Role.FACILITY_ENERGY,
    ("utility", "active_power_w"): Role.FACILITY_POWER,
    ("cooling", "energy_kwh"): Role.COOLING_ENERGY,
    ("cooling", "active_power_w"): Role.COOLING_POWER,
    ("other", "energy_kwh"): Role.OTHER_ENERGY,
    ("other", "active_power_w"): Role.OTHER_POWER,
}


@dataclass(frozen=True)
class Site:
    """A validated site: the model plus resolved devices, ready for collectors and simulators."""

    path: Path | None
    config: SiteConfig
    devices: tuple[DeviceRef, ...]

    @property
    def name(self) -> str:
        """Site name, the ``site`` tag of every series."""
        return self.config.site.name

    @property
    def data_dir(self) -> Path:
        """Data directory (relative paths resolve against the site file's folder)."""
        d = self.config.site.data_dir
        if not d.is_absolute() and self.path is not None:
            d = self.path.parent / d
        return d

    @property
    def api_token_file(self) -> Path | None:
        """The ``[api] token_file`` (relative paths resolve against the site file's folder), None when unset."""
        f = self.config.api.token_file
        if f is not None and not f.is_absolute() and self.path is not None:
            f = self.path.parent / f
        return f

    def device(self, name: str) -> DeviceRef:
        """Device by name."""
        for dev in self.devices:
            if dev.name == name:
                return dev
        raise KeyError(f"site {self.name} has no device {name!r}")

    def racks(self) -> Iterator[tuple[HallConfig, RackConfig]]:
        """Every rack with its hall."""
        for hall in self.config.halls:
            for rack in hall.racks:
                yield hall, rack


def load_site(path: Path | str) -> Site:
    """Read, validate and resolve a site file; raises ConfigError with one clear line."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read site file: {exc.strerror}") from None
    text = decode_utf8(raw, str(p))
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: invalid TOML: {exc}") from None
    return site_from_dict(data, source=str(p), path=p)


def site_from_dict(data: dict[str, Any], *, source: str = "<site>", path: Path | None = None) -> Site:
    """Validate an already parsed site document."""
    try:
        cfg = SiteConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(source, exc, root=SiteConfig)) from None
    devices = _resolve_devices(cfg, source, path)
    check_tenants(cfg.tenants, (r.name for h in cfg.halls for r in h.racks), cfg.site.timezone, source)
    return Site(path=path, config=cfg, devices=tuple(devices))


def _resolve_devices(cfg: SiteConfig, source: str, path: Path | None) -> list[DeviceRef]:
    base = path.parent if path is not None else Path.cwd()
    profile_dirs = tuple(d if d.is_absolute() else base / d for d in cfg.site.profile_dirs)
    site_tags = {"site": cfg.site.name}
    found: list[tuple[str, str, DeviceConfig, dict[str, str]]] = []
    for hi, hall in enumerate(cfg.halls):
        rack_names = [r.name for r in hall.racks]
        for ri, rack in enumerate(hall.racks):
            tags = {**site_tags, "hall": hall.name, "row": rack.row, "rack": rack.name}
            if rack.pdu is not None:
                found.append(("pdu", f"halls[{hi}].racks[{ri}].pdu", rack.pdu, tags))
            if rack.controller is not None:
                found.append(("rack", f"halls[{hi}].racks[{ri}].controller", rack.controller, tags))
        served: dict[str, str] = {}
        for ci, cdu in enumerate(hall.cdus):
            for rname in cdu.racks:
                if rname not in rack_names:
                    raise ConfigError(
                        f"{source}: halls[{hi}].cdus[{ci}].racks: {rname!r} is not a rack of hall {hall.name}"
                    )
                if rname in served:
                    raise ConfigError(
                        f"{source}: halls[{hi}].cdus[{ci}].racks: rack {rname!r} is already served by {served[rname]}"
                    )
                served[rname] = cdu.name
            found.append(("cdu", f"halls[{hi}].cdus[{ci}]", cdu, {**site_tags, "hall": hall.name}))
        unserved = [r for r in rack_names if r not in served]
        if unserved:
            raise ConfigError(f"{source}: halls[{hi}].cdus: racks {unserved} are served by no CDU")
    found.append(("plant", "plant", cfg.plant, dict(site_tags)))
    found.append(("ups", "ups", cfg.ups, dict(site_tags)))
    for mi, meter in enumerate(cfg.meters):
        found.append(("meter", f"meters[{mi}]", meter, {**site_tags, "purpose": meter.purpose}))

    out: list[DeviceRef] = []
    names: dict[str, str] = {}
    endpoints: dict[tuple[str, int, int], str] = {}
    for kind, key, dev, tags in found:
        if dev.name in names:
            raise ConfigError(f"{source}: {key}.name: duplicate device {dev.name!r} (also at {names[dev.name]})")
        names[dev.name] = key
        if dev.protocol == "modbus" and dev.port is not None:
            ep = (dev.host, dev.port, dev.unit_id)
            if ep in endpoints:
                raise ConfigError(
                    f"{source}: {key}: {dev.host}:{dev.port} unit {dev.unit_id} is already used by {endpoints[ep]}"
                )
            endpoints[ep] = dev.name
        try:
            profile = resolve_profile(dev.profile, profile_dirs)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {key}.profile: {exc}") from None
        if profile.protocol != dev.protocol:
            raise ConfigError(
                f"{source}: {key}.protocol: {dev.protocol!r} but profile {profile.name!r} is {profile.protocol}"
            )
        for point in dev.roles:
            if point not in {p.name for p in profile.points}:
                raise ConfigError(f"{source}: {key}.roles: {point!r} is not a point of profile {profile.name!r}")
        writable = [p.name for p in profile.points if p.writable]
        if dev.protocol == "opcua" and dev.security.policy == "None" and writable and not dev.security.allow_insecure:
            raise ConfigError(
                f"{source}: {key}.security.policy: 'None' on a device with writable points ({', '.join(writable)}) "
                "lets anyone on the network change setpoints; use 'Basic256Sha256' or set allow_insecure = true"
            )
        out.append(DeviceRef(kind, key, dev, profile, {**tags, "device": dev.name}))  # type: ignore[arg-type]
    return out
