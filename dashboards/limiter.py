"""Login attempt limits: atomic, bounded in memory, and keyed so that a stranger cannot lock a user out.

- Atomic: :meth:`LoginLimiter.reserve` takes a slot for every key under one lock *before* the password is checked;
  an attempt in flight counts like a failure, so 40 parallel guesses get at most ``limit`` password checks.
- Keys: a sign-in is counted per (user name, client address) and, across user names, per client address (a cap on
  spraying from one address). A browser that signed in as that user before carries a signed device cookie; its
  attempts are counted on that device alone (OWASP "device cookies"), so guesses by anyone else, on the same
  address or not, never lock it out.
- Backoff: each time a key reaches its limit it is locked for ``window_s`` doubled per lockout (60 s, 120 s, ...)
  up to ``max_lock_s``; a key forgets its lockouts after ``forget_s`` without a failure.
- Bounded memory: at most ``max_keys`` keys (the least recently failed one goes first once full);
  a key is created only by a failed attempt, never by a refused or a successful one.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field


@dataclass(slots=True)
class _Key:
    """The failures, attempts in flight and lockout of one key."""

    fails: list[float] = field(default_factory=list)  # failure times in the current window (at most the limit)
    pending: int = 0
    locked_until: float = 0.0
    lockouts: int = 0
    last: float = 0.0


@dataclass(frozen=True, slots=True)
class Ticket:
    """A reserved attempt: the keys (with their limits) it holds a slot in."""

    keys: tuple[tuple[str, int], ...]


class LoginLimiter:
    """Atomic login-attempt accounting with per-key limits, exponential lockouts and a bound on the keys kept."""

    def __init__(
        self,
        limit: int = 5,
        window_s: float = 60.0,
        *,
        max_lock_s: float = 900.0,
        forget_s: float = 3600.0,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit, self.window_s = limit, window_s
        self.max_lock_s, self.forget_s, self.max_keys = max_lock_s, forget_s, max_keys
        self._clock = clock
        self._keys: OrderedDict[str, _Key] = OrderedDict()  # least recently active first
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """How many keys are tracked (at most ``max_keys``)."""
        with self._lock:
            return len(self._keys)

    def retry_after(self, key: str) -> float:
        """Seconds until ``key`` may try again (0: it may now)."""
        with self._lock:
            k = self._keys.get(key)
            return 0.0 if k is None else max(0.0, k.locked_until - self._clock())

    def reserve(self, keys: Sequence[tuple[str, int]]) -> Ticket | None:
        """A slot in every key (name, limit) if none is locked or full (failures + attempts in flight); else None."""
        now = self._clock()
        with self._lock:
            states = [self._keys.get(name) for name, _ in keys]
            for (_, limit), k in zip(keys, states, strict=True):
                if k is None:
                    continue
                self._expire(k, now)
                if k.locked_until > now or len(k.fails) + k.pending >= limit:
                    return None
            for (name, _), k in zip(keys, states, strict=True):
                if k is None:
                    k = self._new(name, now)
                k.pending += 1
            return Ticket(tuple(keys))

    def failed(self, ticket: Ticket) -> None:
        """The reserved attempt failed: count it on every key, locking the keys that reach their limit."""
        now = self._clock()
        with self._lock:
            for name, limit in ticket.keys:
                k = self._keys.get(name) or self._new(name, now)
                k.pending = max(0, k.pending - 1)
                self._expire(k, now)
                k.fails.append(now)
                k.last = now
                self._keys.move_to_end(name)
                if len(k.fails) >= limit:
                    k.locked_until = now + min(self.window_s * 2**k.lockouts, self.max_lock_s)
                    k.lockouts += 1
                    k.fails.clear()

    def succeeded(self, ticket: Ticket, forget: Sequence[str] = ()) -> None:
        """The reserved attempt succeeded: release its slots and forget the keys in ``forget`` entirely."""
        with self._lock:
            for name, _ in ticket.keys:
                k = self._keys.get(name)
                if k is None:
                    continue
                k.pending = max(0, k.pending - 1)
                if name in forget or (not k.fails and not k.pending and not k.lockouts):
                    del self._keys[name]

    def _expire(self, k: _Key, now: float) -> None:
        if k.fails and now - k.fails[0] > self.window_s:
            k.fails = [t for t in k.fails if now - t <= self.window_s]
        if k.lockouts and now - max(k.last, k.locked_until) > self.forget_s:
            k.lockouts = 0

    def _new(self, name: str, now: float) -> _Key:
        """A new key; when full, the least recently failed key goes first (O(1), so a flood costs no scan)."""
        while len(self._keys) >= self.max_keys:
            self._keys.popitem(last=False)
        k = self._keys[name] = _Key(last=now)
        return k

    def prune(self) -> None:
        """Drop every key with nothing left to remember."""
        now = self._clock()
        with self._lock:
            for name in [n for n, k in self._keys.items() if self._idle(k, now)]:
                del self._keys[name]

    def _idle(self, k: _Key, now: float) -> bool:
        self._expire(k, now)
        return not k.pending and not k.fails and k.locked_until <= now and not k.lockouts
