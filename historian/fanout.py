"""Local + remote: the embedded DuckDB store stays the hot store for reads, everything is also sent remote."""

from __future__ import annotations

import logging
from datetime import timedelta

import pandas as pd

from aidc.model import Batch
from historian.base import Agg, Historian, SeriesSelector, TimeLike

log = logging.getLogger(__name__)


class FanoutHistorian(Historian):
    """Writes to both stores (local first, so a remote outage never delays the hot store); reads locally."""

    def __init__(self, local: Historian, remote: Historian) -> None:
        self.local = local
        self.remote = remote
        self.backend = f"{local.backend}+{remote.backend}"

    def write(self, batch: Batch) -> None:
        """Store locally, then deliver or spool remotely."""
        self.local.write(batch)
        self.remote.write(batch)

    def query(
        self,
        selector: SeriesSelector,
        start: TimeLike,
        end: TimeLike,
        window: str | timedelta | int | None = None,
        agg: Agg | None = None,
    ) -> pd.DataFrame:
        """From the local hot store."""
        return self.local.query(selector, start, end, window, agg)

    def latest(self, selector: SeriesSelector) -> pd.DataFrame:
        """From the local hot store."""
        return self.local.latest(selector)

    def stats_batch(self, now_ns: int) -> Batch:
        """The remote's spool figures."""
        return self.remote.stats_batch(now_ns)

    def flush(self) -> None:
        """Flush both."""
        self.local.flush()
        self.remote.flush()

    def close(self) -> None:
        """Close both, the remote first so its last spool state is on disk before the file is closed."""
        try:
            self.remote.close()
        finally:
            self.local.close()
