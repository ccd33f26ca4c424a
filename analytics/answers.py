"""The answers of the data commands (query, pue, forecast, tenants, faults, report) as JSON-ready values.

One function per question. A command calls it on the store it opened itself; beside a running main job the job's
REST API (``api/routes_cli.py``, ``api/views.py``) calls the same function on its own historian handle. Same code,
same limits, same errors on both paths, so an answer cannot depend on whether a job holds the store.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

from aidc.config import Site
from aidc.errors import ConfigError, DataError
from aidc.model import SeriesKey
from historian import Historian, SeriesSelector, parse_window
from historian.base import Agg, check_agg

# A query answer is printed or sent as JSON: past this many rows the caller narrows the range or aggregates,
# rather than a 100 MB reply (or a silently cut one).
MAX_ROWS = 200_000
MAX_SELECTOR = 500  # characters: a selector is a measurement, a few tags and a field
FORECAST_MIN_DAYS = 7.0
FORECAST_MAX_HOURS = 48
QUALITY_LABELS = ("good", "uncertain", "bad")


def jsonable(x: Any) -> Any:
    """JSON-safe: NaN and infinities become null, numpy scalars plain numbers, timestamps ISO text."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [jsonable(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, pd.Timestamp):
        return x.isoformat()
    if isinstance(x, Path):
        return str(x)
    return x


def selector(text: str) -> SeriesSelector:
    """A series selector; ConfigError (one line) for text the parser cannot read."""
    if len(text) > MAX_SELECTOR:
        raise ConfigError(f"selector {text[:40]!r}...: longer than {MAX_SELECTOR} characters")
    try:
        return SeriesSelector.parse(text)
    except (IndexError, ValueError):  # the parser trips on some malformed text (e.g. ",,") instead of a ConfigError
        raise ConfigError(f"selector {text!r}: expected measurement,tag=value,...,field") from None


def _records(frame: pd.DataFrame) -> list[Any]:
    if len(frame) > MAX_ROWS:
        raise DataError(
            f"{len(frame)} samples match, more than the limit of {MAX_ROWS}: narrow the selector or the range, "
            "or aggregate with a window"
        )
    cols = (frame["series"], frame["ts"], frame["value"], frame["quality"])
    rows = [{"series": s, "ts": t.isoformat(), "value": v, "quality": QUALITY_LABELS[min(int(q), 2)]}
            for s, t, v, q in zip(*cols, strict=True)]  # fmt: skip
    return list(jsonable(rows))


def series_latest(hist: Historian, text: str) -> list[Any]:
    """The latest sample of each series matching the selector text."""
    return _records(hist.latest(selector(text)))


def series_range(
    hist: Historian, text: str, start: pd.Timestamp, end: pd.Timestamp, window: str | None, agg: str | None
) -> list[Any]:
    """Samples (or per-window aggregates) of the matching series in ``[start, end)``, at most :data:`MAX_ROWS`."""
    sel = selector(text)
    if end <= start:
        raise ConfigError(f"to {end.isoformat()} is not after from {start.isoformat()}")
    if window is not None:
        parse_window(window)
    if agg is not None:
        check_agg(agg)
        if window is None:
            raise ConfigError(f"aggregation {agg!r} needs a window (e.g. 1m)")
    return _records(hist.query(sel, start, end, window, cast(Agg | None, agg)))


def pue(
    hist: Historian, site: Site, start: pd.Timestamp, end: pd.Timestamp, period: str | None, category: int | None
) -> list[Any]:
    """One ISO/IEC 30134-2 PUE report per calendar period (or one for the whole range)."""
    import itertools

    from analytics.energy.pue import period_edges
    from analytics.historian_adapter import pue_from_historian

    if end <= start:
        raise ConfigError(f"to {end.isoformat()} is not after from {start.isoformat()}")
    if period:
        edges = period_edges(start, end, period, site.config.site.timezone)
        reports = [pue_from_historian(hist, site, a, b, category=category) for a, b in itertools.pairwise(edges)]
        return list(jsonable([r.to_dict() for r in reports]))
    # One range that starts before collection began, or ends "now" before the next readings are due, is the range
    # that was metered, and says so: the same 95 % coverage rule then judges the meters over what was collectable.
    span = metered_span(hist, site, start, end)
    notes = []
    if span[0] > start:
        notes.append(
            f"collection started within the range: every energy meter has read since {span[0].isoformat()}, "
            "so the period starts there"
        )
    if span[1] < end:
        notes.append(
            f"the newest readings are at {span[1].isoformat()} (the next are not due yet): the period ends there"
        )
    report = pue_from_historian(hist, site, span[0], span[1], category=category)
    if notes:
        report = dataclasses.replace(report, note="; ".join([*notes, report.note] if report.note else notes))
    return list(jsonable([report.to_dict()]))


