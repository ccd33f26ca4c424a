"""NVIDIA DCGM exporter source: per-GPU telemetry scraped from dcgm-exporter pages (Prometheus text format).

One link serves the devices (racks) that read the same pages; a page shared by several racks (a federated page
with many ``Hostname`` values) is fetched once per poll interval for all of them. Label sets are parsed with
``prometheus_client``'s text parser, once per distinct set (:func:`parse_page`). A profile point's ``node`` names
the DCGM field it reads:

* ``DCGM_FI_DEV_GPU_TEMP`` on an array point: one value per GPU of the rack (tag ``gpu`` = index in the rack);
* ``sum:F``, ``max:F``: the rack's sum or maximum over its GPUs (rack GPU power, hottest GPU);
* ``count:F&0x60``: how many GPUs have any bit of the mask set (clock-event reasons: thermal slowdown);
* ``nonzero:F``: how many GPUs show a non-zero value (``DCGM_FI_DEV_XID_ERRORS``, the last XID per GPU);
* ``pct:F/G``: the mean over the rack's GPUs of 100 · F / G (the SM clock as % of the maximum SM clock).

``F`` may list alternatives, ``A|B``: the first one the page carries (DCGM 3.3 renamed
``DCGM_FI_DEV_CLOCK_THROTTLE_REASONS`` to ``DCGM_FI_DEV_CLOCKS_EVENT_REASONS``). A rack's GPUs are the series of
its ``dcgm.hostnames`` (every host on its pages when empty), ordered by host and then by the ``gpu`` label; a
GPU once seen and now missing from its page reads bad, and a rack figure over an incomplete set of GPUs is bad,
never a part sum. DCGM's "blank" values (field not supported or not found) read bad.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from aidc.clock import Clock
from aidc.config import DeviceRef
from aidc.errors import ConfigError
from aidc.model import Batch
from collectors.http import HttpClient, HttpError, Pinning
from collectors.http_batch import PointRows
from collectors.link import Emit, Link, LinkOptions

AGGREGATES = ("sum", "max", "count", "nonzero", "pct")
_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# THROTTLE/EVENT reason bits (NVML nvmlClocksEventReason*): software and hardware thermal slowdown.
THERMAL_SLOWDOWN_MASK = 0x20 | 0x40
GpuKey = tuple[str, int]  # (Hostname, gpu)


_EMPTY: dict[GpuKey, float] = {}


def is_blank(v: float) -> bool:
    """DCGM's blank values: int64 and int32 "blank / not found / not supported / no permission", and FP64 blanks."""
    return v >= 9.2233720368547758e18 or 2147483632 <= v <= 2147483635 or 140737488355328.0 <= v <= 140737488355331.0


def blanks(a: np.ndarray) -> np.ndarray:
    """:func:`is_blank` over an array."""
    return (
        (a >= 9.2233720368547758e18)
        | ((a >= 2147483632) & (a <= 2147483635))
        | ((a >= 140737488355328.0) & (a <= 140737488355331.0))
    )


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """What one point reads: an aggregate (or none, per GPU), the DCGM field alternatives and a bit mask."""

    agg: str
    fields: tuple[str, ...]
    mask: int = 0
    per: tuple[str, ...] = ()  # pct: the denominator's field alternatives


def parse_node(dev: DeviceRef, node: str, array: bool, point: str) -> FieldSpec:
    """A point's ``node`` to a spec; ConfigError names the profile, point and value."""
    where = f"profile {dev.profile.name!r} point {point}: node {node!r}"
    agg, sep, rest = node.partition(":")
    if not sep:
        agg, rest = "", node
    elif agg not in AGGREGATES:
        raise ConfigError(f"{where}: unknown aggregate {agg!r} (one of {', '.join(AGGREGATES)})")
    mask = 0
    if agg == "count":
        rest, amp, m = rest.partition("&")
        try:
            mask = int(m, 0) if amp else 0
        except ValueError:
            mask = 0
        if mask <= 0:
            raise ConfigError(f"{where}: count needs a bit mask, e.g. count:DCGM_FI_DEV_CLOCKS_EVENT_REASONS&0x60")
    rest, slash, den = rest.partition("/")
    if (agg == "pct") != bool(slash):
        raise ConfigError(f"{where}: only pct reads F/G (pct:DCGM_FI_DEV_SM_CLOCK/DCGM_FI_DEV_MAX_SM_CLOCK)")
    fields, per = tuple(rest.split("|")), tuple(den.split("|")) if slash else ()
    if not all(_FIELD.match(f) for f in fields + per):
        raise ConfigError(f"{where}: not a DCGM field name")
    if array != (agg == ""):
        raise ConfigError(f"{where}: array points read a field per GPU, scalar points need an aggregate")
    return FieldSpec(agg, fields, mask, per)


