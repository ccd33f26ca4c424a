"""bench/headroom.py on a tiny sample: it runs end to end and its last line carries the six figures the issue names."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NAMES = {
    "leesburg_oracle_facility_pct",
    "phoenix_oracle_facility_pct",
    "leesburg_best_fixed_pct",
    "phoenix_best_fixed_pct",
    "leesburg_bin_table_share",
    "phoenix_bin_table_share",
}


def test_headroom_bench_prints_the_six_figures() -> None:
    """A 4-rack, 4-sample run ends with JSON holding the six names; the oracle saves at least the best fixed."""
    cmd = [sys.executable, str(ROOT / "bench" / "headroom.py"), "--racks", "4", "--day-step", "180", "--hour-step", "12"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=True, cwd=ROOT)
    last = json.loads(done.stdout.strip().splitlines()[-1])
    assert NAMES <= set(last)
    for site in ("leesburg", "phoenix"):
        assert last[f"{site}_oracle_facility_pct"] >= last[f"{site}_best_fixed_pct"] - 1e-9
        assert 0.0 <= last[f"{site}_bin_table_share"] <= 1.0 + 1e-9
    assert "dry bulb band" in done.stdout
