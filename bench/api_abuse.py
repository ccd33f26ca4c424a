"""Abuse of the job's REST API and dashboard over loopback: a huge unauthenticated body, 45 heavy PUE questions,
parallel password guesses and replayed revoked session cookies.

    python bench/api_abuse.py

Starts its own ``aidc demo`` (simulator process and main job) on a generated two-rack site in a temporary directory,
with a read API token (``AIDC_API_TOKENS=bench:read:<random>``) and the demo's dashboard user ``operator`` (role
operator, a random password the demo prints once; the bench never needs it). Figures:

- ``unauth_body_rss_growth_mb``: growth of the job's resident memory (VmRSS of the demo process, which runs the
  job; the simulator is its own process) while a 300 MiB POST without a token is sent to ``/api/v1/placement``, the
  peak over the send and 2 s after it (must be under 50); the status it got and how much the server took are printed.
- ``health_p99_ms_under_heavy_queries``: p99 latency of ``/health`` polled every 100 ms for 20 s while 45 clients
  keep ten-year monthly PUE questions in flight (a refused one is asked again 0.2 s later); must be under 500.
- ``parallel_login_guesses_checked`` (40 parallel wrong passwords for ``operator``; at most 5) and
  ``revoked_cookie_accepted`` (false after sign-out, demotion and deletion): measured by
  ``bench/_session_abuse.py`` (it creates its own users with ``aidc user`` and the job's environment); null, with a
  note, where that module is missing.

The same 300 MiB body is also sent to the dashboard's ``/login`` (``dashboard_unauth_body_*``, for information).
Bounded: the whole run stops itself after 280 s. The last line is one JSON object.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.sim_helpers import free_port_block, site_doc, write_site  # noqa: E402 - after the path is set

BODY_BYTES = 300 * 2**20
HEAVY_CLIENTS = 45
PROBE_S = 20.0
RUN_LIMIT_S = 280.0
TEN_YEARS = "/api/v1/pue?from=2016-01-01T00:00Z&to=2026-01-01T00:00Z&period=month"  # within the stated limits


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


class PeakRss:
    """The highest VmRSS of ``pid`` sampled every 20 ms while the context runs (and ``tail_s`` after)."""

    def __init__(self, pid: int, tail_s: float = 2.0) -> None:
        self.pid, self.tail_s, self.peak = pid, tail_s, 0.0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, rss_mb(self.pid))
            time.sleep(0.02)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(self.tail_s)
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb(self.pid))


def send_big_body(port: int, path: str, headers: dict[str, str]) -> tuple[int | None, int]:
    """POST ``BODY_BYTES`` of JSON-ish bytes; the status the server answered (None: none) and the bytes it took."""
    sent = 0
    chunk = b"[" * 2**20
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        head = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", f"Content-Length: {BODY_BYTES}",
                "Content-Type: application/json", *(f"{k}: {v}" for k, v in headers.items())]  # fmt: skip
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        with contextlib.suppress(OSError):  # the server may answer and close before the whole body is sent
            while sent < BODY_BYTES:
                sock.sendall(chunk)
                sent += len(chunk)
        sock.settimeout(30)
        try:
            reply = sock.recv(4096)
        except OSError:
            reply = b""
    status = int(reply.split()[1]) if reply.startswith(b"HTTP/") else None
    return status, sent


def get(url: str, token: str | None = None, timeout_s: float = 30) -> int:
    """Status of one GET (0 when nothing came back)."""
    req = urllib.request.Request(url)  # noqa: S310 - http://127.0.0.1 only
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:  # noqa: S310
            resp.read()
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        exc.read()
        return int(exc.code)
    except OSError:
        return 0


def ask_until(port: int, path: str, token: str, stop: threading.Event) -> int:
    """One GET on a raw socket; its status, or 0 when ``stop`` came first (the socket is closed: the client left)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
        sock.settimeout(0.2)
        reply = b""
        while not stop.is_set() and not reply.startswith(b"HTTP/"):
            try:
                reply += sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return 0
    return int(reply.split()[1]) if reply.startswith(b"HTTP/") else 0


def heavy_load(port: int, token: str, stop: threading.Event, statuses: list[int]) -> list[threading.Thread]:
    """45 clients, each keeping one ten-year monthly PUE question in flight until ``stop`` (refused: asked again)."""

    def client() -> None:
        while not stop.is_set():
            status = ask_until(port, TEN_YEARS, token, stop)
            if status:
                statuses.append(status)
                stop.wait(0.2)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(HEAVY_CLIENTS)]
    for t in threads:
        t.start()
    return threads


def health_latencies(api: str, seconds: float) -> list[float]:
    """Milliseconds of each /health answer polled every 100 ms for ``seconds`` (a failure counts its full wait)."""
    out = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.perf_counter()
        status = get(api + "/health", timeout_s=10)
        out.append((time.perf_counter() - t0) * 1000 if status in (200, 503) else 10_000.0)
        time.sleep(0.1)
    return out


def p99(values: list[float]) -> float:
    """The 99th percentile (inclusive method)."""
    return statistics.quantiles(values, n=100, method="inclusive")[98] if len(values) > 1 else values[0]


