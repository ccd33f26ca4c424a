"""pysnmp's asyncio dispatcher made safe for untrusted datagrams, shared by the SNMP collector and the agent simulator.

It lives in the kernel because both sides need the same guard and neither stage may import the other
(tests/test_layering.py); only ``collectors/snmp.py`` and ``simulators/snmp_agent.py`` import this module, so nothing
else loads pysnmp.
"""

from __future__ import annotations

import logging
from typing import Any

from pysnmp.carrier.asyncio.dispatch import AsyncioDispatcher

log = logging.getLogger(__name__)


class QuietDispatcher(AsyncioDispatcher):
    """pysnmp's asyncio dispatcher, dropping (at DEBUG) a datagram it cannot process instead of raising in the loop.

    Two cases met in practice: a reply still in flight when the engine closes reaches a callback whose transport is
    gone (CarrierError), and some garbage datagrams make pyasn1's BER decoder raise TypeError, which pysnmp's
    message dispatcher does not catch (bench/fuzz.py found it). Either way the datagram came from the network and is
    dropped, as an agent or a manager must drop what it cannot parse; a dropped request or reply is a timeout.
    """

    dropped = 0

    def _callback_function(self, incomingTransport: Any, transportAddress: Any, incomingMessage: Any) -> None:
        try:
            super()._callback_function(incomingTransport, transportAddress, incomingMessage)
        except Exception as exc:  # untrusted bytes entering a library: any failure drops the datagram, nothing else
            self.dropped += 1
            log.debug("snmp: datagram from %s dropped: %s: %s", transportAddress, type(exc).__name__, exc)
