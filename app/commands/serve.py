"""``aidc serve``: a central aidc over the store that several sites forward to.

It runs no collectors and opens no site's embedded historian (each site job keeps its own DuckDB file and
store-and-forward spool): it reads the central VictoriaMetrics through a read-only view per site and serves the REST
API, whose ``GET /api/v1/sites`` answers for every site, and the Portfolio dashboard. Each site's file is given
with ``--site`` (the centre needs its devices and meters to compute its figures); a site found in the store without
one is listed with that note. The other API routes answer for the first site file given (the "home" site).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from aidc import loop as aidc_loop
from aidc.clock import site_clock
from aidc.config import Site, load_site
from aidc.errors import ConfigError
from api.app import create_app
from api.auth import TokenStore
from api.cli import load_tokens
from api.context import ApiContext
from api.server import DEFAULT_HOST, DEFAULT_PORT, ApiServer, listen
from api.sites import Portfolio, facility_trend
from dashboards.auth import UserStore
from dashboards.portfolio_app import PortfolioService
from historian.victoria import CentralStore

DEFAULT_USERS = Path("var/central/dashboard-users.json")
BACKENDS = ("victoriametrics",)  # reads need the store's label index (site discovery) and PromQL


def register(sub: Any) -> None:
    """Add ``serve``."""
    p = sub.add_parser("serve", help="central aidc: portfolio API and dashboard over the store the sites forward to")
    p.add_argument("--backend", choices=BACKENDS, required=True, help="the central store's kind")
    p.add_argument("--url", required=True, help="the central store, e.g. http://127.0.0.1:8428")
    p.add_argument(
        "--site",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="a site's file (repeat for each site; the first is the home site of the other routes)",
    )
    p.add_argument("--host", default=DEFAULT_HOST, help=f"address to bind (default {DEFAULT_HOST})")
    p.add_argument("--api-port", type=int, default=DEFAULT_PORT, help=f"REST API port (default {DEFAULT_PORT})")
    p.add_argument("--tokens", type=Path, help="API token file (aidc api-token); also read: $AIDC_API_TOKENS")
    p.add_argument("--port", type=int, default=8050, help="dashboard port (default 8050)")
    p.add_argument(
        "--users",
        type=Path,
        default=DEFAULT_USERS,
        help=f"dashboard users file (default {DEFAULT_USERS}; add users with UserStore / aidc user)",
    )
    p.add_argument("--no-dashboard", action="store_true", help="serve the API only")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.set_defaults(func=cmd_serve)  # fmt: skip


def load_sites(paths: list[Path]) -> list[Site]:
    """The site files, each site named once; ConfigError names the file of a repeated name."""
    if not paths:
        raise ConfigError("--site: give at least one site file (the centre computes each site's figures from it)")
    sites: dict[str, Site] = {}
    for path in paths:
        site = load_site(path)
        if site.name in sites:
            raise ConfigError(f"--site {path}: site {site.name!r} is already given by {sites[site.name].path}")
        sites[site.name] = site
    return list(sites.values())


def clock_of(site: Site) -> Callable[[], pd.Timestamp]:
    """The site's "now" as every command resolves it (:func:`aidc.clock.site_clock`): a simulated site's published
    clock where its data directory is on this machine, else wall time; read at each call, as a site may start later."""

    def now() -> pd.Timestamp:
        return pd.Timestamp(site_clock(site.data_dir).now_ns(), unit="ns", tz="UTC")

    return now


def central_contexts(store: CentralStore, sites: list[Site], tokens: TokenStore) -> dict[str, ApiContext]:
    """One API context per site, each on its read-only view of the central store and the site's clock (no live
    state, no job parts; predictive alarms stay with the site job, which learns them)."""
    return {
        s.name: ApiContext(
            site=s, historian=store.site(s.name), tokens=tokens, clock=clock_of(s), predictive_alarms=list
        )
        for s in sites
    }


class PortfolioFigures:
    """The dashboard's source: the portfolio's rows and each site's facility-power trend from its context."""

    def __init__(self, portfolio: Portfolio) -> None:
        self.portfolio = portfolio

    def rows(self) -> list[dict[str, Any]]:
        """The ``/api/v1/sites`` rows."""
        return self.portfolio.rows()

    def trend(self, site: str, hours: float) -> pd.DataFrame:
        """Facility power of a site with a site file (empty for the others)."""
        ctx = self.portfolio.contexts.get(site)
        if ctx is None:
            return pd.DataFrame({"ts": pd.Series([], dtype="datetime64[ns, UTC]"), "kw": pd.Series([], dtype=float)})
        return facility_trend(ctx, hours)


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the API (and the dashboard) until Ctrl-C or ``--duration``."""
    for name in ("api_port", "port"):
        if not 1 <= getattr(args, name) <= 65535:
            raise ConfigError(f"--{name.replace('_', '-')} {getattr(args, name)}: not a TCP port")
    aidc_loop.stop_on_sigterm()  # SIGTERM stops it as Ctrl-C does
    sites = load_sites(args.site)
    tokens = load_tokens(args.tokens)
    store = CentralStore(args.url)
    contexts = central_contexts(store, sites, tokens)
    portfolio = Portfolio(contexts, store.site_names)
    home = contexts[sites[0].name]
    home.portfolio = portfolio
    sock = listen(args.host, args.api_port)  # a taken port is one line before anything starts
    api = ApiServer(create_app(home), sock=sock).start()
    dashboard = None
    try:
        print(f"aidc serve: {len(sites)} site files over {args.backend} {args.url}; REST API {api.url} "
              f"(GET /api/v1/sites, docs at /docs)", file=sys.stderr, flush=True)  # fmt: skip
        if not args.no_dashboard:
            args.users.parent.mkdir(parents=True, exist_ok=True)
            users = UserStore(args.users)
            dashboard = PortfolioService(PortfolioFigures(portfolio), users, bind=args.host, port=args.port).start()
            print(f"aidc serve: portfolio dashboard {dashboard.url} (users: {users.path})", file=sys.stderr,
                  flush=True)  # fmt: skip
        deadline = None if args.duration is None else time.monotonic() + args.duration
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.5 if deadline is None else max(0.0, min(0.5, deadline - time.monotonic())))
    except KeyboardInterrupt:
        pass
    finally:
        if dashboard is not None:
            dashboard.stop()
        api.stop()
        store.close()
    return 0