COLLECTION_LOOKBACK = pd.Timedelta("2h")  # the edge margin pue_from_historian reads readings with
DUE_POLLS = 3  # a reading older than this many poll intervals before the end is late, not merely not due (as the
# counters treat 3 missed polls as a gap; the collectors' batching and the writer add seconds to the newest stored one)


def metered_span(
    hist: Historian, site: Site, start: pd.Timestamp, end: pd.Timestamp
) -> tuple[pd.Timestamp, pd.Timestamp]:
    """``[start, end)`` narrowed to what the site's energy meters could have covered.

    The start moves to the latest first reading of the meters when none of them has a reading in the lookback
    before ``start`` (the job started within the range, so each meter's first poll opens its coverage); meters first
    read more than ``DUE_POLLS`` poll intervals after the earliest one are late and left to the coverage rule. The
    end moves back to the oldest newest reading when every meter's newest reading is within ``DUE_POLLS`` of its
    poll intervals before ``end`` (the next reading is not due yet); a meter silent for longer keeps the end, so an
    outage still counts against coverage. A meter with no reading at all changes nothing.
    """
    from analytics.energy.metering import site_meters
    from analytics.energy.pue import ENERGY_ROLES

    poll_ns: dict[str, int] = {}
    for dev in site.devices:
        for pt in dev.profile.points:
            poll_ns[SeriesKey.of(dev.profile.measurement, pt.name, dev.tags).id] = int(
                dev.config.poll_interval_s * DUE_POLLS * 1e9
            )
    firsts: dict[str, int] = {}
    lasts: dict[str, int] = {}
    before = False
    for sid in site_meters(site, ENERGY_ROLES):
        key = SeriesKey.parse(sid)
        arr = hist.query_arrays(SeriesSelector(key.measurement, dict(key.tags), key.field),
                                start - COLLECTION_LOOKBACK, end)  # fmt: skip
        ts = np.asarray(arr.ts_ns, dtype=np.int64)
        if len(ts) == 0:
            continue
        before = before or int(ts.min()) <= start.value
        inside = ts[ts >= start.value]
        if len(inside):
            firsts[sid], lasts[sid] = int(inside.min()), int(inside.max())
    lo, hi = start.value, end.value
    if firsts and not before:
        earliest = min(firsts.values())
        lo = max(f for s, f in firsts.items() if f - earliest <= poll_ns.get(s, 0))
    if lasts and all(hi - last <= poll_ns.get(s, 0) for s, last in lasts.items()):
        hi = min(lasts.values())
    if hi <= lo:  # too little collected to narrow to: keep the range as asked, the coverage rule says why
        return start, end
    return pd.Timestamp(lo, unit="ns", tz="UTC"), pd.Timestamp(hi, unit="ns", tz="UTC")


def forecast_history(hist: Historian, site: Site, end: pd.Timestamp, days: float) -> pd.DataFrame:
    """The 5-min plant frame the facility forecast learns from: ``days`` up to ``end`` (read under a lock)."""
    from analytics.forecast.live import plant_history

    if days < FORECAST_MIN_DAYS:
        raise ConfigError(f"days {days:g}: need at least {FORECAST_MIN_DAYS:g} days of telemetry")
    start = end - pd.Timedelta(days=days)
    data = plant_history(hist, site, start, end)
    if data.empty:
        raise DataError(f"site {site.name}: no complete plant telemetry in the historian between {start} and {end}")
    return data


def facility_forecast(data: pd.DataFrame, hours: int, weather: Path | None) -> dict[str, Any]:
    """Facility power, IT power and PUE with P10/P50/P90 for ``hours`` after the last row of ``data``."""
    from threadpoolctl import threadpool_limits

    from analytics.forecast.pue import FacilityForecaster
    from analytics.forecast.weather import read_open_meteo

    if not 1 <= hours <= FORECAST_MAX_HOURS:
        raise ConfigError(f"hours {hours}: need whole hours from 1 to {FORECAST_MAX_HOURS}")
    wx = read_open_meteo(weather, origin=pd.Timestamp(data.index[-1]).floor("1h")) if weather else None
    # One thread: on a busy machine OpenMP's spinning threads make gradient boosting many times slower.
    with threadpool_limits(1):
        model = FacilityForecaster.fit(data)
        fc = model.predict(data, wx, hours=hours)
    rows = fc.reset_index()
    rows["ts"] = rows["ts"].map(lambda t: t.isoformat())
    return dict(jsonable({
        "origin": pd.Timestamp(data.index[-1]), "history_from": pd.Timestamp(data.index[0]),
        "rows": rows.to_dict(orient="records"),
    }))  # fmt: skip


