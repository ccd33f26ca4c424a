"""The site file's ``[report]`` table: PUE target, counterfactual setpoints and the EED information items.

Validated once into typed models; an error names the site file, the key path and the bad value, like every other
site-file error. Everything is optional: a missing EED item is reported as missing, never guessed.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aidc.config import Site, format_validation_error
from aidc.errors import ConfigError
from aidc.roles import Role


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EedInfo(_Strict):
    """Information items of Delegated Regulation (EU) 2024/1364 Annexes I and II that no meter provides."""

    data_centre_name: str | None = None
    owner: str | None = None
    operator: str | None = None
    operation_start: dt.date | None = None
    municipality: str | None = None  # where the data centre is located (LAU code or name)
    country: str | None = Field(None, pattern=r"^[A-Z]{2}$")
    data_centre_type: Literal["enterprise", "colocation", "co-hosting"] | None = None
    total_floor_area_m2: float | None = Field(None, gt=0)
    computer_room_floor_area_m2: float | None = Field(None, gt=0)
    installed_it_power_kw: float | None = Field(None, gt=0)  # P_DIT; default: sum of racks' rated_kw
    backup_generator_capacity_kw: float | None = Field(None, ge=0)
    grid_functions: str | None = None  # demand response / grid services offered, free text
    temperature_set_point_c: float | None = Field(None, ge=5, le=60)
    renewable_goo_kwh: float | None = Field(None, ge=0)  # guarantees of origin
    renewable_ppa_kwh: float | None = Field(None, ge=0)  # power purchase agreements
    renewable_onsite_kwh: float | None = Field(None, ge=0)
    potable_water_share: float | None = Field(None, ge=0, le=1)  # of the metered water input
    waste_heat_temperature_c: float | None = Field(None, ge=0, le=150)
    server_capacity_w: float | None = Field(None, ge=0)  # ICT capacity for servers (rated)
    storage_capacity_pb: float | None = Field(None, ge=0)
    incoming_bandwidth_gbps: float | None = Field(None, ge=0)
    outgoing_bandwidth_gbps: float | None = Field(None, ge=0)
    incoming_traffic_eb: float | None = Field(None, ge=0)
    outgoing_traffic_eb: float | None = Field(None, ge=0)


class ReportConfig(_Strict):
    """Settings of the monthly PUE report and the EED export."""

    pue_target: float | None = Field(None, ge=1.0, le=5.0)
    # Fixed setpoints of the counterfactual (default: each writable point's safe default from its profile).
    baseline_setpoints: dict[Role, float] = {}
    eed: EedInfo = EedInfo()


def report_config(site: Site) -> ReportConfig:
    """The site's ``[report]`` table, validated; ConfigError names the file and key path."""
    source = str(site.path) if site.path is not None else "<site>"
    try:
        return ReportConfig.model_validate(site.config.report)
    except ValidationError as exc:
        line = format_validation_error(source, exc)
        # Prefix the key path with the table name so the operator finds it in the file.
        head, sep, rest = line.partition(": ")
        raise ConfigError(f"{head}{sep}report.{rest}" if sep else line) from None
