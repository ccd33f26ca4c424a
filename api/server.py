"""Serving the API with uvicorn: in the foreground (``aidc api``) or on a background thread (main job, tests)."""

from __future__ import annotations

import socket
import threading
import time

import uvicorn
from fastapi import FastAPI

from aidc.errors import AidcError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8081


def config(app: FastAPI, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> uvicorn.Config:
    """uvicorn settings: no access log (the metrics count requests), no lifespan events."""
    return uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="off")


def listen(host: str, port: int, what: str = "api.port") -> socket.socket:
    """A listening TCP socket on ``host:port``; AidcError names ``what``, the address and why when it is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=128)
    except OSError as exc:
        raise AidcError(f"{what}: cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def local_url(host: str, port: int) -> str:
    """The URL a client on this machine uses (loopback when the server listens on every address)."""
    if host in ("0.0.0.0", ""):  # noqa: S104 - compared, not bound
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class ApiServer:
    """uvicorn on a daemon thread; a context manager that returns once the socket listens.

    With ``sock`` (from :func:`listen`) it serves an already bound socket, so a taken port is reported before the
    rest of a job starts rather than from the server's thread.
    """

    def __init__(
        self, app: FastAPI, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *, sock: socket.socket | None = None
    ) -> None:
        if sock is not None:
            host, port = sock.getsockname()[:2]
        self.server = uvicorn.Server(config(app, host, port))
        self.url = local_url(host, port)
        self._sockets = None if sock is None else [sock]
        self._thread = threading.Thread(target=self._serve, name="aidc-api", daemon=True)

    def _serve(self) -> None:
        self.server.run(sockets=self._sockets)

    def start(self, timeout_s: float = 20.0) -> ApiServer:
        """Start and wait until uvicorn reports it is serving."""
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise AidcError(f"API server did not start on {self.url}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Ask uvicorn to exit and wait for the thread."""
        self.server.should_exit = True
        self._thread.join(timeout=10)
        for sock in self._sockets or ():
            sock.close()

    def __enter__(self) -> ApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
