"""Typed models of the site file's policy tables: ``[control]``, ``[dashboard]`` (with ``[dashboard.alarms]``) and
``[report]`` (with ``[report.eed]``).

The stages that use these tables (control, dashboards, analytics) cannot be imported by the kernel, so the kernel owns
their models and :func:`aidc.config.load_site` validates every table once, at load: ``aidc check`` refuses a typo
such as ``[control] mdoe = "auto"``, and ``aidc run`` never starts with a table it would silently ignore. The stages
import these models from here (and re-export them under their old names).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aidc.config_errors import format_validation_error
from aidc.errors import ConfigError
from aidc.roles import Role


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- [control] ------------------------------------------------------------------------------------------------


class TrimRespondConfig(_Strict):
    """ASHRAE Guideline 36 §5.1.14 trim & respond on a 0-1 plant reset variable (``[control.trim_respond]``).

    Defaults follow the G36 chiller-plant reset as implemented in the Modelica Buildings library: start at full
    cooling (SP0 = 1), trim 0.02 toward energy saving every T = 300 s after Td = 900 s, respond +0.03 per request
    beyond the I = 2 ignored ones, at most +0.07 a step. Reset 0 is the warm, low-pressure end and 1 the cold,
    high-pressure end; the first half of the range raises dp, the second half lowers the supply temperatures.
    The names without a unit (sp0, i, r, ...) are G36's own symbols, dimensionless.
    """

    sp0: float = Field(1.0, ge=0, le=1)
    sp_min: float = Field(0.0, ge=0, le=1)
    sp_max: float = Field(1.0, ge=0, le=1)
    td_s: float = Field(900.0, ge=0)
    t_s: float = Field(300.0, gt=0)
    i: int = Field(2, ge=0)
    r: int | None = Field(None, ge=1)  # requests counted at most (None: every CDU's)
    sp_trim: float = Field(-0.02, ge=-1, le=0)
    sp_res: float = Field(0.03, ge=0, le=1)
    sp_res_max: float = Field(0.07, ge=0, le=1)
    request_margin_k: float = Field(5.0, ge=0)  # a CDU requests when its hottest GPU is within this of the limit
    request_valve_pct: float = Field(95.0, ge=0, le=100)  # or its FWS valve is at least this open
    tcs_range_c: tuple[float, float] | None = None  # (cold end, warm end); None: the site's limits
    dp_range_kpa: tuple[float, float] | None = None  # (low, high); None: the site's limits
    fws_range_c: tuple[float, float] | None = None  # (cold end, warm end); None: the site's limits


class ControlConfig(_Strict):
    """The ``[control]`` table: the supervisor's mode, interval, margins, rate limits and trust thresholds."""

    interval_s: float = Field(300.0, ge=10, le=3600)
    mode: Literal["off", "advisory", "auto"] = "advisory"
    gpu_margin_k: float = Field(3.0, ge=0, le=20)
    gpu_limits_c: dict[str, float] = {}  # throttle limit per GPU model, overriding the built-in table
    dew_margin_k: float = Field(2.0, ge=0, le=10)
    cdu_approach_k: float = Field(3.0, ge=0, le=10)
    max_step_tcs_k: float = Field(2.0, gt=0, le=10)
    max_step_dp_kpa: float = Field(20.0, gt=0, le=100)
    max_step_fws_k: float = Field(2.0, gt=0, le=10)
    stale_s: float = Field(120.0, gt=0)  # inputs older than this are stale: hold
    hold_revert_s: float = Field(900.0, ge=0)  # holding this long reverts to the safe defaults
    heartbeat_s: float = Field(10.0, gt=0)
    alarm_gpu_k: float = Field(1.0, ge=0)  # thermal guard: a GPU within this of its throttle limit is an alarm
    alarm_tcs_c: float = Field(45.0)  # thermal guard: TCS supply above this is an alarm
    # bits of a CDU's device alarm word that hold it (no warmer, no less flow; reverted after hold_revert_s). The
    # default 0b1111 is the vertiv-xdu-cdu profile's high TCS temperature, leak, pump fault and heartbeat-lost bits;
    # its condensation (bit 4) and dp-not-reached (bit 5) bits ask for warmer water or less dp, which a hold forbids
    alarm_word_mask: int = Field(0b1111, ge=0, le=0xFFFF_FFFF)
    lockout_s: float = Field(1800.0, ge=0)  # after a guard or fast-path action: no warmer than it left, this long
    # ... after a fast-path action (a load step met before any temperature rose, not a temperature alarm) only this
    # long, at most lockout_s: until the loops have settled at the new load and a decision has seen it
    feedforward_lockout_s: float = Field(600.0, ge=0)
    # fast path: a CDU's mean GPU utilisation rising more than this (points) since the last decision is a load
    # step, met at once with colder, higher-flow setpoints (100: off)
    feedforward_util_rise_pct: float = Field(20.0, gt=0, le=100)
    commissioning_days: float = Field(14.0, ge=0)
    retrain_h: float = Field(24.0, gt=0)
    train_window_days: float = Field(60.0, gt=0)
    max_spread_kw: float = Field(60.0, gt=0)  # model spread (facility kW) above which a candidate is not trusted
    max_spread_k: float = Field(1.5, gt=0)  # model spread (GPU °C) above which a candidate is not trusted
    max_distance: float = Field(1.5, gt=0)  # distance from training data (scaled units) beyond which: not trusted
    user: str = "aidc-supervisor"
    trim_respond: TrimRespondConfig = TrimRespondConfig()


