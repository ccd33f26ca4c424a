"""Helpers for the dashboard's browser tests and bench: Debian Chromium through selenium, and a running stack.

``DashboardStack`` runs what ``aidc demo`` runs, in-process so a test can reach the live state: the simulator in
its own process (free loopback ports), the collectors and DuckDB historian on an event loop in a thread, and the
dashboard with a viewer and an operator account.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from aidc.config import load_site
from analytics.alarms.engine import AlarmEngine
from app.commands.run import job_stats
from app.job import MainJob
from control.interface import SupervisorControl
from dashboards.app import DashboardConfig, DashboardService
from dashboards.auth import Role, UserStore
from dashboards.data import DashboardData
from simulators.process import SimulatorProcess
from tests.debtools import require_tool
from tests.sim_helpers import _bindable, free_port_block, site_doc, write_site

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1400,1000")
PASSWORDS = {"viewer": "viewer-pass-1234", "operator": "operator-pass-1234", "admin": "admin-pass-123456"}


def _ports(doc: object) -> list[int]:
    """Every port in a site document: ``port`` values and the ports of ``endpoint`` URLs (OPC-UA, HTTP)."""
    if isinstance(doc, dict):
        own = [v for k, v in doc.items() if k == "port" and isinstance(v, int)]
        own += [port for k, v in doc.items() if k == "endpoint" and isinstance(v, str)
                and (port := urlsplit(v).port) is not None]
        return own + [p for v in doc.values() for p in _ports(v)]
    if isinstance(doc, list):
        return [p for v in doc for p in _ports(v)]
    return []


def free_port(beside: dict[str, Any] | None = None) -> int:
    """A free loopback port; with ``beside`` (a site document) none of its device ports nor the port just below each
    (the simulator's control API sits below its block): the site's simulator binds them only when it starts, so a
    port free now may be one of them."""
    ports = _ports(beside) if beside is not None else []
    taken = set(ports) | {p - 1 for p in ports}
    while True:
        p = free_port_block(1)
        if p not in taken and _bindable(p):
            return p


def chromium(profile_dir: Path) -> Any:
    """Headless Debian Chromium driven by Debian's chromedriver, with a fresh profile and console logging."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary = require_tool("chromium")
    driver_path = require_tool("chromedriver", "chromium-driver")
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for flag in CHROMIUM_FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={profile_dir}")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver_path), options=opts)


def console_errors(driver: Any) -> list[str]:
    """Browser console messages at SEVERE level since the last call."""
    return [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def sign_in(driver: Any, base: str, user: str, password: str | None = None) -> None:
    """Sign in through the login form."""
    from selenium.webdriver.common.by import By

    driver.get(f"{base}/login")
    driver.find_element(By.ID, "username").send_keys(user)
    driver.find_element(By.ID, "password").send_keys(password or PASSWORDS[user])
    driver.find_element(By.ID, "login").click()
    wait_for(lambda: "/login" not in driver.current_url, 20, "sign-in redirect")


def wait_for(cond: Callable[[], Any], timeout_s: float, what: str, every_s: float = 0.05) -> Any:
    """Poll ``cond`` until it returns something truthy; fail the test naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout_s
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = cond()
            if value:
                return value
        except Exception as exc:  # elements re-rendered mid-read (stale) are retried
            last_exc = exc
        time.sleep(every_s)
    pytest.fail(f"timed out after {timeout_s:g} s waiting for {what}" + (f" ({last_exc})" if last_exc else ""))


class DashboardStack:
    """Simulator process + collectors/historian on a thread's loop + dashboard, torn down in reverse."""

    def __init__(self, tmp: Path, *, racks: int = 4, poll_s: float = 0.5, policy: dict[str, Any] | None = None,
                 supervisor_factory: Callable[[DashboardStack], SupervisorControl] | None = None, speed: float = 1.0) -> None:
        self.tmp = tmp
        doc = site_doc(tmp, racks)
        for group in ("halls",):
            for hall in doc[group]:
                for rack in hall["racks"]:
                    for key in ("pdu", "controller"):
                        if key in rack:
                            rack[key]["poll_interval_s"] = poll_s
                for cdu in hall["cdus"]:
                    cdu["poll_interval_s"] = poll_s
        for key in ("plant", "ups"):
            doc[key]["poll_interval_s"] = poll_s
        for m in doc.get("meters", []):
            m["poll_interval_s"] = poll_s
        doc["dashboard"] = {"port": free_port(doc), "alarm_every_s": 0.25,
                            "alarms": policy or {"raise_delay_s": 1.0, "clear_delay_s": 1.0}}
        doc["simulation"]["speed"] = speed
        self.path = write_site(tmp, doc)
        self.site = load_site(self.path)
        self.sim = SimulatorProcess(self.path)
        self.supervisor_factory = supervisor_factory
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None
        self.job: MainJob | None = None
        self.service: DashboardService | None = None

    @property
    def url(self) -> str:
        """The dashboard's base URL."""
        assert self.service is not None
        return self.service.url

    def start(self) -> DashboardStack:
        """Start everything and wait until every device is up."""
        self.sim.start()
        self.job = MainJob.build(self.site)
        loop = asyncio.new_event_loop()
        self._loop = loop
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            assert self.job is not None
            self._task = loop.create_task(self.job.run(summary_every_s=3600, printer=lambda _: None))
            started.set()
            with contextlib.suppress(asyncio.CancelledError):
                loop.run_until_complete(self._task)
            loop.close()

        self._thread = threading.Thread(target=run, name="main job", daemon=True)
        self._thread.start()
        started.wait(10)
        config = DashboardConfig.from_site(self.site)
        users = UserStore(config.users_path(self.site))
        users.add("viewer", PASSWORDS["viewer"], Role.VIEWER)
        users.add("operator", PASSWORDS["operator"], Role.OPERATOR)
        users.add("admin", PASSWORDS["admin"], Role.ADMIN)
        sup = self.supervisor_factory(self) if self.supervisor_factory else None
        data = DashboardData(self.site, self.job.live, self.job.historian, self.job.clock,
                             AlarmEngine.from_site(self.site), supervisor=sup, job_stats=job_stats(self.job))
        self.service = DashboardService(data, users, config).start()
        n = len(self.site.devices)
        wait_for(lambda: sum(h.up for h in self.job.engine.health().values()) == n if self.job else False, 60,
                 "every device up")
        return self

    def run_on_loop(self, coro: Any, timeout_s: float = 30.0) -> Any:
        """Run a coroutine on the main job's loop (e.g. a setpoint write through the engine's links)."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout_s)

    def stop(self) -> None:
        """Stop the dashboard, the job (historian flushed and closed) and the simulator."""
        if self.service is not None:
            self.service.stop()
        if self._loop is not None and self._task is not None:
            self._loop.call_soon_threadsafe(self._task.cancel)
        if self._thread is not None:
            self._thread.join(30)
        self.sim.stop()

    def __enter__(self) -> DashboardStack:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def browser(tmp: Path | None = None) -> Iterator[Any]:
    """A Chromium session with a fresh profile, quit afterwards."""
    with tempfile.TemporaryDirectory(dir=tmp) as profile:
        driver = chromium(Path(profile))
        try:
            yield driver
        finally:
            driver.quit()
