"""Server-side dashboard sessions: the cookie carries a random session id, the server decides who it is.

Each sign-in creates a random id (256 bits); the store keeps only its SHA-256 (a copy of the file signs nobody
in) with the user name, a fingerprint of the user's password hash, and the creation and last-use times. Every
request looks the id up and reads the user's *current* role and password from the users file
(:class:`dashboards.auth.UserStore` re-reads it when the ``aidc user`` command changes it), so:

- sign-out deletes the session; a deleted user, or a changed password, ends every session of that user at once;
- a demoted user keeps the session but acts with the new role from the next request on;
- a session ends after ``idle_s`` without a request and ``absolute_s`` after sign-in, whatever the cookie says.

The store is a JSON file beside the users file (mode 0600), rewritten atomically at every sign-in and sign-out
and, for the last-use times, at most every ``persist_every_s``: a restarted dashboard honours the sessions that
are still valid and no others. At most ``max_per_user`` sessions per user (the oldest ends first) and
``max_sessions`` in all.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from dashboards.auth import User, UserStore

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Session:
    """One signed-in browser."""

    user: str
    cred: str  # fingerprint of the password hash at sign-in: a new password ends the session
    created: float  # seconds since the epoch (wall clock: the file outlives the process)
    seen: float


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def fingerprint(user: User) -> str:
    """A short fingerprint of the user's password hash (changes with the password)."""
    return _digest(user.password_hash)[:32]


class SessionStore:
    """Sessions by id, validated against the users file at every lookup; thread-safe."""

    def __init__(
        self,
        path: Path,
        users: UserStore,
        *,
        idle_s: float = 3600.0,
        absolute_s: float = 12 * 3600.0,
        persist_every_s: float = 60.0,
        max_per_user: int = 20,
        max_sessions: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path, self.users = path, users
        self.idle_s, self.absolute_s, self.persist_every_s = idle_s, absolute_s, persist_every_s
        self.max_per_user, self.max_sessions = max_per_user, max_sessions
        self._clock = clock
        self._lock = threading.Lock()
        self._sessions: dict[str, Session] = self._load()
        self._drop_expired(clock())
        self._saved_at = clock()
        self._dirty = False

    def __len__(self) -> int:
        """How many sessions are kept."""
        with self._lock:
            return len(self._sessions)

    def _load(self) -> dict[str, Session]:
        if not self.path.exists():
            return {}
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
            return {
                str(k): Session(str(v["user"]), str(v["cred"]), float(v["created"]), float(v["seen"]))
                for k, v in doc["sessions"].items()
            }
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            # Losing sessions only means signing in again; a bad file never signs anybody in.
            log.warning("%s: not a valid sessions file (%s); every user signs in again", self.path, exc)
            return {}

    def _save(self) -> None:
        """Write the file atomically (call with the lock held)."""
        doc = {"sessions": {k: asdict(s) for k, s in self._sessions.items()}}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=self.path.name + ".", suffix=".tmp", dir=self.path.parent)  # mode 0600
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(doc, fh)
            os.replace(tmp, self.path)
        except OSError as exc:
            # Sessions still work from memory; only a restart would sign everybody out.
            Path(tmp).unlink(missing_ok=True)
            log.warning("cannot write the sessions file %s: %s", self.path, exc.strerror or exc)
        self._saved_at, self._dirty = self._clock(), False

    def create(self, user: User) -> str:
        """A new session for ``user``; returns the id for the cookie (only its hash is stored)."""
        sid = secrets.token_urlsafe(32)
        now = self._clock()
        with self._lock:
            self._drop_expired(now)
            mine = sorted((s.created, k) for k, s in self._sessions.items() if s.user == user.name)
            for _, k in mine[: max(0, len(mine) - self.max_per_user + 1)]:
                del self._sessions[k]
            if len(self._sessions) >= self.max_sessions:
                oldest = min(self._sessions, key=lambda k: self._sessions[k].seen)
                del self._sessions[oldest]
            self._sessions[_digest(sid)] = Session(user.name, fingerprint(user), now, now)
            self._save()
        return sid

    def lookup(self, sid: object) -> User | None:
        """The session's user as the users file says now, or None (and the session ends) if it is not valid."""
        if not isinstance(sid, str) or not sid:
            return None
        key = _digest(sid)
        now = self._clock()
        with self._lock:
            s = self._sessions.get(key)
            if s is None:
                return None
            user = self.users.get(s.user)
            if user is None or fingerprint(user) != s.cred or self._expired(s, now):
                del self._sessions[key]
                self._save()
                return None
            s.seen = now
            self._dirty = True
            if now - self._saved_at >= self.persist_every_s:
                self._save()
            return user

    def revoke(self, sid: object) -> None:
        """End one session (sign-out)."""
        if not isinstance(sid, str):
            return
        with self._lock:
            if self._sessions.pop(_digest(sid), None) is not None:
                self._save()

    def revoke_user(self, name: str) -> int:
        """End every session of a user; returns how many ended."""
        with self._lock:
            keys = [k for k, s in self._sessions.items() if s.user == name]
            for k in keys:
                del self._sessions[k]
            if keys:
                self._save()
            return len(keys)

    def flush(self) -> None:
        """Write pending last-use times (at shutdown)."""
        with self._lock:
            if self._dirty:
                self._save()

    def _expired(self, s: Session, now: float) -> bool:
        return now - s.seen > self.idle_s or now - s.created > self.absolute_s or s.created > now + 60

    def _drop_expired(self, now: float) -> None:
        for k in [k for k, s in self._sessions.items() if self._expired(s, now)]:
            del self._sessions[k]