# --- [dashboard] and [dashboard.alarms] -----------------------------------------------------------------------


class _Tables(Protocol):
    @property
    def dashboard(self) -> DashboardConfig: ...


class SiteLike(Protocol):
    """What these models need of :class:`aidc.config.Site` (which imports this module, so it is not imported here)."""

    @property
    def path(self) -> Path | None: ...

    @property
    def data_dir(self) -> Path: ...

    @property
    def config(self) -> _Tables: ...


class AlarmPolicy(BaseModel):
    """Site alarm policy (``[dashboard.alarms]``); thresholds not given come from the profiles."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gpu_temp_high_c: float = Field(85.0, gt=0, le=120)  # GPUs throttle in the high 80s
    rack_outlet_high_c: float = Field(60.0, gt=0, le=90)
    # None: the highest TCS supply setpoint the CDU profile accepts (its writable point's max).
    tcs_supply_high_c: float | None = Field(None, gt=0, le=90)
    # None: the site's ASHRAE W-class limit on facility water supply.
    fws_supply_high_c: float | None = Field(None, gt=0, le=90)
    # TCS supply above FWS supply: 2-5 K is typical at design load, so 8 K means a fouled or starved exchanger.
    cdu_approach_high_k: float = Field(8.0, gt=0, le=30)
    spool_points_high: int = Field(100_000, ge=1)
    hysteresis_k: float = Field(1.0, ge=0, le=20)
    raise_delay_s: float = Field(60.0, ge=0, le=3600)
    clear_delay_s: float = Field(60.0, ge=0, le=3600)
    webhook_url_env: str | None = Field(None, pattern=r"^[A-Z_][A-Z0-9_]*$")
    webhook_timeout_s: float = Field(5.0, gt=0, le=60)

    @classmethod
    def from_site(cls, site: SiteLike) -> AlarmPolicy:
        """The site's ``[dashboard.alarms]`` table (defaults if absent), validated when the site was loaded."""
        return site.config.dashboard.alarms


class DashboardConfig(BaseModel):
    """The ``[dashboard]`` table: where the operator dashboard listens, its users, cookies and alarm policy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bind: str = "127.0.0.1"
    port: int = Field(8050, ge=1, le=65535)
    users_file: str = "dashboard-users.json"  # relative to the site's data directory
    secret_env: str | None = Field(None, pattern=r"^[A-Z_][A-Z0-9_]*$")  # session signing key; random if unset
    secure_cookies: bool = False  # set when served behind HTTPS
    alarm_every_s: float = Field(1.0, gt=0, le=60)
    # An Open-Meteo hourly forecast (JSON or CSV) for the PUE forecast, refreshed by the site (e.g. a cron job);
    # relative to the site's data directory. Without it: the current weather moved along the recent daily cycle.
    weather_file: str | None = None
    alarms: AlarmPolicy = AlarmPolicy()

    @classmethod
    def from_site(cls, site: SiteLike, **overrides: Any) -> DashboardConfig:
        """The site's ``[dashboard]`` table with command-line overrides (None: not given); ConfigError names the key."""
        given = {k: v for k, v in overrides.items() if v is not None}
        if not given:
            return site.config.dashboard
        try:
            return cls.model_validate({**site.config.dashboard.model_dump(), **given})
        except ValidationError as exc:
            source = f"{site.path or '<site>'} (with command-line options)"
            raise ConfigError(format_validation_error(source, exc, root=cls, prefix=("dashboard",))) from None

    def weather_path(self, site: SiteLike) -> Path | None:
        """Where the weather forecast file lives (None: none configured)."""
        if self.weather_file is None:
            return None
        p = Path(self.weather_file)
        return p if p.is_absolute() else site.data_dir / p

    def users_path(self, site: SiteLike) -> Path:
        """Where the users file lives."""
        p = Path(self.users_file)
        return p if p.is_absolute() else site.data_dir / p


# --- [report] and [report.eed] --------------------------------------------------------------------------------


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
    """The ``[report]`` table: settings of the monthly PUE report and the EED export."""

    pue_target: float | None = Field(None, ge=1.0, le=5.0)
    # Fixed setpoints of the counterfactual (default: each writable point's safe default from its profile).
    baseline_setpoints: dict[Role, float] = {}
    eed: EedInfo = EedInfo()
