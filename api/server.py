"""Serving the API with uvicorn: in the foreground (``aidc api``) or on a background thread (main job, tests)."""

from __future__ import annotations

import threading
import time

import uvicorn
from fastapi import FastAPI

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8081


def config(app: FastAPI, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> uvicorn.Config:
    """uvicorn settings: no access log (the metrics count requests), no lifespan events."""
    return uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="off")


class ApiServer:
    """uvicorn on a daemon thread; a context manager that returns once the socket listens."""

    def __init__(self, app: FastAPI, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
        self.server = uvicorn.Server(config(app, host, port))
        self.url = f"http://{host}:{port}"
        self._thread = threading.Thread(target=self.server.run, name="aidc-api", daemon=True)

    def start(self, timeout_s: float = 20.0) -> ApiServer:
        """Start and wait until uvicorn reports it is serving."""
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"API server did not start on {self.url}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Ask uvicorn to exit and wait for the thread."""
        self.server.should_exit = True
        self._thread.join(timeout=10)

    def __enter__(self) -> ApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
