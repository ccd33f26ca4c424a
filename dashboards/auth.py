"""Dashboard users: hashed passwords, roles, the users file the dashboard re-reads when it changes; CSRF tokens.

- Passwords are hashed with werkzeug's ``generate_password_hash`` (scrypt), Flask's own maintained helper; the
  users file (``<data_dir>/dashboard-users.json``, mode 0600) holds only hashes and roles.
- Roles, each including the one before: ``viewer`` (sees every page), ``operator`` (changes the controller's
  mode and overrides, acknowledges alarms), ``admin`` (manages users, on the Users page or with ``aidc user``).
  The store never deletes or demotes the last admin: nobody could manage users from the dashboard any more.
- Sessions live on the server (:mod:`dashboards.sessions`): the signed cookie carries only a random session id
  and the CSRF token; the user's role is read from this file at every request, which is re-read when it changes.
- CSRF: double-submit token. At login the session gets a random token, also sent in the ``_csrf_token`` cookie,
  which the Dash renderer copies into an ``X-CSRFToken`` header on every callback request; every POST must
  carry the token of its session (the login form carries it as a hidden field).
- Login attempts are limited atomically per user and address, per address, and per known browser
  (:mod:`dashboards.limiter`), so passwords cannot be guessed at speed and a stranger cannot lock a user out.
"""

from __future__ import annotations

import contextlib
import fcntl
import hmac
import json
import logging
import os
import secrets
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

from werkzeug.security import check_password_hash, generate_password_hash

from aidc.errors import AidcError, ConfigError

log = logging.getLogger(__name__)


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
_RECENT_NS = 2_000_000_000


