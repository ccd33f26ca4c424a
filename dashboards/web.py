"""The Flask side of the dashboard: login, logout, sessions, CSRF, security headers, report downloads."""

from __future__ import annotations

import html
import logging
import os
import secrets
from datetime import timedelta
from pathlib import Path

import flask
from werkzeug.utils import safe_join

from dashboards.auth import RateLimiter, Role, UserStore, new_csrf_token, tokens_match

log = logging.getLogger(__name__)

CSRF_COOKIE = "_csrf_token"  # the Dash renderer sends this cookie's value as the X-CSRFToken header
PUBLIC = ("/login", "/_favicon.ico", "/healthz")

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
    """The signed-in user and role of the current request, if any."""
    name, role = flask.session.get("user"), flask.session.get("role")
    if not isinstance(name, str) or not isinstance(role, int):
        return None
    try:
        return name, Role(role)
    except ValueError:
        return None


def can_act() -> bool:
    """Whether the current request's user may change things (operator or admin)."""
    who = current_user()
    return who is not None and who[1] >= Role.OPERATOR


def secure(
    server: flask.Flask,
    users: UserStore,
    *,
    secret_env: str | None = None,
    secure_cookies: bool = False,
    reports_dir: Path | None = None,
    limiter: RateLimiter | None = None,
) -> None:
    """Add sign-in, sessions, CSRF checks, security headers and the report download route to a Flask app."""
    key = os.environ.get(secret_env) if secret_env else None
    server.secret_key = key or secrets.token_bytes(32)
    server.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_SECURE=secure_cookies,
        SESSION_COOKIE_NAME="aidc_session",
        PERMANENT_SESSION_LIFETIME=timedelta(hours=12),  # one shift
        MAX_CONTENT_LENGTH=1_000_000,
    )
    limiter = limiter or RateLimiter(limit=5, window_s=60.0)

    def csrf() -> str:
        token = flask.session.get("csrf")
        if not isinstance(token, str):
            token = new_csrf_token()
            flask.session["csrf"] = token
        return token

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
        # Failures count per user name and, four times as many, per client address (a control room shares one).
        if not (limiter.allowed(f"user:{name}") and limiter.allowed(f"ip:{client}", 4 * limiter.limit)):
            log.warning("login rate limit hit for user %r from %s", name, client)
            page = _LOGIN_PAGE.format(error="Too many attempts; wait a minute and try again.", csrf=csrf())
            return flask.Response(page, status=429)
        user = users.verify(name, password)
        if user is None:
            limiter.failed(f"user:{name}", f"ip:{client}")
            log.warning("failed login for user %r from %s", name, client)
            return flask.Response(_LOGIN_PAGE.format(error="Wrong user or password.", csrf=csrf()), status=401)
        limiter.reset(f"user:{name}")
        flask.session.clear()  # a fresh session (and CSRF token) at every sign-in
        flask.session.permanent = True
        flask.session.update(user=user.name, role=int(user.role), csrf=new_csrf_token())
        log.info("user %s (%s) signed in from %s", user.name, user.role.label, client)
        return flask.redirect("/")

    @server.route("/logout", methods=["GET", "POST"])
    def logout() -> flask.typing.ResponseReturnValue:
        if flask.request.method == "GET":
            who = current_user()
            return _LOGOUT_PAGE.format(csrf=csrf(), user=html.escape(who[0] if who else ""))
        flask.session.clear()
        resp = flask.redirect("/login")
        resp.delete_cookie(CSRF_COOKIE)
        return resp

    @server.route("/reports/<path:name>")
    def report(name: str) -> flask.typing.ResponseReturnValue:
        if reports_dir is None or safe_join(str(reports_dir), name) is None:
            flask.abort(404)
        return flask.send_from_directory(reports_dir, name, as_attachment=True)
