"""The restart fault every simulated server shares (simulators/restart.py): down, then listening again, retried while
the old socket lingers, one restart at a time, abandoned on stop."""

from __future__ import annotations

import asyncio
import logging

import pytest

from simulators import restart
from simulators.restart import RestartFault


class _Server:
    """A server whose start fails with OSError ``refusals`` times (the port still held), then succeeds."""

    def __init__(self, refusals: int = 0) -> None:
        self.refusals = refusals
        self.closes = 0
        self.starts = 0
        self.up = True

    async def close(self) -> None:
        self.closes += 1
        self.up = False

    async def start(self) -> None:
        self.starts += 1
        if self.starts <= self.refusals:
            raise OSError("address in use")
        self.up = True


@pytest.fixture(autouse=True)
def _no_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(restart, "BIND_RETRY_S", 0.0)


async def test_server_goes_down_and_listens_again_after_refusals() -> None:
    """The server is closed, and listening is retried until the port can be bound again."""
    srv = _Server(refusals=3)
    fault = RestartFault("test 127.0.0.1:1", srv.close, srv.start)
    await fault.schedule(0.0)
    assert (srv.closes, srv.starts, srv.up) == (1, 4, True)


async def test_a_restart_under_way_is_not_stacked() -> None:
    """A second restart fault while one is under way is left to the first (one close, one start)."""
    srv = _Server()
    fault = RestartFault("test 127.0.0.1:1", srv.close, srv.start)
    first = fault.schedule(0.0)
    assert fault.schedule(0.0) is first
    await first
    assert (srv.closes, srv.starts) == (1, 1)


async def test_cancel_abandons_the_restart() -> None:
    """Stopping the server during the down time leaves it down: the restart does not start it again."""
    srv = _Server()
    fault = RestartFault("test 127.0.0.1:1", srv.close, srv.start)
    fault.schedule(60.0)
    await asyncio.sleep(0)  # the close runs, then the down time begins
    fault.cancel()
    await asyncio.sleep(0)
    assert (srv.closes, srv.starts, srv.up) == (1, 0, False)


async def test_a_port_that_stays_taken_is_logged_once_naming_the_server(caplog: pytest.LogCaptureFixture) -> None:
    """When the port cannot be bound again in all the tries, one ERROR line names the server."""
    srv = _Server(refusals=10**6)
    fault = RestartFault("modbus 127.0.0.1:5020", srv.close, srv.start)
    with caplog.at_level(logging.INFO, logger="simulators.restart"):
        await fault.schedule(0.0)
    assert srv.starts == restart.BIND_TRIES
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == ["modbus 127.0.0.1:5020: could not listen again after a restart fault"]
