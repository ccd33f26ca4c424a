"""The operator dashboard: a multi-page Dash app behind a sign-in, served from a thread of the main job.

``DashboardService(data, users, config).start()`` serves it on ``http://127.0.0.1:8050`` (by default), evaluates
the alarms every ``alarm_every_s`` and draws the live forecast service's IT-load and PUE forecasts (the main job's,
handed over with ``forecasts=``; else one of its own that it starts); ``stop()`` ends them all. Pages read only
:class:`dashboards.data.DashboardData` (the live state and the historian) and the forecast service's latest state.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import dash
from dash import Input, Output, dcc, html
from werkzeug.serving import BaseWSGIServer, make_server

from aidc.errors import AidcError
from aidc.site_tables import DashboardConfig as DashboardConfig  # the [dashboard] table, typed at load
from analytics.forecast.service import ForecastService
from dashboards.alarm_loop import AlarmLoop
from dashboards.auth import Role, UserStore
from dashboards.callback_guard import guard_callbacks
from dashboards.data import DashboardData
from dashboards.forecast import service_for
from dashboards.pages import alarms, control, cooling, energy, floor, overview, power, quality
from dashboards.pages import users as users_page
from dashboards.sessions import SessionStore
from dashboards.web import SESSIONS_EXTENSION, current_user, secure

log = logging.getLogger(__name__)

PAGES = [
    ("/", "Overview"),
    ("/floor", "Hall floor"),
    ("/cooling", "Cooling"),
    ("/control", "Control"),
    ("/energy", "Energy"),
    ("/power", "Power chain"),
    ("/alarms", "Alarms"),
    ("/quality", "Data quality"),
    ("/reports", "Reports"),
    ("/users", "Users"),
]
ADMIN_PAGES = frozenset({"/users"})  # linked only for admins (and refused on the server to anybody else)


def _nav(path: str) -> html.Div:
    who = current_user()
    links = [
        dcc.Link(
            label,
            href=href,
            className="active" if (href == path or (href == "/floor" and path.startswith("/rack/"))) else "",
        )
        for href, label in PAGES
        if href not in ADMIN_PAGES or (who is not None and who[1] >= Role.ADMIN)
    ]
    user = f"{who[0]} ({who[1].label})" if who else ""
    return html.Div(
        [
            html.Strong("aidc"),
            *links,
            html.Span([user, " · ", html.A("sign out", href="/logout")], className="who", id="who"),
        ],
        className="nav",
    )


def create_app(
    data: DashboardData,
    users: UserStore,
    config: DashboardConfig,
    forecasts: ForecastService,
) -> dash.Dash:
    """The Dash app with every page and callback, secured; the forecast panels read ``forecasts`` (never fit)."""
    app = dash.Dash(
        __name__,
        title=f"aidc · {data.site.name}",
        suppress_callback_exceptions=True,
        assets_folder=str(Path(__file__).with_name("assets")),
        update_title="",
    )
    secure(
        app.server,
        users,
        secret_env=config.secret_env,
        secure_cookies=config.secure_cookies,
        reports_dir=data.data_dir / "reports",
    )
    app.layout = html.Div([dcc.Location(id="url"), html.Div(id="nav"), html.Div(id="page", className="page")])

    @app.callback(Output("nav", "children"), Output("page", "children"), Input("url", "pathname"))
    def route(path: str | None) -> tuple[Any, Any]:
        path = path or "/"
        return _nav(path), page_for(data, path, users)

    overview.register(app, data, forecasts)
    floor.register(app, data)
    cooling.register(app, data)
    control.register(app, data)
    quality.register(app, data)
    energy.register(app, data)
    power.register(app, data)
    alarms.register(app, data)
    users_page.register(app, data, users)
    guard_callbacks(app)  # after secure(): sign-in and CSRF are checked before the body is read
    return app


def page_for(data: DashboardData, path: str, users: UserStore | None = None) -> Any:
    """The layout of the page at ``path`` (the Users page needs the users store)."""
    if path.startswith("/rack/"):
        return floor.rack_layout(data, unquote(path[len("/rack/") :]))
    if path == "/users" and users is not None:
        return users_page.layout(data, users)
    pages: dict[str, Callable[[DashboardData], Any]] = {
        "/": overview.layout,
        "/floor": floor.layout,
        "/cooling": cooling.layout,
        "/control": control.layout,
        "/quality": quality.layout,
        "/energy": energy.layout,
        "/power": power.layout,
        "/alarms": alarms.layout,
        "/reports": quality.reports_layout,
    }
    make = pages.get(path)
    if make is None:
        return html.Div(f"No page at {path}.", className="msg")
    return make(data)


class DashboardService:
    """The dashboard's web server, alarm evaluation and forecast threads."""

    def __init__(
        self,
        data: DashboardData,
        users: UserStore,
        config: DashboardConfig,
        extra: Callable[[], Mapping[str, float]] | None = None,
        forecasts: ForecastService | None = None,
    ) -> None:
        self.data, self.users, self.config = data, users, config
        self.extra = extra
        # The main job hands over its live forecast service (shared with the API; it starts and stops it); a
        # dashboard on its own runs one of its own.
        self._own_forecasts = forecasts is None
        self.forecasts = forecasts or service_for(data, config.weather_path(data.site))
        self.app = create_app(data, users, config, self.forecasts)
        self._server: BaseWSGIServer | None = None
        self._threads: list[threading.Thread] = []
        self.alarm_loop = AlarmLoop(data, config.alarm_every_s, extra)
        self._stop = threading.Event()

    @property
    def url(self) -> str:
        """Where the dashboard answers."""
        port = self._server.server_port if self._server is not None else self.config.port
        return f"http://{self.config.bind}:{port}"

    def start(self) -> DashboardService:
        """Bind the port (AidcError names it when taken) and start the threads."""
        # werkzeug logs every request at INFO to stderr by default: one line per second per browser.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        try:
            self._server = make_server(self.config.bind, self.config.port, self.app.server, threaded=True)
        except OSError as exc:
            raise AidcError(
                f"dashboard.port: cannot listen on {self.config.bind}:{self.config.port}: {exc.strerror}"
            ) from None
        self._threads = [
            threading.Thread(target=self._server.serve_forever, name="dashboard http", daemon=True),
        ]
        for t in self._threads:
            t.start()
        self.alarm_loop.start()
        if self._own_forecasts:
            self.forecasts.start()
        return self

    def evaluate_alarms(self) -> None:
        """One evaluation of every alarm rule on the latest values."""
        self.alarm_loop.evaluate()

    def stop(self) -> None:
        """Stop serving and end the threads."""
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        sessions = self.app.server.extensions.get(SESSIONS_EXTENSION)
        if isinstance(sessions, SessionStore):
            sessions.flush()  # last-use times, so the idle timeout holds across the restart
        for t in self._threads:
            t.join(timeout=10)
        self.alarm_loop.stop()
        if self._own_forecasts:
            self.forecasts.stop()
        self.data.alarms.close()
