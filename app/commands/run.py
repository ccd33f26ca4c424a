"""``aidc run`` (the main job against a facility) and ``aidc demo`` (the same against the simulated facility)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import secrets
import signal
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aidc import loop as aidc_loop
from aidc.config import Site, load_site
from aidc.errors import ConfigError
from aidc.sitegen import SiteTemplate, render_site
from analytics.alarms.engine import AlarmEngine
from analytics.alarms.prediction import FaultPredictionService
from analytics.forecast.service import ForecastService, facility_clock
from app.backfill import MIN_DAYS, has_history
from app.backfill_job import DAYS_ENV, FIRST_FIT_HISTORY, history_days, start_history
from app.job import MainJob, Service
from app.power_guard_service import start_power_guard
from app.services import ApiService, OnLoopSupervisor, ThreadService
from dashboards.alarm_loop import AlarmLoop
from dashboards.app import DashboardConfig, DashboardService
from dashboards.auth import Role, UserStore, random_password
from dashboards.data import DashboardData

DEMO_DIR = Path("var/demo")
DEMO_POLL_S = 1.0  # the demo polls every second so the dashboard's live values move (real sites choose their own)
DEMO_OPERATOR = "operator"
DEMO_ADMIN = "admin"
STOP_GRACE_S = 10.0  # after Ctrl-C / SIGTERM, how long the collectors get to close before being cancelled again
CONTROL_CONNECT_S = 30.0  # wall seconds the supervisor waits for its devices' connections before it starts anyway

log = logging.getLogger(__name__)


def register(sub: Any) -> None:
    """Add ``run`` and ``demo``."""
    r = sub.add_parser("run", help="run the main job (collectors, historian, live summary) for a site")
    r.add_argument("--config", type=Path, required=True, help="site file")
    _common(r)
    r.set_defaults(func=cmd_run)

    d = sub.add_parser("demo", help="start the simulated facility and run the main job against it")
    d.add_argument("--config", type=Path, help=f"site file (default: {DEMO_DIR}/site.toml, generated if missing)")
    d.add_argument("--racks", type=int, default=32, help="racks of the generated demo facility (default 32)")
    d.add_argument("--speed", type=float, default=None, help="simulated seconds per wall second (default: site's)")
    d.add_argument("--history-days", type=int, default=None, metavar="N",
                   help="with an empty historian, simulate the last N days first (0: none; default: "
                   f"${DAYS_ENV}, else from the 1st of last month and at least {MIN_DAYS} days)")  # fmt: skip
    _common(d)
    d.set_defaults(func=cmd_demo)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--duration", type=float, default=None, help="stop after this many wall seconds")
    p.add_argument("--summary-every", type=float, default=5.0, help="seconds between summary lines (default 5)")
    p.add_argument("--port", type=int, default=None, help="dashboard port (default: the site's, else 8050)")
    p.add_argument("--no-dashboard", action="store_true", help="run without the operator dashboard")
    p.add_argument("--no-control", action="store_true", help="run without the cooling supervisor")
    p.add_argument("--api-port", type=int, default=None, help="REST API port (default: the site's [api] port, 8081)")
    p.add_argument("--no-api", action="store_true", help="run without the REST API and /metrics")


def _sigterm_as_interrupt() -> None:
    """Outside the event loop (start-up, shutdown), SIGTERM stops the command the way Ctrl-C does."""
    aidc_loop.stop_on_sigterm()


def start_supervisor(job: MainJob, args: argparse.Namespace) -> OnLoopSupervisor | None:
    """The cooling supervisor on the job's live state, writing through the setpoint writer (``[control]`` sets its
    mode; advisory by default: it decides and logs, and writes nothing until an operator switches it to auto).

    It runs beside the collectors and stops in the job's stop hooks, while devices are still connected, so that in
    auto mode it reverts every setpoint it wrote. The dashboard and the API reach it through the returned proxy,
    which runs their calls on the job's event loop. None (with one line saying why) when ``--no-control`` is given
    or the site's ``[control]`` table cannot be used.
    """
    if args.no_control:
        return None
    from collectors.writer import SetpointWriter
    from control.supervisor import Supervisor

    try:
        sup = Supervisor(job.site, job.live, SetpointWriter(job.engine, job.site.data_dir / "audit"), job.clock,
                         publish=job.writer)
    except ConfigError as exc:
        _say(f"cooling supervisor not started: {exc}")
        return None
    job.engine.add_sink(sup.sink)
    stop = asyncio.Event()
    running: list[asyncio.Task[None]] = []
    control = OnLoopSupervisor(sup)
    deciding: list[bool] = []  # set once the supervisor's loop runs (for /health)

    async def connected_then_run() -> None:
        # Its first heartbeat and writes go to devices the collectors have connected to (a device still down after
        # CONTROL_CONNECT_S does not keep the supervisor from starting: it holds on that device's missing inputs).
        links = {id(link): link for link in (job.engine.link(d) for d in sup.controlled)}.values()

        async def all_connected() -> None:
            for link in links:
                await link.connected.wait()

        async def first_readings() -> None:
            # Connected is not yet read: the first decision waits for every input's first poll, so a start does
            # not log a hold on "missing" inputs (a device still silent after the wait is held on, as before).
            await all_connected()
            while not sup.inputs_ready():  # noqa: ASYNC110 - the live state has no event per input; a poll every 0.5 s is bounded by the wait
                await asyncio.sleep(0.5)

        waits = [asyncio.ensure_future(first_readings()), asyncio.ensure_future(stop.wait())]
        await asyncio.wait(waits, timeout=CONTROL_CONNECT_S, return_when=asyncio.FIRST_COMPLETED)
        for w in waits:
            w.cancel()
        deciding.append(True)
        await sup.run(stop)

    async def start() -> None:
        control.bind(asyncio.get_running_loop())
        running.append(asyncio.create_task(connected_then_run(), name="cooling supervisor"))

    async def finish() -> None:
        stop.set()
        for task in running:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        control.bind(None)

    job.on_start.append(start)
    job.on_stop.insert(0, finish)
    job.ready_checks["cooling supervisor"] = lambda: bool(deciding) and bool(running) and not running[0].done()
    _say(f"cooling supervisor: mode {sup.mode} (change it on the dashboard's Control page or the REST API as an "
         "operator)")  # fmt: skip
    return control


async def _run_until_signalled(job: MainJob, args: argparse.Namespace) -> None:
    """Run the main job until its duration ends or Ctrl-C / SIGTERM, which cancel it so its teardown runs in order.

    With ``aidc run`` against real devices, or a simulator started elsewhere, device connections may close under
    the collectors while they shut down: from the signal on, those expected teardown errors are not logged.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    stopping: list[str] = []

    def stop(name: str) -> None:
        if stopping or task is None:
            return
        stopping.append(name)
        _say(f"{name}: stopping (dashboard, collectors, historian, then the simulator) ...")
        for logger in ("asyncua", "collectors", "pymodbus"):
            logging.getLogger(logger).setLevel(logging.CRITICAL)
        task.cancel()
        loop.call_later(STOP_GRACE_S, force)

    def force() -> None:
        # A collector link can swallow the first cancellation (a transport error while its poll tasks are cancelled
        # turns into an ExceptionGroup it handles as a lost connection); cancel again so the shutdown completes.
        if task is not None and not task.done():
            log.warning("shutdown still waiting after %g s; cancelling the collectors again", STOP_GRACE_S)
            task.cancel()
            loop.call_later(STOP_GRACE_S, force)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop, sig.name)
    try:
        await job.run(duration_s=args.duration, summary_every_s=args.summary_every, printer=_say)
    except asyncio.CancelledError:
        if not stopping:
            raise
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        _sigterm_as_interrupt()


