"""``aidc api`` (serve the REST API for a site) and ``aidc api-token`` (make a token and its hashed file entry)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from aidc.errors import AidcError, ConfigError
from api.auth import ENV_VAR, TokenStore, token_file_entry
from api.server import DEFAULT_HOST, DEFAULT_PORT


def register(sub: Any) -> None:
    """Add ``api`` and ``api-token``."""
    p = sub.add_parser("api", help="serve the REST API (OpenAPI at /docs, Prometheus at /metrics)")
    p.add_argument("--config", type=Path, required=True, help="site file")
    p.add_argument("--host", default=DEFAULT_HOST, help=f"address to bind (default {DEFAULT_HOST})")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"TCP port (default {DEFAULT_PORT})")
    p.add_argument("--tokens", type=Path, help=f"token file of hashes (aidc api-token); also read: ${ENV_VAR}")
    p.add_argument("--weather", type=Path, help="Open-Meteo hourly forecast file for /forecast/pue (JSON or CSV)")
    p.set_defaults(func=cmd_api)

    t = sub.add_parser("api-token", help="create an API token; prints it once and the hashed entry for --tokens")
    t.add_argument("--name", required=True, help="who uses it, e.g. scheduler")
    t.add_argument("--role", choices=("read", "operator"), default="read", help="read (default) or operator")
    t.add_argument("--append", type=Path, help="append the hashed entry to this token file")
    t.set_defaults(func=cmd_token)


def load_tokens(path: Path | None) -> TokenStore:
    """Tokens from the environment and the file; at least one is needed."""
    store = TokenStore.from_env()
    if path is not None:
        store = store.merged(TokenStore.from_file(path))
    if not len(store):
        raise ConfigError(f"no API tokens: set {ENV_VAR}=name:role:token or give --tokens FILE (aidc api-token)")
    return store


def cmd_api(args: argparse.Namespace) -> int:
    """Open the historian and serve until Ctrl-C."""
    import duckdb
    import uvicorn

    from aidc.config import load_site
    from analytics.forecast.service import ForecastService
    from api.app import create_app
    from api.context import ApiContext
    from api.server import config
    from historian import open_historian

    if not 1 <= args.port <= 65535:
        raise ConfigError(f"--port {args.port}: not a TCP port")
    tokens = load_tokens(args.tokens)
    site = load_site(args.config)
    try:
        hist = open_historian(site.config.historian, site.data_dir)
    except duckdb.IOException as exc:
        raise AidcError(f"cannot open the historian under {site.data_dir}: {str(exc).splitlines()[0]}") from None
    with hist:
        ctx = ApiContext(site=site, historian=hist, tokens=tokens)
        # The same live forecast service the main job runs, started now so /forecast has figures soon.
        ctx.forecasts = ForecastService.for_historian(hist, site, ctx.clock, lock=ctx.lock, weather_file=args.weather)
        app = create_app(ctx)
        print(f"aidc api: site {site.name} on http://{args.host}:{args.port} (docs at /docs)", file=sys.stderr)
        ctx.forecasts.start()
        try:
            uvicorn.Server(config(app, args.host, args.port)).run()
        finally:
            ctx.forecasts.stop(timeout_s=1.0)  # a fit in progress is abandoned, not waited for
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    """Print a new token (once) and its hashed entry, optionally appending the entry to a token file."""
    token, entry = token_file_entry(args.name, args.role)
    if args.append is not None:
        with args.append.open("a", encoding="utf-8") as f:
            f.write(("\n" if args.append.stat().st_size else "") + entry)
        print(f"appended {args.name} ({args.role}) to {args.append}", file=sys.stderr)
    else:
        sys.stdout.write(entry)
    print(f"token (shown once, give it to {args.name}): {token}", file=sys.stderr)
    return 0
