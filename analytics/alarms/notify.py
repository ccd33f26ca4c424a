"""Alarm notification: events posted as JSON to the site's webhook, from a worker thread."""

from __future__ import annotations

import json
import logging
import queue
import threading
import urllib.parse
import urllib.request
from typing import Any

from aidc.errors import ConfigError

log = logging.getLogger(__name__)


class Webhook:
    """Posts alarm events as JSON to a URL from a worker thread, so a slow receiver never stalls evaluation."""

    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"alarm webhook URL must start with http:// or https:// (got {url[:30]!r})")
        self.url, self.timeout_s = url, timeout_s
        self.sent = 0
        self.failed = 0
        self._q: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=10_000)
        self._failing = False
        self._thread = threading.Thread(target=self._run, name="alarm webhook", daemon=True)
        self._thread.start()

    def post(self, event: dict[str, Any]) -> None:
        """Queue one event (dropped and counted when the queue is full)."""
        try:
            self._q.put_nowait(event)
        except queue.Full:
            self.failed += 1

    def _run(self) -> None:
        while (event := self._q.get()) is not None:
            req = urllib.request.Request(  # noqa: S310 - the scheme is checked in __init__
                self.url, data=json.dumps(event).encode(), headers={"Content-Type": "application/json"}, method="POST"
            )
            try:
                with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:  # noqa: S310
                    resp.read()
                self.sent += 1
                if self._failing:
                    log.info("alarm webhook reachable again")
                self._failing = False
            except OSError as exc:
                self.failed += 1
                # The URL may carry a token: name the host only, and log once until it recovers.
                if not self._failing:
                    log.error("alarm webhook to %s failed: %s", urllib.parse.urlparse(self.url).netloc, exc)
                self._failing = True
            finally:
                self._q.task_done()

    def close(self, timeout_s: float = 5.0) -> None:
        """Send what is queued (up to ``timeout_s``) and stop the worker."""
        self._q.put(None)
        self._thread.join(timeout_s)