def job_stats(job: MainJob) -> Callable[[], dict[str, float]]:
    """Writer and collector figures for the Data quality page and the pipeline alarms."""
    last = [time.monotonic(), float(job.engine.output.samples)]

    def stats() -> dict[str, float]:
        now, samples = time.monotonic(), float(job.engine.output.samples)
        rate = (samples - last[1]) / max(now - last[0], 1e-9)
        if now - last[0] > 5.0:
            last[:] = [now, samples]
        return {"points_written": float(job.writer.points_written), "write_errors": float(job.writer.write_errors),
                "pending_batches": float(job.writer.pending_batches), "points_per_s": rate}

    return stats


def build_forecasts(job: MainJob) -> ForecastService:
    """The one live forecast service (IT load, PUE) on the job's historian, for the dashboard and the API alike;
    the job starts it with its other services and stops it before the historian closes."""
    weather = DashboardConfig.from_site(job.site).weather_path(job.site)
    return ForecastService.for_historian(job.historian, job.site, facility_clock(job.clock), weather_file=weather)


def start_api(
    job: MainJob,
    args: argparse.Namespace,
    *,
    supervisor: OnLoopSupervisor | None,
    alarms: AlarmEngine,
    forecasts: ForecastService,
    predictor: FaultPredictionService,
) -> ApiService | None:
    """The REST API on the job's parts (``[api]`` table, ``--api-port``), its port bound now; None when disabled
    (``--no-api``, or ``[api] enabled = false`` without an ``--api-port``)."""
    if args.no_api or (not job.site.config.api.enabled and args.api_port is None):
        _say("REST API: off (" + ("--no-api" if args.no_api else "[api] enabled = false") + ")")
        return None
    if args.api_port is not None and not 1 <= args.api_port <= 65535:
        raise ConfigError(f"--api-port {args.api_port}: not a TCP port")
    return ApiService(job, port=args.api_port, controller=supervisor, alarm_engine=alarms, forecasts=forecasts,
                      predictive_alarms=predictor.alarms, printer=_say)