@dataclass
class Page:
    """One scrape of an exporter page: field -> {(Hostname, gpu): value}."""

    values: dict[str, dict[GpuKey, float]]
    keys: list[GpuKey]  # every GPU on the page, in page order


@dataclass
class _Device:
    rows: PointRows
    specs: list[FieldSpec]
    urls: tuple[str, ...]
    hosts: tuple[str, ...]
    known: list[GpuKey] = field(default_factory=list)  # the rack's GPUs, in array order
    url_of: dict[GpuKey, int] = field(default_factory=dict)


class DcgmLink(Link):
    """Scrapes the dcgm-exporter pages of one or more racks."""

    protocol = "dcgm"

    def __init__(
        self,
        key: str,
        devices: list[DeviceRef],
        *,
        clock: Clock,
        emit: Emit,
        options: LinkOptions,
        pki_dir: Path = Path("var/pki"),
    ) -> None:
        super().__init__(key, devices, clock=clock, emit=emit, options=options)
        self.pki_dir = pki_dir
        self.rt: dict[str, _Device] = {}
        for d in devices:
            specs = [parse_node(d, str(p.node), p.array, p.name) for p in d.profile.points]
            self.rt[d.name] = _Device(
                PointRows(d, options.stuck_polls), specs, d.config.dcgm.urls, d.config.dcgm.hostnames
            )
        self.urls = sorted({u for d in devices for u in d.config.dcgm.urls})
        self.wanted = frozenset(f for rt in self.rt.values() for spec in rt.specs for f in spec.fields + spec.per)
        self.timeout_s = max(d.config.timeout_s for d in devices)
        self.fresh_s = min(h.interval_s for h in self.health.values()) / 2
        self.clients: dict[str, HttpClient] = {}
        self._pages: dict[str, tuple[float, asyncio.Future[Page | str]]] = {}
        self.scrapes = 0

    def transport_errors(self) -> tuple[type[BaseException], ...]:
        """Failures after which the pages are fetched again over new connections."""
        return (HttpError, ConnectionError, OSError, TimeoutError)

    def series_of(self, dev: DeviceRef) -> np.ndarray:
        """Series the device published last (GPUs expanded), else its rack figures."""
        return self.rt[dev.name].rows.current_series()

    def _client(self, url: str) -> HttpClient:
        u = urlsplit(url)
        origin = f"{u.scheme}://{u.netloc}"
        c = self.clients.get(origin)
        if c is None:
            trusted = next((d.config.dcgm.trusted_server_certs for d in self.devices if url in d.config.dcgm.urls), ())
            try:
                pin = Pinning(origin, trusted, self.pki_dir) if u.scheme == "https" else None
            except (OSError, ValueError) as exc:  # a listed certificate file missing or unreadable
                raise HttpError(f"{origin}: dcgm.trusted_server_certs: {exc}") from None
            c = self.clients[origin] = HttpClient(origin, timeout_s=self.timeout_s, max_in_flight=2, pinning=pin)
        return c

    async def connect(self) -> None:
        """Reach at least one page (any HTTP status); HttpError or TimeoutError if none answers."""
        await self.close()
        got = await asyncio.gather(*(self._scrape(u) for u in self.urls), return_exceptions=True)
        errors = [g for g in got if isinstance(g, BaseException)]
        if len(errors) == len(got):
            for e in errors:
                if not isinstance(e, Exception):
                    raise e
            raise errors[0]
        now = time.monotonic()
        for u, g in zip(self.urls, got, strict=True):
            if not isinstance(g, BaseException):
                fut: asyncio.Future[Page | str] = asyncio.get_running_loop().create_future()
                fut.set_result(g)
                self._pages[u] = (now, fut)

    async def close(self) -> None:
        """Drop every connection and cached page."""
        clients, self.clients = self.clients, {}
        self._pages = {}
        for c in clients.values():
            await c.close()

    async def _scrape(self, url: str) -> Page | str:
        """One page, or why it has no values (an HTTP error status, an unparseable page); transport errors raise."""
        u = urlsplit(url)
        target = (u.path or "/") + (f"?{u.query}" if u.query else "")
        reply = await self._client(url).request("GET", target, headers=[("Accept", "text/plain")])
        self.scrapes += 1
        if reply.status != 200:
            return f"HTTP {reply.status} from {url}"
        try:
            return parse_page(reply.body.decode("utf-8"), self.wanted)
        except (ValueError, UnicodeDecodeError, IndexError, TypeError) as exc:
            return f"unparseable exporter page {url}: {str(exc)[:120] or type(exc).__name__}"

    async def _page(self, url: str) -> Page | str:
        """The page, fetched at most once per half poll interval for every rack that reads it."""
        hit = self._pages.get(url)
        now = time.monotonic()
        if hit is not None and now - hit[0] < self.fresh_s and not (hit[1].done() and hit[1].exception()):
            return await asyncio.shield(hit[1])
        fut = asyncio.ensure_future(self._scrape(url))
        fut.add_done_callback(_retrieve)  # a scrape outlived by its poll (engine stop) fails quietly
        self._pages[url] = (now, fut)
        try:
            return await asyncio.shield(fut)
        except BaseException:
            self._pages.pop(url, None)
            raise

    async def poll(self, dev: DeviceRef) -> Batch:
        """Scrape the rack's pages and publish its per-GPU series and rack figures."""
        rt = self.rt[dev.name]
        ts = self.clock.now_ns()
        t0 = time.perf_counter()
        got = await asyncio.gather(*(self._page(u) for u in rt.urls), return_exceptions=True)
        latency = time.perf_counter() - t0
        transport = [e for e in got if isinstance(e, BaseException)]
        for e in transport:
            if not isinstance(e, Exception):
                raise e  # cancelled
        if len(transport) == len(got):
            self._raise_unless_timeouts(dev, transport)
        failed: dict[int, str] = {}
        pages: dict[int, Page] = {}
        for i, one in enumerate(got):
            if isinstance(one, Page):
                pages[i] = one
            else:
                failed[i] = _why(one)
        self._learn(rt, pages)
        return self._batch(rt, pages, failed, ts, latency)

    def _raise_unless_timeouts(self, dev: DeviceRef, errors: list[BaseException]) -> None:
        """Every page failed: a refused or reset connection is lost at once; late pages read bad (timeout) and only
        ``timeouts_before_reconnect`` polls in a row without any page reconnect, as a Modbus unit that stops
        answering does."""
        if not all(isinstance(e, TimeoutError) for e in errors):
            raise next(e for e in errors if not isinstance(e, TimeoutError))
        h = self.health[dev.name]
        h.consecutive_timeouts += 1
        if h.consecutive_timeouts >= self.options.timeouts_before_reconnect:
            raise errors[0]

    def _learn(self, rt: _Device, pages: dict[int, Page]) -> None:
        """Add GPUs seen for the first time to the rack's array (ordered by host, then gpu)."""
        wanted = set(rt.hosts)
        new = False
        for i, page in pages.items():
            for k in page.keys:
                if (not wanted or k[0] in wanted) and k not in rt.url_of:
                    rt.url_of[k] = i
                    new = True
        if new:
            # GPUs seen first are ordered by host (its place in ``hostnames``, else its page) and gpu; GPUs that show
            # up later are appended, so a GPU never changes index (its series) while the collector runs.
            rank = {h: n for n, h in enumerate(rt.hosts)}
            had = set(rt.known)
            fresh = sorted((k for k in rt.url_of if k not in had),
                           key=lambda k: (rank.get(k[0], rt.url_of[k]), rt.url_of[k], k[0], k[1]))  # fmt: skip
            rt.known = rt.known + fresh

    @staticmethod
    def _field(
        rt: _Device, pages: dict[int, Page], gpu_why: list[str], alternatives: tuple[str, ...]
    ) -> tuple[np.ndarray, list[str], str]:
        """One field's value per GPU of the rack (the first alternative the page carries), and why not."""
        known = rt.known
        if known and not any(gpu_why):  # the usual poll: every GPU's page read, look for gaps only if any
            first = pages[rt.url_of[known[0]]].values
            name = next((f for f in alternatives if f in first), alternatives[0])
            got = [pages[rt.url_of[k]].values.get(name, _EMPTY).get(k) for k in known]
            if None not in got:
                arr = np.array(got, dtype=np.float64)
                if np.isfinite(arr).all() and not blanks(arr).any():
                    return arr, list(gpu_why), name
        vals = np.full(len(known), np.nan)
        why = list(gpu_why)
        field_name = ""
        for j, k in enumerate(known):
            if why[j]:
                continue
            page = pages[rt.url_of[k]]
            if not field_name:
                field_name = next((f for f in alternatives if f in page.values), alternatives[0])
            v = page.values.get(field_name, {}).get(k)
            if v is None:
                why[j] = f"{field_name} missing for GPU {k[1]} of {k[0]}"
            elif not math.isfinite(v):
                why[j] = f"{field_name} not finite: {v}"
            elif is_blank(v):
                why[j] = f"{field_name}: DCGM blank value (field not supported or not found)"
            else:
                vals[j] = v
        return vals, why, field_name

    def _batch(self, rt: _Device, pages: dict[int, Page], failed: dict[int, str], ts: int, latency: float) -> Batch:
        n = len(rt.known)
        # Per GPU: the page it is on, or why it has no values.
        gpu_why = []
        for k in rt.known:
            i = rt.url_of[k]
            gpu_why.append(
                failed[i]
                if i in failed
                else ""
                if k in pages[i].keys
                else f"GPU {k[1]} of {k[0]} not on its exporter page"
            )
        parts: list[np.ndarray] = []
        reasons: list[list[str]] = []
        for spec in rt.specs:
            vals, why, field_name = self._field(rt, pages, gpu_why, spec.fields)
            if spec.per:
                den, den_why, _ = self._field(rt, pages, why, spec.per)
                why = den_why
                vals = np.where(den > 0, vals / np.where(den > 0, den, 1.0), np.nan)
                for j, d in enumerate(den):
                    if not why[j] and not d > 0:
                        why[j] = f"{spec.per[0]} not above 0: {d:g}"
            if spec.agg == "":
                parts.append(vals)
                reasons.append(why)
                continue
            if spec.agg == "count":  # a bit mask is a whole number in [0, 2**64)
                for j, v in enumerate(vals):
                    if not why[j] and not (0 <= v < 2.0**64 and v == math.floor(v)):
                        why[j] = f"{field_name} not a bit mask: {v:g}"
            bad = [w for w in why if w]
            if n == 0:
                parts.append(np.array([np.nan]))
                reasons.append(["no GPUs on the exporter pages" if not failed else next(iter(failed.values()))])
            elif bad:
                parts.append(np.array([np.nan]))
                reasons.append([f"incomplete: {len(bad)} of {n} GPUs without a value ({bad[0]})"])
            else:
                parts.append(np.array([_aggregate(spec, vals)]))
                reasons.append([""])
        return rt.rows.batch(ts, parts, reasons, self.health[rt.rows.device.name], latency)


