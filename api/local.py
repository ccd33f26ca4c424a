"""The main job's local credential: how a CLI run by the job's user reaches the job's API without a token of its own.

While its API serves, the main job writes ``<data_dir>/api-local.json``, readable by its user only (mode 0600 from
the moment it exists), holding the API's URL, an operator token made for this run (registered in the job's token
store as ``local-cli``) and the job's pid; the job removes it on a clean stop. After a crash the file stays behind,
so a reader also checks that the pid is alive.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger(__name__)

FILE_NAME = "api-local.json"
LOCAL_NAME = "local-cli"
LOCAL_ROLE = "operator"


@dataclass(frozen=True, slots=True)
class LocalCredential:
    """Where the running job's API listens and the token that opens it."""

    url: str
    token: str
    role: str
    name: str
    pid: int


def credential_path(data_dir: Path) -> Path:
    """The credential file of a site's data directory."""
    return data_dir / FILE_NAME


def pid_alive(pid: int) -> bool:
    """True when a process with this id exists (one of another user counts: it is alive, only not ours)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_local_credential(data_dir: Path, cred: LocalCredential) -> Path:
    """Write the credential atomically, mode 0600 from creation (a temporary file renamed over the old one)."""
    path = credential_path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    # mkstemp creates the file with O_EXCL and mode 0600: never world-readable, not even before the rename.
    fd, tmp = tempfile.mkstemp(prefix=".api-local.", suffix=".tmp", dir=data_dir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(asdict(cred), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def remove_local_credential(data_dir: Path, pid: int) -> None:
    """Remove the credential if it is still the one process ``pid`` wrote (a newer job's file is left alone)."""
    path = credential_path(data_dir)
    cred = _load(path)
    if cred is not None and cred.pid == pid:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def read_local_credential(data_dir: Path) -> LocalCredential | None:
    """The running job's credential; None when there is no file, it cannot be read, or its job is gone."""
    cred = _load(credential_path(data_dir))
    if cred is None or not pid_alive(cred.pid):
        return None
    return cred


def _load(path: Path) -> LocalCredential | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:  # another user's file, or torn: say so, and behave as if no job runs
        log.warning("%s: cannot read the job's local API credential (%s); ignoring it", path, exc)
        return None
    try:
        return LocalCredential(url=str(doc["url"]), token=str(doc["token"]), role=str(doc["role"]),
                               name=str(doc["name"]), pid=int(doc["pid"]))  # fmt: skip
    except (KeyError, TypeError, ValueError) as exc:
        log.warning("%s: not a local API credential (missing or bad %s); ignoring it", path, exc)
        return None
