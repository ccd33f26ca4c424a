"""The clean Modbus poll in one C call, where the optional extension ``collectors._fastpoll`` is built.

A poll of a register-only plan without sentinels whose every sample turns out good (the usual poll) costs, in
Python, a ``struct`` read per byte-order class, the scaling, a few ``map`` passes for the quality checks and three
numpy calls for the batch's columns: about 20 µs for 61 points on a 2-core VM with caches cold between polls, more
than the read itself. :class:`FastPoll` does all of it in one C call (decode in every word and byte order,
``scale * raw + offset`` rounded as numpy rounds it, range, counter and stuck checks with the state changes of
:meth:`QualityTracker.clean_list`, the two new columns) and returns None, changing nothing, when a sample needs the
full checks. ``make venv`` compiles it (setup.py; numpy's headers); without a C compiler the install still succeeds
and :func:`fast_poll` returns None: the Python path (``RegisterDecoder.unpack_scaled`` and ``clean_list``) is the
same poll, and tests check the two agree value for value and state for state.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from collectors.decode import BYTE_SWAP, WORD_SWAP, pymodbus_type
from collectors.plan import ModbusPlan

if TYPE_CHECKING:
    from collectors._fastpoll import Poll
    from collectors.quality import QualityTracker

try:
    from collectors import _fastpoll
except ImportError:  # not compiled here: the Python path serves
    _fastpoll = None  # type: ignore[assignment]

DISABLE_ENV = "AIDC_NO_FASTPOLL"  # set (to anything but "") to poll through the Python path, e.g. to compare


def available() -> bool:
    """Whether the C accelerator is built here (and not switched off by ``AIDC_NO_FASTPOLL``)."""
    return _fastpoll is not None and not os.environ.get(DISABLE_ENV)


def layout(plan: ModbusPlan) -> list[tuple[int, int, str, bool, bool, float, float]]:
    """Per point of a register-only plan, in plan order: its first byte in the poll buffer, registers, struct code,
    word swap, byte swap, scale and offset (a single register has no word order)."""
    out = []
    for p, off in zip(plan.points, plan.offsets, strict=True):
        word_swap = p.byte_order in WORD_SWAP and p.registers > 1
        out.append((2 * off, p.registers, pymodbus_type(p.type).value[0], word_swap, p.byte_order in BYTE_SWAP,
                    float(p.scale), float(p.offset)))  # fmt: skip
    return out


def fast_poll(plan: ModbusPlan, tracker: QualityTracker) -> Poll | None:
    """The C poll of ``plan`` bound to ``tracker`` (whose state it then keeps), or None where the extension is not
    built or switched off. Only for plans whose points are all register values and trackers without sentinels."""
    if not available():
        return None
    if len(tracker.sentinels):
        raise ValueError(f"{plan.device.name}: a tracker with sentinels needs the raw values: no fast poll")
    poll = _fastpoll.Poll(layout(plan), tracker.lo_bounds, tracker.hi_bounds, tracker.moving_points,
                          tracker.counter_points, tracker.stuck_polls)  # fmt: skip
    tracker.attach(poll)
    return poll