def tenants(hist: Historian, site: Site, month: str) -> dict[str, Any]:
    """The month's per-tenant report (energy, overhead, peak, carbon) from the historian."""
    from analytics.leasing.billing import month_bounds, report_from_historian

    if not site.config.tenants:
        raise ConfigError(f"site {site.name}: no [[tenants]] in the site file")
    a, b = month_bounds(month, site.config.site.timezone)
    return dict(jsonable({"month": month, **report_from_historian(hist, site, a, b).to_dict()}))


def faults(
    hist: Historian,
    site: Site,
    healthy: tuple[pd.Timestamp, pd.Timestamp] | None,
    scan: tuple[pd.Timestamp, pd.Timestamp],
) -> dict[str, Any]:
    """Predictive alarms in the ``scan`` window by models fitted on the ``healthy`` window (two days or more) or,
    without one, on the baseline the job's fault-prediction service learns (the week before the scan, less alarmed
    periods, outages and bad data); ``status`` says how that baseline was learnt, ``learning`` that it is too short."""
    from analytics.alarms.baseline import read_signals
    from analytics.alarms.faults import ROLES, FaultDetector, device_frame

    if scan[1] <= scan[0]:
        raise ConfigError(f"to {scan[1].isoformat()} is not after from {scan[0].isoformat()}")
    rack_cdu = {r: c.name for h in site.config.halls for c in h.cdus for r in c.racks}
    status: str | None = None
    roles: dict[str, Any] = {}
    if healthy is not None:
        if healthy[1] - healthy[0] < pd.Timedelta("2D"):
            raise ConfigError(f"healthy window {healthy[0].isoformat()} .. {healthy[1].isoformat()}: needs two days")
        fit_frame, roles = read_signals(hist, site, ROLES, *healthy, "5m")
        if fit_frame.empty:
            raise DataError("no telemetry in the healthy window")
        det: FaultDetector | None = FaultDetector.fit(device_frame(fit_frame, roles, rack_cdu), rack_cdu)
    else:
        det, status = _learnt_detector(hist, site, scan[0])
        if det is None:  # too little clean history yet: the status says how much
            return {"alarms": [], "status": status, "learning": True}
    scan_frame, roles2 = read_signals(hist, site, ROLES, *scan, "5m")
    if scan_frame.empty:
        raise DataError("no telemetry in the scanned window")
    assert det is not None
    alarms = det.scan(device_frame(scan_frame, {**roles, **roles2}, rack_cdu))
    return {"alarms": jsonable([a.to_dict() for a in alarms]), "status": status, "learning": False}


def _learnt_detector(hist: Historian, site: Site, scan_from: pd.Timestamp) -> tuple[Any, str]:
    """The detector the job's service would have learnt when ``scan_from`` was the newest unlearnt time, and its
    status line; None while there is too little clean history."""
    from aidc.clock import SteppedClock
    from analytics.alarms.engine import AlarmEngine
    from analytics.alarms.prediction import FaultPredictionService, PredictionSettings

    settings = PredictionSettings()
    # Replays the alarm log for the periods to leave out; this engine raises nothing, so it writes nothing.
    engine = AlarmEngine([], store=site.data_dir / "alarms" / "alarms.jsonl")
    svc = FaultPredictionService(site, hist, engine, SteppedClock(scan_from.value), settings)
    status = svc.refit((scan_from + settings.td("guard")).value)
    return svc.detector, status.message


def month_report(
    hist: Historian, site: Site, month: str, now: pd.Timestamp, out_dir: Path | None, pdf: bool
) -> dict[str, Any]:
    """Write the monthly PUE report (HTML, PDF, JSON) of a finished month; the paths written."""
    from analytics.report.period import check_complete, parse_month
    from analytics.report.schedule import write_month_report

    m = parse_month(month, site.config.site.timezone)
    check_complete(m, now)
    files = write_month_report(hist, site, m, now=now, out_dir=out_dir, pdf=pdf)
    return {"files": [str(f) for f in (files.html, files.pdf, files.json) if f is not None]}


def eed_export(hist: Historian, site: Site, year: int, now: pd.Timestamp, out_dir: Path | None) -> dict[str, Any]:
    """Write the annual EU EED export (JSON, CSV); its obligation verdict, missing items and paths."""
    from analytics.report.config import report_config
    from analytics.report.eed import build_eed, check_year, write_eed
    from analytics.report.schedule import reports_dir

    check_year(year, now, site.config.site.timezone)
    exp = build_eed(hist, site, year, report_config(site))
    paths = write_eed(exp, out_dir or reports_dir(site))
    return {
        "obligation": exp.obligation,
        "missing": [i.key for i in exp.items if i.status == "missing"],
        "files": [str(p) for p in paths],
    }