class UserStore:
    """Users in a JSON file of hashes and roles; thread-safe, and re-read whenever the file changes.

    The ``aidc user`` command edits the file from another process while the dashboard runs: every lookup compares
    the file's identity (inode, mtime, size) with the one last read, so a demotion, a deletion or a new password
    takes effect on the dashboard's next request. Writers hold an ``flock`` on ``<file>.lock`` and re-read the file
    before changing it, so two writers never lose each other's change.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._users: dict[str, User] = {}
        self._sig: tuple[int, int, int] | None = None
        self._bad_sig: tuple[int, int, int] | None = None
        sig = self._stat()
        if sig is not None:
            self._users = self._read()
            self._sig = sig

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size

    def _read(self) -> dict[str, User]:
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
            return {
                name: User(name, Role.parse(entry["role"]), str(entry["password_hash"]))
                for name, entry in doc["users"].items()
            }
        except (OSError, ValueError, KeyError, TypeError, AttributeError, AidcError) as exc:
            raise ConfigError(f"{self.path}: not a valid dashboard users file ({exc})") from None

    def _refresh(self) -> None:
        """Re-read the file if it changed since last read (call with the lock held); fails closed on a bad file."""
        sig = self._stat()
        # A file changed within the last seconds is read again even if it looks the same: the kernel's file
        # timestamps are coarser than a nanosecond, and a replaced file may reuse the inode number.
        if sig == self._sig and (sig is None or time.time_ns() - sig[1] > _RECENT_NS):
            return
        if sig is None:  # the file was removed: nobody may sign in or stay signed in
            self._users, self._sig = {}, None
            return
        try:
            self._users = self._read()
        except ConfigError as exc:
            # A file edited into nonsense signs everybody out rather than keeping stale roles; said once per change.
            if sig != self._bad_sig:
                log.error("%s; every dashboard session is refused until it is fixed", exc)
                self._bad_sig = sig
            self._users = {}
        self._sig = sig

    def _save(self) -> None:
        doc = {
            "users": {u.name: {"role": u.role.label, "password_hash": u.password_hash} for u in self._users.values()}
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=self.path.name + ".", suffix=".tmp", dir=self.path.parent)  # mode 0600
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(doc, fh, indent=1)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._sig = self._stat()

    @contextlib.contextmanager
    def _editing(self) -> Iterator[None]:
        """Hold the in-process lock and the cross-process file lock, with the newest file read."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, open(self.path.with_name(self.path.name + ".lock"), "a") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            sig = self._stat()
            self._users = self._read() if sig is not None else {}  # a bad file is refused, never overwritten
            self._sig = sig
            yield

    def add(self, name: str, password: str, role: Role, *, replace: bool = True) -> User:
        """Create (or, with ``replace``, replace) a user; AidcError for a bad name, a short password, an existing
        name without ``replace``, or a replacement that would demote the last admin."""
        _check_name(name)
        _check_password(name, password)
        user = User(name, role, generate_password_hash(password))
        with self._editing():
            if not replace and name in self._users:
                raise AidcError(f"dashboard user {name!r} already exists")
            self._keep_an_admin(name, role)
            self._users[name] = user
            self._save()
        return user

    def set_role(self, name: str, role: Role) -> User:
        """Change a user's role, keeping the password; AidcError for an unknown user or the last admin's demotion."""
        with self._editing():
            old = self._users.get(name)
            if old is None:
                raise AidcError(f"no dashboard user {name!r} in {self.path}")
            self._keep_an_admin(name, role)
            user = self._users[name] = User(name, role, old.password_hash)
            self._save()
        return user

    def set_password(self, name: str, password: str) -> User:
        """Give a user a new password, keeping the role (their sessions end: the password fingerprint changed)."""
        _check_password(name, password)
        hashed = generate_password_hash(password)
        with self._editing():
            old = self._users.get(name)
            if old is None:
                raise AidcError(f"no dashboard user {name!r} in {self.path}")
            user = self._users[name] = User(name, old.role, hashed)
            self._save()
        return user

    def remove(self, name: str) -> None:
        """Delete a user (their sessions end at their next request); AidcError for an unknown user or the last
        admin."""
        with self._editing():
            if name not in self._users:
                raise AidcError(f"no dashboard user {name!r} in {self.path}")
            self._keep_an_admin(name, None)
            del self._users[name]
            self._save()

    def _keep_an_admin(self, name: str, role: Role | None) -> None:
        """Refuse a change that leaves a store which had an admin without one (call while editing); ``role`` None
        means the user is deleted. Nobody could manage users from the dashboard any more."""
        admins = {n for n, u in self._users.items() if u.role is Role.ADMIN}
        if name in admins and (role is None or role is not Role.ADMIN) and admins == {name}:
            what = "delete" if role is None else "demote"
            raise AidcError(f"cannot {what} {name!r}: the last admin (make another user admin first)")

    def users(self) -> list[User]:
        """Every user as the file says now, by name."""
        with self._lock:
            self._refresh()
            return [self._users[n] for n in sorted(self._users)]

    def get(self, name: str) -> User | None:
        """The user of that name as the file says now, if any."""
        with self._lock:
            self._refresh()
            return self._users.get(name)

    def names(self) -> list[str]:
        """Every user name."""
        with self._lock:
            self._refresh()
            return sorted(self._users)

    def verify(self, name: str, password: str) -> User | None:
        """The user if the password matches; a hash is checked even for unknown names, so timing tells nothing."""
        user = self.get(name)
        if user is None:
            check_password_hash(_DUMMY_HASH, password)
            return None
        return user if check_password_hash(user.password_hash, password) else None


_DUMMY_HASH = generate_password_hash(secrets.token_urlsafe(16))


def _check_name(name: str) -> None:
    """AidcError unless ``name`` is a valid user name."""
    if not name or not name.replace("-", "").replace("_", "").replace(".", "").isalnum() or len(name) > 64:
        raise AidcError(f"user name {name!r}: letters, digits, '-', '_' and '.' only (at most 64)")


def _check_password(name: str, password: str) -> None:
    """AidcError if the password is too short."""
    if len(password) < MIN_PASSWORD:
        raise AidcError(f"password for {name!r} is too short (at least {MIN_PASSWORD} characters)")


def random_password() -> str:
    """A random password for a generated account (about 120 bits)."""
    return secrets.token_urlsafe(15)


def new_csrf_token() -> str:
    """A random CSRF token."""
    return secrets.token_urlsafe(32)


def tokens_match(expected: str | None, given: str | None) -> bool:
    """Constant-time comparison of two CSRF tokens (False when either is missing)."""
    return bool(expected) and bool(given) and hmac.compare_digest(str(expected), str(given))
