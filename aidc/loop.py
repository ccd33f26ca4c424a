"""The event loop aidc's long-running jobs use: uvloop where it is installed, else asyncio's own.

Per request, asyncio's pure-Python selector loop costs several times what a C client spends on the same Modbus
poll; uvloop (libuv) cuts that overhead, and with hundreds of polls per second it is most of the collector's CPU.
Behaviour is the same on either loop; tests run on the default loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_name() -> str:
    """``uvloop`` or ``asyncio``: which loop :func:`run` uses here."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on the fastest available loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)
