"""Simulated NVIDIA dcgm-exporter pages, served from the facility physics (Prometheus text format over HTTP).

A DCGM rack's GPUs are split evenly over its hosts (``dcgm.hostnames``, else one host per URL named
``<device>-n<i>``), and host ``j`` is served at the page ``urls[j * len(urls) // hosts]``: one page per server as
dcgm-exporter runs, or one federated page for all; over HTTPS when the pages' URLs say so. Each sample carries the
exporter's labels (``gpu``, ``UUID``, ``pci_bus_id``, ``device``, ``modelName``, ``Hostname``). From the rack's
physics: power, GPU temperature (whole degrees, as DCGM reports it), HBM temperature (a few kelvin above the GPU, a
simulator assumption), utilisation, SM clock, the energy counter in mJ (integrated here from the power, restarting
at 0 on a ``counter_reset`` fault), clock-event reasons (thermal slowdown on the rack's ``gpus_throttled`` hottest
GPUs, the power-cap bit while the rack's clock is below 100 %, idle below 1 % utilisation) and the last XID error
(0 unless :attr:`xid` sets one).
"""

from __future__ import annotations

import math
import zlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from aidc.config import DeviceRef
from aidc.errors import ConfigError
from simulators.faults import FaultBook
from simulators.http_server import Request, Response
from simulators.http_sim import HttpDeviceSim
from simulators.interface import FacilityPhysics, PointValue

HBM_ABOVE_GPU_K = 4.0  # simulator assumption: HBM stacks read a few kelvin above the GPU die
MAX_SM_CLOCK_MHZ = 1980.0
MEM_CLOCK_MHZ = 3996.0
DRIVER = "570.124.06"
# (field, type, help) in dcgm-exporter's default-counters.csv wording; the clock-event reasons field as added.
FIELDS = (
    ("DCGM_FI_DEV_SM_CLOCK", "gauge", "SM clock frequency (in MHz)."),
    ("DCGM_FI_DEV_MEM_CLOCK", "gauge", "Memory clock frequency (in MHz)."),
    ("DCGM_FI_DEV_MAX_SM_CLOCK", "gauge", "Maximum SM clock frequency (in MHz)."),
    ("DCGM_FI_DEV_MEMORY_TEMP", "gauge", "Memory temperature (in C)."),
    ("DCGM_FI_DEV_GPU_TEMP", "gauge", "GPU temperature (in C)."),
    ("DCGM_FI_DEV_POWER_USAGE", "gauge", "Power draw (in W)."),
    ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "counter", "Total energy consumption since boot (in mJ)."),
    ("DCGM_FI_DEV_GPU_UTIL", "gauge", "GPU utilization (in %)."),
    ("DCGM_FI_DEV_XID_ERRORS", "gauge", "Value of the last XID error encountered."),
    ("DCGM_FI_DEV_CLOCKS_EVENT_REASONS", "gauge", "Current clock event reasons (bitmask)."),
)
IDLE, SW_POWER_CAP, SW_THERMAL = 0x1, 0x4, 0x20


@dataclass
class _Rack:
    dev: DeviceRef
    hosts: list[str]
    pages: list[str | None]  # per host: the page path it is served on (None: on another port)
    energy_mj: np.ndarray = field(default_factory=lambda: np.empty(0))
    last_t_ns: int | None = None
    resets_seen: dict[str, float] = field(default_factory=dict)


def _hosts(dev: DeviceRef) -> list[str]:
    return list(dev.config.dcgm.hostnames) or [f"{dev.name}-n{i}" for i in range(len(dev.config.dcgm.urls))]


def page_of(url: str) -> tuple[int, str]:
    """(port, path) of an exporter URL."""
    u = urlsplit(url)
    assert u.port is not None  # the site file checks it
    return u.port, u.path or "/"


