"""The simulators' own entry point: ``python -m simulators simulate|fault ...``.

Real devices are separate from the manager, so the simulated facility runs in its own process, started through this
entry point rather than the manager's CLI. ``--exit-with-parent PID`` makes a simulator started by a job stop when
that job dies, even by SIGKILL, so no orphaned device servers keep their ports.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence

from aidc import logs
from aidc.errors import AidcError
from simulators import cli

PARENT_POLL_S = 0.5
PARENT_GRACE_S = 10.0  # after the parent died: time for a clean stop before the process exits hard


def watch_parent(pid: int) -> threading.Thread:
    """A daemon thread that stops this process (SIGTERM, then exit) once process ``pid`` is no longer its parent."""

    def run() -> None:
        while os.getppid() == pid:
            time.sleep(PARENT_POLL_S)
        print(f"simulator: parent process {pid} is gone; stopping", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(PARENT_GRACE_S)
        os._exit(1)

    t = threading.Thread(target=run, name="parent-watch", daemon=True)
    t.start()
    return t


def main(argv: Sequence[str] | None = None) -> int:
    """Run a simulator sub-command; exit status as the ``aidc`` CLI's (2 for an operator's error)."""
    parser = argparse.ArgumentParser(prog="python -m simulators", description="aidc's simulated facility")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    parser.add_argument("--exit-with-parent", type=int, metavar="PID", help="stop when process PID (the job) dies")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    cli.register(sub)
    args = parser.parse_args(argv)
    logs.configure(args.verbose)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if args.exit_with_parent is not None:
        if os.getppid() != args.exit_with_parent:
            print(f"simulator: parent process {args.exit_with_parent} is already gone", file=sys.stderr)
            return 1
        watch_parent(args.exit_with_parent)
    try:
        return int(args.func(args))
    except AidcError as exc:
        print(f"simulate {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
