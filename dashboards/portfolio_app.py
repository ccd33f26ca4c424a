"""The central server's dashboard: the Portfolio page of every site, behind the same sign-in as a site's dashboard.

A central aidc (``aidc serve``) collects nothing and holds no site's live state, so it serves this app rather than the
per-site pages; ``PortfolioService(source, users, bind=..., port=...).start()`` serves it and ``stop()`` ends it.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import dash
from dash import Input, Output, dcc, html
from werkzeug.serving import BaseWSGIServer, make_server

from aidc.errors import AidcError
from dashboards.auth import UserStore
from dashboards.callback_guard import guard_callbacks
from dashboards.pages import portfolio
from dashboards.pages.portfolio import PortfolioSource
from dashboards.sessions import SessionStore
from dashboards.web import SESSIONS_EXTENSION, current_user, secure

log = logging.getLogger(__name__)

PAGES = [("/", "Portfolio")]


def _nav() -> html.Div:
    who = current_user()
    user = f"{who[0]} ({who[1].label})" if who else ""
    links = [dcc.Link(label, href=href, className="active") for href, label in PAGES]
    return html.Div(
        [html.Strong("aidc central"), *links,
         html.Span([user, " · ", html.A("sign out", href="/logout")], className="who", id="who")],
        className="nav",
    )  # fmt: skip


def create_portfolio_app(
    source: PortfolioSource, users: UserStore, *, secret_env: str | None = None, secure_cookies: bool = False
) -> dash.Dash:
    """The Dash app with the Portfolio page, secured like a site's dashboard."""
    app = dash.Dash(
        __name__,
        title="aidc · portfolio",
        suppress_callback_exceptions=True,
        assets_folder=str(Path(__file__).with_name("assets")),
        update_title="",
    )
    secure(app.server, users, secret_env=secret_env, secure_cookies=secure_cookies)
    app.layout = html.Div([dcc.Location(id="url"), html.Div(id="nav"), html.Div(id="page", className="page")])

    @app.callback(Output("nav", "children"), Output("page", "children"), Input("url", "pathname"))
    def route(path: str | None) -> tuple[Any, Any]:
        if (path or "/") not in ("/", "/portfolio"):
            return _nav(), html.Div(f"No page at {path}.", className="msg")
        return _nav(), portfolio.layout(source)

    portfolio.register(app, source)
    guard_callbacks(app)
    return app


class PortfolioService:
    """The central dashboard's web server on a thread."""

    def __init__(self, source: PortfolioSource, users: UserStore, *, bind: str = "127.0.0.1", port: int = 8050,
                 secret_env: str | None = None, secure_cookies: bool = False) -> None:  # fmt: skip
        self.bind, self.port = bind, port
        self.app = create_portfolio_app(source, users, secret_env=secret_env, secure_cookies=secure_cookies)
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Where the dashboard answers."""
        port = self._server.server_port if self._server is not None else self.port
        return f"http://{self.bind}:{port}"

    def start(self) -> PortfolioService:
        """Bind the port (AidcError names it when taken) and serve."""
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        try:
            self._server = make_server(self.bind, self.port, self.app.server, threaded=True)
        except OSError as exc:
            raise AidcError(f"--port: cannot listen on {self.bind}:{self.port}: {exc.strerror}") from None
        self._thread = threading.Thread(target=self._server.serve_forever, name="portfolio http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        sessions = self.app.server.extensions.get(SESSIONS_EXTENSION)
        if isinstance(sessions, SessionStore):
            sessions.flush()
        if self._thread is not None:
            self._thread.join(timeout=10)
