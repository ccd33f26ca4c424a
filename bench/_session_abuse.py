"""Dashboard session and login abuse, measured from the outside over loopback HTTP (used by bench/api_abuse.py).

- :func:`parallel_login_guesses_checked`: how many of N parallel wrong-password sign-ins were checked against the
  password. The dashboard answers a checked wrong password with 401 ("Wrong user or password.") and an attempt the
  limiter refused with 429 (and ``Retry-After``), so the count is the number of 401 answers.
- :func:`revoked_cookie_accepted`: signs in with operator accounts it creates through ``aidc user`` on the site,
  then revokes each one way (sign-out, demotion to viewer, deletion) and replays the old cookie for a page and for
  an operator action (a forged ``apply_mode`` callback with an invalid mode, so nothing ever changes).

Run alone, it starts its own ``aidc demo`` on a temporary site: ``python bench/_session_abuse.py``.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PASSWORD_VAR = "AIDC_SESSION_ABUSE_PASSWORD"  # noqa: S105 - the name of a variable, not a password
_FORGED_MODE = "no-such-mode"  # an operator gets "Choose one of ...", a viewer "needs an operator sign-in"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class _Browser:
    """A cookie jar and an opener that does not follow redirects (so a redirect to /login is seen)."""

    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect())

    def request(
        self, path: str, data: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], str]:
        """Status, headers and body text of one request."""
        req = urllib.request.Request(self.base + path, data=data, headers=headers or {})  # noqa: S310 - http only
        try:
            with self.opener.open(req, timeout=60) as resp:
                return resp.status, dict(resp.headers), resp.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read().decode("utf-8", "replace")

    def cookie(self, name: str) -> str | None:
        return next((c.value for c in self.jar if c.name == name), None)

    def login_form(self) -> str:
        """GET /login; the form's CSRF token."""
        _, _, page = self.request("/login")
        m = re.search(r'name="csrf_token" value="([^"]+)"', page)
        if m is None:
            raise RuntimeError(f"{self.base}/login: no sign-in form")
        return m.group(1)

    def post_login(self, csrf: str, user: str, password: str) -> int:
        form = urllib.parse.urlencode({"username": user, "password": password, "csrf_token": csrf}).encode()
        status, _, _ = self.request("/login", form, {"Content-Type": "application/x-www-form-urlencoded"})
        return status

    def sign_out(self) -> None:
        """POST /logout with the session's CSRF token."""
        token = self.cookie("_csrf_token") or ""
        form = urllib.parse.urlencode({"csrf_token": token}).encode()
        self.request("/logout", form, {"Content-Type": "application/x-www-form-urlencoded"})

    def copy(self) -> _Browser:
        """Another browser holding copies of this one's cookies (what a thief of the cookies would hold)."""
        other = _Browser(self.base)
        for c in self.jar:
            other.jar.set_cookie(c)
        return other

    def page_accepted(self) -> bool:
        """Whether the Overview is served (not a redirect to the sign-in form)."""
        status, _, _ = self.request("/")
        return status == 200

    def action_accepted(self) -> bool:
        """Whether the server treats this cookie as an operator's for the Control page's mode callback."""
        body = {
            "output": "ct-msg.children",
            "outputs": {"id": "ct-msg", "property": "children"},
            "inputs": [{"id": "ct-apply", "property": "n_clicks", "value": 1}],
            "state": [{"id": "ct-mode", "property": "value", "value": _FORGED_MODE}],
            "changedPropIds": ["ct-apply.n_clicks"],
        }
        headers = {"Content-Type": "application/json", "X-CSRFToken": self.cookie("_csrf_token") or ""}
        status, _, text = self.request("/_dash-update-component", json.dumps(body).encode(), headers)
        return status == 200 and "needs an operator sign-in" not in text


def parallel_login_guesses_checked(dash_url: str, user: str, guesses: int = 40) -> int:
    """How many of ``guesses`` parallel wrong-password sign-ins for ``user`` were checked (401), not refused (429)."""
    browsers = [_Browser(dash_url) for _ in range(guesses)]
    tokens = [b.login_form() for b in browsers]
    barrier = threading.Barrier(guesses)
    codes: list[int] = [0] * guesses

    def guess(i: int) -> None:
        barrier.wait(timeout=60)
        codes[i] = browsers[i].post_login(tokens[i], user, f"wrong-{secrets.token_hex(8)}")

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(guesses)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    unexpected = sorted({c for c in codes if c not in (401, 429)})
    if unexpected:
        raise RuntimeError(f"parallel guesses: unexpected answers {unexpected} (401 and 429 expected)")
    return codes.count(401)


