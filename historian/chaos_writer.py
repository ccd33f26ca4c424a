"""A deterministic writer for the historian chaos test: ``python -m historian.chaos_writer ...``.

Batch ``k`` holds one point per series at ``t0 + k * period`` with a value derived from ``k`` and the
series, and is due at ``start_wall + k * period``. After ``write()`` returns for batch ``k`` (delivered or
durably spooled), ``progress`` is replaced with ``k + 1`` and ``k`` and the wall time are appended to
``accepted`` (what was really handed over, and when); a restarted writer resumes there, so every batch below
the final progress was handed to the historian at least once. At the end it waits for the spool to drain and
prints one JSON line of figures, ``sent_points`` being what this process delivered to the server.

``--hold-before-ack FILE``: while FILE exists, the forwarder stops after a spooled chunk was delivered and
before its ack is written, creates ``FILE.held`` and waits there, so a test can SIGKILL the writer exactly
between delivery and acknowledgement.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from aidc.historian_config import HistorianConfig
from aidc.model import Batch, SeriesKey
from historian import open_historian
from historian.forward import RemoteHistorian


def batch_for(k: int, ids: np.ndarray, t0_ns: int, period_ns: int) -> Batch:
    """The k-th batch of the deterministic sequence."""
    n = len(ids)
    return Batch(
        ids,
        np.full(n, t0_ns + k * period_ns, dtype=np.int64),
        ((k * n + np.arange(n)) % 4000) / 4.0,
        np.zeros(n, dtype=np.uint8),
    )


def _hold_before_ack(h: RemoteHistorian, trigger: Path) -> None:
    """Make the forwarder wait between a delivered chunk and its ack while ``trigger`` exists (test hook)."""
    ack = h.spool.ack

    def held_ack(rec: Any) -> None:
        if trigger.exists():
            trigger.with_suffix(".held").write_text(str(rec))
            while True:  # delivered, not acknowledged: the test kills the process here
                time.sleep(1.0)
        ack(rec)

    h.spool.ack = held_ack  # type: ignore[method-assign]


def main() -> int:
    """Run the writer until the sequence is written and the spool is empty."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--url", required=True)
    p.add_argument("--dir", type=Path, required=True, help="spool and progress directory")
    p.add_argument("--series", type=int, default=500)
    p.add_argument("--rate", type=float, default=25_000.0, help="points per second")
    p.add_argument("--duration", type=float, default=180.0, help="seconds of generated data")
    p.add_argument("--t0-ns", type=int, required=True)
    p.add_argument("--start-wall", type=float, required=True)
    p.add_argument("--hold-before-ack", type=Path, default=None, help="see the module docstring")
    args = p.parse_args()

    cfg = HistorianConfig.model_validate(
        {
            "backend": "victoriametrics",
            "keep_local": False,
            "remote": {"url": args.url, "backoff_initial_s": 0.2, "backoff_max_s": 2.0, "timeout_s": 5},
            "spool": {"dir": "spool", "fsync": "always"},
        }
    )
    h = open_historian(cfg, args.dir)
    assert isinstance(h, RemoteHistorian)
    if args.hold_before_ack is not None:
        _hold_before_ack(h, args.hold_before_ack)
    ids = np.array([SeriesKey.of("chaos", "value", {"s": f"{i:04d}"}).id for i in range(args.series)], dtype=object)
    period_ns = int(args.series / args.rate * 1e9)
    total = int(args.duration * 1e9 // period_ns)
    progress = args.dir / "progress"
    accepted = args.dir / "accepted"
    k = int(progress.read_text()) if progress.exists() else 0
    resumed_at = k
    max_depth = h.spool.depth_points
    while k < total:
        due = args.start_wall + k * period_ns / 1e9
        delay = due - time.time()
        if delay > 0:
            time.sleep(delay)
        h.write(batch_for(k, ids, args.t0_ns, period_ns))
        with accepted.open("a") as f:
            f.write(f"{k} {time.time():.6f}\n")
        k += 1
        tmp = progress.with_suffix(".tmp")
        tmp.write_text(str(k))
        os.replace(tmp, progress)
        max_depth = max(max_depth, h.spool.depth_points)
    drained = h.wait_drained(300)
    print(
        json.dumps(
            {
                "resumed_at": resumed_at,
                "batches": total,
                "points": total * args.series,
                "max_spool_points": max_depth,
                "drained": drained,
                "dropped": h.spool.dropped_points,
                "sent_points": h.sent_points,
            }
        ),
        flush=True,
    )
    h.close()
    return 0 if drained else 1


if __name__ == "__main__":
    raise SystemExit(main())
