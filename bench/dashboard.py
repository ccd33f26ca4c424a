"""Dashboard responsiveness in a real browser (headless Debian Chromium via selenium).

- first_paint_s: from navigation to the Overview showing live values (signed in, fresh page load), on the 32-rack
  demo stack: simulator process, collectors polling every second as the demo does, DuckDB historian, dashboard.
- live_update_s: a CDU setpoint written to the simulated device (through the collectors' setpoint writer) until
  the Cooling page shows it, without a reload; the collectors' poll interval is part of this latency.
- first_paint_1000_racks_s: from navigation to the Hall floor map drawn for a 1,000-rack site (about 240,000 live
  series, refreshed every second by a feeder thread standing in for the collectors, which bench/collect.py measures).

Each figure is the median of ``--repeats`` runs (the max is printed too). No peer figure: no other dashboard
(Grafana, a DCIM suite) can be installed on these machines. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import threading
import time
import tomllib
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from aidc.clock import ScaledClock
from aidc.config import site_from_dict
from aidc.historian_config import HistorianConfig
from aidc.live import LiveState
from aidc.model import Batch
from aidc.sitegen import SiteTemplate, render_site
from analytics.alarms.engine import AlarmEngine
from app.commands.run import DEMO_POLL_S
from collectors.writer import Actor, SetpointWriter
from dashboards.app import DashboardConfig, DashboardService
from dashboards.auth import Role, UserStore
from dashboards.data import DashboardData
from historian import open_historian
from tests.browser import PASSWORDS, DashboardStack, browser, free_port, sign_in

CDU = "cdu-h1-01"


def _until(cond: Any, timeout_s: float = 60.0) -> float:
    """Seconds until ``cond()`` is truthy (polled every 10 ms); raises on timeout."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout_s:
        try:
            if cond():
                return time.perf_counter() - t0
        except Exception:  # noqa: S110 - an element re-rendered mid-read is read again
            pass
        time.sleep(0.01)
    raise TimeoutError(f"condition not met in {timeout_s:g} s")


def _paint(driver: Any, url: str, css: str, check: Any) -> float:
    from selenium.webdriver.common.by import By

    driver.get("about:blank")
    t0 = time.perf_counter()
    driver.get(url)
    _until(lambda: check(driver.find_element(By.CSS_SELECTOR, css)))
    return time.perf_counter() - t0


def _digits(el: Any) -> bool:
    return any(c.isdigit() for c in el.text)


def demo_figures(repeats: int, racks: int) -> tuple[list[float], list[float]]:
    """First paint of the Overview and setpoint-to-page latency on the demo stack."""
    from selenium.webdriver.common.by import By

    with tempfile.TemporaryDirectory() as tmp, DashboardStack(Path(tmp), racks=racks, poll_s=DEMO_POLL_S) as stack:
        devices = len(stack.site.devices)
        print(f"demo stack: {racks} racks, {devices} devices polled every {DEMO_POLL_S:g} s", flush=True)
        with browser(Path(tmp)) as driver:
            sign_in(driver, stack.url, "operator")
            _paint(driver, stack.url + "/", "#ov-pue", _digits)  # warm the browser cache once
            paints = [_paint(driver, stack.url + "/", "#ov-pue", _digits) for _ in range(repeats)]
            assert stack.job is not None
            writer = SetpointWriter(stack.job.engine, stack.site.data_dir / "audit")
            driver.get(stack.url + "/cooling")
            _until(lambda: CDU in driver.find_element(By.CSS_SELECTOR, "#cdu-table").text)
            updates = []
            for i in range(repeats):
                target = 31.0 + (i % 2) * 2.0 + 0.1 * i
                result = stack.run_on_loop(writer.write(Actor("bench", "operator"), CDU,
                                                        "tcs_supply_temp_setpoint_c", target, "bench"))
                if not result.ok:
                    raise RuntimeError(f"setpoint write failed: {result.error}")
                t0 = time.perf_counter()

                def shown(target: float = target) -> bool:
                    cells = driver.find_elements(By.CSS_SELECTOR, "#cdu-table tbody tr td")
                    return len(cells) > 2 and cells[2].text == f"{target:.1f}"

                _until(shown, 30)
                updates.append(time.perf_counter() - t0)
                time.sleep(random.uniform(0.2, 1.2))  # writes land at every phase of the 1 s poll and refresh
            stack.run_on_loop(writer.revert_all(Actor("bench", "operator")))
    return paints, updates


