"""Chaos benchmark: a storage fault under the running job, a kill -9 in the middle of one, and a bad spool ack.

Starts its own simulated facility (``aidc simulate``, one rack) and the main job (``aidc run``, the same process a
site runs, with its REST API on a free loopback port for ``/metrics``). The DuckDB file lives on a small tmpfs
mounted in a private mount namespace (the bench re-executes itself under ``unshare -m``), so the fault bites as
root too: the tmpfs is filled with a filler file until ``ENOSPC`` (a full disk), then the filler is removed. The
writer's disk spool stays on the ordinary disk, as on a site whose historian volume fills up.

1. **Fault and recovery**: the disk is full for ``--fault-s`` seconds. ``storage_fault_write_errors`` is the job's
   ``aidc_historian_writer_write_errors`` counter (more than 0: the fault bit), ``storage_fault_recovered`` whether
   the same job (no restart) wrote again and emptied its spool once the filler was removed.
2. **kill -9 during a fault**: the disk fills again; after ``--kill-after-s`` the job is killed with SIGKILL, the
   filler removed and the job started again until its spool is replayed, then stopped with SIGTERM. Points lost:
   for every series polled at the site's poll interval ``P``, the polls between its last stored sample before the
   kill and the kill itself, ``floor((t_kill - t_last) / P)``, plus any poll missing between the fault and the kill;
   ``points_per_poll_interval`` is how many such series one poll interval brings. ``duplicates_after_restart``:
   rows of the file sharing a series and timestamp with another.
   The job is then stopped (SIGTERM) while the disk is full again: ``full_disk_stop_exit`` is its exit status and
   ``full_disk_stop_tracebacks`` the tracebacks it printed (0: one clear line instead).
3. **Bad spool ack**: a spool with N points gets an ack naming a segment beyond its last one, and is opened again;
   ``spool_bad_ack_points_lost`` is N minus the points it still replays.

The last line is JSON with those figures. Loopback only; about 2 minutes; at most ``--limit-s`` (600).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import duckdb  # noqa: E402
import numpy as np  # noqa: E402
import tomli_w  # noqa: E402

from aidc.clock import CLOCK_FILE, ScaledClock  # noqa: E402
from aidc.sitegen import SiteTemplate, render_site  # noqa: E402
from historian.spool import Spool  # noqa: E402
from simulators.process import SimulatorProcess  # noqa: E402
from tests.sim_helpers import free_port_block  # noqa: E402

_NS_ENV = "AIDC_CHAOS_NAMESPACE"  # set in the re-executed child: it runs in its own mount namespace
POLL_S = 1.0  # the demo's poll interval: the tightest bound a kill -9 has to meet
STORE_MB = 64  # the historian's tmpfs


class Chaos(RuntimeError):
    """The bench cannot go on (the message says which step and why)."""


# ----------------------------------------------------------------------------------------------- the fault


def mount_tmpfs(path: Path, size_mb: int) -> None:
    """A private tmpfs at ``path`` (this process is in its own mount namespace: the host never sees it)."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "--make-rprivate", "/"], check=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(path)], check=True)


def fill(path: Path) -> int:
    """Fill the filesystem of ``path`` with a filler file until ENOSPC (root included: tmpfs keeps no reserve)."""
    filler = path / "filler"
    block = b"\0" * (1 << 16)
    written = 0
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (1 << 16, 4096, 512):
            with contextlib.suppress(OSError):
                while True:
                    written += os.write(fd, block[:size])
    finally:
        os.close(fd)
    return written


def unfill(path: Path) -> None:
    """Remove the filler: the fault clears."""
    (path / "filler").unlink(missing_ok=True)


# ----------------------------------------------------------------------------------------------- the job


def write_site(tmp: Path, store: Path, poll_s: float) -> tuple[Path, int]:
    """A one-rack site on free loopback ports, its DuckDB file on ``store``; returns the file and the API port."""
    base, opcua, api = free_port_block(10), free_port_block(4), free_port_block(1)
    text = render_site(
        SiteTemplate(racks=1, base_port=base, opcua_port=opcua, data_dir=str(tmp / "var"), poll_interval_s=poll_s)
    )
    doc = tomllib.loads(text)
    doc.setdefault("historian", {})["path"] = str(store / "historian.duckdb")
    doc["api"] = {"port": api}
    path = tmp / "site.toml"
    path.write_text(tomli_w.dumps(doc), encoding="utf-8")
    return path, api


