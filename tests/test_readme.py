"""The README's command examples stay in step with the command line."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from app.cli import build_parser

README = Path(__file__).resolve().parents[1] / "README.md"


def _examples() -> list[str]:
    """Every `aidc ...` command line inside the README's code blocks and tables."""
    text = README.read_text(encoding="utf-8")
    found = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            cmd = line.split("#", 1)[0].strip()
            if cmd.startswith("aidc "):
                found.append(cmd)
    found += [m.strip() for m in re.findall(r"\| `(aidc [^`]+)` \|", text)]
    return found


def test_readme_has_examples() -> None:
    """The README shows the main commands."""
    names = {shlex.split(c)[1] for c in _examples()}
    assert {"init", "simulate", "query", "pue", "backtest"} <= names


@pytest.mark.parametrize("command", _examples())
def test_readme_example_parses(command: str) -> None:
    """Each README example is accepted by the real argument parser (options and sub-commands exist)."""
    # Usage-style rows in the table use placeholders: N for a number, optional parts in [brackets].
    usage = command.replace("[", "").replace("]", "").replace("...", "")
    argv = ["4" if a == "N" else a for a in shlex.split(usage)[1:]]
    args = build_parser().parse_args(argv)
    assert callable(args.func)
