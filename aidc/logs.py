"""Logging set-up shared by the ``aidc`` command line and the simulators' own entry point.

Quiet by default: aidc's own loggers and the libraries' at WARNING, so ``aidc simulate`` and ``aidc demo`` print
their useful lines only (asyncua alone logs one INFO line per node it adds: about 2,000 for a 2-rack site). ``-v``
brings aidc's and the libraries' INFO lines (but for a per-item flood, which needs ``-vv``), ``-vv`` DEBUG, except for
the libraries that put secrets in their DEBUG records, which stay at INFO whatever is asked.
"""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Third-party loggers that chatter at INFO: the OPC-UA and Modbus stacks (servers and clients) and the API's server.
# (werkzeug's one line per request is silenced by the dashboard itself, whatever the verbosity.)
LIBRARY_LOGGERS: tuple[str, ...] = ("asyncua", "pymodbus", "uvicorn")

# Loggers that write one INFO line per item (asyncua: per node added to a server's address space): their INFO lines
# need -vv, so that -v stays readable.
FLOODS: frozenset[str] = frozenset({"asyncua.server.address_space"})

# asyncua's DEBUG records print whole requests, including the password of an ActivateSession request: nothing
# secret may reach a log, so these never go below INFO (aidc -vv included).
NEVER_DEBUG: frozenset[str] = frozenset({"asyncua"})


def level_for(verbose: int) -> int:
    """The level ``-v`` given ``verbose`` times asks for: WARNING, INFO, then DEBUG."""
    return logging.WARNING - 10 * min(max(verbose, 0), 2)


def library_level(name: str, verbose: int) -> int:
    """The level of a library logger at this verbosity (never DEBUG for the loggers that would print secrets)."""
    level = level_for(verbose)
    return max(level, logging.INFO) if name.partition(".")[0] in NEVER_DEBUG else level


def never_debug(name: str) -> None:
    """Keep library logger ``name`` off DEBUG from import on; left unset, it stays quiet (WARNING).

    For modules that import the library outside the CLI (tests, tools): :func:`configure` sets the exact levels.
    """
    logger = logging.getLogger(name)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.WARNING)
    elif logger.level < logging.INFO:
        logger.setLevel(logging.INFO)


def configure(verbose: int = 0) -> None:
    """Root logger at WARNING, INFO with ``-v``, DEBUG with ``-vv``; library loggers follow (see module docstring)."""
    logging.basicConfig(level=level_for(verbose), format=FORMAT)
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(library_level(name, verbose))
    for name in FLOODS:
        logging.getLogger(name).setLevel(library_level(name, verbose - 1))
