"""Several sites, one central VictoriaMetrics: store-and-forward through a long central outage, then the portfolio.

Starts (loopback only, everything under a temporary directory, everything stopped at the end):
  1. the central ``victoria-metrics`` on a free port;
  2. ``--sites`` site jobs, each ``aidc demo`` of its own generated site file (its own site name, Modbus/OPC-UA ports,
     local DuckDB store kept, ``[historian] backend = "victoriametrics"`` with its disk spool) and ``--history-days 0``;
  3. after ``--warmup`` s, stops the central store for ``--outage`` s (at least 120 by default) and starts it again;
  4. waits for every site's spool to drain (a site's own ``aidc_historian spool_depth_points`` reaching the centre
     at 0 after the restart), asks the central server (``aidc serve --backend victoriametrics``) for
     ``GET /api/v1/sites``, stops the site jobs, and reconciles every point each site stored locally with the central
     store (series with the site tag, millisecond timestamp, value and quality: :mod:`historian.reconcile`).

Prints progress, then one JSON line: ``sites``, ``points_sent`` (points the sites stored locally), ``points_lost``
(those not found intact centrally; must be 0), ``central_outage_s``, ``portfolio_sites_with_pue`` and details.
Bounded by ``--budget`` seconds (default 690, under 12 minutes): a stage that runs past it stops the run.

    python bench/central.py            # the full run (about 7 minutes)
    python bench/central.py --outage 10 --warmup 20   # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aidc.clock import site_clock  # noqa: E402 - after the path set-up, as the other benches
from aidc.config import Site, load_site  # noqa: E402
from aidc.sitegen import SiteTemplate, render_site  # noqa: E402
from historian import open_historian  # noqa: E402
from historian.reconcile import Reconciliation, reconcile  # noqa: E402
from historian.victoria import CentralStore  # noqa: E402
from tests.sim_helpers import free_port_block  # noqa: E402
from tests.vm_server import VMServer, free_port  # noqa: E402

TOKEN = "central-bench-read-token"  # noqa: S105 - a throwaway token of a loopback run
NS = 1_000_000_000


class Budget:
    """The run's deadline: every wait is bounded by it."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        """Seconds left."""
        return self.end - time.monotonic()

    def check(self, stage: str) -> None:
        """Stop the run when the budget is spent."""
        if self.left() <= 0:
            raise TimeoutError(f"budget spent during: {stage}")


