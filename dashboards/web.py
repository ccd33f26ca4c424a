"""The Flask side of the dashboard: login (rate-limited), logout, server-side sessions, CSRF, security headers,
report downloads."""

from __future__ import annotations

import html
import logging
import math
import os
import secrets
from datetime import timedelta
from pathlib import Path

import flask
from itsdangerous import BadData, URLSafeTimedSerializer
from werkzeug.utils import safe_join

from aidc.errors import ConfigError
from dashboards.auth import Role, UserStore, new_csrf_token, tokens_match
from dashboards.limiter import LoginLimiter
from dashboards.sessions import SessionStore

log = logging.getLogger(__name__)

CSRF_COOKIE = "_csrf_token"  # the Dash renderer sends this cookie's value as the X-CSRFToken header
PUBLIC = ("/login", "/_favicon.ico", "/healthz")
DEVICE_COOKIE = "aidc_device"  # signed (user, nonce) of a browser that signed in before: its own login bucket
DEVICE_MAX_AGE_S = 30 * 86400
ADDRESS_FACTOR = 4  # failures per client address across user names, as a multiple of the per-user limit
MIN_SECRET_BYTES = 32
SESSIONS_EXTENSION = "aidc_sessions"
LIMITER_EXTENSION = "aidc_login_limiter"