class DcgmExporterSim(HttpDeviceSim):
    """Every exporter page on one port."""

    def __init__(
        self,
        bind: str,
        port: int,
        devices: Sequence[DeviceRef],
        physics: FacilityPhysics,
        faults: FaultBook,
        pki_dir: Path | None = None,
    ) -> None:
        # https pages (dcgm-exporter's --web-config TLS): a self-signed certificate kept under pki_dir
        https = pki_dir is not None and all(
            u.startswith("https://") for d in devices for u in d.config.dcgm.urls if page_of(u)[0] == port
        )
        tls = (
            (pki_dir / f"dcgm-sim-{port}-cert.pem", pki_dir / f"dcgm-sim-{port}-key.pem") if https and pki_dir else None
        )
        super().__init__(bind, port, devices, physics, faults, tls)
        self.racks: dict[str, _Rack] = {}
        self.xid: dict[str, dict[int, int]] = defaultdict(dict)  # device -> {gpu index in rack: last XID}
        self._on_page: dict[str, list[str]] = defaultdict(list)  # path -> devices with hosts on it
        for d in devices:
            hosts = _hosts(d)
            urls = d.config.dcgm.urls
            at = [page_of(urls[j * len(urls) // len(hosts)]) for j in range(len(hosts))]
            pages = [path if p == port else None for p, path in at]
            self.racks[d.name] = _Rack(d, hosts, pages)
            for path in dict.fromkeys(pages):
                if path is not None:
                    self._on_page[path].append(d.name)
        self.text: dict[str, bytes] = {}

    async def _handle(self, req: Request) -> Response:
        path = req.path.split("?", 1)[0]
        body = self.text.get(path)
        if req.method != "GET" or body is None:
            return Response(404, b"404 page not found\n", "text/plain")
        return Response(200, body, "text/plain; version=0.0.4; charset=utf-8", device=",".join(self._on_page[path]))

    def refresh(self) -> None:
        """Render every page from the physics' current values."""
        lines: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
        for rack in self.racks.values():
            for path, fld, line in self._rack_lines(rack):
                lines[path][fld].append(line)
        text: dict[str, bytes] = {}
        for path in self._on_page:
            out: list[str] = []
            for fld, kind, help_ in FIELDS:
                out += [f"# HELP {fld} {help_}", f"# TYPE {fld} {kind}", *lines[path][fld]]
            text[path] = ("\n".join(out) + "\n").encode()
        self.text = text

    def _rack_lines(self, rack: _Rack) -> list[tuple[str, str, str]]:
        dev = rack.dev
        vals = self.faults.apply(dev.name, self.physics.device_values(dev.name))
        power = _floats(vals.get("gpu_power_w"))
        n = len(power)
        temp, util = _floats(vals.get("gpu_temp_c"), n), _floats(vals.get("gpu_util_pct"), n)
        t_ns = self.physics.t_ns
        if len(rack.energy_mj) != n:
            rack.energy_mj = np.zeros(n)
        offsets = self.faults.active(dev.name).get("counter_reset", {})
        if offsets != rack.resets_seen:  # a counter_reset fault: the GPUs' counters restart (as after a reboot)
            rack.resets_seen = dict(offsets)
            rack.energy_mj[:] = 0.0
        elif rack.last_t_ns is not None and t_ns > rack.last_t_ns:
            rack.energy_mj += np.nan_to_num(power) * (t_ns - rack.last_t_ns) / 1e6  # W · ns → mJ
        rack.last_t_ns = t_ns
        throttled = int(_scalar(vals.get("gpus_throttled")))
        clock = _scalar(vals.get("gpu_clock_pct"), 100.0)
        reasons = np.where(util < 1.0, IDLE, 0)
        if clock < 99.5:
            reasons = reasons | SW_POWER_CAP
        if throttled > 0 and n:
            hot = np.argsort(-np.nan_to_num(temp, nan=-1e9), kind="stable")[: min(throttled, n)]
            reasons[hot] = (reasons[hot] & ~SW_POWER_CAP) | SW_THERMAL
        sm = MAX_SM_CLOCK_MHZ * (clock / 100.0 if math.isfinite(clock) else math.nan)
        xid = self.xid.get(dev.name, {})
        model = f"NVIDIA {_gpu_model(dev)}"
        out: list[tuple[str, str, str]] = []
        h = len(rack.hosts)
        for j, host in enumerate(rack.hosts):
            page = rack.pages[j]
            if page is None:
                continue
            lo, hi = j * n // h, (j + 1) * n // h
            for g in range(lo, hi):
                local = g - lo
                uid = f"GPU-{zlib.crc32(f'{host}/{local}'.encode()):08x}-0000-4000-8000-{g:012d}"
                labels = (f'gpu="{local}",UUID="{uid}",pci_bus_id="00000000:{0x18 + 0x10 * local:02X}:00.0",'
                          f'device="nvidia{local}",modelName="{model}",Hostname="{host}",'
                          f'DCGM_FI_DRIVER_VERSION="{DRIVER}"')  # fmt: skip
                row = {
                    "DCGM_FI_DEV_SM_CLOCK": _num(sm, 0),
                    "DCGM_FI_DEV_MEM_CLOCK": _num(MEM_CLOCK_MHZ, 0),
                    "DCGM_FI_DEV_MAX_SM_CLOCK": _num(MAX_SM_CLOCK_MHZ, 0),
                    "DCGM_FI_DEV_MEMORY_TEMP": _num(temp[g] + HBM_ABOVE_GPU_K, 0),
                    "DCGM_FI_DEV_GPU_TEMP": _num(temp[g], 0),
                    "DCGM_FI_DEV_POWER_USAGE": _num(power[g], 3),
                    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": _num(rack.energy_mj[g], 0),
                    "DCGM_FI_DEV_GPU_UTIL": _num(util[g], 0),
                    "DCGM_FI_DEV_XID_ERRORS": str(int(xid.get(g, 0))),
                    "DCGM_FI_DEV_CLOCKS_EVENT_REASONS": str(int(reasons[g])),
                }
                out += [(page, f, f"{f}{{{labels}}} {v}") for f, v in row.items()]
        return out

    def energy_wh(self, device: str) -> float:
        """The rack's GPU energy counters summed, in Wh, as last served (for tests)."""
        e = self.racks[device].energy_mj
        return float(np.round(e).sum()) / 3.6e6


def _gpu_model(dev: DeviceRef) -> str:
    return dev.tags.get("gpu_model", "GB200")


def _floats(v: PointValue | None, n: int | None = None) -> np.ndarray:
    if isinstance(v, (list, tuple, np.ndarray)):
        return np.asarray(v, dtype=np.float64)
    return np.full(n or 0, np.nan)


def _scalar(v: PointValue | None, default: float = 0.0) -> float:
    if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
        return float(v)
    return default  # a list, a flag, or NaN (the nan fault): no throttling or capping is shown


def _num(v: float, digits: int) -> str:
    if not math.isfinite(v):
        return "NaN"
    return str(round(v)) if digits == 0 else f"{v:.{digits}f}"


def plan_pages(devices: Sequence[DeviceRef]) -> dict[int, list[DeviceRef]]:
    """DCGM devices by the port their pages are on; ConfigError when one rack's pages span ports (unsupported)."""
    out: dict[int, list[DeviceRef]] = defaultdict(list)
    for d in devices:
        ports = {page_of(u)[0] for u in d.config.dcgm.urls}
        for p in ports:
            out[p].append(d)
    return dict(out)


def check_pages(devices: Sequence[DeviceRef]) -> None:
    """ConfigError when two racks put different hosts' GPUs at the same page under the same host name."""
    seen: dict[tuple[str, str], str] = {}
    for d in devices:
        for host in _hosts(d):
            for u in d.config.dcgm.urls:
                other = seen.setdefault((u, host), d.name)
                if other != d.name:
                    raise ConfigError(f"{d.path}.dcgm: host {host!r} at {u} is also served for {other}")
