"""The local credential: how a command run by the job's user reaches the running main job's API without a token.

The job writes ``<data_dir>/api-local.json`` (mode 0600, so only its user can read the token)::

    {"url": "http://127.0.0.1:8081", "token": "...", "role": "operator", "name": "local-cli", "pid": 4242}

and removes it when it stops. A file left by a job that died is ignored: its ``pid`` is no longer alive.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from aidc.errors import ConfigError

FILE_NAME = "api-local.json"


@dataclass(frozen=True, slots=True)
class LocalCredential:
    """Where the job's API listens, the token it accepts from the local CLI, and the job's process id."""

    url: str
    token: str
    role: str
    name: str
    pid: int


def credential_path(data_dir: Path) -> Path:
    """``<data_dir>/api-local.json``."""
    return Path(data_dir) / FILE_NAME


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: no signal sent, only the existence (and permission) check
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, under another user
    return True


def read_local_credential(data_dir: Path) -> LocalCredential | None:
    """The running job's credential; None when the file is missing or its job is gone (ConfigError if garbled)."""
    path = credential_path(data_dir)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the job's local credential: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: line {exc.lineno}: invalid JSON") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    for key, kind in (("url", str), ("token", str), ("role", str), ("name", str), ("pid", int)):
        if not isinstance(raw.get(key), kind) or isinstance(raw.get(key), bool):
            raise ConfigError(f"{path}: {key}: missing or not a {kind.__name__}")
    cred = LocalCredential(raw["url"], raw["token"], raw["role"], raw["name"], raw["pid"])
    return cred if cred.pid > 0 and _alive(cred.pid) else None


def write_local_credential(data_dir: Path, cred: LocalCredential) -> Path:
    """Write the credential with mode 0600 (created so, never readable by others even for a moment)."""
    path = credential_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(asdict(cred), f)
    os.replace(tmp, path)
    return path
