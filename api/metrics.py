"""aidc's own health as Prometheus metrics, with the standard client library (one registry per app).

Read at scrape time, so nothing is duplicated or goes stale:

- collectors (the ``collector,device=...`` health series): up, poll latency, errors per device;
- historian: the store-and-forward figures (spool depth, replay lag, points sent, dropped, rejected) from the
  historian itself, or the last ones the main job wrote as ``aidc_historian`` series;
- controller: mode, decisions and holds from the supervisor's status (when one runs);
- the API itself: requests by route and status, and latency.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from aidc.model import SeriesKey
from api.context import ApiContext
from historian import SeriesSelector

log = logging.getLogger(__name__)

# collector health field -> (metric, help, factor, counter?)
_COLLECTOR = {
    "up": ("aidc_collector_up", "1 while the device answers polls", 1.0, False),
    "latency_ms": ("aidc_collector_poll_latency_seconds", "latency of the device's last poll", 0.001, False),
    "errors_total": ("aidc_collector_errors", "poll errors since the collector started", 1.0, True),
}
_HISTORIAN = {
    "spool_depth_points": ("aidc_historian_spool_points", "points waiting in the spool", False),
    "spool_depth_bytes": ("aidc_historian_spool_bytes", "bytes waiting in the spool", False),
    "replay_lag_s": ("aidc_historian_replay_lag_seconds", "age of the oldest spooled chunk", False),
    "sent_points_total": ("aidc_historian_points_written", "points delivered to the backend", True),
    "dropped_points_total": ("aidc_historian_points_dropped", "points refused because the spool was full", True),
    "rejected_points_total": ("aidc_historian_points_rejected", "points the backend rejected", True),
}
_CONTROLLER = {
    "decisions": ("aidc_controller_decisions", "setpoint decisions taken", True),
    "holds": ("aidc_controller_holds", "decisions held back by the safety guard", True),
}


class _Health(Collector):
    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        """Every family, read now."""
        yield from self._collectors()
        yield from self._historian()
        yield from self._controller()

    def _collectors(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        fams: dict[str, GaugeMetricFamily | CounterMetricFamily] = {}
        for fld, (name, doc, _, counter) in _COLLECTOR.items():
            fams[fld] = (CounterMetricFamily if counter else GaugeMetricFamily)(name, doc, labels=["device"])
        with self.ctx.lock:
            frame = self.ctx.historian.latest(SeriesSelector("collector", {}, None))
        for sid, value in zip(frame["series"], frame["value"], strict=True):
            key = SeriesKey.parse(sid)
            spec = _COLLECTOR.get(key.field)
            if spec is None or value != value:  # NaN: no reading
                continue
            fams[key.field].add_metric([key.tag_dict.get("device", "?")], float(value) * spec[2])
        yield from fams.values()

    def _historian(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        now_ns = int(self.ctx.clock().value)
        figures: dict[tuple[str, str], float] = {}
        with self.ctx.lock:
            stored = self.ctx.historian.latest(SeriesSelector("aidc_historian", {}, None))
            live = self.ctx.historian.stats_batch(now_ns)
        for sid, value in [*zip(stored["series"], stored["value"], strict=True),
                           *zip(live.series, live.values, strict=True)]:  # fmt: skip
            key = SeriesKey.parse(str(sid))
            if key.field in _HISTORIAN and value == value:
                figures[(key.field, key.tag_dict.get("backend", "?"))] = float(value)
        for fld, (name, doc, counter) in _HISTORIAN.items():
            fam = (CounterMetricFamily if counter else GaugeMetricFamily)(name, doc, labels=["backend"])
            for (f, backend), v in figures.items():
                if f == fld:
                    fam.add_metric([backend], v)
            yield fam

    def _controller(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        c = self.ctx.controller
        up = GaugeMetricFamily("aidc_controller_running", "1 when a supervisor runs in this process")
        up.add_metric([], 0.0 if c is None else 1.0)
        yield up
        if c is None:
            return
        counts = c.status().get("counts")  # the supervisor's counters: decisions, holds, writes, ...
        status = counts if isinstance(counts, dict) else {}
        mode = GaugeMetricFamily("aidc_controller_mode", "1 for the current mode", labels=["mode"])
        for m in ("off", "advisory", "auto"):
            mode.add_metric([m], 1.0 if c.mode == m else 0.0)
        yield mode
        for key, (name, doc, counter) in _CONTROLLER.items():
            value = status.get(key)
            if isinstance(value, int | float):
                fam = (CounterMetricFamily if counter else GaugeMetricFamily)(name, doc)
                fam.add_metric([], float(value))
                yield fam


@dataclass
class ApiMetrics:
    """The API's own request counters."""

    requests: Counter
    latency: Histogram

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one request."""
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(route).observe(seconds)


def build(ctx: ApiContext) -> tuple[CollectorRegistry, ApiMetrics]:
    """A registry with the health collector and the API's request metrics."""
    registry = CollectorRegistry()
    registry.register(_Health(ctx))
    requests = Counter("aidc_api_requests", "API requests", ["method", "route", "status"], registry=registry)
    latency = Histogram("aidc_api_request_seconds", "API request latency", ["route"], registry=registry)
    return registry, ApiMetrics(requests, latency)


def render(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The text exposition of every metric."""
    t0 = time.perf_counter()
    body = generate_latest(registry)
    log.debug("metrics rendered in %.1f ms", 1000 * (time.perf_counter() - t0))
    return body, CONTENT_TYPE_LATEST