def session_figures(dash: str, config: Path, env: dict[str, str]) -> tuple[int | None, bool | None, list[str]]:
    """The dashboard figures from bench/_session_abuse.py; None, with a note, where it is missing or failed.

    Revoked cookies are measured first: a limiter that locks the whole address after the guesses (as on main)
    would otherwise refuse the probe's own sign-ins."""
    try:
        from bench._session_abuse import parallel_login_guesses_checked, revoked_cookie_accepted
    except ImportError as exc:
        return None, None, [f"bench/_session_abuse.py not available ({exc}): dashboard session figures not measured"]
    notes = []
    revoked: bool | None = None
    checked: int | None = None
    try:
        revoked = revoked_cookie_accepted(dash, config, env)
    except RuntimeError as exc:
        notes.append(f"revoked_cookie_accepted not measured: {exc}")
    try:
        checked = parallel_login_guesses_checked(dash, "operator", guesses=40)
        print(f"parallel wrong-password sign-ins checked against the password: {checked} of 40 (limit 5)", flush=True)
    except RuntimeError as exc:
        notes.append(f"parallel_login_guesses_checked not measured: {exc}")
    return checked, revoked, notes


def wait_ready(api: str, proc: subprocess.Popen[bytes], log: Path, timeout_s: float = 150) -> None:
    """Until the job's /health answers 200 (every part live)."""
    deadline = time.monotonic() + timeout_s
    while get(api + "/health", timeout_s=5) != 200:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"aidc demo did not become ready:\n{log.read_text()[-2000:]}")
        time.sleep(0.5)


def main() -> int:
    """Start the demo, measure every figure, stop it; last line one JSON object."""
    watchdog = threading.Timer(RUN_LIMIT_S, lambda: os.kill(os.getpid(), signal.SIGINT))
    watchdog.daemon = True
    watchdog.start()
    token = secrets.token_urlsafe(24)
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="aidc-api-abuse-") as tmp_name:
        tmp = Path(tmp_name)
        doc = site_doc(tmp, racks=2)
        api_port = free_port_block(2)  # two distinct free ports (two free_port() calls may give the same one)
        dash_port = api_port + 1
        doc["api"] = {"port": api_port}
        doc["dashboard"] = {"port": dash_port}
        config = write_site(tmp, doc)
        env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1", AIDC_API_TOKENS=f"bench:read:{token}")
        log_path = tmp / "demo.log"
        api, dash = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{dash_port}"
        with log_path.open("w") as log:
            proc = subprocess.Popen([sys.executable, "-m", "app.cli", "demo", "--config", str(config)], cwd=tmp,
                                    stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)  # fmt: skip
        try:
            wait_ready(api, proc, log_path)
            print(f"aidc demo ready (pid {proc.pid}); API {api}, dashboard {dash}", flush=True)

            before = rss_mb(proc.pid)
            with PeakRss(proc.pid) as peak:
                status, sent = send_big_body(api_port, "/api/v1/placement", {})
            growth = peak.peak - before
            print(f"300 MiB unauthenticated POST to the API: HTTP {status} after {sent / 2**20:.0f} MiB sent; job RSS "
                  f"{before:.0f} MB -> peak {peak.peak:.0f} MB (+{growth:.1f} MB)", flush=True)  # fmt: skip
            result["unauth_body_rss_growth_mb"] = round(growth, 1)

            before = rss_mb(proc.pid)
            with PeakRss(proc.pid) as peak:
                dstatus, dsent = send_big_body(dash_port, "/login", {})
            dgrowth = peak.peak - before
            print(f"300 MiB unauthenticated POST to the dashboard's /login: HTTP {dstatus} after "
                  f"{dsent / 2**20:.0f} MiB sent; job RSS +{dgrowth:.1f} MB", flush=True)  # fmt: skip
            result["dashboard_unauth_body_status"] = dstatus
            result["dashboard_unauth_body_rss_growth_mb"] = round(dgrowth, 1)

            stop = threading.Event()
            statuses: list[int] = []
            clients = heavy_load(api_port, token, stop, statuses)
            time.sleep(1.0)  # every client has asked once
            lat = health_latencies(api, PROBE_S)
            metrics_status = get(api + "/metrics", timeout_s=10)
            stop.set()
            for t in clients:
                t.join(timeout=5)  # each closes its socket at the stop: the job stops those questions
            counts = {s: statuses.count(s) for s in sorted(set(statuses))}
            print(f"/health under {HEAVY_CLIENTS} ten-year questions: {len(lat)} probes, median "
                  f"{statistics.median(lat):.1f} ms, p99 {p99(lat):.1f} ms, max {max(lat):.1f} ms; /metrics HTTP "
                  f"{metrics_status}; answers to the questions so far by status: {counts}", flush=True)  # fmt: skip
            result["health_p99_ms_under_heavy_queries"] = round(p99(lat), 1)
            result["heavy_query_answers"] = {str(k): v for k, v in counts.items()}

            checked, revoked, notes = session_figures(dash, config, env)
            result["parallel_login_guesses_checked"] = checked
            result["revoked_cookie_accepted"] = revoked
            for note in notes:
                print(note, flush=True)
            if notes:
                result["note"] = "; ".join(notes)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
            watchdog.cancel()
        tracebacks = log_path.read_text().count("Traceback")
        print(f"tracebacks in the demo's log: {tracebacks}", flush=True)
        result["demo_log_tracebacks"] = tracebacks
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
