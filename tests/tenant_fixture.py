"""A fixture month (October 2026, UTC) with two tenants whose bills can be computed by hand.

Four racks draw constant power: r01 100 kW, r02 80 kW, r03 60 kW, r04 40 kW (280 kW of IT). Tenant ``acme``
leases r01 until 16 October and then moves to r02; tenant ``bolt`` leases r03 all month, and r03's PDU has a 32-bit
Wh counter that starts 20 MWh below its modulus, so it wraps on the 14th. r04 is never leased. The utility meter
reads IT + 40 kW of overhead in UTC hours 0-11 and IT + 60 kW in hours 12-23; the cooling meter reads 30 kW. The
grid intensity is 400 gCO2/kWh in hours 0-11 and 200 in hours 12-23. Half the supply is contracted wind
(0 g/kWh), the rest at a 500 g/kWh residual mix. Readings every 5 minutes, with two hours either side of the month.
"""

from __future__ import annotations

import gzip
import shutil
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import tomli_w

from aidc.config import Site, load_site
from aidc.model import Batch, SeriesKey
from aidc.sitegen import SiteTemplate, render_site
from historian import open_historian

PROFILES = Path(__file__).resolve().parents[1] / "collectors" / "profiles"
RACK_KW = {"h1-r01-01": 100.0, "h1-r01-02": 80.0, "h1-r01-03": 60.0, "h1-r01-04": 40.0}
WRAP_RACK = "h1-r01-03"
U32 = 2.0**32
MOVE = pd.Timestamp("2026-10-16T00:00Z")
START, END = pd.Timestamp("2026-10-01T00:00Z"), pd.Timestamp("2026-11-01T00:00Z")


def overhead_kw(hour: np.ndarray) -> np.ndarray:
    """Facility overhead by UTC hour: 40 kW at night (0-11), 60 kW by day (12-23)."""
    return np.where(hour < 12, 40.0, 60.0)


def intensity_g(hour: np.ndarray) -> np.ndarray:
    """Grid intensity by UTC hour: 400 g/kWh at night (0-11), 200 by day (12-23)."""
    return np.where(hour < 12, 400.0, 200.0)


def _site_doc(tmp: Path) -> dict[str, object]:
    doc = tomllib.loads(render_site(SiteTemplate(racks=4, data_dir="var", start="2026-10-01T00:00:00Z")))
    doc["site"]["timezone"] = "UTC"  # type: ignore[index]
    doc["site"]["profile_dirs"] = ["profiles"]  # type: ignore[index]
    for rack in doc["halls"][0]["racks"]:  # type: ignore[index]
        if rack["name"] == WRAP_RACK:
            rack["pdu"]["profile"] = "pdu-u32-counter"
    doc["tenants"] = [
        {"name": "acme", "account": "ACME-001", "racks": ["h1-r01-01"], "from": pd.Timestamp("2026-09-01").date(),
         "until": MOVE.date()},
        {"name": "acme", "account": "ACME-001", "racks": ["h1-r01-02"], "from": MOVE.date()},
        {"name": "bolt", "racks": [WRAP_RACK], "from": pd.Timestamp("2026-10-01").date()},
    ]  # fmt: skip
    doc["carbon"] = {
        "intensity": "grid.csv.gz",
        "residual_mix_g_per_kwh": 500.0,
        "contracts": [{"name": "wind PPA", "share": 0.5, "g_per_kwh": 0.0}],
    }
    return doc


def _write_profile(tmp: Path) -> None:
    """The Raritan-style PDU with a 32-bit energy counter instead of 64-bit (older firmware)."""
    (tmp / "profiles").mkdir()
    text = (PROFILES / "raritan-px3-pdu.toml").read_text(encoding="utf-8")
    text = text.replace('name = "raritan-px3-pdu"', 'name = "pdu-u32-counter"', 1)
    head, _, tail = text.partition('name = "active_energy_wh"')
    tail = tail.replace('type = "UINT64"', 'type = "UINT32"', 1)
    (tmp / "profiles" / "pdu-u32-counter.toml").write_text(head + 'name = "active_energy_wh"' + tail, encoding="utf-8")


