"""The main job's local credential file (api/local.py) and the token it registers (TokenStore.add)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from aidc.errors import ConfigError
from api.auth import ApiRole, Identity, TokenStore, new_token
from api.local import (
    LocalCredential,
    credential_path,
    read_local_credential,
    remove_local_credential,
    write_local_credential,
)


def _cred(pid: int | None = None, token: str = "t" * 43) -> LocalCredential:
    return LocalCredential("http://127.0.0.1:8081", token, "operator", "local-cli", os.getpid() if pid is None else pid)


def _dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)  # fmt: skip
    return int(proc.stdout)


def test_written_with_mode_0600_even_under_a_permissive_umask(tmp_path: Path) -> None:
    """The file is readable by its owner only, whatever the umask, and holds url, token, role, name and pid."""
    old = os.umask(0)
    try:
        path = write_local_credential(tmp_path / "var", _cred())
    finally:
        os.umask(old)
    assert path == credential_path(tmp_path / "var")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {"url": "http://127.0.0.1:8081", "token": "t" * 43, "role": "operator",
                                            "name": "local-cli", "pid": os.getpid()}  # fmt: skip
    assert [p.name for p in path.parent.iterdir()] == ["api-local.json"]  # no temporary file left behind


def test_read_back_only_while_its_job_lives(tmp_path: Path) -> None:
    """A live pid's credential is read back; a missing file, a dead pid or a torn file give None."""
    assert read_local_credential(tmp_path) is None
    write_local_credential(tmp_path, _cred())
    assert read_local_credential(tmp_path) == _cred()
    write_local_credential(tmp_path, _cred(pid=_dead_pid()))
    assert read_local_credential(tmp_path) is None
    credential_path(tmp_path).write_text('{"url": "http://127.0.0.1:8081", "tok')
    assert read_local_credential(tmp_path) is None


def test_removed_only_by_the_job_that_wrote_it(tmp_path: Path) -> None:
    """A stopping job removes its own file, never a newer job's."""
    write_local_credential(tmp_path, _cred(pid=os.getpid()))
    remove_local_credential(tmp_path, os.getpid() + 1)
    assert credential_path(tmp_path).exists()
    remove_local_credential(tmp_path, os.getpid())
    assert not credential_path(tmp_path).exists()
    remove_local_credential(tmp_path, os.getpid())  # already gone: nothing to do


def test_token_store_add_registers_an_operator() -> None:
    """An added token identifies as its name and role beside the configured ones; bad names and short tokens are
    refused with the name in the message."""
    store = TokenStore.from_env({"AIDC_API_TOKENS": "sched:read:read-token-0123456789"})
    token = new_token()
    assert store.add(token, "local-cli", ApiRole.OPERATOR) == Identity("local-cli", ApiRole.OPERATOR)
    assert store.identify(token) == Identity("local-cli", ApiRole.OPERATOR)
    assert store.identify("read-token-0123456789") == Identity("sched", ApiRole.READ)
    assert len(store) == 2
    with pytest.raises(ConfigError, match="bad name"):
        store.add(new_token(), "bad name", ApiRole.READ)
    with pytest.raises(ConfigError, match="short"):
        store.add("short", "short", ApiRole.READ)