_LOGIN_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>aidc · sign in</title>
<link rel="icon" href="data:,">
<style>body{{font-family:system-ui,sans-serif;background:#10151c;color:#e6e9ee;display:flex;justify-content:center;
margin-top:12vh}}form{{background:#1b222c;padding:2em 2.5em;border-radius:8px;width:20em}}
input{{width:100%;padding:.5em;margin:.3em 0 1em;box-sizing:border-box}}button{{padding:.5em 1.5em}}
.err{{color:#ff8080}}</style></head><body><form method="post" action="/login">
<h2>aidc operator dashboard</h2><p class="err">{error}</p>
<label>User<input name="username" id="username" autocomplete="username" required></label>
<label>Password<input name="password" id="password" type="password" autocomplete="current-password" required></label>
<input type="hidden" name="csrf_token" value="{csrf}"><button type="submit" id="login">Sign in</button>
</form></body></html>"""

_LOGOUT_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>aidc · sign out</title>
<link rel="icon" href="data:,"></head><body style="font-family:system-ui">
<form method="post" action="/logout"><input type="hidden" name="csrf_token" value="{csrf}">
<button type="submit" id="logout">Sign out {user}</button></form></body></html>"""


def current_user() -> tuple[str, Role] | None:
    """The signed-in user and their role *now* (read from the users file, not the cookie), if any."""
    if "aidc_user" in flask.g:
        cached: tuple[str, Role] | None = flask.g.aidc_user
        return cached
    store = flask.current_app.extensions.get(SESSIONS_EXTENSION)
    user = store.lookup(flask.session.get("sid")) if isinstance(store, SessionStore) else None
    who = (user.name, user.role) if user is not None else None
    flask.g.aidc_user = who
    return who


def can_act() -> bool:
    """Whether the current request's user may change things (operator or admin)."""
    who = current_user()
    return who is not None and who[1] >= Role.OPERATOR


def signing_key(secret_env: str | None) -> bytes:
    """The session signing key from ``secret_env`` (ConfigError if shorter than 32 bytes), else a random one."""
    key = os.environ.get(secret_env) if secret_env else None
    if key is None:
        return secrets.token_bytes(32)  # sessions then end when the process ends
    size = len(key.encode())
    if size < MIN_SECRET_BYTES:
        raise ConfigError(
            f"dashboard.secret_env: the variable {secret_env} holds {size} bytes; a session signing secret needs at "
            f"least {MIN_SECRET_BYTES} random bytes (e.g. from `python3 -c 'import secrets; "
            f"print(secrets.token_urlsafe(32))'`)"
        )
    return key.encode()


def secure(
    server: flask.Flask,
    users: UserStore,
    *,
    secret_env: str | None = None,
    secure_cookies: bool = False,
    reports_dir: Path | None = None,
    limiter: LoginLimiter | None = None,
    sessions: SessionStore | None = None,
) -> None:
    """Add sign-in, server-side sessions, CSRF checks, security headers and the report download route to a Flask
    app; ConfigError if the signing secret is too short."""
    server.secret_key = signing_key(secret_env)
    if sessions is None:  # (not `or`: an empty store is falsy)
        sessions = SessionStore(users.path.with_name(users.path.stem + ".sessions.json"), users)
    server.extensions[SESSIONS_EXTENSION] = sessions
    server.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_SECURE=secure_cookies,
        SESSION_COOKIE_NAME="aidc_session",
        PERMANENT_SESSION_LIFETIME=timedelta(seconds=sessions.absolute_s),  # the server ends it anyway
        MAX_CONTENT_LENGTH=1_000_000,
    )
    if limiter is None:
        limiter = LoginLimiter(limit=5, window_s=60.0)
    server.extensions[LIMITER_EXTENSION] = limiter
    devices = URLSafeTimedSerializer(server.secret_key, salt="aidc-login-device")

    def csrf() -> str:
        token = flask.session.get("csrf")
        if not isinstance(token, str):
            token = new_csrf_token()
            flask.session["csrf"] = token
        return token

    def device_of(name: str) -> str | None:
        """The nonce of this browser's device cookie if it is valid and was issued to ``name``."""
        raw = flask.request.cookies.get(DEVICE_COOKIE)
        if not raw:
            return None
        try:
            doc = devices.loads(raw, max_age=DEVICE_MAX_AGE_S)
        except BadData:
            return None
        if isinstance(doc, dict) and doc.get("u") == name and isinstance(doc.get("n"), str):
            return str(doc["n"])
        return None

    @server.before_request
    def guard() -> flask.typing.ResponseReturnValue | None:
        path = flask.request.path
        if flask.request.method == "POST":
            given = flask.request.headers.get("X-CSRFToken") or flask.request.form.get("csrf_token")
            if not tokens_match(flask.session.get("csrf"), given):
                log.warning("rejected POST %s without a valid CSRF token from %s", path, flask.request.remote_addr)
                return flask.Response("CSRF token missing or invalid\n", status=403, mimetype="text/plain")
        if path in PUBLIC or current_user() is not None:
            return None
        if path.startswith(("/_dash-", "/_reload-hash")) or flask.request.method != "GET":
            return flask.Response("sign in first\n", status=401, mimetype="text/plain")
        return flask.redirect("/login")

    @server.after_request
    def headers(resp: flask.Response) -> flask.Response:
        resp.headers.setdefault("X-Frame-Options", "DENY")
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("Referrer-Policy", "same-origin")
        if current_user() is not None and "csrf" in flask.session:
            # Readable by the page's script (that is the point of double submit), useless to another origin.
            resp.set_cookie(
                CSRF_COOKIE, flask.session["csrf"], httponly=False, samesite="Strict", secure=secure_cookies
            )
        return resp

    @server.route("/healthz")
    def healthz() -> flask.typing.ResponseReturnValue:
        return {"ok": True}

    @server.route("/login", methods=["GET", "POST"])
    def login() -> flask.typing.ResponseReturnValue:
        if flask.request.method == "GET":
            return _LOGIN_PAGE.format(error="", csrf=csrf())
        name = flask.request.form.get("username", "")[:64]
        password = flask.request.form.get("password", "")[:256]
        client = flask.request.remote_addr or "?"
        # A browser that signed in as this user before is counted on its own; any other attempt per user and
        # address, and per address across users (a control room shares one address).
        device = device_of(name)
        keys = (
            [(f"device:{device}", limiter.limit)]
            if device
            else [(f"user:{name}@{client}", limiter.limit), (f"ip:{client}", ADDRESS_FACTOR * limiter.limit)]
        )
        ticket = limiter.reserve(keys)  # the slot is taken before the password is checked: no parallel bypass
        if ticket is None:
            wait = max(1, math.ceil(max(limiter.retry_after(k) for k, _ in keys)))
            log.warning("login refused by the rate limit for user %r from %s", name, client)
            page = _LOGIN_PAGE.format(error=f"Too many attempts; wait {wait} s and try again.", csrf=csrf())
            return flask.Response(page, status=429, headers={"Retry-After": str(wait)})
        user = None
        try:
            user = users.verify(name, password)
        finally:
            if user is None:
                limiter.failed(ticket)
            else:
                limiter.succeeded(ticket, forget=[keys[0][0]])
        if user is None:
            log.warning("failed login for user %r from %s", name, client)
            return flask.Response(_LOGIN_PAGE.format(error="Wrong user or password.", csrf=csrf()), status=401)
        sessions.revoke(flask.session.get("sid"))  # a browser signing in again drops its old session
        flask.session.clear()  # a fresh session id and CSRF token at every sign-in (no fixation)
        flask.session.permanent = True
        flask.session.update(sid=sessions.create(user), csrf=new_csrf_token())
        log.info("user %s (%s) signed in from %s", user.name, user.role.label, client)
        resp = flask.redirect("/")
        resp.set_cookie(
            DEVICE_COOKIE,
            devices.dumps({"u": user.name, "n": device or secrets.token_urlsafe(16)}),
            max_age=DEVICE_MAX_AGE_S,
            path="/login",
            httponly=True,
            samesite="Strict",
            secure=secure_cookies,
        )
        return resp

    @server.route("/logout", methods=["GET", "POST"])
    def logout() -> flask.typing.ResponseReturnValue:
        if flask.request.method == "GET":
            who = current_user()
            return _LOGOUT_PAGE.format(csrf=csrf(), user=html.escape(who[0] if who else ""))
        sessions.revoke(flask.session.get("sid"))  # the cookie is worthless from now on, wherever a copy is
        flask.session.clear()
        flask.g.aidc_user = None
        resp = flask.redirect("/login")
        resp.delete_cookie(CSRF_COOKIE)
        return resp

    @server.route("/reports/<path:name>")
    def report(name: str) -> flask.typing.ResponseReturnValue:
        if reports_dir is None or safe_join(str(reports_dir), name) is None:
            flask.abort(404)
        return flask.send_from_directory(reports_dir, name, as_attachment=True)
