"""One backfilled demo for the suite (issue 23): `aidc demo --config SITE` on a fresh data directory, as a user runs
it (a subprocess on a site from `aidc init`, its own simulator process, the dashboard, the default history from the
1st of last month); only the site is smaller (4 racks) to keep the suite's time.

tests/test_demo_backfill.py (the backfill's /health progress, forecasts, bills, predictive alarm) and
tests/test_demo_pages.py (every page in a browser, every route within 3 minutes of /health 200) read the same demo
through the session fixture ``first_hour_demo`` (tests/conftest.py): CI simulates one history instead of two. Their
tests carry ``xdist_group(GROUP)`` so ``make test`` (``-n 2 --dist loadgroup``) runs them on one worker.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.sim_helpers import free_port_block

REPO = Path(__file__).resolve().parents[1]
GROUP = "first-hour-demo"  # the xdist group of every test that reads the shared demo
TOKEN = "first-hour-reader-0123456789abcdef"
RACKS = 4
START_S = 900.0  # wall seconds the history may take on a loaded CI machine before /health turns 200 (a failure)


@dataclass
class FirstHourDemo:
    """A running `aidc demo` and what a user learns from its terminal and its /health while it starts."""

    proc: subprocess.Popen[str]
    site: Path
    log: Path
    data_dir: Path
    dashboard: str
    api: str
    passwords: dict[str, str]
    starting: dict[str, Any] | None  # the first /health 503 body that carried the backfill's progress
    ready_at: float  # time.monotonic() when /health turned 200


def get(url: str, token: str | None = None) -> tuple[int, Any]:
    """Status and JSON body of a GET (0 and None when nothing answers)."""
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})  # noqa: S310 - loopback URL built here
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback URL built here
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read() or b"null")
        except ValueError:
            return exc.code, None
    except (urllib.error.URLError, OSError, ValueError):
        return 0, None


@contextlib.contextmanager
def started_demo(tmp: Path) -> Iterator[FirstHourDemo]:
    """Start the demo under ``tmp``, record its first 503 with the backfill's progress, return once /health is 200;
    stop it on exit (SIGTERM, then kill after a minute)."""
    from app.cli import main  # the CLI's imports only for the tests that start the demo

    site = tmp / "site.toml"
    argv = ["init", "--racks", str(RACKS), "--base-port", str(free_port_block(RACKS + 4)),
            "--opcua-port", str(free_port_block(2)), "--data-dir", str(tmp / "data"), "-o", str(site)]  # fmt: skip
    with contextlib.redirect_stderr(io.StringIO()):
        assert main(argv) == 0
    port, api_port = free_port_block(1), free_port_block(1)
    env = {k: v for k, v in os.environ.items() if k != "AIDC_HISTORY_DAYS"}  # conftest turns the history off
    env.update(PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1", AIDC_API_TOKENS=f"firsthour:read:{TOKEN}")
    log = tmp / "demo.log"
    cmd = [sys.executable, "-m", "app.cli", "demo", "--config", str(site), "--port", str(port),
           "--api-port", str(api_port)]  # fmt: skip
    with log.open("w", encoding="utf-8") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp)
    api = f"http://127.0.0.1:{api_port}"
    try:
        deadline = time.monotonic() + START_S
        starting: dict[str, Any] | None = None
        while True:
            status, body = get(f"{api}/health")
            if status == 200:
                break
            if status == 503 and starting is None and isinstance(body, dict) and "backfill" in body:
                starting = body
            text = log.read_text(encoding="utf-8", errors="replace")
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the demo did not turn /health 200 (exit {proc.poll()}):\n{text[-3000:]}")
            time.sleep(1.0)
        ready_at = time.monotonic()
        text = log.read_text(encoding="utf-8", errors="replace")
        passwords = dict(re.findall(r"sign in as '(\w+)' with password (\S+)", text))
        yield FirstHourDemo(proc, site, log, tmp / "data", f"http://127.0.0.1:{port}", api, passwords, starting,
                            ready_at)  # fmt: skip
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)
