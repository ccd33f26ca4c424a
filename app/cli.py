"""The ``aidc`` command line: one dispatcher, each sub-command registered by the module that owns it."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from aidc import logs
from aidc.errors import AidcError
from app import remote

# Each module exposes ``register(subparsers)``, adding its sub-commands with ``set_defaults(func=...)``;
# ``func(args) -> int`` is the exit status.
COMMAND_MODULES: tuple[str, ...] = (
    "app.commands.site",
    "app.commands.run",
    "simulators.cli",
    "app.commands.query",
    "collectors.cli",
    "analytics.energy.cli",
    "analytics.leasing.cli",
    "analytics.alarms.cli",
    "api.cli",
    "analytics.report.cli",
    "dashboards.cli",
    "analytics.forecast.cli",
    "app.commands.evaluate_control",
    "app.commands.serve",
)


def build_parser() -> argparse.ArgumentParser:
    """Parser with every registered sub-command."""
    parser = argparse.ArgumentParser(prog="aidc", description="Energy and telemetry manager for AI data centres")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    # The data commands answer through the running job's API when one holds the store (analytics.ask.answerer).
    parser.set_defaults(answer=remote.answer)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``aidc`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logs.configure(args.verbose)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args))
    except AidcError as exc:
        # Configuration and input errors are the operator's to fix: one clear line, no traceback.
        print(f"aidc {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
