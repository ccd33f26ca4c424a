"""The main job hosts the REST API: `aidc demo` serves it beside the dashboard, driving the real supervisor."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aidc.clock import SteppedClock
from aidc.config import load_site
from aidc.errors import ConfigError
from aidc.live import LiveState
from aidc.sitegen import SiteTemplate, render_site
from api.auth import ApiRole, Identity, token_file_entry
from api.local import credential_path, read_local_credential
from app.job import MainJob
from app.services import ApiService, OnLoopSupervisor
from control.interface import SupervisorControl
from control.supervisor import Supervisor
from tests.sim_helpers import free_port_block, site_doc, write_site

REPO = Path(__file__).resolve().parents[1]
OPS = "ops-token-0123456789abcdef"
VIEWER = "viewer-token-0123456789abcdef"
START_S = 150.0  # wall seconds a 2-rack demo may take to come up on a busy machine


def call(url: str, method: str = "GET", token: str | None = None, body: object = None) -> tuple[int, Any]:
    """One HTTP request to the job's API; JSON answers decoded, others as text."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - http://127.0.0.1 only
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - loopback
            status, raw, ctype = resp.status, resp.read(), resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        status, raw, ctype = exc.code, exc.read(), exc.headers.get("Content-Type", "")
    return status, json.loads(raw) if "json" in ctype else raw.decode()


