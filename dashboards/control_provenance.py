"""The plant model's provenance as table rows for the Control page: what the model was fitted on (rows, window,
feature ranges), how well it predicts rows it did not see (out-of-bag error per target) and when it was last refitted,
read from the supervisor's status (``control/supervisor.py`` ``status()``: ``model`` is
``analytics.plant_model.OnlinePlantModel.provenance``, ``model_fit`` the learner's last refit)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dashboards.control_view import as_dict
from dashboards.fmt import local_time, num

# The plant model's features and targets (analytics/plant_model.py ONLINE_FEATURES, the learner's targets) in words.
FEATURE_LABELS = {
    "gpu_util_pct": ("GPU utilisation", "%"),
    "drybulb_c": ("outdoor dry bulb", "°C"),
    "wetbulb_c": ("outdoor wet bulb", "°C"),
    "tcs_supply_sp_c": ("TCS supply (coldest CDU)", "°C"),
    "tcs_dp_sp_kpa": ("TCS dp (mean)", "kPa"),
    "fws_supply_sp_c": ("FWS supply", "°C"),
    "chw_supply_sp_c": ("CRAH chilled water", "°C"),
}
TARGET_LABELS = {
    "facility_power_kw": ("facility power", "kW"),
    "it_power_kw": ("IT power", "kW"),
    "nonit_power_kw": ("non-IT power", "kW"),
    "gpu_margin_c": ("hottest GPU against its limit", "K"),
    "work_rate_pct": ("work rate (utilisation × clock)", "%"),
}


def provenance_rows(status: Mapping[str, Any], tz: str) -> list[dict[str, str]]:
    """The plant model's provenance as ``{"item", "value"}`` rows: rows, window, validation error, refit, features."""
    model = status.get("model")
    fit = as_dict(status.get("model_fit"))
    rows: list[dict[str, str]] = []

    def add(item: str, value: str) -> None:
        rows.append({"item": item, "value": value})

    kept = status.get("training_rows")
    add("training rows kept", num(kept, digits=0) if isinstance(kept, int) else "—")
    last = fit.get("last_fit")
    add("last refit", local_time(last, tz) if last else "not yet (the model is fitted after commissioning)")
    if fit.get("error"):
        add("last refit failed", str(fit["error"]))
    if not isinstance(model, dict):
        add("model", "none yet: the controller explores within bounds while it commissions")
        return rows
    add("model", f"{model.get('kind', '?')}, {model.get('members', '?')} members")
    add("rows in the last fit", num(model.get("rows"), digits=0))
    window = model.get("window")
    if isinstance(window, list) and len(window) == 2:
        add(
            "training window",
            f"{local_time(window[0], tz, seconds=False)} to {local_time(window[1], tz, seconds=False)}",
        )
    scores = as_dict(model.get("scores"))
    for key, value in scores.items():
        target = str(key).removesuffix("_oob_mae")
        label, unit = TARGET_LABELS.get(target, (target, ""))
        add(f"validation error: {label}", f"± {num(value, unit)} (mean absolute, out-of-bag rows)")
    ranges = as_dict(model.get("ranges"))
    for feat in model.get("features", []) if isinstance(model.get("features"), list) else []:
        label, unit = FEATURE_LABELS.get(str(feat), (str(feat), ""))
        span = ranges.get(feat)
        seen = (
            f"{num(span[0], unit)} to {num(span[1], unit)} seen in training"
            if isinstance(span, list) and len(span) == 2
            else "range not recorded"
        )
        add(f"feature: {label}", seen)
    return rows