class Job:
    """``aidc run`` in a child process, its figures read from ``/metrics``."""

    def __init__(self, config: Path, api_port: int, log: Path) -> None:
        self.port = api_port
        self.log = log
        env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        cmd = [sys.executable, "-m", "app.cli", "run", "--config", str(config), "--no-dashboard", "--no-control",
               "--summary-every", "5"]  # fmt: skip
        self.out = log.open("a")
        self.proc = subprocess.Popen(cmd, stdout=self.out, stderr=subprocess.STDOUT, env=env, cwd=config.parent)

    def metrics(self) -> dict[str, float]:
        """The writer's counters (empty while the API is not up yet)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
                text = r.read().decode()
        except OSError:
            return {}
        out = {}
        for m in re.finditer(r"^(aidc_historian_writer_\w+?)(?:_total)? ([0-9.eE+-]+)$", text, re.M):
            out[m.group(1).removeprefix("aidc_historian_writer_")] = float(m.group(2))
        return out

    def wait(self, what: str, ok: Callable[[dict[str, float]], bool], timeout_s: float) -> dict[str, float]:
        """Poll /metrics until ``ok``; Chaos when the job exits or the time is up."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Chaos(f"the job exited ({self.proc.returncode}) while waiting for {what}; see {self.log}")
            m = self.metrics()
            if m and ok(m):
                return m
            time.sleep(0.5)
        raise Chaos(f"no {what} within {timeout_s:.0f} s; see {self.log}")

    def kill9(self) -> None:
        """SIGKILL, as a crash or the OOM killer would."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.out.close()

    def stop(self) -> int:
        """SIGTERM, as systemd stops it; the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.out.close()
        return int(self.proc.returncode)


# ----------------------------------------------------------------------------------------------- the figures


def site_now_ns(data_dir: Path) -> int:
    """Now on the facility's clock (the simulator's published clock), as the job timestamps its samples."""
    return ScaledClock.load(data_dir / CLOCK_FILE).now_ns()


