"""Spool metadata that cannot be trusted (the ack, stray ``*.seg`` entries) is reported in one line, set aside and
never deletes a spooled point: without a trusted ack everything is replayed (replayed writes are idempotent)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from historian.spool import Spool

CHUNKS = 9  # three segments of three records each
POINTS = 5  # per chunk


def _open(path: Path) -> Spool:
    return Spool(path, max_bytes=1 << 30, segment_bytes=100, fsync=False)


def _filled(path: Path, acked: int = 2) -> Spool:
    """A closed spool of CHUNKS chunks over three segments, the first ``acked`` of them delivered."""
    sp = _open(path)
    for i in range(CHUNKS):
        assert sp.append(f"chunk {i} ".encode() * 3, POINTS)
    for _ in range(acked):
        item = sp.peek()
        assert item is not None
        sp.ack(item[0])
    sp.close()
    return sp


def _replay(sp: Spool) -> list[str]:
    out = []
    while (item := sp.peek()) is not None:
        out.append(item[1].split(b" ")[1].decode())
        sp.ack(item[0])
    return out


def _aside(path: Path, name: str) -> list[Path]:
    return sorted(path.glob(f"{name}.bad-*"))


def _segment_names(path: Path) -> list[str]:
    return sorted(p.name for p in path.glob("*.seg"))


def test_a_trusted_ack_still_drops_what_was_delivered(tmp_path: Path) -> None:
    """A good ack (the normal case) is kept: delivered chunks are not replayed and nothing is set aside."""
    _filled(tmp_path, acked=4)
    again = _open(tmp_path)
    assert _replay(again) == [str(i) for i in range(4, CHUNKS)]
    assert not list(tmp_path.glob("*.bad-*"))


@pytest.mark.parametrize(
    ("ack", "fragment"),
    [
        ({"segment": 99, "offset": 0}, "segment 99 is beyond the last segment 3"),
        ({"segment": 2, "offset": -5}, "negative offset"),
        ({"segment": -1, "offset": 0}, "negative segment"),
        ({"segment": 2, "offset": 10_000}, "offset 10000 is beyond the end of segment 2"),
        ({"segment": 2, "offset": 7}, "offset 7 is not at a record boundary of segment 2"),
        ({"segment": 2.5, "offset": 0}, "is not {'segment': <int>, 'offset': <int>}"),
        ({"segment": True, "offset": 0}, "is not {'segment': <int>, 'offset': <int>}"),
        ({"segment": "2"}, "is not {'segment': <int>, 'offset': <int>}"),
        ([2, 0], "is not {'segment': <int>, 'offset': <int>}"),
    ],
)
def test_a_bad_ack_is_set_aside_and_everything_replayed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, ack: object, fragment: str
) -> None:
    """An ack beyond the last segment, negative, past the segment's end, off a record boundary or of the wrong
    type deletes nothing: one error line names the ack file and the bad value, the file is set aside and every
    spooled chunk is replayed."""
    _filled(tmp_path, acked=2)  # segment 1 (chunks 0-2) is still on disk: its ack is at segment 1
    (tmp_path / "ack").write_text(json.dumps(ack))
    with caplog.at_level(logging.ERROR, logger="historian.spool"):
        again = _open(tmp_path)
    assert again.depth_points == CHUNKS * POINTS
    assert _replay(again) == [str(i) for i in range(CHUNKS)]
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    assert str(tmp_path / "ack") in errors[0]
    assert fragment in errors[0]
    assert len(_aside(tmp_path, "ack")) == 1
    assert json.loads(_aside(tmp_path, "ack")[0].read_text()) == ack  # kept as it was, for the post-mortem


@pytest.mark.parametrize("content", [b"", b"{not json", b"\xff\xfe{}", b"null"])
def test_an_unreadable_ack_replays_everything(tmp_path: Path, content: bytes) -> None:
    """An empty, truncated, non-UTF-8 or null ack is set aside and every chunk is replayed."""
    _filled(tmp_path)
    (tmp_path / "ack").write_bytes(content)
    again = _open(tmp_path)
    assert _replay(again) == [str(i) for i in range(CHUNKS)]
    assert [p.read_bytes() for p in _aside(tmp_path, "ack")] == [content]


def test_an_ack_that_is_a_directory_is_set_aside_and_acks_work_again(tmp_path: Path) -> None:
    """An ack that is a directory neither stops the spool from opening nor later acks from being written."""
    _filled(tmp_path)
    (tmp_path / "ack").unlink()
    (tmp_path / "ack").mkdir()
    again = _open(tmp_path)
    assert _replay(again) == [str(i) for i in range(CHUNKS)]
    assert (tmp_path / "ack").is_file()
    assert [p.is_dir() for p in _aside(tmp_path, "ack")] == [True]
    again.close()
    assert _open(tmp_path).depth_points == 0  # the new ack is trusted on the next open


def test_an_ack_naming_a_missing_middle_segment_deletes_nothing(tmp_path: Path) -> None:
    """An ack that names a segment missing while an older one is still there is not trusted."""
    _filled(tmp_path)
    (tmp_path / "0000000000000002.seg").unlink()
    (tmp_path / "ack").write_text(json.dumps({"segment": 2, "offset": 0}))
    again = _open(tmp_path)
    assert _replay(again) == ["0", "1", "2", "6", "7", "8"]


@pytest.mark.parametrize("name", ["notes.seg", "5.seg", "-1.seg", "00000000000000007.seg", "１２.seg"])
def test_a_stray_seg_file_is_set_aside_not_read(tmp_path: Path, caplog: pytest.LogCaptureFixture, name: str) -> None:
    """A ``*.seg`` file whose name is not a 16-digit segment number is set aside with one line; the spool opens
    and replays what it holds."""
    _filled(tmp_path)
    (tmp_path / name).write_bytes(b"someone else's bytes")
    with caplog.at_level(logging.ERROR, logger="historian.spool"):
        again = _open(tmp_path)
    assert _replay(again) == [str(i) for i in range(2, CHUNKS)]
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    assert name in errors[0]
    assert [p.read_bytes() for p in _aside(tmp_path, name)] == [b"someone else's bytes"]


def test_a_seg_directory_is_set_aside(tmp_path: Path) -> None:
    """A directory with a segment's name is set aside, and the spool still opens and replays."""
    _filled(tmp_path)
    (tmp_path / "0000000000000009.seg").mkdir()
    again = _open(tmp_path)
    assert _replay(again) == [str(i) for i in range(2, CHUNKS)]
    assert "0000000000000009.seg" not in _segment_names(tmp_path)
    assert _aside(tmp_path, "0000000000000009.seg")[0].is_dir()


def test_the_job_starts_on_a_writer_spool_with_bad_metadata(tmp_path: Path) -> None:
    """``aidc run`` builds its job (the writer's spool included) over a stray segment and an ack beyond the last,
    and keeps every spooled point to replay."""
    from app.job import MainJob
    from tests.sim_helpers import make_site

    site = make_site(tmp_path, racks=1)
    spool_dir = site.data_dir / "writer-spool"
    _filled(spool_dir)
    (spool_dir / "ack").write_text(json.dumps({"segment": 99, "offset": 0}))
    (spool_dir / "stray.seg").write_bytes(b"x")
    job = MainJob.build(site)
    spool = job.writer.spool
    try:
        assert spool is not None
        assert spool.depth_points == CHUNKS * POINTS
    finally:
        job.historian.close()
        if spool is not None:
            spool.close()
