"""Quiet by default: library loggers (asyncua, pymodbus, uvicorn) stay at WARNING unless ``-v`` is given, so
``aidc simulate`` prints its useful lines only; asyncua never logs at DEBUG (its DEBUG records carry passwords)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aidc import logs
from aidc.config import load_site
from tests.sim_helpers import site_doc, write_site

ROOT = Path(__file__).resolve().parents[1]
READY_TIMEOUT_S = 120.0
NAMES = ("asyncua", "asyncua.server.address_space", "pymodbus", "uvicorn")


@pytest.fixture
def restore_levels() -> Iterator[None]:
    """Put the library loggers' levels back after a test that configures them."""
    saved = {name: logging.getLogger(name).level for name in NAMES}
    yield
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


@pytest.mark.parametrize(
    ("verbose", "expected"),
    [
        (0, (logging.WARNING, logging.WARNING, logging.WARNING, logging.WARNING)),
        (1, (logging.INFO, logging.WARNING, logging.INFO, logging.INFO)),
        (2, (logging.INFO, logging.INFO, logging.DEBUG, logging.DEBUG)),
        (5, (logging.INFO, logging.INFO, logging.DEBUG, logging.DEBUG)),
    ],
)
@pytest.mark.usefixtures("restore_levels")
def test_library_levels_follow_the_verbosity(verbose: int, expected: tuple[int, ...]) -> None:
    """WARNING by default, INFO with -v (the per-node flood needs -vv), DEBUG with -vv except asyncua (INFO at most)."""
    logs.configure(verbose)
    assert tuple(logging.getLogger(name).level for name in NAMES) == expected


@pytest.mark.parametrize(
    ("before", "after"),
    [(logging.NOTSET, logging.WARNING), (logging.DEBUG, logging.INFO), (logging.INFO, logging.INFO),
     (logging.ERROR, logging.ERROR)],
)  # fmt: skip
@pytest.mark.usefixtures("restore_levels")
def test_never_debug_keeps_asyncua_quiet_and_off_debug(before: int, after: int) -> None:
    """At import, asyncua left unset becomes WARNING (quiet), DEBUG becomes INFO, anything else is kept."""
    logging.getLogger("asyncua").setLevel(before)
    logs.never_debug("asyncua")
    assert logging.getLogger("asyncua").level == after


def _simulate(tmp_path: Path, *flags: str) -> tuple[list[str], list[str]]:
    """Run `aidc [flags] simulate` on a 2-rack site until it announces itself, stop it with Ctrl-C (SIGINT), and
    return every line it printed and the device names of the site."""
    path = write_site(tmp_path, site_doc(tmp_path, racks=2))
    devices = [d.name for d in load_site(path).devices]
    out_path = tmp_path / "simulate.out"
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "app.cli", *flags, "simulate", "--config", str(path)]
    with out_path.open("w", encoding="utf-8") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        # The announcement is printed once every server listens: waiting on it is waiting on state.
        while "\nsimulating " not in "\n" + out_path.read_text(encoding="utf-8"):
            assert proc.poll() is None, out_path.read_text(encoding="utf-8")[-3000:]
            assert time.monotonic() < deadline, "aidc simulate did not announce itself"
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return out_path.read_text(encoding="utf-8").splitlines(), devices


def test_simulate_prints_only_its_useful_lines(tmp_path: Path) -> None:
    """Without -v: one line per device with its address, the 'simulating' line, and no asyncua/pymodbus INFO line."""
    lines, devices = _simulate(tmp_path)
    assert not [ln for ln in lines if " INFO " in ln or "asyncua" in ln or "pymodbus" in ln]
    assert len(lines) == len(devices) + 1, lines
    for name, line in zip(devices, lines, strict=False):
        assert line.startswith(name)
        assert "modbus://127.0.0.1:" in line or "opc.tcp://127.0.0.1:" in line
    assert lines[-1].startswith("simulating dc1: 10 devices on 5 Modbus ports and 2 OPC-UA servers")


def test_simulate_with_v_shows_the_library_info_lines(tmp_path: Path) -> None:
    """With -v the servers' INFO lines appear beside the useful ones, without asyncua's one line per node added."""
    lines, devices = _simulate(tmp_path, "-v")
    assert any(" INFO asyncua.server" in ln for ln in lines)
    assert not [ln for ln in lines if "asyncua.server.address_space" in ln]
    assert any(ln.startswith("simulating dc1: ") for ln in lines)
    assert all(any(ln.startswith(name) for ln in lines) for name in devices)
    assert len(lines) < 200  # the address-space flood alone is about 2,000 lines for this site
