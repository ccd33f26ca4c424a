"""/metrics: the facility (:mod:`api.facility`) and aidc's own health, with the standard client library.

One registry per app, read at scrape time by custom collectors, so nothing is duplicated or goes stale:

- collectors: up, poll latency, successful polls and errors per device, from the job's collector engine (the
  stand-alone server reads the ``collector,device=...`` health series from the historian instead, without polls);
- historian: the writer's store-and-forward figures (written, spooled, dropped by reason, backlog, spool depth)
  from the job's writer or the ``aidc_writer`` series it stores, and a remote backend's own spool figures;
- controller: mode, decisions and holds from the supervisor's status (when one runs);
- the API itself: requests by route and status, and latency.

Counters are exposed with the ``_total`` suffix the client library adds; values are in base units. A scrape never
takes the context's lock (the historian serves reads from any thread, :class:`historian.Historian`): a long PUE
question holding it between periods must not delay a scrape.
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
from api.facility import FacilityCollector
from historian import SeriesSelector

log = logging.getLogger(__name__)

# collector health field -> (metric, help, factor, counter?); the stand-alone server reads them from the historian.
_COLLECTOR = {
    "up": ("aidc_collector_up", "1 while the device answers polls", 1.0, False),
    "latency_ms": ("aidc_collector_poll_latency_seconds", "latency of the device's last poll", 0.001, False),
    "errors_total": ("aidc_collector_errors", "poll errors since the collector started", 1.0, True),
}
# The historian backend's own figures (a remote backend's spool), by backend.
_HISTORIAN = {
    "spool_depth_points": ("aidc_historian_spool_points", "points waiting in the spool", False),
    "spool_depth_bytes": ("aidc_historian_spool_bytes", "bytes waiting in the spool", False),
    "replay_lag_s": ("aidc_historian_replay_lag_seconds", "age of the oldest spooled chunk", False),
    "sent_points_total": ("aidc_historian_points_written", "points delivered to the backend", True),
    "dropped_points_total": ("aidc_historian_points_dropped", "points refused because the spool was full", True),
    "rejected_points_total": ("aidc_historian_points_rejected", "points the backend rejected", True),
}
# The main job's store-and-forward writer (historian.writer.HistorianWriter.health, or its aidc_writer series).
_WRITER = {
    "points_written_total": ("aidc_historian_writer_points_written", "points the writer stored", True),
    "spooled_points_total": ("aidc_historian_writer_points_spooled", "points moved to the disk spool", True),
    "write_errors_total": ("aidc_historian_writer_write_errors", "failed writes to the store", True),
    "backlog_points": ("aidc_historian_writer_backlog_points", "points held in memory for the next write", False),
    "spool_depth_points": ("aidc_historian_writer_spool_points", "points waiting in the disk spool", False),
}
_WRITER_DROPPED = {"refused_points_total": "spool_full", "collector_dropped_points_total": "collector_backlog"}
_CONTROLLER = {
    "decisions": ("aidc_controller_decisions", "setpoint decisions taken", True),
    "holds": ("aidc_controller_holds", "decisions held back by the safety guard", True),
}
Family = GaugeMetricFamily | CounterMetricFamily


def _family(name: str, doc: str, counter: bool, labels: list[str]) -> Family:
    return (CounterMetricFamily if counter else GaugeMetricFamily)(name, doc, labels=labels)


class _Health(Collector):
    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[Family]:
        """Every family, read now."""
        yield from self._collectors()
        yield from self._historian()
        yield from self._writer()
        yield from self._controller()

    def _collectors(self) -> Iterator[Family]:
        fams = {fld: _family(name, doc, counter, ["device"]) for fld, (name, doc, _, counter) in _COLLECTOR.items()}
        if self.ctx.collector_health is not None:  # the job's engine: read live, polls included
            polls = CounterMetricFamily(
                "aidc_collector_polls", "successful polls since the collector started", labels=["device"]
            )
            for name, h in sorted(self.ctx.collector_health().items()):
                labels = [name]
                fams["up"].add_metric(labels, float(h.up))
                if h.latency_s == h.latency_s:  # NaN until the first poll answers
                    fams["latency_ms"].add_metric(labels, h.latency_s)
                fams["errors_total"].add_metric(labels, float(h.errors))
                polls.add_metric(labels, float(h.polls))
            yield from fams.values()
            yield polls
            return
        frame = self.ctx.historian.latest(SeriesSelector("collector", {}, None))
        for sid, value in zip(frame["series"], frame["value"], strict=True):
            key = SeriesKey.parse(sid)
            spec = _COLLECTOR.get(key.field)
            if spec is None or value != value:  # NaN: no reading
                continue
            fams[key.field].add_metric([key.tag_dict.get("device", "?")], float(value) * spec[2])
        yield from fams.values()

    def _historian(self) -> Iterator[Family]:
        now_ns = int(self.ctx.clock().value)
        figures: dict[tuple[str, str], float] = {}
        stored = self.ctx.historian.latest(SeriesSelector("aidc_historian", {}, None))
        live = self.ctx.historian.stats_batch(now_ns)
        for sid, value in [*zip(stored["series"], stored["value"], strict=True),
                           *zip(live.series, live.values, strict=True)]:  # fmt: skip
            key = SeriesKey.parse(str(sid))
            if key.field in _HISTORIAN and value == value:
                figures[(key.field, key.tag_dict.get("backend", "?"))] = float(value)
        for fld, (name, doc, counter) in _HISTORIAN.items():
            fam = _family(name, doc, counter, ["backend"])
            for (f, backend), v in figures.items():
                if f == fld:
                    fam.add_metric([backend], v)
            yield fam

    def _writer(self) -> Iterator[Family]:
        if self.ctx.writer is not None:
            figures = dict(self.ctx.writer.health())
        else:  # the stand-alone server: the figures the job's writer last stored beside the data
            stored = self.ctx.historian.latest(SeriesSelector("aidc_writer", {}, None))
            figures = {SeriesKey.parse(str(s)).field: float(v)
                       for s, v in zip(stored["series"], stored["value"], strict=True) if v == v}  # fmt: skip
        for fld, (name, doc, counter) in _WRITER.items():
            fam = _family(name, doc, counter, [])
            if fld in figures:
                fam.add_metric([], figures[fld])
            yield fam
        dropped = _family(
            "aidc_historian_writer_points_dropped", "points lost on the way to the store, by reason", True, ["reason"]
        )
        for fld, reason in _WRITER_DROPPED.items():
            if fld in figures:
                dropped.add_metric([reason], figures[fld])
        yield dropped

    def _controller(self) -> Iterator[Family]:
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
        counts = status.get("counts")  # the supervisor keeps its counters under "counts"
        for key, (name, doc, counter) in _CONTROLLER.items():
            value = (counts if isinstance(counts, dict) else status).get(key)
            if isinstance(value, int | float):
                fam = _family(name, doc, counter, [])
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
    registry.register(FacilityCollector(ctx))
    requests = Counter("aidc_api_requests", "API requests", ["method", "route", "status"], registry=registry)
    latency = Histogram("aidc_api_request_seconds", "API request latency", ["route"], registry=registry)
    return registry, ApiMetrics(requests, latency)


def render(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The text exposition of every metric."""
    t0 = time.perf_counter()
    body = generate_latest(registry)
    log.debug("metrics rendered in %.1f ms", 1000 * (time.perf_counter() - t0))
    return body, CONTENT_TYPE_LATEST
