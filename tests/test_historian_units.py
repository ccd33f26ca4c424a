"""Historian pieces without a server: config errors, line protocol, the spool's crash recovery, the CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from aidc.errors import ConfigError
from aidc.historian_config import historian_config_from_mapping
from aidc.model import Batch, Quality, Sample
from aidc.sitegen import SiteTemplate, render_site
from app.cli import main
from historian import HistorianConfig, SeriesSelector, open_historian
from historian.influx import flux_query
from historian.lineproto import LineEncoder, to_line_protocol
from historian.spool import Spool
from historian.victoria import selector_matcher, series_id_of
from tests.vm_server import NS, polls

T0 = 1_767_225_600 * NS


@pytest.mark.parametrize(
    ("table", "fragment"),
    [
        ({"backend": "mongodb"}, "historian.backend = 'mongodb'"),
        ({"backend": "influxdb"}, "needs a [historian.remote] table"),
        ({"backend": "influxdb", "remote": {"url": "localhost:8086"}}, "historian.remote.url = 'localhost:8086'"),
        ({"spool": {"fsync": "sometimes"}}, "historian.spool.fsync = 'sometimes'"),
        ({"retention": 3}, "historian.retention"),
    ],
)
def test_bad_config_is_one_clear_line(table: dict[str, object], fragment: str) -> None:
    """An unknown backend, bad URL, bad option or unknown key is one ConfigError line naming key and value."""
    with pytest.raises(ConfigError) as info:
        historian_config_from_mapping(table, source="site.toml")
    text = str(info.value)
    assert fragment in text
    assert text.startswith("site.toml: ")
    assert "\n" not in text


def test_missing_influx_token_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An InfluxDB backend without its token variable fails at start naming the variable, not the token."""
    monkeypatch.delenv("AIDC_TEST_TOKEN", raising=False)
    cfg = HistorianConfig.model_validate(
        {"backend": "influxdb", "remote": {"url": "http://127.0.0.1:9", "token_env": "AIDC_TEST_TOKEN"}}
    )
    with pytest.raises(ConfigError, match="AIDC_TEST_TOKEN is not set"):
        open_historian(cfg, tmp_path)


def test_line_protocol_values_quality_and_missing() -> None:
    """Values are written with ns timestamps; bad quality rides along; missing good values are skipped."""
    sid = r"pdu,rack=r\ 1 p\ w"
    batch = Batch.from_samples(
        [
            Sample(sid, 1, 1.5),
            Sample(sid, 2, None, Quality.BAD, "timeout"),
            Sample(sid, 3, 2.0, Quality.UNCERTAIN),
            Sample(sid, 4, None),
            Sample(sid, 5, 1e20),
        ]
    )
    payload = to_line_protocol(batch)
    assert payload.data.decode().splitlines() == [
        r"pdu,rack=r\ 1 p\ w=1.5 1",
        r"pdu,rack=r\ 1 p\ w_quality=2i 2",
        r"pdu,rack=r\ 1 p\ w=2,p\ w_quality=1i 3",
        r"pdu,rack=r\ 1 p\ w=1e+20 5",
    ]
    assert [n for _, n in payload.chunks(3)] == [3, 1]
    assert b"".join(c for c, _ in payload.chunks(3)) == payload.data


def test_line_encoder_cache_matches_a_fresh_encode() -> None:
    """The per-series key cache gives the same bytes as a fresh encode: same layout, reordered, new series,
    mixed timestamps, then bad quality and missing values after the cache is warm."""
    ids = np.array([rf"pdu,rack=r{i} p\ w" for i in range(6)], dtype=object)
    good = np.zeros(6, np.uint8)
    enc = LineEncoder()
    batches = [
        Batch(ids, np.full(6, 10, np.int64), np.arange(6) / 4, good),
        Batch(ids.copy(), np.full(6, 20, np.int64), np.arange(6) / 8, good),
        Batch(ids[::-1].copy(), np.arange(6, dtype=np.int64), np.arange(6) * 1.5, good),
        Batch(np.array(["new m", *ids[:2]], dtype=object), np.array([1, 2, 3]), np.array([1.0, 2.0, 3.0]), good[:3]),
        Batch(ids, np.full(6, 30, np.int64), np.array([1, np.nan, 3, np.inf, 5, 6.0]),
              np.array([0, 2, 1, 0, 0, 0], np.uint8)),
    ]  # fmt: skip
    for b in batches:
        assert enc.encode(b).data == to_line_protocol(b).data
    assert enc.encode(batches[4]).data.decode().splitlines() == [
        r"pdu,rack=r0 p\ w=1 30",
        r"pdu,rack=r1 p\ w_quality=2i 30",
        r"pdu,rack=r2 p\ w=3,p\ w_quality=1i 30",
        r"pdu,rack=r4 p\ w=5 30",
        r"pdu,rack=r5 p\ w=6 30",
    ]
    assert enc.encode(batches[3]).data.decode().splitlines() == [
        "new m=1 1",
        r"pdu,rack=r0 p\ w=2 2",
        r"pdu,rack=r1 p\ w=3 3",
    ]
    assert LineEncoder(write_quality=False).encode(batches[4]).lines == 4