def points_lost(db: Path, t_fault_ns: int, t_kill_ns: int, poll_s: float) -> tuple[int, int, int]:
    """(points lost, series polled every ``poll_s``, duplicate rows) from the DuckDB file after the restart.

    A series counts when its samples before the fault come every ``poll_s`` (polled, not subscribed on change); its
    lost points are the polls missing between the fault and its last sample before the kill, plus the polls after
    that sample and before the kill.
    """
    p = int(poll_s * 1e9)
    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute(
            "SELECT p.series_id, p.ts FROM points_all p JOIN series s ON s.id = p.series_id "
            "WHERE s.key NOT LIKE 'aidc!_%' ESCAPE '!' AND p.ts >= ? AND p.ts <= ? ORDER BY 1, 2",
            [t_fault_ns - 30 * p, t_kill_ns],
        ).fetchall()
        dups = con.execute("SELECT count(*) - count(DISTINCT (series_id, ts)) FROM points_all").fetchone()
    finally:
        con.close()
    by: dict[int, list[int]] = {}
    for sid, ts in rows:
        by.setdefault(sid, []).append(ts)
    lost = polled = 0
    for ts_list in by.values():
        ts = np.array(ts_list, dtype=np.int64)
        before = ts[ts < t_fault_ns]
        if len(before) < 5 or abs(float(np.median(np.diff(before))) - p) > 0.1 * p:
            continue  # not a series polled every poll_s
        polled += 1
        window = ts[ts >= before[-1]]
        gaps = np.diff(window)
        lost += int(np.sum(np.maximum(np.rint(gaps / p).astype(np.int64) - 1, 0)))
        lost += int((t_kill_ns - window[-1]) // p)
    return lost, polled, int(dups[0]) if dups else 0


def bad_ack_points_lost(tmp: Path, points: int = 10_000, per_chunk: int = 100) -> int:
    """Points a spool no longer replays after its ack was made to name a segment beyond its last one."""
    d = tmp / "bad-ack-spool"
    spool = Spool(d, max_bytes=1 << 30, segment_bytes=64 << 10, fsync=False)
    for _ in range(points // per_chunk):
        spool.append(os.urandom(2000), per_chunk)
    spool.close()
    last = max(int(p.stem) for p in d.glob("*.seg"))
    (d / "ack").write_text(json.dumps({"segment": last + 5, "offset": 0}))
    try:
        reopened = Spool(d, max_bytes=1 << 30, segment_bytes=64 << 10, fsync=False)
    except Exception as exc:  # a spool that refuses to open replays nothing: all of it counts as lost
        print(f"bad ack: the spool did not open ({exc!r})", flush=True)
        return points
    left = reopened.depth_points
    reopened.close()
    return points - left


# ----------------------------------------------------------------------------------------------- the run


def run(tmp: Path, args: argparse.Namespace, say: Callable[[str], None]) -> dict[str, Any]:
    """The three scenarios; their figures."""
    store = tmp / "store"
    mount_tmpfs(store, STORE_MB)
    config, api_port = write_site(tmp, store, args.poll_s)
    data_dir = tmp / "var"
    db = store / "historian.duckdb"
    log = tmp / "job.log"
    result: dict[str, Any] = {}
    with SimulatorProcess(config, physics=args.physics):
        say(f"simulator up; job log {log}; historian on a {STORE_MB} MiB tmpfs at {store}")
        job = Job(config, api_port, log)
        try:
            m = job.wait("stored points", lambda m: m.get("points_written", 0) > 0, 120)
            say(f"job 1 writing ({m['points_written']:.0f} points); filling the historian's disk")
            errors0 = m.get("write_errors", 0.0)
            fill(store)
            m = job.wait("write error", lambda m: m.get("write_errors", 0) > errors0, 60)
            time.sleep(args.fault_s)
            m = job.metrics() or m
            result["storage_fault_write_errors"] = int(m.get("write_errors", 0) - errors0)
            spooled = m.get("points_spooled", 0)
            say(f"fault for {args.fault_s:.0f} s: {result['storage_fault_write_errors']} write errors, "
                f"{spooled:.0f} points spooled; clearing it")  # fmt: skip
            unfill(store)
            written = m.get("points_written", 0)
            try:
                m = job.wait(
                    "recovery", lambda m: m.get("points_written", 0) > written and m.get("spool_points", 1) == 0, 120
                )
                result["storage_fault_recovered"] = True
                say(f"recovered without a restart: {m['points_written']:.0f} points written, spool empty")
            except Chaos as exc:
                say(f"not recovered: {exc}")
                result["storage_fault_recovered"] = False

            say("filling the disk again, then kill -9")
            errors1 = job.metrics().get("write_errors", 0.0)
            t_fault = site_now_ns(data_dir)
            fill(store)
            job.wait("write error", lambda m: m.get("write_errors", 0) > errors1, 60)
            time.sleep(args.kill_after_s)
            t_kill = site_now_ns(data_dir)
            job.kill9()
        finally:
            if job.proc.poll() is None:
                job.stop()
        unfill(store)
        say("killed; fault cleared; starting the job again")
        job2 = Job(config, api_port, log)
        log_at = log.stat().st_size
        try:
            job2.wait("spool replay", lambda m: m.get("points_written", 0) > 0 and m.get("spool_points", 1) == 0, 180)
            time.sleep(2 * args.poll_s)
            say("spool replayed; filling the disk once more and stopping the job with SIGTERM")
            errors2 = job2.metrics().get("write_errors", 0.0)
            fill(store)
            job2.wait("write error", lambda m: m.get("write_errors", 0) > errors2, 60)
        finally:
            code = job2.stop()
            unfill(store)
        with log.open(errors="replace") as f:
            f.seek(log_at)
            tail = f.read()
        result["full_disk_stop_exit"] = code
        result["full_disk_stop_tracebacks"] = tail.count("Traceback")
        say(f"job 2 stopped on a full disk (exit {code}); its last lines:")
        for line in tail.strip().splitlines()[-4:]:
            say(f"  {line[:200]}")
    lost, polled, dups = points_lost(db, t_fault, t_kill, args.poll_s)
    result["kill9_points_lost"] = lost
    result["points_per_poll_interval"] = polled
    result["duplicates_after_restart"] = dups
    text = log.read_text(errors="replace")
    result["store_recoveries_logged"] = text.count("work again (reopened")
    result["tracebacks_in_job_log"] = text.count("Traceback")
    result["spool_bad_ack_points_lost"] = bad_ack_points_lost(tmp)
    return result


def main() -> int:
    """Run the bench (re-executed under ``unshare -m`` first); print the figures, the last line JSON."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fault-s", type=float, default=20.0, help="seconds the first fault lasts (default 20)")
    p.add_argument("--kill-after-s", type=float, default=10.0, help="seconds into the second fault (default 10)")
    p.add_argument("--poll-s", type=float, default=POLL_S, help=f"the site's poll interval (default {POLL_S})")
    p.add_argument("--physics", default=None, help="the simulator's physics (default: the bundled facility)")
    p.add_argument("--limit-s", type=float, default=600.0, help="give up after this many seconds (default 600)")
    p.add_argument("--keep", action="store_true", help="keep the job's log (copied to ./chaos-job.log)")
    args = p.parse_args()
    if os.environ.get(_NS_ENV) != "1":
        if shutil.which("unshare") is None or os.geteuid() != 0:
            print("bench/chaos.py: needs root and unshare(1) for a private mount namespace", file=sys.stderr)
            return 2
        env = dict(os.environ, **{_NS_ENV: "1"})
        cmd = ["unshare", "-m", sys.executable, str(Path(__file__).resolve()), *sys.argv[1:]]
        try:
            return subprocess.run(cmd, env=env, timeout=args.limit_s).returncode
        except subprocess.TimeoutExpired:
            print(f"bench/chaos.py: no result within {args.limit_s:.0f} s", file=sys.stderr)
            return 1
    t0 = time.monotonic()

    def say(text: str) -> None:
        print(f"[{time.monotonic() - t0:6.1f} s] {text}", flush=True)

    tmp = Path(tempfile.mkdtemp(prefix="aidc-chaos-"))
    try:
        result = run(tmp, args, say)
    except Chaos as exc:
        print(f"bench/chaos.py: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.keep and (tmp / "job.log").exists():
            shutil.copy(tmp / "job.log", "chaos-job.log")
        subprocess.run(["umount", str(tmp / "store")], check=False, capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
    result["seconds"] = round(time.monotonic() - t0, 1)
    ok = (
        result["storage_fault_write_errors"] > 0
        and result["storage_fault_recovered"]
        and result["kill9_points_lost"] <= result["points_per_poll_interval"]
        and result["duplicates_after_restart"] == 0
    )
    say("storage fault heals and kill -9 loses at most one poll interval: " + ("yes" if ok else "NO"))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
