"""API tokens with roles: from the environment (plain, as secrets are handed to services) or a file of hashes.

Roles: ``read`` may call every GET endpoint and the placement query; ``operator`` may also change the controller's
mode and overrides. Only SHA-256 digests are kept in memory and compared (in constant time); tokens are never
logged or echoed.

- ``AIDC_API_TOKENS="scheduler:read:<token>,ops:operator:<token>"`` (name:role:token, comma-separated), or
- a TOML token file (``--tokens FILE``) holding only hashes, written by ``aidc api-token``::

      [[tokens]]
      name = "scheduler"
      role = "read"
      sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import os
import re
import secrets
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from aidc.errors import ConfigError

ENV_VAR = "AIDC_API_TOKENS"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_HEX = re.compile(r"^[0-9a-f]{64}$")


class ApiRole(enum.StrEnum):
    """What a token may do."""

    READ = "read"
    OPERATOR = "operator"


@dataclass(frozen=True, slots=True)
class Identity:
    """Who called: the token's name and role."""

    name: str
    role: ApiRole

    @property
    def can_write(self) -> bool:
        """Operators may change modes and overrides."""
        return self.role is ApiRole.OPERATOR


def digest(token: str) -> str:
    """SHA-256 hex digest of a token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    """A fresh random token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def _role(text: str, where: str) -> ApiRole:
    try:
        return ApiRole(text)
    except ValueError:
        raise ConfigError(f"{where}: role {text!r} is not one of read, operator") from None


class TokenStore:
    """Token digests -> identities; :meth:`identify` checks a presented token."""

    def __init__(self, entries: Mapping[str, Identity]) -> None:
        self._entries = dict(entries)

    def __len__(self) -> int:
        return len(self._entries)

    def identify(self, token: str) -> Identity | None:
        """The identity of a presented token, or None (every digest is compared, in constant time)."""
        d = digest(token)
        found = None
        for known, ident in self._entries.items():
            if hmac.compare_digest(known, d):
                found = ident
        return found

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TokenStore:
        """Tokens from ``AIDC_API_TOKENS``; ConfigError names the entry (never the secret)."""
        raw = (os.environ if env is None else env).get(ENV_VAR, "")
        entries: dict[str, Identity] = {}
        for i, item in enumerate(x for x in raw.split(",") if x.strip()):
            parts = item.strip().split(":", 2)
            where = f"{ENV_VAR} entry {i + 1}"
            if len(parts) != 3 or not parts[2]:
                raise ConfigError(f"{where}: expected name:role:token")
            name, role, token = parts
            if not _NAME.match(name):
                raise ConfigError(f"{where}: {name!r} is not a token name")
            if len(token) < 16:
                raise ConfigError(f"{where} ({name}): token shorter than 16 characters")
            entries[digest(token)] = Identity(name, _role(role, where))
        return cls(entries)

    @classmethod
    def from_file(cls, path: Path) -> TokenStore:
        """Tokens from a TOML file of ``[[tokens]]`` with name, role and sha256."""
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read token file: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}") from None
        entries: dict[str, Identity] = {}
        unknown = set(data) - {"tokens"}
        if unknown:
            raise ConfigError(f"{path}: {sorted(unknown)[0]}: unknown key")
        for i, t in enumerate(data.get("tokens", [])):
            where = f"{path}: tokens[{i}]"
            if not isinstance(t, dict):
                raise ConfigError(f"{where}: expected a table")
            for key in ("name", "role", "sha256"):
                if not isinstance(t.get(key), str):
                    raise ConfigError(f"{where}: missing key {key!r}")
            extra = set(t) - {"name", "role", "sha256"}
            if extra:
                raise ConfigError(f"{where}.{sorted(extra)[0]}: unknown key")
            if not _NAME.match(t["name"]):
                raise ConfigError(f"{where}.name: {t['name']!r} is not a token name")
            if not _HEX.match(t["sha256"]):
                raise ConfigError(f"{where}.sha256: not a SHA-256 hex digest (64 lowercase hex digits)")
            entries[t["sha256"]] = Identity(t["name"], _role(t["role"], f"{where}.role"))
        return cls(entries)

    def add(self, token: str, name: str, role: ApiRole) -> Identity:
        """Register one more token (e.g. the main job's local CLI credential); only its digest is kept."""
        if not _NAME.match(name):
            raise ConfigError(f"token name {name!r}: letters, digits, '_', '.', '-' only")
        if len(token) < 16:
            raise ConfigError(f"token {name}: shorter than 16 characters")
        ident = Identity(name, role)
        # A new dict, rebound in one step: a request identifying itself meanwhile sees the old or the new one whole.
        self._entries = {**self._entries, digest(token): ident}
        return ident

    def merged(self, other: TokenStore) -> TokenStore:
        """Both stores' tokens."""
        return TokenStore({**self._entries, **other._entries})


def token_file_entry(name: str, role: str) -> tuple[str, str]:
    """A new token and the TOML entry (with only its hash) to append to a token file."""
    if not _NAME.match(name):
        raise ConfigError(f"--name {name!r}: letters, digits, '_', '.', '-' only")
    r = _role(role, "--role")
    token = new_token()
    entry = f'[[tokens]]\nname = "{name}"\nrole = "{r.value}"\nsha256 = "{digest(token)}"\n'
    return token, entry
