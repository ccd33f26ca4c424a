"""Dashboard sign-in: hashed passwords, roles, session cookie flags, CSRF on every POST, login rate limiting."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import flask
import pytest
from werkzeug.test import TestResponse

from aidc.errors import AidcError, ConfigError
from dashboards.auth import Role, UserStore
from dashboards.limiter import LoginLimiter
from dashboards.web import can_act, secure

PW = "correct-horse-battery"


@pytest.fixture
def users(tmp_path: Path) -> UserStore:
    """A users file with one viewer and one operator."""
    store = UserStore(tmp_path / "users.json")
    store.add("vera", PW, Role.VIEWER)
    store.add("otto", PW, Role.OPERATOR)
    return store


@pytest.fixture
def app(users: UserStore, tmp_path: Path) -> flask.Flask:
    """A Flask app secured like the dashboard, with one protected page and one action."""
    server = flask.Flask("t")
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "pue-2026-10.csv").write_text("month,pue\n2026-10,1.12\n")
    (tmp_path / "secret.txt").write_text("not for download")
    secure(server, users, reports_dir=tmp_path / "reports", limiter=LoginLimiter(limit=3, window_s=60))

    @server.route("/")
    def index() -> str:
        return "dashboard"

    @server.route("/act", methods=["POST"])
    def act() -> str:
        return "done" if can_act() else "refused"

    return server


def _csrf(client: flask.testing.FlaskClient) -> str:
    page = client.get("/login").get_data(as_text=True)
    m = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert m
    return m.group(1)


def _login(client: flask.testing.FlaskClient, user: str, password: str = PW) -> TestResponse:
    return client.post("/login", data={"username": user, "password": password, "csrf_token": _csrf(client)})


def test_users_file_holds_hashes_only_with_owner_only_permissions(users: UserStore) -> None:
    """The file has no plaintext password, is mode 0600, and verifies the right password only."""
    text = users.path.read_text()
    assert PW not in text
    assert "scrypt:" in text or "pbkdf2:" in text
    assert stat.S_IMODE(users.path.stat().st_mode) == 0o600
    assert users.verify("otto", PW) is not None
    assert users.verify("otto", PW + "x") is None
    assert users.verify("nobody", PW) is None
    assert UserStore(users.path).get("vera").role is Role.VIEWER  # type: ignore[union-attr]


def test_short_passwords_and_bad_files_are_refused(tmp_path: Path) -> None:
    """A short password is refused; a corrupt users file is one ConfigError naming the file."""
    with pytest.raises(AidcError, match="too short"):
        UserStore(tmp_path / "u.json").add("a", "short", Role.ADMIN)
    bad = tmp_path / "bad.json"
    bad.write_text('{"users": {"x": {"role": "captain", "password_hash": "h"}}}')
    with pytest.raises(ConfigError, match=r"bad\.json: not a valid dashboard users file .*captain"):
        UserStore(bad)


def test_pages_need_a_sign_in(app: flask.Flask) -> None:
    """Without a session, pages redirect to the sign-in form and Dash's API answers 401."""
    c = app.test_client()
    assert c.get("/").headers["Location"].endswith("/login")
    assert c.get("/_dash-layout").status_code == 401


def test_session_cookie_is_httponly_and_samesite_strict_and_renewed_at_sign_in(app: flask.Flask) -> None:
    """Signing in replaces the session (no fixation); its cookie is HttpOnly and SameSite=Strict."""
    c = app.test_client()
    _csrf(c)
    before = c.get_cookie("aidc_session")
    resp = _login(c, "vera")
    assert resp.status_code == 302
    cookie = next(h for h in resp.headers.getlist("Set-Cookie") if h.startswith("aidc_session="))
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert before is not None
    assert c.get_cookie("aidc_session").value != before.value  # type: ignore[union-attr]
    csrf_cookie = c.get_cookie("_csrf_token")
    assert csrf_cookie is not None
    assert c.get("/").get_data(as_text=True) == "dashboard"


def test_every_post_needs_the_sessions_csrf_token(app: flask.Flask) -> None:
    """A POST without the token (or with another session's) is 403; with it, the action runs."""
    c = app.test_client()
    assert c.post("/login", data={"username": "otto", "password": PW}).status_code == 403
    _login(c, "otto")
    token = c.get_cookie("_csrf_token").value  # type: ignore[union-attr]
    assert c.post("/act").status_code == 403
    assert c.post("/act", headers={"X-CSRFToken": "forged"}).status_code == 403
    assert c.post("/act", headers={"X-CSRFToken": token}).get_data(as_text=True) == "done"


def test_viewers_cannot_act(app: flask.Flask) -> None:
    """The role check on the server refuses a viewer's action even with a valid token."""
    c = app.test_client()
    _login(c, "vera")
    token = c.get_cookie("_csrf_token").value  # type: ignore[union-attr]
    assert c.post("/act", headers={"X-CSRFToken": token}).get_data(as_text=True) == "refused"


def test_login_attempts_are_rate_limited(app: flask.Flask) -> None:
    """After 3 failed attempts in a minute even the right password gets 429."""
    c = app.test_client()
    for _ in range(3):
        assert _login(c, "otto", "wrong-password-123").status_code == 401
    resp = _login(c, "otto")
    assert resp.status_code == 429
    assert "Too many attempts" in resp.get_data(as_text=True)


def test_successful_sign_ins_are_not_limited(app: flask.Flask) -> None:
    """Only failures count: a shift change with many sign-ins from one address is never locked out."""
    for _ in range(6):
        assert _login(app.test_client(), "vera").status_code == 302


def test_rate_limit_window_slides_and_lockouts_double() -> None:
    """Failures older than the window no longer count; each lockout at the limit lasts twice the one before."""
    now = [0.0]
    lim = LoginLimiter(limit=2, window_s=60, clock=lambda: now[0])
    key = [("ip:1", 2)]
    t = lim.reserve(key)
    assert t is not None
    lim.failed(t)
    now[0] = 61.0  # the first failure left the window
    t = lim.reserve(key)
    assert t is not None
    lim.failed(t)
    assert lim.reserve(key) is not None  # one failure in the window: still allowed
    lim = LoginLimiter(limit=2, window_s=60, clock=lambda: now[0])
    locks = []
    for _ in range(3):
        for _ in range(2):
            t = lim.reserve(key)
            assert t is not None
            lim.failed(t)
        assert lim.reserve(key) is None
        locks.append(lim.retry_after("ip:1"))
        now[0] += locks[-1] + 0.001
    assert locks == [60.0, 120.0, 240.0]


def test_reports_download_only_inside_the_reports_folder(app: flask.Flask) -> None:
    """A signed-in user downloads a report; a path out of the folder is 404."""
    c = app.test_client()
    _login(c, "vera")
    resp = c.get("/reports/pue-2026-10.csv")
    assert resp.status_code == 200
    assert b"1.12" in resp.data
    assert c.get("/reports/../secret.txt").status_code == 404
    assert c.get("/reports/%2e%2e/secret.txt").status_code == 404


def test_security_headers(app: flask.Flask) -> None:
    """Responses forbid framing and MIME sniffing."""
    resp = app.test_client().get("/login")
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
