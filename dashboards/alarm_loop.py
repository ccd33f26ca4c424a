"""Alarm evaluation on the job's live values: every rule of the one alarm engine, every ``every_s`` seconds.

The dashboard runs one while it serves; the main job runs one of its own when the dashboard is switched off
(``--no-dashboard``), so device alarms still reach the API, the webhook and the store.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping

from dashboards.data import DashboardData

log = logging.getLogger(__name__)


class AlarmLoop:
    """Evaluates the alarm engine of ``data`` on the latest values (plus pipeline figures) on a thread of its own."""

    name = "alarm evaluation"

    def __init__(
        self, data: DashboardData, every_s: float, extra: Callable[[], Mapping[str, float]] | None = None
    ) -> None:
        self.data, self.every_s, self.extra = data, every_s, extra
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def evaluate(self) -> None:
        """One evaluation of every alarm rule on the latest values (a failing pass is logged, never fatal)."""
        try:
            extra = dict(self.extra()) if self.extra is not None else {}
            extra.update(self.data.pipeline_stats())
            st = self.data.controller()
            if st is not None:
                extra["controller_fallback"] = float("fallback" in str(st.get("state", "")).lower())
            self.data.alarms.evaluate(self.data.alarm_frame(), self.data.clock.now_ns(), extra)
        except Exception:  # alarm evaluation must keep running whatever one pass hits
            log.exception("alarm evaluation failed")

    def start(self) -> AlarmLoop:
        """Start evaluating on a daemon thread."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="alarms", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.evaluate()

    def stop(self) -> None:
        """Stop the thread (the engine itself is closed by its owner)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
