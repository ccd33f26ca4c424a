"""API tokens: parsed from the environment and from a file of hashes, errors name the entry, never the secret."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from aidc.errors import ConfigError
from api.auth import ApiRole, TokenStore, digest, token_file_entry


def test_env_tokens_identify_roles() -> None:
    """name:role:token entries from AIDC_API_TOKENS identify callers; unknown tokens are None."""
    store = TokenStore.from_env({"AIDC_API_TOKENS": "sched:read:aaaaaaaaaaaaaaaa1, ops:operator:bbbbbbbbbbbbbbbb2"})
    sched = store.identify("aaaaaaaaaaaaaaaa1")
    assert sched is not None
    assert (sched.name, sched.role, sched.can_write) == ("sched", ApiRole.READ, False)
    ops = store.identify("bbbbbbbbbbbbbbbb2")
    assert ops is not None
    assert ops.can_write
    assert store.identify("nope") is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("sched:read", "AIDC_API_TOKENS entry 1: expected name:role:token"),
        ("sched:admin:aaaaaaaaaaaaaaaa1", "AIDC_API_TOKENS entry 1: role 'admin' is not one of read, operator"),
        ("ok:read:aaaaaaaaaaaaaaaa1,short:read:abc", "AIDC_API_TOKENS entry 2 (short): token shorter than 16"),
    ],
)
def test_env_errors_name_entry_not_secret(value: str, message: str) -> None:
    """A malformed entry is one line naming its position; the token text never appears."""
    with pytest.raises(ConfigError) as err:
        TokenStore.from_env({"AIDC_API_TOKENS": value})
    assert str(err.value).startswith(message)
    assert "aaaaaaaaaaaaaaaa1" not in str(err.value)


def test_token_file_round_trip(tmp_path: Path) -> None:
    """`aidc api-token --append` writes only the hash; the printed token identifies as that name and role."""
    path = tmp_path / "tokens.toml"
    path.write_text("", encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "app.cli", "api-token", "--name", "sched", "--role", "operator", "--append", str(path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    token = proc.stderr.strip().rsplit(" ", 1)[-1]
    text = path.read_text(encoding="utf-8")
    assert token not in text
    assert digest(token) in text
    ident = TokenStore.from_file(path).identify(token)
    assert ident is not None
    assert (ident.name, ident.role) == ("sched", ApiRole.OPERATOR)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[tokens]]\nname = "a"\nrole = "read"\n', "tokens[0]: missing key 'sha256'"),
        ('[[tokens]]\nname = "a"\nrole = "read"\nsha256 = "xyz"\n', "tokens[0].sha256: not a SHA-256 hex digest"),
        ('[[tokens]]\nname = "a"\nrole = "root"\nsha256 = "' + "0" * 64 + '"\n', "tokens[0].role: role 'root'"),
        ('[[tokens]]\nname = "a"\nrole = "read"\nsha256 = "' + "0" * 64 + '"\nplain = "x"\n', "tokens[0].plain: unknown key"),
    ],
)
def test_token_file_errors(tmp_path: Path, text: str, message: str) -> None:
    """A bad token file is one line naming the file and the entry's key."""
    path = tmp_path / "tokens.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")) as err:
        TokenStore.from_file(path)
    assert str(err.value).startswith(str(path))


def test_api_refuses_to_start_without_tokens(tmp_path: Path) -> None:
    """`aidc api` with no tokens configured says how to configure them, exit 2, no traceback."""
    site = tmp_path / "site.toml"
    subprocess.run([sys.executable, "-m", "app.cli", "init", "--racks", "1", "-o", str(site)], check=True)
    env = {k: v for k, v in __import__("os").environ.items() if k != "AIDC_API_TOKENS"}
    proc = subprocess.run([sys.executable, "-m", "app.cli", "api", "--config", str(site)],
                          capture_output=True, text=True, check=False, env=env)  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "aidc api: no API tokens: set AIDC_API_TOKENS=name:role:token or give --tokens FILE (aidc api-token)"
    ]


def test_new_entry_rejects_bad_name() -> None:
    """A token name with spaces is refused naming the option."""
    with pytest.raises(ConfigError, match="--name 'a b'"):
        token_file_entry("a b", "read")