def _write_intensity(tmp: Path) -> None:
    hours = pd.date_range("2026-09-30", "2026-11-02", freq="h", tz="UTC")
    df = pd.DataFrame({"timestamp": hours.astype(str), "avg_CI": intensity_g(hours.hour.to_numpy())})
    with gzip.open(tmp / "grid.csv.gz", "wt", encoding="utf-8") as f:
        df.to_csv(f, index=False)


def _series(site: Site, device: str, point: str) -> str:
    dev = site.device(device)
    return SeriesKey.of(dev.profile.measurement, point, dev.tags).id


def build(tmp: Path) -> Path:
    """Write the site, profile, intensity file and a month of counter readings into a DuckDB historian."""
    _write_profile(tmp)
    _write_intensity(tmp)
    path = tmp / "site.toml"
    path.write_text(tomli_w.dumps(_site_doc(tmp)), encoding="utf-8")
    site = load_site(path)
    ts = pd.date_range(START - pd.Timedelta("2h"), END + pd.Timedelta("2h"), freq="5min")
    hours_since = (ts - ts[0]) / pd.Timedelta("1h")
    step_h = 5 / 60
    columns: dict[str, np.ndarray] = {}
    for rack, kw in RACK_KW.items():
        wh = kw * 1000.0 * hours_since.to_numpy()
        if rack == WRAP_RACK:
            wh = (U32 - 20e6 + wh) % U32
        columns[_series(site, f"pdu-{rack}", "active_energy_wh")] = wh
    it_kw = sum(RACK_KW.values())
    facility_kw = it_kw + overhead_kw(ts.hour.to_numpy())
    # Energy accumulates over each 5-minute step at the power of the hour that step lies in.
    steps = np.concatenate([[0.0], facility_kw[:-1] * step_h])
    columns[_series(site, "meter-utility", "energy_kwh")] = 1_000_000.0 + np.cumsum(steps)
    columns[_series(site, "meter-cooling", "energy_kwh")] = 5_000.0 + 30.0 * hours_since.to_numpy()
    series = np.array(list(columns), dtype=object)
    values = np.column_stack(list(columns.values()))
    n_t, n_s = values.shape
    batch = Batch(
        np.tile(series, n_t),
        np.repeat(ts.as_unit("ns").asi8, n_s).astype(np.int64),
        values.reshape(-1),
        np.zeros(n_t * n_s, dtype=np.uint8),
    )
    with open_historian(site.config.historian, site.data_dir) as hist:
        hist.write(batch)
        hist.flush()
    return path


def copy_site(src: Path, dst: Path) -> Path:
    """A copy of a built fixture folder (tests that change it do not disturb others)."""
    shutil.copytree(src, dst)
    return dst / "site.toml"


# Hand-computed expectations (see the module docstring).
HOURS = 31 * 24
ACME_IT = 100.0 * 15 * 24 + 80.0 * 16 * 24  # 66 720 kWh
BOLT_IT = 60.0 * HOURS  # 44 640 kWh
SITE_IT = 280.0 * HOURS  # 208 320 kWh
SITE_OVERHEAD = (40.0 * 12 + 60.0 * 12) * 31  # 37 200 kWh
SITE_DC = SITE_IT + SITE_OVERHEAD  # 245 520 kWh
SITE_COOLING = 30.0 * HOURS  # 22 320 kWh
PUE = SITE_DC / SITE_IT
# Location-based: a night hour carries 320 kWh at 400 g, a day hour 340 kWh at 200 g -> 2352 kg a day, shared
# among racks by their IT power.
DAY_KG = 12 * 320.0 * 0.4 + 12 * 340.0 * 0.2
ACME_LOC_KG = 15 * DAY_KG * 100 / 280 + 16 * DAY_KG * 80 / 280  # 23 352 kg
BOLT_LOC_KG = 31 * DAY_KG * 60 / 280  # 15 624 kg
SITE_LOC_KG = 31 * DAY_KG  # 72 912 kg
MARKET_G = 0.5 * 0.0 + 0.5 * 500.0  # 250 g/kWh
