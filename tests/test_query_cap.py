"""`aidc query range` at raw resolution: a range over the row limit is counted in the store and refused, never loaded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from aidc.config import load_site
from aidc.model import Batch, SeriesKey
from aidc.sitegen import SiteTemplate, render_site
from app.cli import main
from historian import open_historian
from historian.duckdb_store import DuckDBHistorian

START = pd.Timestamp("2026-07-01T00:00Z")


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A one-rack site whose historian holds 3 PDU power series of 40 samples each, 10 s apart."""
    path = tmp_path / "site.toml"
    path.write_text(render_site(SiteTemplate(racks=1, data_dir="var")), encoding="utf-8")
    site = load_site(path)
    with open_historian(site.config.historian, site.data_dir) as hist:
        for k in range(3):
            sid = SeriesKey.of("pdu", "active_power_w", {"site": site.name, "device": f"pdu-x{k}"}).id
            ts = START.value + np.arange(40, dtype=np.int64) * 10_000_000_000
            hist.write(Batch(np.full(40, sid, dtype=object), ts, np.arange(40.0), np.zeros(40, dtype=np.uint8)))
        hist.flush()
    return path


def test_raw_range_over_the_limit_is_refused_without_reading_rows(
    store: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Over MAX_ROWS: one line with the count and how to narrow, and the store is only asked to count (main read
    every row first, 400 MB of memory for 470,000 of them)."""
    from analytics import answers

    monkeypatch.setattr(answers, "MAX_ROWS", 100)
    asked: list[tuple[Any, Any]] = []
    query = DuckDBHistorian.query

    def spy(self: DuckDBHistorian, *args: Any, **kwargs: Any) -> pd.DataFrame:
        asked.append((kwargs.get("window", args[3] if len(args) > 3 else None), kwargs.get("agg")))
        return query(self, *args, **kwargs)

    monkeypatch.setattr(DuckDBHistorian, "query", spy)
    argv = ["query", "--config", str(store), "range", "pdu,*,active_power_w", "--from", "2026-07-01T00:00Z",
            "--to", "2026-07-01T01:00Z"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "aidc query: at least 120 samples of 3 series match from 2026-07-01T00:00:00+00:00 to "
        "2026-07-01T01:00:00+00:00, 20 over the limit of 100 rows, so none were read: narrow the selector or the "
        "range, or aggregate with a window (--window 5m gives at most 36 rows)"
    ]
    assert all(agg == "count" for _, agg in asked), asked  # no raw read


def test_raw_range_within_the_limit_prints_every_row(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Within the limit the rows print as before (the count costs one small query)."""
    argv = ["query", "--config", str(store), "--json", "range", "pdu,*,active_power_w", "--from",
            "2026-07-01T00:00Z", "--to", "2026-07-01T01:00Z"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.count('"series"') == 120


def test_refusal_is_the_same_line_beside_a_running_job(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the job's API (422) the refusal prints the same one line, and exit status, as on the store."""
    from analytics import answers
    from tests.test_cli_beside_job import job, local

    monkeypatch.setattr(answers, "MAX_ROWS", 100)  # this process plays the job too: both paths see it
    argv = ["query", "--config", str(store), "range", "pdu,*,active_power_w", "--from", "2026-07-01T00:00Z",
            "--to", "2026-07-01T01:00Z"]  # fmt: skip
    alone = local(argv)
    with job(store):
        beside = local(argv)  # the local credential is live: this run asks the API served in this process
    assert beside == alone
    assert alone[0] == 2
    assert "so none were read" in alone[2]
