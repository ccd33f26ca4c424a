"""`make test` runs `-n 2 --dist loadgroup` so the tests sharing the one backfilled demo (``xdist_group``) run on one
worker; pytest 9.2 silently broke that grouping with pytest-xdist 3.8 (pytest-xdist#1386: two demos, minutes more)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

_GROUPED = '''
import os
import pytest

pytestmark = [pytest.mark.xdist_group("shared")]


@pytest.mark.parametrize("k", range(6))
def test_grouped(k):
    with open(os.environ["WHERE"], "a") as fh:
        fh.write(os.environ["PYTEST_XDIST_WORKER"] + "\\n")
'''


@pytest.mark.timeout(120)
def test_loadgroup_sends_a_group_to_one_worker(tmp_path: Path) -> None:
    """Under `-n 2 --dist loadgroup` every test of one xdist_group runs on the same worker."""
    (tmp_path / "test_grouped.py").write_text(_GROUPED)
    (tmp_path / "test_other.py").write_text("def test_a():\n    pass\n\n\ndef test_b():\n    pass\n")
    where = tmp_path / "where.txt"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-n", "2", "--dist", "loadgroup", "-p", "no:cacheprovider",
         "-p", "no:dash", str(tmp_path)],
        capture_output=True, text=True, timeout=110, check=False, cwd=tmp_path,
        env={"WHERE": str(where), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    workers = where.read_text().split()
    assert len(workers) == 6
    assert len(set(workers)) == 1, workers
