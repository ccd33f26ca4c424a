"""The event loop aidc's long-running jobs use: uvloop where it is installed, else asyncio's own.

Per request, asyncio's pure-Python selector loop costs several times what a C client spends on the same Modbus
poll; uvloop (libuv) cuts that overhead, and with hundreds of polls per second it is most of the collector's CPU.
Behaviour is the same on either loop; tests run on the default loop.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Coroutine
from types import FrameType
from typing import Any, TypeVar

T = TypeVar("T")


def loop_name() -> str:
    """``uvloop`` or ``asyncio``: which loop :func:`run` uses here."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: the job stops exactly as on Ctrl-C (children stopped, queues flushed, setpoints reverted)."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


def stop_on_sigterm() -> None:
    """Make SIGTERM raise :class:`Terminated` (a KeyboardInterrupt) outside the loop, so ``finally`` blocks run.

    Python's default for SIGTERM ends the process at once: no ``finally``, so a simulator child would stay
    running with every port bound. Inside :func:`run` the loop's own handler takes over.
    """
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)


async def _cancel_on_sigterm(main: Coroutine[Any, Any, T]) -> T:
    """Await ``main``; SIGTERM cancels it (its ``finally`` blocks run) and is re-raised as :class:`Terminated`."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    got: list[int] = []

    def on_term() -> None:
        got.append(signal.SIGTERM)
        if task is not None:
            task.cancel()

    previous = signal.getsignal(signal.SIGTERM)
    try:
        loop.add_signal_handler(signal.SIGTERM, on_term)
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no signals here
        return await main
    try:
        return await main
    except asyncio.CancelledError:
        if got:
            raise Terminated() from None
        raise
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        if callable(previous) or previous in (signal.SIG_IGN, signal.SIG_DFL):
            signal.signal(signal.SIGTERM, previous)


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on the fastest available loop; SIGTERM stops it as Ctrl-C does."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(_cancel_on_sigterm(main))
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(_cancel_on_sigterm(main))
