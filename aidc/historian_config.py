"""The ``[historian]`` table of the site file: which backend, where the data lives, the spool and the remote.

Example (every key optional; these are the defaults except ``[historian.remote]``)::

    [historian]
    backend = "duckdb"            # "duckdb" (embedded), "influxdb" (2.x / Cloud) or "victoriametrics"
    path = "historian.duckdb"     # DuckDB file, relative to the site's data_dir
    keep_local = true             # with a remote backend, also keep the DuckDB file as the hot store
    raw_retention_days = 30       # tier 1: raw rows at poll rate, kept this long
    rollup_1m_retention_days = 400 # tier 2: 1-minute rollups (count, sum, min, max, last, worst quality); leave it
                                  # out to keep them for ever (the default: monthly reports and the annual export
                                  # read counters from them once raw rows have aged out, from the hourly rollups at
                                  # hourly resolution where these have aged out too, as the report then states)
    rollup_1h_retention_days = 3650   # tier 3: hourly rollups; leave it out to keep them for ever (the default)
    hot_max_rows = 250000         # raw rows held in the DuckDB table before they are compacted to Parquet
    resolution = { "gpu_rack,*,gpu_power_w" = 0.001 }  # optional: values of matching series stored at the
                                  # device's resolution (NVML reports mW); none by default
    rollup_every_s = 60           # how often the writer closes 1 min / 1 h rollup buckets

    [historian.remote]            # needed when backend is influxdb or victoriametrics
    url = "http://127.0.0.1:8086"
    org = "dc1"                   # InfluxDB only
    bucket = "aidc"               # InfluxDB only
    token_env = "AIDC_INFLUX_TOKEN"   # name of the environment variable holding the token
    gzip = true
    batch_points = 20000
    timeout_s = 10

    [historian.spool]
    dir = "historian-spool"       # relative to data_dir
    max_mb = 1024                 # when full, new batches are refused and counted (oldest kept first)
    fsync = "always"              # "always": fsync every append and ack; "never": leave it to the OS
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from aidc.errors import ConfigError

Backend = Literal["duckdb", "influxdb", "victoriametrics"]
REMOTE_BACKENDS: tuple[str, ...] = ("influxdb", "victoriametrics")


class RemoteConfig(BaseModel):
    """Where a remote time-series database is and how to write to it."""

    model_config = ConfigDict(extra="forbid")

    url: str
    org: str = ""
    bucket: str = "aidc"
    token_env: str = "AIDC_INFLUX_TOKEN"  # noqa: S105 - the name of a variable, not a secret
    gzip: bool = True
    batch_points: int = Field(default=20_000, ge=1, le=1_000_000)
    timeout_s: float = Field(default=10.0, gt=0, le=600)
    write_quality: bool = True
    backoff_initial_s: float = Field(default=0.5, gt=0)
    backoff_max_s: float = Field(default=30.0, gt=0)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected an http(s):// URL with a host, got {value!r}")
        return value.rstrip("/")

    def token(self, backend: str) -> str:
        """The token read from ``token_env``; InfluxDB needs one, VictoriaMetrics may run without."""
        token = os.environ.get(self.token_env, "")
        if not token and backend == "influxdb":
            raise ConfigError(
                f"historian.remote.token_env: environment variable {self.token_env} is not set "
                "(the InfluxDB token is read from the environment, never from the site file)"
            )
        return token


class SpoolConfig(BaseModel):
    """The disk spool that holds batches while the remote is unreachable."""

    model_config = ConfigDict(extra="forbid")

    dir: Path = Path("historian-spool")
    max_mb: float = Field(default=1024.0, gt=0)
    segment_mb: float = Field(default=16.0, gt=0)
    fsync: Literal["always", "never"] = "always"

    @property
    def max_bytes(self) -> int:
        """Bound on unreplayed bytes."""
        return int(self.max_mb * 1024 * 1024)

    @property
    def segment_bytes(self) -> int:
        """Size after which a new segment file is started."""
        return int(self.segment_mb * 1024 * 1024)


class HistorianConfig(BaseModel):
    """The ``[historian]`` table."""

    model_config = ConfigDict(extra="forbid")

    backend: Backend = "duckdb"
    path: Path = Path("historian.duckdb")
    keep_local: bool = True
    raw_retention_days: float = Field(default=30.0, gt=0)
    rollup_1m_retention_days: float | None = Field(default=None, gt=0)
    rollup_1h_retention_days: float | None = Field(default=None, gt=0)
    hot_max_rows: int = Field(default=250_000, ge=1000)
    rollup_every_s: float = Field(default=60.0, gt=0)
    # Declared device resolution per series selector (e.g. "gpu_rack,*,gpu_power_w" = 0.001): such values are stored
    # as the nearest multiple of the step, which a part keeps as an integer count (see historian.parts).
    resolution: dict[str, float] = Field(default_factory=dict)
    remote: RemoteConfig | None = None
    spool: SpoolConfig = SpoolConfig()

    @model_validator(mode="after")
    def _tiers_nested(self) -> HistorianConfig:
        # Each tier is built from the finer one, so it must outlive it (or be kept for ever).
        tiers = [self.raw_retention_days, self.rollup_1m_retention_days, self.rollup_1h_retention_days]
        for (name, days), (next_name, next_days) in zip(
            zip(("raw_retention_days", "rollup_1m_retention_days"), tiers[:2], strict=True),
            zip(("rollup_1m_retention_days", "rollup_1h_retention_days"), tiers[1:], strict=True),
            strict=True,
        ):
            if days is None and next_days is not None:
                raise ValueError(f"{next_name} = {next_days} is set but {name} keeps its tier for ever")
            if days is not None and next_days is not None and next_days < days:
                raise ValueError(f"{next_name} = {next_days} is shorter than {name} = {days}")
        return self

    @field_validator("resolution")
    @classmethod
    def _steps_positive(cls, value: dict[str, float]) -> dict[str, float]:
        for sel, step in value.items():
            if not sel.strip():
                raise ValueError('a resolution needs a series selector, e.g. "gpu_rack,*,gpu_power_w" = 0.001')
            if not step > 0 or step != step or step == float("inf"):
                raise ValueError(f"resolution of {sel!r} must be a positive number, got {step!r}")
        return value

    @model_validator(mode="after")
    def _remote_needed(self) -> HistorianConfig:
        if self.backend in REMOTE_BACKENDS and self.remote is None:
            raise ValueError(f"backend {self.backend!r} needs a [historian.remote] table with a url")
        return self


def historian_config_from_mapping(data: Mapping[str, Any], source: str = "site file") -> HistorianConfig:
    """Validate a ``[historian]`` table, turning the first problem into a one-line :class:`ConfigError`."""
    try:
        return HistorianConfig.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, source, prefix="historian")) from None


def describe_validation_error(exc: ValidationError, source: str, prefix: str) -> str:
    """One line naming the file, the key path, the bad value and what was expected."""
    err = exc.errors()[0]
    loc = ".".join([prefix, *(str(p) for p in err["loc"])])
    value = err.get("input")
    shown = "" if isinstance(value, dict) else f" = {value!r}"
    msg = str(err["msg"]).removeprefix("Value error, ")
    return f"{source}: {loc}{shown}: {msg}"
