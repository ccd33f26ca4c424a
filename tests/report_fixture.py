"""A month of known meter data for the report tests: constant powers, a counter wrap and a 6-hour gap.

October 2026 in UTC (744 h). Powers (kW): rack input 100, PDU output 100.5, UPS output 102, UPS input 106,
cooling meter 15 (chiller 6, pumps 3 + 1, heat-rejection fans 2, so CRAH and other 3), other 2, and the utility
meter 124 (so transformer losses 1). The utility counter starts 46,729.6 kWh below its UINT32 x 0.1 kWh modulus,
so it wraps on 16 October; its readings between 10 October 06:00 and 12:00 are missing (one 6-hour interval).
One cooling-meter reading is bad. Free cooling: full for 10 days, partial for 10, none for the last 11.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from aidc.config import Site, load_site
from aidc.model import Batch, SeriesKey
from aidc.roles import Role
from aidc.sitegen import SiteTemplate, render_site
from analytics.energy import kpi
from historian import open_historian

MONTH = "2026-10"
START = pd.Timestamp("2026-10-01T00:00Z")
END = pd.Timestamp("2026-11-01T00:00Z")
HOURS = 744.0
STEP = pd.Timedelta("5min")
GAP = (pd.Timestamp("2026-10-10T06:00Z"), pd.Timestamp("2026-10-10T12:00Z"))
KW = {
    Role.IT_ENERGY_EQUIPMENT_INPUT: 100.0,
    Role.IT_ENERGY_PDU_OUTPUT: 100.5,
    Role.IT_ENERGY_UPS_OUTPUT: 102.0,
    Role.UPS_INPUT_ENERGY: 106.0,
    Role.COOLING_ENERGY: 15.0,
    Role.OTHER_ENERGY: 2.0,
    Role.FACILITY_ENERGY: 124.0,
}
GAUGE_W = {Role.CHILLER_POWER: 6000.0, Role.HEAT_REJECTION_FAN_POWER: 2000.0}
PUMP_W = {"plant": 3000.0, "cdu": 1000.0}
UTILITY_MODULUS = 4294967296 * 0.1
UTILITY_START = UTILITY_MODULUS - 46729.6

# Hand-computed figures (kWh unless named otherwise).
EXPECTED = {
    "e_dc": 124.0 * HOURS,  # 92,256.0
    "e_it": 100.0 * HOURS,  # 74,400.0
    "pue": 1.24,
    "coverage": (HOURS - 6.0) / HOURS,  # 0.991935...
    "breakdown": {
        "IT (IT equipment input)": 74400.0,
        "distribution losses (UPS output to IT equipment input)": 2.0 * HOURS,
        "UPS losses": 4.0 * HOURS,
        "chiller": 6.0 * HOURS,
        "pumps (FWS and CDU)": 4.0 * HOURS,
        "heat-rejection fans": 2.0 * HOURS,
        "CRAH fans and other cooling": 3.0 * HOURS,
        "lighting and other": 2.0 * HOURS,
        "transformer and other electrical losses": 1.0 * HOURS,
    },
    "free_cooling": {"full": 240.0, "partial": 240.0, "none": 264.0},
}


def fixture_site(tmp_path: Path, extra: str = "") -> Site:
    """A one-rack site in UTC with its historian under tmp_path (nothing listens: data is written directly)."""
    text = render_site(SiteTemplate(racks=1, timezone="UTC", data_dir=str(tmp_path / "var"), name="fx1"))
    path = tmp_path / "site.toml"
    path.write_text(text + extra, encoding="utf-8")
    return load_site(path)


def _series(site: Site) -> dict[str, tuple[Role, str, float]]:
    """Series id -> (role, device kind, kWh per counter unit) of every scalar point the fixture writes."""
    out = {}
    for dev in site.devices:
        for p in dev.profile.points:
            role = dev.role_of(p.name)
            if role is not None and not p.array:
                out[SeriesKey.of(dev.profile.measurement, p.name, dev.tags).id] = (
                    role, dev.kind, kpi.energy_scale(p.name, p.unit))  # fmt: skip
    return out


def fixture_batch(
    site: Site,
    start: pd.Timestamp = START,
    end: pd.Timestamp = END,
    step: pd.Timedelta = STEP,
    gap: tuple[pd.Timestamp, pd.Timestamp] | None = GAP,
) -> Batch:
    """Every reading of the fixture period (with 2 h either side) as one batch."""
    ts = pd.date_range(start - pd.Timedelta("2h"), end + pd.Timedelta("2h"), freq=step)
    t_h = ((ts - start) / pd.Timedelta("1h")).to_numpy()
    ns = ts.as_unit("ns").asi8
    series: list[np.ndarray] = []
    times: list[np.ndarray] = []
    values: list[np.ndarray] = []
    quality: list[np.ndarray] = []

    def add(sid: str, v: np.ndarray, keep: np.ndarray | None = None, q: np.ndarray | None = None) -> None:
        k = np.ones(len(ns), dtype=bool) if keep is None else keep
        series.append(np.full(int(k.sum()), sid, dtype=object))
        times.append(ns[k])
        values.append(v[k])
        quality.append(np.zeros(int(k.sum()), dtype=np.uint8) if q is None else q[k])

    day = np.floor(t_h / 24.0)
    for sid, (role, kind, scale) in sorted(_series(site).items()):
        if role in KW:
            base = 1000.0 + 10.0 * len(sid)  # counters do not start at zero
            v = (base + KW[role] * (t_h + 2.0)) / scale  # in the counter's own unit (Wh or kWh)
            if role is Role.FACILITY_ENERGY:
                v = (UTILITY_START + KW[role] * (t_h + 2.0)) % UTILITY_MODULUS
                add(sid, v, None if gap is None else ~((ts > gap[0]) & (ts < gap[1])))
            elif role is Role.COOLING_ENERGY:
                q = np.zeros(len(ns), dtype=np.uint8)
                bad = int(np.searchsorted(ns, pd.Timestamp("2026-10-20T03:00Z").value))
                v = v.copy()
                if bad < len(ns):
                    q[bad] = 2
                    v[bad] = np.nan
                add(sid, v, q=q)
            else:
                add(sid, v)
        elif role in GAUGE_W:
            add(sid, np.full(len(ns), GAUGE_W[role]))
        elif role is Role.PUMP_POWER:
            add(sid, np.full(len(ns), PUMP_W["plant" if kind == "plant" else "cdu"]))
        elif role is Role.OUTDOOR_WETBULB:
            add(sid, 12.0 + 6.0 * np.sin(2 * np.pi * t_h / 24.0) - day * 0.2)
        elif role is Role.FREE_COOLING_STATE:
            add(sid, np.where(day < 10, 2.0, np.where(day < 20, 1.0, 0.0)))
    return Batch(np.concatenate(series), np.concatenate(times), np.concatenate(values), np.concatenate(quality))


def write_fixture(site: Site, batch: Batch | None = None) -> None:
    """Store the fixture month (or another batch) in the site's historian."""
    with open_historian(site.config.historian, site.data_dir) as hist:
        hist.write(fixture_batch(site) if batch is None else batch)
        hist.flush()
