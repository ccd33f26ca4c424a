"""Logging set-up shared by the ``aidc`` command line and the simulators' own entry point."""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure(verbose: int = 0) -> None:
    """Root logger at WARNING, INFO with ``-v``, DEBUG with ``-vv``."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format=FORMAT)
