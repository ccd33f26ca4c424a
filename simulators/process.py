"""Start ``aidc simulate`` as a separate process (as real devices are separate) and wait until it answers.

Used by tests and by tools that need a running facility::

    with SimulatorProcess(Path("site.toml"), speed=60) as sim:
        sim.inject("pdu-h1-r01-01", "exception", 6)
        state = sim.state()
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlparse

from aidc.config import load_site
from aidc.errors import AidcError
from simulators.control_api import ControlError, control_host, control_request
from simulators.physics import site_params


class SimulatorProcess:
    """An ``aidc simulate`` child process with helpers for its control API."""

    def __init__(self, config: Path, *, speed: float | None = None, physics: str | None = None,
                 extra_args: tuple[str, ...] = (), startup_timeout_s: float = 60.0,
                 new_session: bool = False) -> None:
        self.config = config
        # In its own session the terminal's Ctrl-C does not reach the simulator: the demo stops it last.
        self.new_session = new_session
        self.site = load_site(config)
        site_params(self.site)  # a bad [simulation.physics] is refused here, in one line, not by the child
        sim = self.site.config.simulation
        self.host, self.control_port = control_host(sim.bind), sim.control_port
        # the simulators' own entry point (not the manager's CLI); the child stops when this process dies
        self.args = [sys.executable, "-m", "simulators", "--exit-with-parent", str(os.getpid()), "simulate",
                     "--config", str(config)]
        if speed is not None:
            self.args += ["--speed", str(speed)]
        if physics is not None:
            self.args += ["--physics", physics]
        self.args += list(extra_args)
        self.startup_timeout_s = startup_timeout_s
        self.proc: subprocess.Popen[str] | None = None
        self._log: Any = None

    @property
    def output(self) -> str:
        """Everything the process printed so far (a file, so a chatty child never blocks on a full pipe)."""
        if self._log is None:
            return ""
        self._log.seek(0)
        return str(self._log.read())

    def start(self) -> SimulatorProcess:
        """Launch and wait until the control API is ready and every device port accepts connections."""
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self._log = tempfile.TemporaryFile(mode="w+", encoding="utf-8")
        self.proc = subprocess.Popen(self.args, stdout=self._log, stderr=subprocess.STDOUT, text=True, env=env,
                                     start_new_session=self.new_session)
        deadline = time.monotonic() + self.startup_timeout_s
        while True:
            if self.proc.poll() is not None:
                raise AidcError(f"aidc simulate exited with {self.proc.returncode}: {self.output.strip()[-2000:]}")
            try:
                if control_request(self.host, self.control_port, "GET", "/health", timeout_s=2.0)["ready"]:
                    break
            except ControlError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise AidcError(f"aidc simulate did not become ready in {self.startup_timeout_s:g} s: {self.output}")
            time.sleep(0.1)
        for host, port in self.listen_addresses():
            with socket.create_connection((host, port), timeout=5.0):
                pass
        return self

    def listen_addresses(self) -> list[tuple[str, int]]:
        """Every (host, port) a device of the site is served on."""
        out: set[tuple[str, int]] = set()
        for dev in self.site.devices:
            if dev.config.protocol == "modbus" and dev.config.port is not None:
                out.add((self.host, dev.config.port))
            elif dev.config.endpoint:
                url = urlparse(dev.config.endpoint)
                out.add((url.hostname or self.host, url.port or 4840))
        return sorted(out)

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """Call the control API."""
        return control_request(self.host, self.control_port, method, path, body)

    def state(self) -> dict[str, Any]:
        """Key physics values (``GET /state``)."""
        return dict(self.request("GET", "/state"))

    def inject(self, device: str, fault: str, value: float | None = None) -> dict[str, Any]:
        """Switch a fault on a device on."""
        body: dict[str, Any] = {"device": device, "fault": fault}
        if value is not None:
            body["value"] = value
        return dict(self.request("POST", "/faults", body)["faults"])

    def clear(self, device: str = "*", fault: str | None = None) -> None:
        """Clear a fault, all faults of a device, or (``*``) every device's faults."""
        body: dict[str, Any] = {"device": device}
        if fault is not None:
            body["fault"] = fault
        self.request("POST", "/faults/clear", body)

    def pause(self, paused: bool = True) -> None:
        """Freeze (or resume) the physics so values stay put."""
        self.request("POST", "/pause" if paused else "/resume")

    def stop(self) -> int:
        """SIGTERM the process and wait for a clean exit; returns its exit status."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode)

    def __enter__(self) -> SimulatorProcess:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