def say(text: str) -> None:
    """A progress line on stderr (stdout ends with the JSON line)."""
    print(f"[central {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def write_site(tmp: Path, name: str, base_port: int, racks: int, poll_s: float, url: str) -> Path:
    """A generated site file forwarding to the central store, its local DuckDB store kept."""
    text = render_site(SiteTemplate(racks=racks, name=name, base_port=base_port, opcua_port=base_port + racks + 10,
                                    poll_interval_s=poll_s, data_dir=str(tmp / name)))  # fmt: skip
    text += (
        f'\n[historian]\nbackend = "victoriametrics"\nkeep_local = true\n'
        f'[historian.remote]\nurl = "{url}"\nbackoff_initial_s = 0.5\nbackoff_max_s = 5\n'
    )
    path = tmp / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    load_site(path)  # what we wrote must load
    return path


def start_job(path: Path, log: Path) -> subprocess.Popen[bytes]:
    """One site job: ``aidc demo`` of the site file, without dashboard, API or controller (collect and forward)."""
    cmd = [sys.executable, "-m", "app.cli", "demo", "--config", str(path), "--history-days", "0",
           "--no-dashboard", "--no-api", "--no-control", "--summary-every", "30"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with log.open("ab") as out:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def stop_job(proc: subprocess.Popen[bytes], timeout_s: float = 90.0) -> int | None:
    """SIGTERM (the job flushes its writer and stops its simulator), then wait; SIGKILL past the timeout."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            say(f"job pid {proc.pid} did not stop in {timeout_s:g} s: killed")
            proc.kill()
            proc.wait()
    return proc.returncode


def get_json(url: str, token: str | None = None, timeout_s: float = 120.0) -> Any:
    """A GET on loopback, JSON decoded."""
    req = urllib.request.Request(url)  # noqa: S310 - http://127.0.0.1 only
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=timeout_s) as resp:  # noqa: S310 - loopback
        return json.loads(resp.read())


def spool_drained_since(url: str, site: str, since_ns: int) -> bool:
    """The site's own spool-depth series reached the centre at 0 with a sample taken after ``since_ns``."""
    m = f'aidc_historian_spool_depth_points{{site="{site}",backend="victoriametrics"}}'
    q = urllib.parse.urlencode({"query": f"last_over_time({m}[10m])", "nocache": "1"})
    tq = urllib.parse.urlencode({"query": f"tlast_over_time({m}[10m])", "nocache": "1"})
    try:
        value = get_json(f"{url}/api/v1/query?{q}", timeout_s=10)["data"]["result"]
        when = get_json(f"{url}/api/v1/query?{tq}", timeout_s=10)["data"]["result"]
    except OSError:
        return False
    if not value or not when:
        return False
    return float(value[0]["value"][1]) == 0.0 and float(when[0]["value"][1]) * NS > since_ns


def spooled_max(url: str, site: str) -> float | None:
    """The deepest the site's spool got during the run (its own ``spool_depth_points`` series, as the centre holds
    it): the points the outage sent through the spool."""
    m = f'aidc_historian_spool_depth_points{{site="{site}",backend="victoriametrics"}}'
    q = urllib.parse.urlencode({"query": f"max_over_time({m}[1h])", "nocache": "1"})
    result = get_json(f"{url}/api/v1/query?{q}", timeout_s=30)["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def series_without_site(url: str) -> int:
    """Series in the central store without a site tag (every forwarded series should carry one)."""
    q = urllib.parse.urlencode({"match[]": '{__name__=~".+", site=""}', "start": "0"})
    return len(get_json(f"{url}/api/v1/series?{q}", timeout_s=30)["data"])


def portfolio(url: str, sites: list[Path], budget: Budget, tmp: Path) -> dict[str, Any]:
    """``aidc serve`` over the central store: its ``GET /api/v1/sites`` answer."""
    port = free_port()
    cmd = [sys.executable, "-m", "app.cli", "serve", "--backend", "victoriametrics", "--url", url,
           *(a for p in sites for a in ("--site", str(p))), "--api-port", str(port), "--no-dashboard"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT), "AIDC_API_TOKENS": f"bench:read:{TOKEN}"}
    with (tmp / "serve.log").open("ab") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + min(120.0, budget.left())
        while True:
            try:
                return dict(get_json(f"http://127.0.0.1:{port}/api/v1/sites", TOKEN))
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"aidc serve did not answer; see {tmp / 'serve.log'}") from None
                time.sleep(1.0)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def settled(site: Site, store: CentralStore, start_ns: int, end_ns: int, budget: Budget) -> Reconciliation:
    """Reconcile the site's local store with the centre, reading again for a while when points seem missing (new
    series become searchable a moment after they are written)."""
    local = open_historian(site.config.historian.model_copy(update={"backend": "duckdb"}), site.data_dir)
    try:
        deadline = time.monotonic() + min(60.0, max(budget.left(), 5.0))
        while True:
            r = reconcile(local, store.site(site.name), site.name, start_ns, end_ns)
            if r.lost == 0 or time.monotonic() > deadline:
                return r
            time.sleep(2.0)
    finally:
        local.close()


def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """The whole scenario; returns the figures."""
    budget = Budget(args.budget)
    vm = VMServer(tmp / "central-vm", free_port())
    vm.start()
    try:
        return scenario(args, tmp, vm, budget)
    finally:
        vm.stop()


def scenario(args: argparse.Namespace, tmp: Path, vm: VMServer, budget: Budget) -> dict[str, Any]:
    """Sites, outage, drain, portfolio and reconciliation against the started central store ``vm``."""
    say(f"central victoria-metrics on {vm.url}")
    names = [f"site{chr(ord('a') + i)}" for i in range(args.sites)]
    # Each site's devices on a block of free loopback ports (Modbus from the base, OPC-UA above, control API below).
    paths = [write_site(tmp, n, free_port_block(args.racks + 20), args.racks, args.poll, vm.url) for n in names]
    sites = [load_site(p) for p in paths]
    jobs: list[subprocess.Popen[bytes]] = []
    store = CentralStore(vm.url)
    t0_ns = time.time_ns()
    outage_s = 0.0
    try:
        jobs = [start_job(p, tmp / f"{n}.log") for p, n in zip(paths, names, strict=True)]
        while set(names) - set(store.site_names()):  # every site's first points arrived
            budget.check("site jobs starting")
            if any(j.poll() is not None for j in jobs):
                raise RuntimeError(f"a site job exited at start; see {tmp}/*.log")
            time.sleep(2.0)
        say(f"{len(names)} site jobs forwarding ({args.racks} racks each, {args.poll:g} s polls); warm-up")
        time.sleep(min(args.warmup, max(budget.left() - args.outage - 240, 0)))
        vm.stop()
        down = time.monotonic()
        say(f"central store stopped for {args.outage:g} s (the sites spool)")
        time.sleep(args.outage)
        budget.check("central outage")
        vm.start()
        outage_s = time.monotonic() - down
        restart_ns = time.time_ns()
        # A simulated site stamps its points with its own clock (the simulation starts on a whole minute).
        since = {s.name: site_clock(s.data_dir).now_ns() for s in sites}
        say(f"central store back after {outage_s:.0f} s; waiting for the spools to drain")
        waiting = set(names)
        while waiting:
            budget.check(f"spools draining ({', '.join(sorted(waiting))})")
            waiting = {n for n in waiting if not spool_drained_since(vm.url, n, since[n])}
            time.sleep(2.0)
        drain_s = (time.time_ns() - restart_ns) / NS
        say(f"spools drained in {drain_s:.0f} s; asking the central server for its portfolio")
        answer = portfolio(vm.url, paths, budget, tmp)
    finally:
        codes = [stop_job(j) for j in jobs]
    say(f"site jobs stopped (exit {codes}); reconciling every local point with the centre")
    vm.flush()
    end_ns = time.time_ns() + 60 * NS
    recs = [settled(s, store, t0_ns - 3600 * NS, end_ns, budget) for s in sites]
    unsited = series_without_site(vm.url)
    spooled = {n: spooled_max(vm.url, n) for n in names}
    store.close()
    rows = answer.get("sites", [])
    with_pue = [r["site"] for r in rows if r.get("pue") is not None]
    return {
        "sites": len(names),
        "points_sent": sum(r.local_points for r in recs),
        "points_lost": sum(r.lost for r in recs),
        "central_outage_s": round(outage_s, 1),
        "portfolio_sites_with_pue": len(with_pue),
        "portfolio_sites": len(rows),
        "pue": {r["site"]: [r.get("pue"), r.get("pue_method")] for r in rows},
        "portfolio_notes": {r["site"]: r.get("notes") for r in rows if r.get("notes")},
        "drain_s": round(drain_s, 1),
        "spool_depth_max_points": spooled,
        "points_extra_centrally": sum(r.extra for r in recs),
        "series_without_site": unsited,
        "job_exit_codes": codes,
        "examples": [e for r in recs for e in r.examples][:6],
        "racks_per_site": args.racks,
        "poll_s": args.poll,
    }


def main() -> int:
    """Parse arguments, run in a temporary directory, print the JSON line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sites", type=int, default=2, help="site jobs (default 2)")
    p.add_argument("--racks", type=int, default=2, help="racks per site (default 2)")
    p.add_argument("--poll", type=float, default=2.0, help="poll interval of every device, s (default 2)")
    p.add_argument("--warmup", type=float, default=45.0, help="seconds of forwarding before the outage (default 45)")
    p.add_argument("--outage", type=float, default=125.0, help="seconds the central store is down (default 125)")
    p.add_argument("--budget", type=float, default=690.0, help="the run's bound in seconds (default 690)")
    args = p.parse_args()
    if args.sites < 2 or args.sites > 9 or args.racks < 1:
        p.error("--sites 2..9 and --racks >= 1")
    with tempfile.TemporaryDirectory(prefix="aidc-central-") as tmp:
        result = run(args, Path(tmp))
    print(json.dumps(result))
    return 0 if result["points_lost"] == 0 and result["portfolio_sites_with_pue"] == result["sites"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