def test_flux_and_promql_selectors() -> None:
    """Selectors become anchored Flux filters and PromQL matchers, and VictoriaMetrics names map back."""
    sel = SeriesSelector.parse("pdu,rack=r03-*,active_power_w")
    flux = flux_query("aidc", sel, T0, T0 + 60 * NS, 60 * NS, "mean")
    assert 'r["rack"] =~ /^r03\\-.*$/' in flux
    assert 'r["_field"] == "active_power_w"' in flux
    assert "aggregateWindow(every: 60000000000ns, fn: mean" in flux
    assert selector_matcher(sel) == '{__name__="pdu_active_power_w", rack=~"r03\\\\-.*"}'
    metric = {"__name__": "pdu_active_power_w", "rack": "r03-07"}
    assert series_id_of(metric, sel) == "pdu,rack=r03-07 active_power_w"


def test_spool_survives_a_torn_append_and_replays_in_order(tmp_path: Path) -> None:
    """After a crash mid-append the torn record is cut; acked chunks are not replayed, the rest are, in order."""
    sp = Spool(tmp_path, max_bytes=10**6, segment_bytes=200)
    for i in range(10):
        assert sp.append(f"chunk {i}\n".encode() * 5, 5)
    for _ in range(3):
        item = sp.peek()
        assert item is not None
        sp.ack(item[0])
    sp.close()
    last = sorted(tmp_path.glob("*.seg"))[-1]
    with open(last, "ab") as f:
        f.write(b"AIDS\x40\x00\x00\x00partial")  # a header and part of a payload, as a kill -9 leaves it
    again = Spool(tmp_path, max_bytes=10**6, segment_bytes=200)
    assert again.depth_points == 35
    got = []
    while (item := again.peek()) is not None:
        got.append(item[1].split(b"\n")[0].decode())
        again.ack(item[0])
    assert got == [f"chunk {i}" for i in range(3, 10)]
    assert len(list(tmp_path.glob("*.seg"))) == 1
    assert again.append(b"after\n", 1)
    again.close()
    assert Spool(tmp_path, max_bytes=10**6, segment_bytes=200).depth_points == 1


def test_spool_full_refuses_new_data(tmp_path: Path) -> None:
    """When the bound is reached new chunks are refused and counted; the spooled ones stay."""
    sp = Spool(tmp_path, max_bytes=100, segment_bytes=10**6)
    assert sp.append(b"x" * 50, 7)
    assert not sp.append(b"y" * 50, 9)
    assert (sp.depth_points, sp.dropped_points) == (7, 9)
    sp.close()


def site_file(tmp_path: Path) -> Path:
    """A site file with a [historian] table and a data_dir, holding an hour of polls."""
    path = tmp_path / "site.toml"
    path.write_text(render_site(SiteTemplate(racks=1, data_dir="var")) + '\n[historian]\nbackend = "duckdb"\n')
    h = open_historian(HistorianConfig(), tmp_path / "var")
    for b in polls(T0, 1):
        h.write(b)
    h.close()
    return path


def test_cli_latest_and_range(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`aidc query latest` and `aidc query range --window --agg` print the stored answers."""
    path = site_file(tmp_path)
    assert main(["query", "--config", str(path), "--json", "latest", "pdu,*,active_power_w"]) == 0
    latest = json.loads(capsys.readouterr().out)
    assert len(latest) == 4
    assert {r["series"].split(",")[0] for r in latest} == {"pdu"}
    args = ["query", "--config", str(path), "range", "cdu,device=cdu-1,flow_lpm"]
    args += ["--from", "2026-01-01T00:00Z", "--to", "2026-01-01T01:00Z", "--window", "15m", "--agg", "max"]
    assert main(args) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["series", "ts", "value", "quality"]
    assert len(out) == 5
    assert "2026-01-01T00:45:00+00:00" in out[-1]


def test_cli_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A naive time or unknown backend in the site file prints one line and exits 2."""
    path = site_file(tmp_path)
    args = ["query", "--config", str(path), "range", "pdu", "--from", "2026-01-01T00:00"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "give a time zone" in err
    assert len(err.splitlines()) == 1
    path.write_text(path.read_text().replace('backend = "duckdb"', 'backend = "mongodb"'))
    assert main(["query", "--config", str(path), "latest", "pdu"]) == 2
    assert "historian.backend: 'mongodb'" in capsys.readouterr().err


def test_token_is_never_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """With an unreachable InfluxDB the logs name the URL and spool but never the token."""
    monkeypatch.setenv("AIDC_INFLUX_TOKEN", "s3cr3t-token-value")
    cfg = HistorianConfig.model_validate(
        {"backend": "influxdb", "keep_local": False, "remote": {"url": "http://127.0.0.1:9", "timeout_s": 2}}
    )
    caplog.set_level("DEBUG")
    h = open_historian(cfg, tmp_path)
    h.write(polls(T0, 0.01)[0])
    h.close()
    assert "unreachable" in caplog.text
    assert "s3cr3t" not in caplog.text
    assert os.listdir(tmp_path / "historian-spool")
    assert np.all([r.levelno < 50 for r in caplog.records])
