"""Plant-model benchmark: train on a simulated month with safe setpoint exploration, test on the following week.

Generates collector-identical telemetry from the simulated facility (``simulators.telemetry``), reduces it by role
to the plant model's features and targets, fits :class:`analytics.plant_model.PlantModel` on the first 30 days and
prints the MAE of every target on the next 7 days. The last line is JSON with ``pue_mae`` and ``gpu_temp_mae_k``.
"""

from __future__ import annotations

import argparse
import json
import time
import tomllib

import numpy as np
import pandas as pd

from aidc.config import site_from_dict
from aidc.sitegen import SiteTemplate, render_site
from analytics.plant_model import TARGETS, PlantModel, plant_frame
from simulators.telemetry import ExplorationSchedule, generate

DAY_S = 86400.0


def main() -> None:
    """Run the benchmark and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--racks", type=int, default=8)
    ap.add_argument("--train-days", type=float, default=30.0)
    ap.add_argument("--test-days", type=float, default=7.0)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    site = site_from_dict(tomllib.loads(render_site(SiteTemplate(racks=args.racks, start="2026-07-01T00:00:00Z"))))
    t0 = time.perf_counter()
    tel = generate(
        site, duration_s=(args.train_days + args.test_days) * DAY_S, schedule=ExplorationSchedule(seed=args.seed)
    )
    data = plant_frame(tel.frame, tel.roles)
    t1 = time.perf_counter()
    split = data.index[0] + pd.Timedelta(days=args.train_days)
    train, test = data[data.index < split], data[data.index >= split]
    model = PlantModel.fit(train)
    t2 = time.perf_counter()
    scores = model.evaluate(test)
    cand = test[list(model.ranges)].iloc[:1].loc[np.repeat(test.index[:1], 1000)]
    t3 = time.perf_counter()
    model.predict(cand)
    t4 = time.perf_counter()
    print(f"site: {args.racks} racks; train {train.index[0]} .. {split} ({len(train)} rows), test {len(test)} rows")
    print(
        f"setpoints explored: TCS {train['tcs_supply_sp_c'].min():.1f}-{train['tcs_supply_sp_c'].max():.1f} °C, "
        f"dp {train['tcs_dp_sp_kpa'].min():.0f}-{train['tcs_dp_sp_kpa'].max():.0f} kPa, "
        f"FWS {train['fws_supply_sp_c'].min():.1f}-{train['fws_supply_sp_c'].max():.1f} °C"
    )
    print(f"{'target':<20} {'MAE':>10} {'P10-P90 cov%':>13} {'test mean':>11}")
    for t in TARGETS:
        print(f"{t:<20} {scores[t + '_mae']:>10.4f} {100 * scores[t + '_cov80']:>13.1f} {test[t].mean():>11.3f}")
    print(f"PUE as ratio of predicted powers: MAE {scores['pue_ratio_mae']:.4f}")
    print(f"timing: simulate {t1 - t0:.1f} s, fit {t2 - t1:.1f} s, predict 1000 candidates {1000 * (t4 - t3):.1f} ms")
    print(
        json.dumps(
            {
                "pue_mae": round(scores["pue_mae"], 5),
                "gpu_temp_mae_k": round(scores["gpu_temp_max_c_mae"], 4),
                "facility_power_mae_kw": round(scores["facility_power_kw_mae"], 3),
                "rack_outlet_mae_k": round(scores["rack_outlet_max_c_mae"], 4),
            }
        )
    )


if __name__ == "__main__":
    main()