def _retrieve(task: asyncio.Future[Page | str]) -> None:
    if not task.cancelled():
        task.exception()


def _why(failure: str | BaseException) -> str:
    if isinstance(failure, TimeoutError):
        return f"timeout: {failure}"
    return f"unreachable: {failure}" if isinstance(failure, BaseException) else failure


def _aggregate(spec: FieldSpec, vals: np.ndarray) -> float:
    if spec.agg == "sum":
        return float(vals.sum())
    if spec.agg == "max":
        return float(vals.max())
    if spec.agg == "nonzero":
        return float(np.count_nonzero(vals))
    if spec.agg == "pct":
        return 100.0 * float(vals.mean())  # per-GPU ratios; a rack's GPUs share one model
    bits = vals.astype(np.uint64)  # bitmasks (finite, non-negative: checked by the quality path's range)
    return float(np.count_nonzero(bits & np.uint64(spec.mask)))


_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_GPU_OF: dict[str, GpuKey | None] = {}  # label set as written -> (Hostname, gpu); None: not a GPU's series
_GPU_OF_MAX = 65536  # distinct label sets remembered (a hall's GPUs); the cache starts over beyond


def _gpu_of(labels: str) -> GpuKey | None:
    """The GPU a label set names, parsed by ``prometheus_client`` once per distinct label set (quoting, escapes)."""
    hit = _GPU_OF.get(labels, False)
    if hit is not False:
        return hit  # type: ignore[return-value]
    families = list(text_string_to_metric_families(f"x{{{labels}}} 0\n"))
    if len(families) != 1 or len(families[0].samples) != 1:
        raise ValueError(f"not one label set: {{{labels[:60]}}}")
    got = families[0].samples[0].labels
    gpu = got.get("gpu")
    key = (got.get("Hostname", ""), int(gpu)) if gpu is not None and gpu.isdigit() else None
    if len(_GPU_OF) >= _GPU_OF_MAX:
        _GPU_OF.clear()
    _GPU_OF[labels] = key
    return key


