"""Dashboard users and sessions: hashed passwords, roles, CSRF, rate-limited login.

- Passwords are hashed with werkzeug's ``generate_password_hash`` (scrypt), Flask's own maintained helper; the
  users file (``<data_dir>/dashboard-users.json``, mode 0600) holds only hashes and roles.
- Roles, each including the one before: ``viewer`` (sees every page), ``operator`` (changes the controller's
  mode and overrides, acknowledges alarms), ``admin`` (manages users).
- Sessions are Flask's signed cookies, ``HttpOnly`` and ``SameSite=Strict``; the signing key comes from the
  environment variable the dashboard config names, or is random per process (sessions then end at restart).
- CSRF: double-submit token. At login the session gets a random token, also sent in the ``_csrf_token`` cookie,
  which the Dash renderer copies into an ``X-CSRFToken`` header on every callback request; every POST must
  carry the token of its session (the login form carries it as a hidden field).
- Login attempts are limited per client address and per user name (sliding window), so passwords cannot be
  guessed at speed.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

from werkzeug.security import check_password_hash, generate_password_hash

from aidc.errors import AidcError, ConfigError


class Role(IntEnum):
    """Dashboard roles; a higher role may do everything a lower one may."""

    VIEWER = 1
    OPERATOR = 2
    ADMIN = 3

    @classmethod
    def parse(cls, text: str) -> Role:
        """Role from its name; AidcError lists the valid ones."""
        try:
            return cls[text.upper()]
        except KeyError:
            raise AidcError(f"unknown role {text!r} (viewer, operator or admin)") from None

    @property
    def label(self) -> str:
        """Lower-case name."""
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class User:
    """A dashboard user."""

    name: str
    role: Role
    password_hash: str


MIN_PASSWORD = 12


class UserStore:
    """Users in a JSON file of hashes and roles; thread-safe."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._users: dict[str, User] = {}
        if path.is_file():
            self._load()

    def _load(self) -> None:
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
            users = doc["users"]
            for name, entry in users.items():
                self._users[name] = User(name, Role.parse(entry["role"]), str(entry["password_hash"]))
        except (OSError, ValueError, KeyError, TypeError, AidcError) as exc:
            raise ConfigError(f"{self.path}: not a valid dashboard users file ({exc})") from None

    def _save(self) -> None:
        doc = {
            "users": {u.name: {"role": u.role.label, "password_hash": u.password_hash} for u in self._users.values()}
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=1)
        tmp.replace(self.path)

    def add(self, name: str, password: str, role: Role) -> User:
        """Create or replace a user; AidcError for a bad name or a short password."""
        if not name or not name.replace("-", "").replace("_", "").replace(".", "").isalnum() or len(name) > 64:
            raise AidcError(f"user name {name!r}: letters, digits, '-', '_' and '.' only (at most 64)")
        if len(password) < MIN_PASSWORD:
            raise AidcError(f"password for {name!r} is too short (at least {MIN_PASSWORD} characters)")
        user = User(name, role, generate_password_hash(password))
        with self._lock:
            self._users[name] = user
            self._save()
        return user

    def get(self, name: str) -> User | None:
        """The user of that name, if any."""
        with self._lock:
            return self._users.get(name)

    def names(self) -> list[str]:
        """Every user name."""
        with self._lock:
            return sorted(self._users)

    def verify(self, name: str, password: str) -> User | None:
        """The user if the password matches; a hash is checked even for unknown names, so timing tells nothing."""
        user = self.get(name)
        if user is None:
            check_password_hash(_DUMMY_HASH, password)
            return None
        return user if check_password_hash(user.password_hash, password) else None


_DUMMY_HASH = generate_password_hash(secrets.token_urlsafe(16))


def random_password() -> str:
    """A random password for a generated account (about 120 bits)."""
    return secrets.token_urlsafe(15)


class RateLimiter:
    """At most ``limit`` failures per key in a sliding window of ``window_s`` seconds (then attempts are refused)."""

    def __init__(self, limit: int = 5, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.window_s = limit, window_s
        self._clock = clock
        self._hits: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def allowed(self, key: str, limit: int | None = None) -> bool:
        """Whether ``key`` is under its limit of failures (``limit`` overrides the default for this key)."""
        now = self._clock()
        with self._lock:
            q = self._hits[key]
            while q and now - q[0] > self.window_s:
                q.popleft()
            return len(q) < (self.limit if limit is None else limit)

    def failed(self, *keys: str) -> None:
        """Record a failed attempt for every key."""
        now = self._clock()
        with self._lock:
            for key in keys:
                self._hits[key].append(now)

    def reset(self, key: str) -> None:
        """Forget a key's failures (after a successful login)."""
        with self._lock:
            self._hits.pop(key, None)


def new_csrf_token() -> str:
    """A random CSRF token."""
    return secrets.token_urlsafe(32)


def tokens_match(expected: str | None, given: str | None) -> bool:
    """Constant-time comparison of two CSRF tokens (False when either is missing)."""
    return bool(expected) and bool(given) and hmac.compare_digest(str(expected), str(given))