def start_parts(job: MainJob, args: argparse.Namespace, *, demo: bool) -> tuple[DashboardService | None, AlarmEngine]:
    """The supervisor, the one alarm engine, fault prediction, the live forecasts, the REST API and the dashboard,
    all on the job's parts.

    Returns the dashboard (stopped by the caller after the loop) and the alarm engine (closed by the caller).
    """
    supervisor = start_supervisor(job, args)
    start_power_guard(job)
    alarms = AlarmEngine.from_site(job.site)
    forecasts = build_forecasts(job)
    predictor = FaultPredictionService(job.site, job.historian, alarms, job.clock)  # raises through `alarms`
    api = start_api(job, args, supervisor=supervisor, alarms=alarms, forecasts=forecasts, predictor=predictor)
    history = None
    if demo:  # an empty historian gets its past simulated first; the live supervisor goes on with what it learned
        core = getattr(supervisor.supervisor, "core", None) if supervisor is not None else None
        # The forecasts and the fault detector fit on the history before /health turns 200 (their services then
        # find the fits up to date), so every figure is there as soon as the job is up.
        fits = [lambda: forecasts.first_fit(FIRST_FIT_HISTORY), lambda: predictor.step(job.clock.now_ns())]
        history = start_history(job, history_days(getattr(args, "history_days", None)), core=core, fits=fits,
                                printer=_say)  # fmt: skip
    elif not has_history(job.historian, job.site):
        _say(f"no history in {job.site.data_dir}: a new, empty historian")
    if history is not None and api is not None:
        # The API answers /health (503, with the backfill's progress) while the history is simulated.
        job.before_collect.insert(0, api.start)
        job.on_stop.append(api.stop)
        api = None
    # Background services: started in this order once the collectors run, stopped in reverse before they close
    # (and before the historian closes); the forecasts and the fault detector fit at their first pass.
    services: list[Service | None] = [
        ThreadService("live forecasts", forecasts.start, lambda: forecasts.stop(1.0)),
        ThreadService("fault prediction", predictor.start, predictor.stop),
        api,
    ]
    for service in services:
        if service is not None:
            job.add_service(service)
    dashboard = start_dashboard(job, args, demo=demo, supervisor=supervisor, alarms=alarms, forecasts=forecasts)
    if dashboard is None:  # the dashboard evaluates the alarm rules while it serves; without it the job does
        data = DashboardData(job.site, job.live, job.historian, job.clock, alarms, supervisor=supervisor,
                             job_stats=job_stats(job))
        loop = AlarmLoop(data, DashboardConfig.from_site(job.site).alarm_every_s)
        job.add_service(ThreadService(loop.name, loop.start, loop.stop))
    return dashboard, alarms