def _big_site_values(data: DashboardData, rng: np.random.Generator) -> tuple[np.ndarray, Any]:
    """Series ids of every point of the site and a function giving plausible values for them."""
    cat = data.catalog
    ids = cat["series"].to_numpy(dtype=object)
    fields = cat["field"].astype(str).to_numpy()
    base = np.full(len(ids), 1.0)
    base[fields == "gpu_temp_c"] = 68.0
    base[fields == "gpu_power_w"] = 1050.0
    base[fields == "gpu_util_pct"] = 85.0
    base[fields == "rack_power_w"] = 110_000.0
    base[fields == "active_power_w"] = 110_000.0
    base[fields == "coolant_inlet_temp_c"] = 30.0
    base[fields == "coolant_outlet_temp_c"] = 39.0
    base[fields == "up"] = 1.0

    def values() -> np.ndarray:
        noise = rng.normal(0.0, 0.05, len(ids))
        noise[fields == "up"] = 0.0
        return base * (1.0 + noise)

    return ids, values


def big_site_figures(repeats: int, racks: int) -> tuple[list[float], list[float]]:
    """First paint of the floor map and of the Overview for a large site fed with synthetic live values."""
    with tempfile.TemporaryDirectory() as tmp:
        doc = tomllib.loads(render_site(SiteTemplate(racks=racks, data_dir=tmp)))
        doc["dashboard"] = {"port": free_port()}
        site = site_from_dict(doc)
        live, clock = LiveState(), ScaledClock.starting_now()
        historian = open_historian(HistorianConfig(), Path(tmp))
        data = DashboardData(site, live, historian, clock, AlarmEngine.from_site(site))
        ids, values = _big_site_values(data, np.random.default_rng(1))
        stop = threading.Event()

        def feed() -> None:
            while True:
                n = len(ids)
                live.update(Batch(ids, np.full(n, clock.now_ns(), dtype=np.int64), values(),
                                  np.zeros(n, dtype=np.uint8), []))
                if stop.wait(1.0):
                    return

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        config = DashboardConfig.from_site(site)
        users = UserStore(config.users_path(site))
        users.add("operator", PASSWORDS["operator"], Role.OPERATOR)
        service = DashboardService(data, users, config).start()
        print(f"large site: {racks} racks, {len(ids)} live series refreshed every second", flush=True)
        try:
            with browser(Path(tmp)) as driver:
                sign_in(driver, service.url, "operator")
                _paint(driver, service.url + "/floor", "#fl-map .heatmaplayer", lambda el: True)
                floor = [_paint(driver, service.url + "/floor", "#fl-map .heatmaplayer", lambda el: True)
                         for _ in range(repeats)]
                overview = [_paint(driver, service.url + "/", "#ov-pue", _digits) for _ in range(repeats)]
        finally:
            service.stop()
            stop.set()
            feeder.join()
            historian.close()
    return floor, overview


def _line(name: str, xs: list[float]) -> str:
    return f"{name:<42} median {statistics.median(xs):6.2f} s   max {max(xs):6.2f} s   (n={len(xs)})"


def main() -> int:
    """Run both parts and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--racks", type=int, default=32, help="racks of the demo stack (default 32)")
    ap.add_argument("--big-racks", type=int, default=1000, help="racks of the large site (default 1000)")
    args = ap.parse_args()
    paints, updates = demo_figures(args.repeats, args.racks)
    print(_line(f"first paint, Overview, {args.racks} racks", paints))
    print(_line(f"live update, setpoint to page, {args.racks} racks", updates))
    floor, overview = big_site_figures(args.repeats, args.big_racks)
    print(_line(f"first paint, Hall floor, {args.big_racks} racks", floor))
    print(_line(f"first paint, Overview, {args.big_racks} racks", overview))
    print("peer: none (no other dashboard can be installed here); goal <= 2 s each")
    print(json.dumps({
        "first_paint_s": round(statistics.median(paints), 3),
        "live_update_s": round(statistics.median(updates), 3),
        "live_update_max_s": round(max(updates), 3),
        "first_paint_1000_racks_s": round(statistics.median(floor), 3),
        "first_paint_overview_1000_racks_s": round(statistics.median(overview), 3),
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