class Demo:
    """`aidc demo` of a generated 2-rack site in a subprocess, on free dashboard and API ports."""

    def __init__(self, tmp_path: Path, tokens: str | None) -> None:
        doc = site_doc(tmp_path, racks=2)
        self.port, self.api_port = free_port_block(2), free_port_block(1)
        self.site = write_site(tmp_path, doc)
        self.data_dir = load_site(self.site).data_dir
        self.url = f"http://127.0.0.1:{self.api_port}"
        self.log = tmp_path / "demo.log"
        env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
        env.pop("AIDC_API_TOKENS", None)
        if tokens is not None:
            env["AIDC_API_TOKENS"] = tokens
        cmd = [sys.executable, "-m", "app.cli", "demo", "--config", str(self.site), "--port", str(self.port),
               "--api-port", str(self.api_port), "--summary-every", "2"]  # fmt: skip
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True)  # fmt: skip

    def output(self) -> str:
        """Everything the demo printed so far."""
        return self.log.read_text(encoding="utf-8")

    def health_until_ok(self) -> list[tuple[int, dict[str, Any]]]:
        """Every /health answer from the first one the API gives until it turns 200."""
        seen: list[tuple[int, dict[str, Any]]] = []
        deadline = time.monotonic() + START_S
        while not seen or seen[-1][0] != 200:
            assert self.proc.poll() is None, self.output()
            assert time.monotonic() < deadline, (seen[-3:], self.output())
            try:
                seen.append(call(self.url + "/health"))
            except OSError:  # not listening yet
                pass
            time.sleep(0.2)
        return seen

    def stop(self) -> int:
        """SIGTERM, as a service manager stops it; the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=90)


@pytest.fixture
def demo_with_tokens(tmp_path: Path) -> Iterator[Demo]:
    """A demo with an operator and a read-only token in AIDC_API_TOKENS."""
    demo = Demo(tmp_path, f"ops:operator:{OPS},viewer:read:{VIEWER}")
    try:
        yield demo
    finally:
        demo.stop()


def test_demo_api_drives_the_real_supervisor(demo_with_tokens: Demo) -> None:
    """/health answers (503 starting with a progress figure, then 200 ok); GET /api/v1/controller shows the real
    supervisor's mode; PUT mode off answers 200 for an operator token (403 for a read token) and the supervisor's
    audit names the token; an override reaches the supervisor; SIGTERM stops it all with exit 0."""
    demo = demo_with_tokens
    seen = demo.health_until_ok()
    for status, body in seen[:-1]:
        assert (status, body["status"]) == (503, "starting"), body
        assert 0 <= body["progress"] < 1, body
        assert body["pending"], body
    assert (seen[-1][1]["status"], seen[-1][1]["progress"], seen[-1][1]["controller"]) == ("ok", 1.0, True)

    status, state = call(demo.url + "/api/v1/controller", token=VIEWER)
    assert status == 200, state
    assert (state["available"], state["mode"], state["status"]["mode"]) == (True, "advisory", "advisory")
    assert "counts" in state["status"]
    status, err = call(demo.url + "/api/v1/controller/mode", "PUT", VIEWER, {"mode": "off"})
    assert status == 403, err
    assert call(demo.url + "/api/v1/controller/mode", "PUT", OPS, {"mode": "off"}) == (200, {"mode": "off"})
    assert call(demo.url + "/api/v1/controller", token=VIEWER)[1]["mode"] == "off"

    hold = {"device": "cdu-h1-01", "point": "tcs_supply_temp_setpoint_c", "value": 31.0, "minutes": 30}
    status, held = call(demo.url + "/api/v1/controller/override", "PUT", OPS, hold)
    assert status == 200, held
    overrides = call(demo.url + "/api/v1/controller", token=VIEWER)[1]["overrides"]
    assert [(o["device"], o["point"], o["value"], o["user"]) for o in overrides] == [
        ("cdu-h1-01", "tcs_supply_temp_setpoint_c", 31.0, "ops")
    ]

    audit = demo.data_dir / "audit"
    control = [json.loads(x) for x in (audit / "control.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {"kind": "mode", "user": "ops", "from": "advisory", "to": "off"}.items() <= next(
        r for r in control if r["kind"] == "mode"
    ).items()
    assert any(r["kind"] == "override" and r["user"] == "ops" for r in control)
    api_audit = [json.loads(x) for x in (audit / "api.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [(r["action"], r["token"]) for r in api_audit] == [("set_mode", "ops"), ("set_override", "ops")]

    assert demo.stop() == 0, demo.output()
    out = demo.output()
    assert f"REST API: {demo.url}" in out
    assert "Traceback" not in out
    assert OPS not in out


def test_demo_without_tokens_is_closed_but_the_local_credential_works(tmp_path: Path) -> None:
    """With no token configured the demo still serves /health, /metrics and /docs, refuses /api/v1 without a token,
    and writes a 0600 credential file whose operator token works; the file goes away on a clean stop."""
    demo = Demo(tmp_path, None)
    try:
        demo.health_until_ok()
        path = credential_path(demo.data_dir)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        cred = read_local_credential(demo.data_dir)
        assert cred is not None
        assert (cred.url, cred.name, cred.role, cred.pid) == (demo.url, "local-cli", "operator", demo.proc.pid)
        assert call(demo.url + "/metrics")[0] == 200
        assert call(demo.url + "/docs")[0] == 200
        assert call(demo.url + "/api/v1/controller")[0] == 401
        assert call(demo.url + "/api/v1/controller", token="not-a-token-0123456789")[0] == 401
        status, state = call(demo.url + "/api/v1/controller", token=cred.token)
        assert (status, state["mode"]) == (200, "advisory")
        assert call(demo.url + "/api/v1/controller/mode", "PUT", cred.token, {"mode": "off"}) == (200, {"mode": "off"})
        assert "no API tokens configured" in demo.output()
    finally:
        code = demo.stop()
    assert code == 0, demo.output()
    assert not path.exists()
    assert cred.token not in demo.output()


async def test_health_waits_for_every_part(tmp_path: Path) -> None:
    """In-process: /health is 503 with every collector and the writer pending before the job runs, stays 503 while
    a ready check (as the supervisor registers) is false, and turns 200 once it is true; devices that cannot be
    reached count once tried."""
    site = load_site(write_site(tmp_path, site_doc(tmp_path, racks=1)))  # no simulator: every device refuses
    job = MainJob.build(site)
    before = job.readiness()
    assert before.progress == 0
    assert "historian writer" in before.pending
    assert sum(p.startswith("collector ") for p in before.pending) == len(site.devices)
    gate: list[bool] = []
    job.ready_checks["test gate"] = lambda: bool(gate)
    api = ApiService(job, port=free_port_block(1), printer=lambda _: None)
    job.add_service(api)
    url = f"http://127.0.0.1:{api.sock.getsockname()[1]}/health"
    run = asyncio.create_task(job.run(duration_s=60, summary_every_s=60, printer=lambda _: None))
    try:
        status, body = 0, dict[str, Any]()
        for _ in range(300):  # until only the gate is pending
            await asyncio.sleep(0.1)
            with_api = api.server is not None and api.server.server.started
            if with_api and (r := await asyncio.to_thread(call, url))[1].get("pending") == ["test gate"]:
                status, body = r
                break
        assert status == 503, body
        assert (body["status"], body["pending_count"]) == ("starting", 1)
        assert body["progress"] == pytest.approx(1 - 1 / (len(site.devices) + 2), abs=1e-3)
        gate.append(True)
        status, body = await asyncio.to_thread(call, url)
        assert (status, body["status"], body["progress"]) == (200, "ok", 1.0)
    finally:
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run
    assert not credential_path(site.data_dir).exists()


class _ThreadNoting(Supervisor):
    """The real supervisor, noting the thread each mode change runs on."""

    threads: list[int]

    def set_mode(self, mode: str, user: str) -> None:
        """Note the thread, then switch as the supervisor does."""
        self.threads.append(threading.get_ident())
        super().set_mode(mode, user)


async def test_calls_from_other_threads_run_on_the_job_loop(tmp_path: Path) -> None:
    """The proxy the API and the dashboard get runs their supervisor calls on the job's event loop thread once
    bound, and directly before that (no step of the supervisor can run then)."""
    site = load_site(write_site(tmp_path, site_doc(tmp_path, racks=1)))
    sup = _ThreadNoting(site, LiveState(), None, SteppedClock(0))
    sup.threads = []
    proxy = OnLoopSupervisor(sup)
    await asyncio.to_thread(proxy.set_mode, "off", "ops")
    proxy.bind(asyncio.get_running_loop())
    await asyncio.to_thread(proxy.set_mode, "auto", "ops")
    assert sup.threads[0] != threading.get_ident()
    assert sup.threads[1] == threading.get_ident()
    assert proxy.mode == "auto"
    assert (await asyncio.to_thread(proxy.status))["mode"] == "auto"
    assert isinstance(proxy, SupervisorControl)


def test_a_taken_api_port_stops_run_with_one_line(tmp_path: Path) -> None:
    """`aidc run --api-port P` with P already taken exits 2 with one line naming api.port and the address, before
    any collector starts, and no traceback."""
    site = write_site(tmp_path, site_doc(tmp_path, racks=1))
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "app.cli", "run", "--config", str(site), "--api-port", str(port), "--no-dashboard"],
            capture_output=True, text=True, timeout=120, env=dict(os.environ, PYTHONPATH=str(REPO)), check=False,
        )  # fmt: skip
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"api.port: cannot listen on 127.0.0.1:{port}" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "stored" not in proc.stdout  # no summary line: the job never ran


def test_tokens_from_the_site_token_file_and_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The job's API takes tokens from AIDC_API_TOKENS and from ``[api] token_file`` (relative to the site file);
    a bad token file stops it with one line naming the file."""
    token, entry = token_file_entry("scheduler", "read")
    (tmp_path / "tokens.toml").write_text(entry, encoding="utf-8")
    doc = site_doc(tmp_path, racks=1)
    doc["api"]["token_file"] = "tokens.toml"
    job = MainJob.build(load_site(write_site(tmp_path, doc)))
    monkeypatch.setenv("AIDC_API_TOKENS", f"ops:operator:{OPS}")
    api = ApiService(job, printer=lambda _: None)
    try:
        assert api.ctx.tokens.identify(token) == Identity("scheduler", ApiRole.READ)
        assert api.ctx.tokens.identify(OPS) == Identity("ops", ApiRole.OPERATOR)
        assert api.sock.getsockname()[1] == doc["api"]["port"]
    finally:
        api.sock.close()
    (tmp_path / "tokens.toml").write_text("[[tokens]]\nname = 'x'\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"tokens\.toml: tokens\[0\]: missing key 'role'"):
        ApiService(job, printer=lambda _: None)
    job.historian.close()


def test_without_the_dashboard_the_job_still_evaluates_the_alarm_rules(tmp_path: Path) -> None:
    """`aidc run --no-dashboard`: the one alarm engine is still evaluated, by a service of the job."""
    from app.commands.run import start_parts

    path = tmp_path / "site.toml"
    path.write_text(render_site(SiteTemplate(racks=1, data_dir="var")), encoding="utf-8")
    job = MainJob.build(load_site(path))
    args = argparse.Namespace(no_dashboard=True, port=None, no_control=True, no_api=True, api_port=None)
    dashboard, alarms = start_parts(job, args, demo=False)
    calls: list[int] = []
    evaluate = alarms.evaluate

    def counted(frame: Any, now_ns: int, extra: Any = None) -> Any:
        calls.append(now_ns)
        return evaluate(frame, now_ns, extra)

    alarms.evaluate = counted  # type: ignore[method-assign]
    try:
        assert dashboard is None
        for hook in job.on_start:
            asyncio.run(hook())  # type: ignore[arg-type]
        for _ in range(200):  # bounded wait on state, not a timing assertion
            if calls:
                break
            time.sleep(0.05)
        assert calls, "no alarm evaluation without the dashboard"
    finally:
        for hook in job.on_stop:
            asyncio.run(hook())  # type: ignore[arg-type]
        alarms.close()
        job.historian.close()