def _aidc_user(config_path: Path, env: dict[str, str], *args: str, password: str | None = None) -> None:
    """One ``aidc user`` command on the site; RuntimeError with its output if it fails."""
    run_env = {**env, PASSWORD_VAR: password} if password else dict(env)
    cmd = [sys.executable, "-m", "app.cli", "user", *args, "--config", str(config_path)]
    done = subprocess.run(cmd, cwd=REPO, env=run_env, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"aidc user {' '.join(args)}: exit {done.returncode}: {done.stderr.strip()}")


def _signed_in(dash_url: str, user: str, password: str) -> _Browser:
    b = _Browser(dash_url)
    status = b.post_login(b.login_form(), user, password)
    if status != 302 or not (b.page_accepted() and b.action_accepted()):
        raise RuntimeError(f"sign-in as operator {user!r} did not work (status {status}); the probe is broken")
    return b


def revoked_cookie_accepted(dash_url: str, config_path: Path, env: dict[str, str]) -> bool:
    """Whether any revoked cookie (after sign-out, demotion or deletion) was still accepted for a page or an
    operator action; users are created (and removed) with ``aidc user`` on the site ``config_path``."""
    password = secrets.token_urlsafe(18)
    tag = secrets.token_hex(3)
    names = {how: f"abuse-{tag}-{how}" for how in ("logout", "demoted", "deleted")}
    for name in names.values():
        _aidc_user(config_path, env, "add", name, "--role", "operator", "--password-env", PASSWORD_VAR,
                   password=password)  # fmt: skip
    accepted: dict[str, bool] = {}
    try:
        b = _signed_in(dash_url, names["logout"], password)
        stolen = b.copy()
        b.sign_out()
        accepted["logout page"] = stolen.page_accepted()
        accepted["logout action"] = stolen.action_accepted()

        b = _signed_in(dash_url, names["demoted"], password)
        _aidc_user(config_path, env, "role", names["demoted"], "--role", "viewer")
        accepted["demoted action"] = b.action_accepted()

        b = _signed_in(dash_url, names["deleted"], password)
        _aidc_user(config_path, env, "remove", names["deleted"])
        accepted["deleted page"] = b.page_accepted()
        accepted["deleted action"] = b.action_accepted()
    finally:
        for how in ("logout", "demoted"):
            try:
                _aidc_user(config_path, env, "remove", names[how])
            except RuntimeError:
                pass  # already gone (or the site is): nothing to clean up
    print("revoked cookie still accepted: " + ", ".join(f"{k} {v}" for k, v in accepted.items()), flush=True)
    return any(accepted.values())


def main() -> int:
    """Start ``aidc demo`` on a temporary site, measure both figures, print them; last line one JSON object."""
    sys.path.insert(0, str(REPO))
    from tests.browser import free_port
    from tests.sim_helpers import site_doc, write_site

    with tempfile.TemporaryDirectory(prefix="aidc-session-abuse-") as tmp_name:
        tmp = Path(tmp_name)
        doc = site_doc(tmp, racks=2)
        port = free_port()
        doc["dashboard"] = {"port": port}
        config = write_site(tmp, doc)
        env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
        log_path = tmp / "demo.log"
        with log_path.open("w") as log:
            proc = subprocess.Popen([sys.executable, "-m", "app.cli", "demo", "--config", str(config)], cwd=tmp,
                                    stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)  # fmt: skip
        try:
            deadline = time.monotonic() + 180
            while "[4/4]" not in log_path.read_text():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"aidc demo did not start:\n{log_path.read_text()[-2000:]}")
                time.sleep(0.5)
            url = f"http://127.0.0.1:{port}"
            checked = parallel_login_guesses_checked(url, "operator")
            print(f"parallel wrong-password sign-ins checked: {checked} of 40 (limit 5)", flush=True)
            revoked = revoked_cookie_accepted(url, config, env)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        tracebacks = log_path.read_text().count("Traceback")
        print(f"tracebacks in the demo's log: {tracebacks}")
    print(json.dumps({"parallel_login_guesses_checked": checked, "revoked_cookie_accepted": revoked}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