def start_dashboard(
    job: MainJob,
    args: argparse.Namespace,
    *,
    demo: bool,
    supervisor: OnLoopSupervisor | None = None,
    alarms: AlarmEngine,
    forecasts: ForecastService | None = None,
) -> DashboardService | None:
    """The dashboard on the job's live state, historian and alarm engine; the demo gets an operator account."""
    if args.no_dashboard:
        return None
    config = DashboardConfig.from_site(job.site, port=args.port)
    users = UserStore(config.users_path(job.site))
    data = DashboardData(job.site, job.live, job.historian, job.clock, alarms, supervisor=supervisor,
                         job_stats=job_stats(job))
    service = DashboardService(data, users, config, forecasts=forecasts).start()
    _say(f"dashboard: {service.url} ({len(data.racks)} racks, {len(alarms.rules)} alarm rules)")
    if demo:
        password = random_password()
        users.add(DEMO_OPERATOR, password, Role.OPERATOR)
        _say(f"  sign in as {DEMO_OPERATOR!r} with password {password}  (new each demo start; shown only now)")
        admin_password = random_password()
        users.add(DEMO_ADMIN, admin_password, Role.ADMIN)
        _say(f"  user administration: sign in as {DEMO_ADMIN!r} with password {admin_password}")
    elif not users.names():
        _say(f"  no dashboard users yet: add one with `aidc user add --config {job.site.path} NAME --role operator`")
    return service


def _say(text: str) -> None:
    print(text, flush=True)


def cmd_run(args: argparse.Namespace) -> int:
    """Run the main job until Ctrl-C or ``--duration``."""
    site = load_site(args.config)
    _sigterm_as_interrupt()
    job = MainJob.build(site)
    dashboard, alarms = start_parts(job, args, demo=False)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            aidc_loop.run(_run_until_signalled(job, args))
    finally:
        if dashboard is not None:
            dashboard.stop()
        alarms.close()
    return stop_status(job)


def stop_status(job: MainJob) -> int:
    """The exit status of a stopped job: 1 when points were lost at stop (store and spool both failing, the job's
    log said how many), else 0 (a store that failed to close kept its data in its WAL and the spool)."""
    return 1 if job.lost_at_stop else 0


DEMO_HISTORIAN = (
    '\n[historian]\nresolution = { "gpu_rack,*,gpu_power_w" = 0.001, "gpu_rack,*,gpu_temp_c" = 1, '
    '"gpu_rack,*,gpu_util_pct" = 1 }\n'
)


def demo_site(config: Path | None, racks: int) -> Path:
    """The demo's site file: the one given, or a generated one kept under var/demo."""
    if config is not None:
        return config
    path = DEMO_DIR / "site.toml"
    if path.exists():
        existing = load_site(path)
        if sum(1 for _ in existing.racks()) == racks:
            return path
    # The site's data directory is the demo folder itself (relative paths resolve against the site file).
    template = SiteTemplate(racks=racks, poll_interval_s=DEMO_POLL_S, tenants=True, data_dir=".")
    # The simulated GPUs publish full-precision doubles; stored at what NVML reports (whole mW, °C and %), the demo's
    # history grows at a tenth of the rate (README, the historian). The live state and the controller keep every digit.
    text = render_site(template) + DEMO_HISTORIAN
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def demo_secrets(site: Site) -> list[str]:
    """Demo only: a random value for every device secret the site names (SNMP keys and community, Redfish
    password) whose environment variable is unset, so the simulator and the collectors agree; the names set."""
    names: set[str] = set()
    for dev in site.devices:
        c = dev.config
        if c.snmp is not None:
            names |= {n for n in (c.snmp.community_env, c.snmp.auth_key_env, c.snmp.priv_key_env) if n}
        if c.protocol == "redfish" and c.redfish.password_env:
            names.add(c.redfish.password_env)
    missing = sorted(n for n in names if not os.environ.get(n))
    for name in missing:
        os.environ[name] = secrets.token_urlsafe(18)  # the simulator child inherits the environment
    return missing


