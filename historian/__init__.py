"""The historian: one interface, an embedded DuckDB default, InfluxDB and VictoriaMetrics with store and forward.

``open_historian(cfg, data_dir)`` is the only constructor the rest of aidc needs.
"""

from __future__ import annotations

import logging
from pathlib import Path

from aidc.historian_config import HistorianConfig, RemoteConfig, SpoolConfig
from historian.base import AGGS, Historian, SeriesSelector, counter_deltas_from_raw, parse_window, to_ns

log = logging.getLogger(__name__)

__all__ = [
    "AGGS",
    "Historian",
    "HistorianConfig",
    "RemoteConfig",
    "SeriesSelector",
    "SpoolConfig",
    "counter_deltas_from_raw",
    "open_historian",
    "open_remote",
    "parse_window",
    "to_ns",
]


def _under(data_dir: Path, path: Path) -> Path:
    return path if path.is_absolute() else Path(data_dir) / path


def open_historian(cfg: HistorianConfig, data_dir: Path, site: str = "") -> Historian:
    """Build the configured historian; a remote that is unreachable at start is logged once and spooled to.
    ``site``: the site name a remote store gets on series without a site tag (several sites share a central one)."""
    from historian.duckdb_store import DuckDBHistorian

    def local() -> DuckDBHistorian:
        return DuckDBHistorian(
            _under(data_dir, cfg.path),
            raw_retention_days=cfg.raw_retention_days,
            rollup_every_s=cfg.rollup_every_s,
            rollup_1m_retention_days=cfg.rollup_1m_retention_days,
            rollup_1h_retention_days=cfg.rollup_1h_retention_days,
            hot_max_rows=cfg.hot_max_rows,
            resolution=cfg.resolution,
        )

    if cfg.backend == "duckdb":
        return local()
    remote = open_remote(cfg, data_dir, site)
    if not cfg.keep_local:
        return remote
    from historian.fanout import FanoutHistorian

    return FanoutHistorian(local(), remote)


def open_remote(cfg: HistorianConfig, data_dir: Path, site: str = "") -> Historian:
    """The remote backend behind its spool (InfluxDB 2.x with Flux reads, or VictoriaMetrics)."""
    from historian.forward import RemoteHistorian, RemoteReader
    from historian.influx import FluxReader, InfluxSender
    from historian.spool import Spool
    from historian.victoria import VictoriaReader

    rc = cfg.remote
    if rc is None:  # the config validator already refuses this; kept for type narrowing
        raise ValueError(f"historian backend {cfg.backend!r} needs [historian.remote]")
    token = rc.token(cfg.backend)
    sender = InfluxSender(rc.url, token=token, org=rc.org, bucket=rc.bucket, gzip=rc.gzip, timeout_s=rc.timeout_s)
    reader: RemoteReader
    if cfg.backend == "victoriametrics":
        reader = VictoriaReader(rc.url, token=token, timeout_s=rc.timeout_s)
    else:
        reader = FluxReader(sender.client, rc.bucket, sender.org)
    if not sender.ping():
        log.warning(
            "historian %s: %s is unreachable at start; collecting into the spool %s until it answers",
            cfg.backend, rc.url, _under(data_dir, cfg.spool.dir),
        )  # fmt: skip
    spool = Spool(
        _under(data_dir, cfg.spool.dir),
        max_bytes=cfg.spool.max_bytes,
        segment_bytes=cfg.spool.segment_bytes,
        fsync=cfg.spool.fsync == "always",
    )
    return RemoteHistorian(
        cfg.backend,
        sender,
        reader,
        spool,
        batch_points=rc.batch_points,
        write_quality=rc.write_quality,
        backoff_initial_s=rc.backoff_initial_s,
        backoff_max_s=rc.backoff_max_s,
        site=site,
    )
