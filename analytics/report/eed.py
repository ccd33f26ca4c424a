"""The annual EU export: the information and KPIs of Commission Delegated Regulation (EU) 2024/1364 (the first
phase of the Union rating scheme for data centres under Article 12 and Annex VII of Directive (EU) 2023/1791).

Article 3 obliges operators of data centres with an installed IT power demand of at least 500 kW to report the
information of Annex I and the KPIs of Annex II for the previous calendar year (first by 15 September 2024, then by
15 May each year). Metered items come from the historian's counters over the calendar year in the site's time zone;
site facts come from ``[report.eed]``; anything neither can supply is listed as missing, never estimated. The
Annex III sustainability indicators (PUE, WUE, ERF, REF) are computed here as the Commission will compute them.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from aidc.config import Site
from aidc.errors import ConfigError, DataError
from aidc.roles import Role
from analytics.energy import kpi
from analytics.energy.counter_read import read_counters
from analytics.energy.counters import CounterEnergy
from analytics.energy.pue import ENERGY_ROLES
from analytics.historian_adapter import site_meters
from analytics.report.build import MARGIN
from analytics.report.config import ReportConfig
from analytics.report.energy import meter_stats, role_totals
from analytics.report.period import Month
from historian import Historian

REGULATION = "Commission Delegated Regulation (EU) 2024/1364 of 14 March 2024, OJ L, 2024/1364, 17.5.2024"
THRESHOLD_KW = 500.0
ROLES = (
    Role.FACILITY_ENERGY,
    Role.IT_ENERGY_UPS_OUTPUT,
    Role.IT_ENERGY_PDU_OUTPUT,
    Role.IT_ENERGY_EQUIPMENT_INPUT,
    Role.WATER_VOLUME,
    Role.REUSED_ENERGY,
    Role.RENEWABLE_ENERGY,
)


@dataclass(frozen=True, slots=True)
class Item:
    """One reported field: where the regulation asks for it, its unit, value and where the value came from."""

    ref: str
    key: str
    name: str
    unit: str
    value: object
    status: str  # metered / computed / site file / missing
    source: str


@dataclass(frozen=True, slots=True)
class EedExport:
    """The year's export with the obligation verdict."""

    site: str
    year: int
    installed_it_kw: float | None
    obliged: bool | None
    obligation: str
    items: list[Item]

    def to_json(self) -> str:
        """Deterministic JSON (sorted keys, fixed order of items)."""
        doc = {
            "regulation": REGULATION,
            "site": self.site,
            "reporting_year": self.year,
            "installed_it_power_demand_kw": self.installed_it_kw,
            "obliged": self.obliged,
            "obligation": self.obligation,
            "items": [_item_dict(i) for i in self.items],
            "missing": [i.key for i in self.items if i.status == "missing"],
        }
        return json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n"

    def to_csv(self) -> str:
        """One row per item: ref, key, name, unit, value, status, source."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["ref", "key", "name", "unit", "value", "status", "source"])
        for i in self.items:
            w.writerow([i.ref, i.key, i.name, i.unit, "" if i.value is None else i.value, i.status, i.source])
        return buf.getvalue()


def _item_dict(i: Item) -> dict[str, object]:
    return {k: getattr(i, k) for k in ("ref", "key", "name", "unit", "value", "status", "source")}


def _year_energies(hist: Historian, site: Site, year: int) -> tuple[dict[Role, CounterEnergy], float]:
    """Role energies summed over the 12 calendar months, and the coverage (share of the year's hours)."""
    meters = {s: m for s, m in site_meters(site, ENERGY_ROLES).items() if m.role in ROLES}
    # E_IT at UPS output is what the regulation asks for; rack meters are read only when there is no UPS counter.
    if any(m.role is Role.IT_ENERGY_UPS_OUTPUT for m in meters.values()):
        meters = {s: m for s, m in meters.items() if m.role not in (Role.IT_ENERGY_PDU_OUTPUT,
                                                                     Role.IT_ENERGY_EQUIPMENT_INPUT)}  # fmt: skip
    total: dict[Role, CounterEnergy] = {}
    covered_h: dict[Role, float] = {}
    hours = 0.0
    for m in range(1, 13):
        month = Month(year, m, site.config.site.timezone)
        groups = read_counters(hist, meters, month.start - MARGIN, month.end + MARGIN).readings
        energies = role_totals(meter_stats(groups, meters, month.start, month.end, ROLES))
        for role, e in energies.items():
            total[role] = e if role not in total else total[role] + e
            covered_h[role] = covered_h.get(role, 0.0) + e.coverage * month.hours
        hours += month.hours
    # CounterEnergy.__add__ keeps the worst month's coverage; the year's is the share of its hours covered.
    coverage = min((covered_h.get(Role.FACILITY_ENERGY, 0.0) / hours), 1.0) if hours else 0.0
    return total, coverage


def installed_it_kw(site: Site, cfg: ReportConfig) -> tuple[float, str]:
    """P_DIT: configured, else the sum of the racks' rated power in the site file."""
    if cfg.eed.installed_it_power_kw is not None:
        return cfg.eed.installed_it_power_kw, "site file [report.eed] installed_it_power_kw"
    return float(sum(r.rated_kw for _, r in site.racks())), "sum of the racks' rated_kw in the site file"


def check_year(year: int, now: pd.Timestamp, tz: str) -> None:
    """Refuse a year that has not ended."""
    end = pd.Timestamp(year=year + 1, month=1, day=1, tz=tz)
    if pd.Timestamp(year=year, month=1, day=1, tz=tz) > now:
        raise ConfigError(f"--year {year}: that year is in the future")
    if end > now:
        raise ConfigError(
            f"--year {year}: the year is incomplete until {end:%Y-%m-%d} {tz}; the export covers a calendar year"
        )


def build_eed(hist: Historian, site: Site, year: int, cfg: ReportConfig) -> EedExport:
    """The year's Annex I/II items and Annex III indicators."""
    energies, coverage = _year_energies(hist, site, year)
    if Role.FACILITY_ENERGY not in energies:
        raise DataError(f"--year {year}: site {site.name} has no utility-meter readings in that year")
    it_cat = next((c for c in (1, 2, 3) if kpi.IT_ENERGY_ROLES[c] in energies), None)
    e = {r: c.energy for r, c in energies.items()}
    e_dc = e[Role.FACILITY_ENERGY]
    e_it = None if it_cat is None else e[kpi.IT_ENERGY_ROLES[it_cat]]
    it_src = "missing" if it_cat is None else (
        "UPS output counters" if it_cat == 1 else f"no UPS output counter: category {it_cat} meters (below UPS output)")
    p_dit, p_src = installed_it_kw(site, cfg)
    info = cfg.eed
    items: list[Item] = []

    def add(ref: str, key: str, name: str, unit: str, value: object, status: str, source: str) -> None:
        items.append(Item(ref, key, name, unit, value, status if value is not None else "missing",
                          source if value is not None else "not in the historian or the site file"))  # fmt: skip

    def fact(ref: str, key: str, name: str, unit: str = "") -> None:
        value = getattr(info, key)
        add(ref, key, name, unit, None if value is None else str(value) if not isinstance(value, float) else value,
            "site file", f"[report.eed] {key}")  # fmt: skip

    fact("Annex I (information about the data centre)", "data_centre_name", "name of the data centre")
    fact("Annex I", "owner", "owner of the data centre")
    fact("Annex I", "operator", "operator of the data centre")
    fact("Annex I", "operation_start", "date on which the data centre started operation")
    fact("Annex I", "municipality", "municipality where the data centre is located")
    fact("Annex I", "country", "Member State (ISO 3166-1 alpha-2)")
    fact("Annex I", "data_centre_type", "type: enterprise, colocation or co-hosting (Article 2)")
    add("Annex I", "installed_it_power_kw", "installed information technology power demand (P_DIT)", "kW", p_dit,
        "site file", p_src)  # fmt: skip
    fact("Annex I", "total_floor_area_m2", "total floor area", "m²")
    fact("Annex I", "computer_room_floor_area_m2", "computer room floor area", "m²")
    r1 = "Annex II point 1 (energy and sustainability)"
    add(r1, "e_dc_kwh", "total energy consumption (E_DC)", "kWh", round(e_dc, 1), "metered",
        f"utility meter counters; coverage {100 * coverage:.2f} % of the year's hours")  # fmt: skip
    add(r1, "e_it_kwh", "energy consumption of the IT equipment (E_IT), at UPS output", "kWh",
        None if e_it is None else round(e_it, 1), "metered", it_src)  # fmt: skip
    fact(r1, "grid_functions", "electrical grid functions offered (demand response, grid services)")
    fact(r1, "backup_generator_capacity_kw", "installed capacity of backup generators", "kW")
    water = e.get(Role.WATER_VOLUME)
    add(r1, "water_input_m3", "total water input", "m³", None if water is None else round(water / 1000.0, 3),
        "metered", "water meter counters (litres / 1000)")  # fmt: skip
    potable = None if water is None or info.potable_water_share is None else water / 1000.0 * info.potable_water_share
    add(r1, "potable_water_input_m3", "total potable water input", "m³", None if potable is None else round(potable, 3),
        "computed", "water input x [report.eed] potable_water_share")  # fmt: skip
    reused = e.get(Role.REUSED_ENERGY)
    add(r1, "waste_heat_reused_kwh", "waste heat reused", "kWh", None if reused is None else round(reused, 1),
        "metered", "heat-reuse meter counters")  # fmt: skip
    fact(r1, "waste_heat_temperature_c", "average waste heat temperature", "°C")
    fact(r1, "temperature_set_point_c", "set point temperature (IT inlet)", "°C")
    ren = e.get(Role.RENEWABLE_ENERGY)
    add(r1, "renewable_energy_kwh", "total renewable energy consumption", "kWh", None if ren is None else round(ren, 1),
        "metered", "renewable supply meter counters")  # fmt: skip
    fact(r1, "renewable_goo_kwh", "renewable energy from guarantees of origin", "kWh")
    fact(r1, "renewable_ppa_kwh", "renewable energy from power purchase agreements", "kWh")
    fact(r1, "renewable_onsite_kwh", "renewable energy generated on site", "kWh")
    r2 = "Annex II point 2 (ICT capacity)"
    fact(r2, "server_capacity_w", "ICT capacity for servers", "W")
    fact(r2, "storage_capacity_pb", "ICT capacity for storage equipment", "PB")
    r3 = "Annex II point 3 (data traffic)"
    fact(r3, "incoming_bandwidth_gbps", "incoming traffic bandwidth", "Gbit/s")
    fact(r3, "outgoing_bandwidth_gbps", "outgoing traffic bandwidth", "Gbit/s")
    fact(r3, "incoming_traffic_eb", "incoming data traffic", "EB")
    fact(r3, "outgoing_traffic_eb", "outgoing data traffic", "EB")
    r4 = "Annex III (sustainability indicators)"
    contracts = [getattr(info, k) for k in ("renewable_goo_kwh", "renewable_ppa_kwh", "renewable_onsite_kwh")]
    ren_total = ren if ren is not None else (
        None if all(c is None for c in contracts) else sum(c or 0.0 for c in contracts))
    pue = kpi.pue(e_dc, e_it)
    wue = kpi.wue(water, e_it)
    erf = kpi.erf(reused, e_dc)
    ref = kpi.ref(ren_total, e_dc)
    add(r4, "pue", "power usage effectiveness = E_DC / E_IT", "", None if pue is None else round(pue, 4), "computed",
        "ISO/IEC 30134-2, annual, from the items above")  # fmt: skip
    add(r4, "wue", "water usage effectiveness = water input / E_IT", "L/kWh", None if wue is None else round(wue, 4),
        "computed", "ISO/IEC 30134-9")  # fmt: skip
    add(r4, "erf", "energy reuse factor = waste heat reused / E_DC", "", None if erf is None else round(erf, 4),
        "computed", "ISO/IEC 30134-6")  # fmt: skip
    add(r4, "ref", "renewable energy factor = renewable energy / E_DC", "", None if ref is None else round(ref, 4),
        "computed", "ISO/IEC 30134-3")  # fmt: skip
    obliged = p_dit >= THRESHOLD_KW
    if obliged:
        verdict = (f"installed IT power demand {p_dit:,.0f} kW is at least {THRESHOLD_KW:.0f} kW: the operator must "
                   f"report these items for {year} by 15 May {year + 1} (Delegated Regulation (EU) 2024/1364 "
                   "Article 3; Directive (EU) 2023/1791 Article 12)")  # fmt: skip
    else:
        verdict = (f"installed IT power demand {p_dit:,.0f} kW is below {THRESHOLD_KW:.0f} kW: the site is not "
                   "obliged to report under Delegated Regulation (EU) 2024/1364 (Article 1); the export is for "
                   "information")  # fmt: skip
    return EedExport(site.name, year, p_dit, obliged, verdict, items)


def write_eed(exp: EedExport, out_dir: Path) -> tuple[Path, Path]:
    """Write ``eed-<site>-<year>.json`` and ``.csv`` under ``out_dir``."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--out {out_dir}: cannot create the folder: {exc.strerror}") from None
    paths = out_dir / f"eed-{exp.site}-{exp.year}.json", out_dir / f"eed-{exp.site}-{exp.year}.csv"
    for path, text in zip(paths, (exp.to_json(), exp.to_csv()), strict=True):
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    return paths