def listening_lines(site: Site) -> list[str]:
    """Where every device listens, grouped by endpoint so gateways and shared servers read clearly."""
    by_endpoint: dict[str, list[str]] = defaultdict(list)
    for dev in site.devices:
        c = dev.config
        key = f"modbus://{c.host}:{c.port}" if c.protocol == "modbus" else c.address
        label = f"{dev.name} (unit {c.unit_id})" if c.protocol == "modbus" else dev.name
        by_endpoint[key].append(label)
    lines = []
    for endpoint, names in by_endpoint.items():
        shown = ", ".join(names)
        if len(names) > 4:
            shown = f"{', '.join(names[:3])} ... {names[-1]} ({len(names)} devices)"
        lines.append(f"  {endpoint:<40} {shown}")
    return lines


def cmd_demo(args: argparse.Namespace) -> int:
    """Start the simulator process, then the main job against it; Ctrl-C stops both."""
    from simulators.process import SimulatorProcess  # the demo is the one place the app starts simulators

    if args.racks < 1:
        raise ConfigError(f"--racks {args.racks}: need at least one rack")
    path = demo_site(args.config, args.racks)
    site = load_site(path)
    _say(f"aidc demo: site {site.name} from {path} ({sum(1 for _ in site.racks())} racks, {len(site.devices)} devices)")
    for name in demo_secrets(site):
        _say(f"demo: {name} is not set; generated one for this run (the simulator and the collectors share it)")
    _sigterm_as_interrupt()  # SIGTERM as Ctrl-C: the simulator child is stopped in the finally below
    _say("[1/4] starting the simulated facility (its own process) ...")
    # The simulated devices must outlive the manager while it shuts down (collectors close their sessions, the
    # supervisor reverts setpoints), so the simulator runs in its own session, out of reach of the terminal's
    # Ctrl-C, and is stopped with SIGTERM last.
    sim = SimulatorProcess(path, speed=args.speed, new_session=True)
    dashboard = alarms = None
    status = 0
    try:
        sim.start()
        _say(f"simulated facility ready; every device answers on {site.config.simulation.bind}:")
        for line in listening_lines(site):
            _say(line)
        _say(f"fault-injection API (loopback only): http://127.0.0.1:{site.config.simulation.control_port}/faults")
        _say("[2/4] opening the historian and planning the collectors ...")
        job = MainJob.build(site)
        _say(f"historian: {type(job.historian).__name__} under {site.data_dir}")
        _say("[3/4] starting the cooling supervisor, alarms, the REST API and the operator dashboard ...")
        dashboard, alarms = start_parts(job, args, demo=True)
        first = "simulating the history, then " if "history backfill" in job.ready_checks else ""
        _say(f"[4/4] {first}collecting (Ctrl-C stops everything) ...")
        aidc_loop.run(_run_until_signalled(job, args))
        status = stop_status(job)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM before the job ran (e.g. while the simulator starts)
        _say("interrupted during start-up")
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the child's shutdown short
        if dashboard is not None:
            dashboard.stop()
            print("dashboard stopped", file=sys.stderr)
        if alarms is not None:
            alarms.close()
        code = sim.stop()
        print(f"simulated facility stopped (exit {code})", file=sys.stderr)
    return status