def parse_page(text: str, wanted: frozenset[str] | None = None) -> Page:
    """Parse an exporter page: the samples of the ``wanted`` fields (all when None) that name a GPU.

    Every exporter page repeats each GPU's label set on every field, so the label sets go through
    ``prometheus_client``'s parser once each (and are remembered: the same GPUs come back every poll); a sample line
    is then its name, its label set and its value. ValueError for what the text format forbids: a line that is no
    sample, a bad name, value or timestamp, a last line without its line feed, the same sample twice.
    """
    if text and not text.endswith("\n"):  # the format ends every line, the last one too: a cut-off page
        raise ValueError("page does not end with a line feed (truncated)")
    values: dict[str, dict[GpuKey, float]] = {}
    keys: dict[GpuKey, None] = {}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        brace = line.find("{")
        if brace >= 0:
            name = line[:brace]
            labels, close, rest = line[brace + 1 :].rpartition("}")
            if not close:
                raise ValueError(f"unterminated label set: {line[:80]}")
        else:
            name, _, rest = line.partition(" ")
            labels = ""
        if wanted is None or name not in wanted:  # a wanted name is a valid one
            if not _NAME.match(name):
                raise ValueError(f"not a metric name: {name[:60]!r}")
            if wanted is not None:
                continue
        parts = rest.split()
        if not 1 <= len(parts) <= 2 or (brace >= 0 and rest[:1] not in (" ", "\t")):
            raise ValueError(f"not a sample line: {line[:80]}")
        value = float(parts[0])  # Prometheus' NaN, +Inf and -Inf are Python's too
        if len(parts) == 2:
            int(parts[1])  # a timestamp, ms
        k = _gpu_of(labels) if labels else None
        if k is None:
            continue
        field_values = values.setdefault(name, {})
        if k in field_values:  # which of two values is the GPU's? neither
            raise ValueError(f"duplicate sample {name} for GPU {k[1]} of {k[0] or 'the page'}")
        field_values[k] = value
        keys[k] = None
    return Page(values, list(keys))


def dcgm_key(dev: DeviceRef) -> str:
    """Devices reading the same pages share one link."""
    return "dcgm:" + ",".join(sorted(dev.config.dcgm.urls))
