"""No request exhausts the API: bodies refused from their headers, bounded PUE questions, /health and /metrics free.

Real uvicorn on a loopback port and raw sockets, so a test sees what the server does before a body is sent whole.
The site's historian is empty: a PUE question costs about the same per calendar period with or without data
(0.1 to 0.4 s here), so a century of monthly rows (within the limits) is minutes of work, which these tests need.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aidc.config import site_from_dict
from api import app as api_app
from api.app import create_app
from api.auth import TokenStore
from api.context import ApiContext
from api.server import ApiServer, listen
from historian import open_historian
from tests.conftest import site_dict

TOKEN = "abuse-read-token-0123456789"
MAX_BODY_BYTES = 25_000_000  # the stated cap (api.guard.MAX_BODY_BYTES), written out: this file also runs on main
HEAVY = "/api/v1/pue?from=1950-01-01T00:00Z&to=2050-01-01T00:00Z&period=month"  # 1,200 monthly periods


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any]]:
    """The API of a two-rack site with an empty historian on a free loopback port; (url, FastAPI app)."""
    tmp = tmp_path_factory.mktemp("abuse")
    site = site_from_dict(site_dict(2, data_dir=str(tmp / "var")), source="abuse.toml", path=tmp / "abuse.toml")
    with open_historian(site.config.historian, site.data_dir) as hist:
        tokens = TokenStore.from_env({"AIDC_API_TOKENS": f"reader:read:{TOKEN}"})
        app = create_app(ApiContext(site=site, historian=hist, tokens=tokens))
        with ApiServer(app, sock=listen("127.0.0.1", 0)) as server:
            yield server.url, app


def _address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of one HTTP/1.1 response read until the body is whole or the server closes."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body


def _send_head(url: str, method: str, path: str, headers: dict[str, str], timeout_s: float = 60) -> socket.socket:
    sock = socket.create_connection(_address(url), timeout=timeout_s)
    lines = [f"{method} {path} HTTP/1.1", f"Host: {':'.join(map(str, _address(url)))}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    return sock


def _get(url: str, path: str, token: str | None = TOKEN, timeout_s: float = 60) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(url + path)  # noqa: S310 - http://127.0.0.1 only
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:  # noqa: S310
            body = resp.read()
            return resp.status, json.loads(body) if body.startswith((b"{", b"[")) else {"text": body.decode()}
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.parametrize("auth", [None, "Bearer not-a-known-token-000000"])
def test_unauthenticated_large_body_refused_before_it_is_read(served: tuple[str, Any], auth: str | None) -> None:
    """A 300 MiB POST without a valid token gets 401 after 64 KiB of it: the server never waits for the rest."""
    url, _ = served
    headers = {"Content-Type": "application/json", "Content-Length": str(300 * 2**20)}
    if auth is not None:
        headers["Authorization"] = auth
    with _send_head(url, "POST", "/api/v1/placement", headers, timeout_s=30) as sock:
        sock.sendall(b"[" * 65536)  # a sliver of the announced body; main waited for all of it (timed out here)
        status, head, body = _read_response(sock)
    assert status == 401
    assert head.get("connection") == "close"
    assert json.loads(body)["error"]["field"] == "Authorization"


def test_declared_body_over_the_cap_is_413_before_it_is_read(served: tuple[str, Any]) -> None:
    """With a valid token, a Content-Length over 25 MB is refused with 413 naming the limit, before the body."""
    url, _ = served
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json",
               "Content-Length": str(MAX_BODY_BYTES + 1)}  # fmt: skip
    with _send_head(url, "POST", "/api/v1/placement", headers, timeout_s=30) as sock:
        status, _, body = _read_response(sock)
    assert status == 413
    assert f"{MAX_BODY_BYTES:,} bytes" in json.loads(body)["error"]["message"]


def test_streamed_body_over_the_cap_is_413(served: tuple[str, Any]) -> None:
    """A chunked body (no length announced) is refused with 413 once it passes the cap, not read whole and parsed."""
    url, _ = served
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json",
               "Transfer-Encoding": "chunked"}  # fmt: skip
    chunk = b"[" * 2**20
    with _send_head(url, "POST", "/api/v1/placement", headers, timeout_s=60) as sock:
        with contextlib.suppress(OSError):  # the server may answer and close before the last chunk
            for _ in range(MAX_BODY_BYTES // len(chunk) + 2):
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            sock.sendall(b"0\r\n\r\n")
        status, _, body = _read_response(sock)
    assert status == 413, body[:200]
    assert f"{MAX_BODY_BYTES:,} bytes" in json.loads(body)["error"]["message"]


def test_malformed_json_is_named_as_such_with_line_and_column(served: tuple[str, Any]) -> None:
    """A body that is not JSON gets 422 saying so, with the line and column, not a field named after an offset."""
    url, _ = served
    data = b'{"racks": ["r1"],\n "kw": 1,,\n "hours": 1}'
    req = urllib.request.Request(url + "/api/v1/placement", data=data, method="POST")  # noqa: S310
    req.add_header("Authorization", f"Bearer {TOKEN}")
    req.add_header("Content-Type", "application/json")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=30)  # noqa: S310
    error = json.loads(err.value.read())["error"]
    assert err.value.code == 422
    assert error["field"] == "body"
    assert error["message"].startswith("the request body is not valid JSON: ")
    assert "line 2 column 10" in error["message"]  # the second comma


@pytest.mark.parametrize(
    ("query", "field", "words"),
    [
        ("from=2016-01-01T00:00Z&to=2026-01-01T00:00Z&period=hour", "period", "hourly rows cover at most 31 days"),
        ("from=2016-01-01T00:00Z&to=2026-01-01T00:00Z&period=day", "period", "daily rows cover at most 366 days"),
        ("from=2010-01-01T00:00Z&to=2026-01-01T00:00Z", "from", "one report covers at most 3,660 days"),
        ("from=-100000000d", "from", "outside the times aidc can represent"),
        ("from=-nand", "from", "outside the times aidc can represent"),
    ],
)
def test_pue_over_a_stated_limit_is_422_naming_it(served: tuple[str, Any], query: str, field: str, words: str) -> None:
    """PUE questions over a stated span, or with a time pandas cannot hold, are 422 at once, naming the limit."""
    url, _ = served
    status, body = _get(url, f"/api/v1/pue?{query}")
    assert status == 422, body
    assert body["error"]["field"] == field
    assert words in body["error"]["message"]


def _start_heavy(url: str, path: str = HEAVY) -> socket.socket:
    return _send_head(url, "GET", path, {"Authorization": f"Bearer {TOKEN}"}, timeout_s=120)


def _until(cond: Any, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout_s:g} s")
        time.sleep(0.05)


def test_health_and_metrics_answer_while_a_heavy_question_runs(served: tuple[str, Any]) -> None:
    """While a century of monthly PUE computes, /metrics and /health answer (main held the lock for all of it)."""
    url, app = served
    heavy = _start_heavy(url)
    try:
        time.sleep(2.0)  # well into its periods (a scrape used to wait for the whole question's lock)
        status, metrics = _get(url, "/metrics", token=None, timeout_s=30)
        assert status == 200
        assert "aidc_api_requests_total" in metrics["text"]
        assert _get(url, "/health", token=None, timeout_s=30)[0] == 200
        assert app.state.heavy.admitted == 1  # the question was still running meanwhile
    finally:
        heavy.close()
    _until(lambda: app.state.heavy.admitted == 0)


def test_a_question_stops_when_its_client_leaves(served: tuple[str, Any]) -> None:
    """Closing the connection stops a century-long monthly question between periods, within a minute, not minutes later."""
    url, app = served
    heavy = _start_heavy(url)
    _until(lambda: app.state.heavy.admitted == 1)
    time.sleep(0.5)
    heavy.close()
    _until(lambda: app.state.heavy.admitted == 0, timeout_s=60)


def test_many_heavy_questions_are_bounded_and_health_answers(served: tuple[str, Any]) -> None:
    """45 century-long questions: /health answers (main: all 40 threads busy), 10 admitted, 35 get 503 with Retry-After."""
    url, app = served
    socks = [_start_heavy(url) for _ in range(45)]
    try:
        refused: list[int] = []
        lock = threading.Lock()

        def read(sock: socket.socket) -> None:
            # IndexError: no status line, for the admitted questions whose sockets the test shuts down unanswered
            with contextlib.suppress(OSError, IndexError):
                status, head, _ = _read_response(sock)
                if status == 503 and head.get("retry-after"):
                    with lock:
                        refused.append(status)

        readers = [threading.Thread(target=read, args=(s,), daemon=True) for s in socks]
        for t in readers:
            t.start()
        time.sleep(2.0)  # every question has arrived
        assert _get(url, "/health", token=None, timeout_s=30)[0] == 200
        _until(lambda: len(refused) == 45 - 10)  # heavy.WORKERS + heavy.QUEUED admitted
        assert app.state.heavy.admitted == 10
    finally:
        for s in socks:
            # shutdown first: close() alone sends no FIN while a reader thread is blocked in recv on the socket,
            # so the server would not see these clients leave until their answers were computed
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
        for t in readers:
            t.join(timeout=10)
    _until(lambda: app.state.heavy.admitted == 0, timeout_s=120)


def test_a_question_past_its_time_budget_is_503(served: tuple[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """A question that outruns its time budget is stopped with 503 saying how far it got and what to ask instead."""
    url, _ = served
    monkeypatch.setattr(api_app, "PUE_TIME_BUDGET_S", 1.0)
    status, body = _get(url, HEAVY, timeout_s=120)
    assert status == 503, body
    message = body["error"]["message"]
    assert message.startswith("stopped after its time limit of 1 s (")
    # 1,201 periods: the site's months are America/New_York months, so the UTC range has a part-month at each end
    assert re.search(r"\(\d+ of 1,201 monthly periods done\): ask for a shorter range or a coarser period$", message)


def test_cli_pue_states_the_same_limit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`aidc pue` over two years of hourly rows is refused with the API's one line, before opening the store."""
    from aidc.sitegen import SiteTemplate, render_site
    from app.cli import main

    path = tmp_path / "site.toml"
    path.write_text(render_site(SiteTemplate(racks=1, data_dir="var")), encoding="utf-8")
    rc = main(["pue", "--config", str(path), "--from", "2024-01-01T00:00Z", "--to", "2026-01-01T00:00Z",
               "--period", "hour"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc != 0
    assert "hourly rows cover at most 31 days per question: ask for period month, or a shorter range" in err
    assert "Traceback" not in err
    assert not (tmp_path / "var").exists() or not any((tmp_path / "var").glob("*.duckdb"))
