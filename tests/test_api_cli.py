"""`aidc api` as an operator starts it: its own process on a loopback port, tokens from the environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests import tenant_fixture as fx
from tests.sim_helpers import free_port_block
from tests.test_tenants import check_fixture_figures

TOKEN = "cli-read-token-0123456789"


def _get(url: str, token: str | None = None) -> tuple[int, dict[str, object]]:
    req = urllib.request.Request(url)  # noqa: S310 - http://127.0.0.1 only
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:  # noqa: S310 - loopback test server
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_aidc_api_serves_tenants(tmp_path: Path) -> None:
    """The served API answers /health without a token and the fixture month's tenants with one, on 127.0.0.1."""
    site = fx.build(tmp_path)
    port = free_port_block(1)
    env = {**os.environ, "AIDC_API_TOKENS": f"sched:read:{TOKEN}"}
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "api", "--config", str(site), "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                status, health = _get(base + "/health")
                break
            except (urllib.error.URLError, ConnectionError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"aidc api did not start: {proc.communicate()[1]}")
                time.sleep(0.2)
        assert status == 200
        assert health["site"] == "dc1"
        assert _get(base + "/api/v1/tenants?month=2026-10")[0] == 401
        status, d = _get(base + "/api/v1/tenants?month=2026-10", TOKEN)
        assert status == 200, d
        check_fixture_figures({t["tenant"]: t for t in d["tenants"]}, d)  # type: ignore[attr-defined]
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert TOKEN not in err, "the token is never logged"
