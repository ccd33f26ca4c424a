"""PUE and facility-power forecast backtest on a simulated month, against persistence and daily seasonal naive.

Simulates the facility (``simulators.telemetry``, safe setpoint exploration so the plant model sees variety) for
``--days``, reduces the telemetry by role to the plant frame and runs a rolling-origin backtest: origins every
``--every`` hours over the last ``--test-days`` before the final 48 h, cut into ``--folds`` blocks; each block's
workload forecaster and plant model are fitted on telemetry up to its first origin only. Weather forecasts are the
simulated weather plus lead-growing, autocorrelated error (``analytics.forecast.pue.weather_with_error``). Truth
and baselines are hourly means (PUE as the ratio of hourly facility and IT energy): persistence repeats the hour
before the origin, daily seasonal naive the same hour one (or two) days before the target.

The last line is JSON: ``pue_mae_24h``, ``pue_vs_persistence_24h``, ``pue_vs_snaive_24h``, ``pue_cov80`` (all
horizons), the same for facility power, the 48 h figures, and ``fit_forecast_s`` (wall time of every fit and
forecast, calibration included).
"""

from __future__ import annotations

import argparse
import json
import time
import tomllib

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from aidc.config import site_from_dict
from aidc.sitegen import SiteTemplate, render_site
from analytics.forecast.pue import FacilityForecaster, hourly_truth, weather_with_error
from analytics.plant_model import plant_frame
from simulators.telemetry import ExplorationSchedule, generate

DAY_S = 86400.0


def main() -> None:
    """Run the backtest and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--racks", type=int, default=4)
    ap.add_argument("--days", type=float, default=32.0)
    ap.add_argument("--test-days", type=float, default=9.0)
    ap.add_argument("--every", type=int, default=6, help="hours between origins")
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=2)
    args = ap.parse_args()
    site = site_from_dict(tomllib.loads(render_site(SiteTemplate(racks=args.racks, start="2026-07-01T00:00:00Z"))))
    t0 = time.perf_counter()
    tel = generate(site, duration_s=args.days * DAY_S, schedule=ExplorationSchedule(seed=args.seed))
    data = plant_frame(tel.frame, tel.roles)
    t1 = time.perf_counter()
    truth = hourly_truth(data)
    end = truth.index[-1] - pd.Timedelta("48h")
    origins = pd.date_range(end - pd.Timedelta(days=args.test_days), end, freq=f"{args.every}h")
    rows = []
    with threadpool_limits(1):
        for k, block in enumerate(np.array_split(origins, args.folds)):
            model = FacilityForecaster.fit(data[data.index <= block[0]])
            for j, origin in enumerate(block):
                hist = data[data.index <= origin]
                wf = weather_with_error(truth, origin, 48, seed=1000 * k + j)
                fc = model.predict(hist, wf, hours=48, seed=j)
                fc["lead_h"] = np.arange(1, 49)
                fc["origin"] = origin
                rows.append(fc)
    t2 = time.perf_counter()
    fc = pd.concat(rows)
    out: dict[str, float] = {}
    print(f"site: {args.racks} racks, {args.days:g} simulated days ({len(data)} rows); {len(origins)} origins")
    head = ("target", "lead", "MAE", "persist", "snaive_d", "vs_pers", "vs_snd", "cov80%")
    print("{:<18} {:>5} {:>9} {:>9} {:>9} {:>8} {:>7} {:>7}".format(*head))
    for t in ("pue", "facility_power_kw"):
        for lead in (1, 6, 12, 24, 36, 48):
            sel = fc[fc["lead_h"] == lead]
            ts = pd.DatetimeIndex(sel.index)
            y = truth[t].reindex(ts).to_numpy()
            pers = truth[t].reindex(pd.DatetimeIndex(sel["origin"])).to_numpy()
            back = pd.Timedelta(days=int(np.ceil(lead / 24)))
            snd = truth[t].reindex(ts - back).to_numpy()
            p50, p10, p90 = (sel[f"{t}_{q}"].to_numpy() for q in ("p50", "p10", "p90"))
            m, mp, ms = (float(np.nanmean(np.abs(y - f))) for f in (p50, pers, snd))
            cov = float(np.nanmean((y >= p10) & (y <= p90)))
            print(f"{t:<18} {lead:>4}h {m:>9.4f} {mp:>9.4f} {ms:>9.4f} {m / mp:>8.3f} {m / ms:>7.3f} {100 * cov:>7.1f}")
            if lead in (24, 48):
                short = "pue" if t == "pue" else "facility_kw"
                out[f"{short}_mae_{lead}h"] = round(m, 5)
                out[f"{short}_vs_persistence_{lead}h"] = round(m / mp, 4)
                out[f"{short}_vs_snaive_{lead}h"] = round(m / ms, 4)
        y_all = truth[t].reindex(pd.DatetimeIndex(fc.index)).to_numpy()
        cov_all = float(np.nanmean((y_all >= fc[f"{t}_p10"].to_numpy()) & (y_all <= fc[f"{t}_p90"].to_numpy())))
        out[f"{'pue' if t == 'pue' else 'facility_kw'}_cov80"] = round(cov_all, 4)
        print(f"{t}: P10-P90 coverage over all leads {100 * cov_all:.1f} %")
    print(f"timing: simulate {t1 - t0:.0f} s, fit and forecast {t2 - t1:.0f} s")
    out["fit_forecast_s"] = round(t2 - t1, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
