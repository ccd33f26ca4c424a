"""The learned plant model the controller queries: powers, PUE and temperatures as functions of load, weather and
cooling setpoints, with P10/P50/P90 quantiles.

It learns from historian telemetry only, found by role (never by device name): :func:`plant_frame` reduces a wide
frame of collector series to one row per sample time with the facility-level features and targets below.

The load feature is the mean GPU utilisation, the workload the setpoints cannot change. IT power is a *target*:
warmer coolant raises chip leakage, so IT power depends on the setpoints, and a model fed measured IT power as an
input would hide exactly the effect that makes PUE a poor objective (DESIGN.md §1). PUE is predicted directly
(its own model); the benchmark also reports PUE as the ratio of the two predicted powers for comparison.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingRegressor

from aidc.errors import DataError
from aidc.roles import Role
from analytics.energy.kpi import IT_POWER_ROLES, power_scale
from analytics.energy.metering import MeterInfo, it_power_windows

FEATURES: tuple[str, ...] = (
    "gpu_util_pct",  # mean GPU utilisation, %
    "drybulb_c",
    "wetbulb_c",
    "tcs_supply_sp_c",  # mean TCS supply temperature setpoint over CDUs
    "tcs_dp_sp_kpa",  # mean TCS differential-pressure setpoint over CDUs
    "fws_supply_sp_c",  # plant FWS supply temperature setpoint
)
TARGETS: tuple[str, ...] = (
    "facility_power_kw",
    "cooling_power_kw",
    "it_power_kw",
    "pue",
    "gpu_temp_max_c",
    "rack_outlet_max_c",
)
QUANTILES = (0.1, 0.5, 0.9)
CALIBRATION_SHARE = 0.2

_MEAN_ROLES = {
    "gpu_util_pct": Role.GPU_UTIL,
    "drybulb_c": Role.OUTDOOR_DRYBULB,
    "wetbulb_c": Role.OUTDOOR_WETBULB,
    "tcs_supply_sp_c": Role.TCS_SUPPLY_TEMP_SETPOINT,
    "tcs_dp_sp_kpa": Role.TCS_DP_SETPOINT,
    "fws_supply_sp_c": Role.FWS_SUPPLY_TEMP_SETPOINT,
}
_MAX_ROLES = {"gpu_temp_max_c": Role.GPU_TEMP, "rack_outlet_max_c": Role.RACK_COOLANT_OUTLET_TEMP}
_SUM_ROLES = {"facility_power_kw": Role.FACILITY_POWER, "cooling_power_kw": Role.COOLING_POWER}


def _cols(roles: Mapping[str, Role], role: Role, frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if roles.get(c) is role]


def _kw(frame: pd.DataFrame, cols: list[str]) -> pd.Series:
    scale = np.array([power_scale(c.rsplit(" ", 1)[-1]) for c in cols])
    return pd.Series(frame[cols].to_numpy(dtype=np.float64) @ scale, index=frame.index)


def plant_frame(frame: pd.DataFrame, roles: Mapping[str, Role]) -> pd.DataFrame:
    """Facility-level features and targets, one row per sample time, from wide series found by role."""
    out: dict[str, pd.Series] = {}
    for name, role in _MEAN_ROLES.items():
        cols = _cols(roles, role, frame)
        if not cols:
            raise DataError(f"plant model: no series with role {role.value} (needed for {name})")
        out[name] = frame[cols].mean(axis=1)
    for name, role in _MAX_ROLES.items():
        cols = _cols(roles, role, frame)
        if not cols:
            raise DataError(f"plant model: no series with role {role.value} (needed for {name})")
        out[name] = frame[cols].max(axis=1)
    for name, role in _SUM_ROLES.items():
        cols = _cols(roles, role, frame)
        if not cols:
            raise DataError(f"plant model: no series with role {role.value} (needed for {name})")
        out[name] = _kw(frame, cols)
    # IT power by the one metering rule, row by row: the highest category all of whose series have a value then.
    # (Only series present in the frame are known here; a meter silent all along is the caller's to include.)
    it_roles = set(IT_POWER_ROLES.values())
    it_meters = {c: MeterInfo(r, power_scale(c.rsplit(" ", 1)[-1])) for c, r in roles.items()
                 if r in it_roles and c in frame.columns}  # fmt: skip
    if not it_meters:
        raise DataError("plant model: no IT power series (roles it_power_ups_output/pdu_output/equipment_input)")
    out["it_power_kw"], _ = it_power_windows(frame, it_meters)
    df = pd.DataFrame(out)
    df["pue"] = df["facility_power_kw"] / df["it_power_kw"].where(df["it_power_kw"] > 0)
    return df[list(FEATURES) + list(TARGETS)].dropna()


def _model(max_iter: int) -> HistGradientBoostingRegressor:
    return HistGradientBoostingRegressor(
        max_iter=max_iter,
        learning_rate=0.1,
        max_leaf_nodes=31,
        min_samples_leaf=10,
        early_stopping=False,
        random_state=0,
    )


@dataclass
class PlantModel:
    """A P50 model per target plus its residual quantiles; :meth:`predict` scores many candidates in one call.

    Uncertainty: the P10/P90 offsets are the 10th and 90th percentiles of the residuals on the last
    ``CALIBRATION_SHARE`` of the training window (later in time than what the calibration model was fitted on, so
    they include the drift a real forecast sees); the final P50 model is then refitted on the whole window.
    """

    models: dict[str, HistGradientBoostingRegressor] = field(default_factory=dict)
    offsets: dict[str, tuple[float, float]] = field(default_factory=dict)
    train_start: pd.Timestamp | None = None
    train_end: pd.Timestamp | None = None
    scores: dict[str, float] = field(default_factory=dict)
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)

    @classmethod
    def fit(cls, data: pd.DataFrame, *, max_iter: int = 300) -> PlantModel:
        """Fit every target on a :func:`plant_frame` (time-ordered rows)."""
        missing = [c for c in (*FEATURES, *TARGETS) if c not in data.columns]
        if missing:
            raise DataError(f"plant model: training data lacks columns {missing}")
        if len(data) < 100:
            raise DataError(f"plant model: only {len(data)} training rows; need at least 100")
        x = data[list(FEATURES)].to_numpy(dtype=np.float64)
        cut = int(len(data) * (1 - CALIBRATION_SHARE))
        pm = cls(train_start=pd.Timestamp(data.index[0]), train_end=pd.Timestamp(data.index[-1]))
        for t in TARGETS:
            y = data[t].to_numpy(dtype=np.float64)
            resid = y[cut:] - _model(max_iter).fit(x[:cut], y[:cut]).predict(x[cut:])
            pm.offsets[t] = (float(np.quantile(resid, QUANTILES[0])), float(np.quantile(resid, QUANTILES[2])))
            pm.models[t] = _model(max_iter).fit(x, y)
        pm.ranges = {c: (float(data[c].min()), float(data[c].max())) for c in FEATURES}
        return pm

    def predict(self, candidates: pd.DataFrame) -> pd.DataFrame:
        """For each candidate row (columns :data:`FEATURES`): ``<target>_p10/_p50/_p90`` and ``extrapolating``."""
        missing = [c for c in FEATURES if c not in candidates.columns]
        if missing:
            raise DataError(f"plant model: candidates lack columns {missing}")
        x = candidates[list(FEATURES)].to_numpy(dtype=np.float64)
        out: dict[str, np.ndarray] = {}
        for t, model in self.models.items():
            p50 = model.predict(x)
            lo, hi = self.offsets[t]
            out[f"{t}_p10"], out[f"{t}_p50"], out[f"{t}_p90"] = p50 + min(lo, 0.0), p50, p50 + max(hi, 0.0)
        # Trees cannot extrapolate: flag candidates outside the training range so the guard can refuse them.
        outside = np.zeros(len(candidates), dtype=bool)
        for k, c in enumerate(FEATURES):
            lo, hi = self.ranges[c]
            outside |= (x[:, k] < lo) | (x[:, k] > hi)
        out["extrapolating"] = outside
        return pd.DataFrame(out, index=candidates.index)

    def evaluate(self, data: pd.DataFrame) -> dict[str, float]:
        """MAE of the P50 per target and P10-P90 coverage on held-out data; stored as the model's scores."""
        pred = self.predict(data)
        scores: dict[str, float] = {}
        for t in TARGETS:
            y = data[t].to_numpy()
            scores[f"{t}_mae"] = float(np.mean(np.abs(pred[f"{t}_p50"].to_numpy() - y)))
            inside = (y >= pred[f"{t}_p10"].to_numpy()) & (y <= pred[f"{t}_p90"].to_numpy())
            scores[f"{t}_cov80"] = float(np.mean(inside))
        # PUE as the ratio of the two predicted powers, for comparison with the direct PUE model.
        ratio = pred["facility_power_kw_p50"].to_numpy() / np.maximum(pred["it_power_kw_p50"].to_numpy(), 1e-9)
        scores["pue_ratio_mae"] = float(np.mean(np.abs(ratio - data["pue"].to_numpy())))
        self.scores = scores
        return scores

    def metadata(self) -> dict[str, object]:
        """Training window, features, targets, ranges and scores for the JSON sidecar."""
        return {
            "train_start": None if self.train_start is None else self.train_start.isoformat(),
            "train_end": None if self.train_end is None else self.train_end.isoformat(),
            "features": list(FEATURES),
            "targets": list(TARGETS),
            "quantiles": list(QUANTILES),
            "ranges": self.ranges,
            "scores": self.scores,
        }


# --- the supervisor's online model: smooth, vectorised, with spread and distance -------------------------------

ONLINE_FEATURES: tuple[str, ...] = ("gpu_util_pct", "drybulb_c", "wetbulb_c", "tcs_supply_sp_c", "tcs_dp_sp_kpa",
                                    "fws_supply_sp_c")
# Where the plant has a writable CRAH chilled-water setpoint, the controller adds it as a seventh feature.
OPTIONAL_FEATURES: tuple[str, ...] = ("chw_supply_sp_c",)
ONLINE_TARGETS: tuple[str, ...] = ("facility_power_kw", "gpu_margin_c")
# Feature scales for the distance to the training data: one unit is what the controller treats as "near".
DISTANCE_SCALE = np.array([10.0, 4.0, 4.0, 2.0, 25.0, 2.0, 2.0])
CONTEXT_DIMS = 3  # load and weather: what the controller cannot choose
EVIDENCE_ROWS = 12  # rows (an hour at 5-minute decisions) that must lie within the distance to count as evidence


def _poly3(z: np.ndarray) -> np.ndarray:
    """Degree-3 polynomial basis (with intercept) of standardised features, one row per sample."""
    n, d = z.shape
    cols = [np.ones(n)]
    cols += [z[:, i] for i in range(d)]
    for i in range(d):
        for j in range(i, d):
            cols.append(z[:, i] * z[:, j])
    for i in range(d):
        for j in range(i, d):
            for k in range(j, d):
                cols.append(z[:, i] * z[:, j] * z[:, k])
    return np.stack(cols, axis=1)


_KNOTS_K = (-4.0, 0.0, 4.0, 8.0, 12.0, 16.0)
# Targets that see only some features (indices into ONLINE_FEATURES + OPTIONAL_FEATURES, those past the fitted
# width dropped): what physically drives them. The work rate (utilisation × SM clock) falls where GPUs run hot or
# at their power cap, so it sees load and the coolant, as the GPU margin does.
TARGET_INPUTS: dict[str, tuple[int, ...]] = {
    "it_power_kw": (0, 3, 4), "gpu_margin_c": (0, 3, 4, 5, 6), "work_rate_pct": (0, 3, 4, 5, 6),
}


def _inputs(target: str, width: int) -> tuple[int, ...] | None:
    """The feature indices ``target`` sees at a fitted width of ``width`` features (None: all)."""
    inputs = TARGET_INPUTS.get(target)
    return None if inputs is None else tuple(i for i in inputs if i < width)


def _target_basis(x: np.ndarray, mean: np.ndarray, std: np.ndarray, inputs: tuple[int, ...] | None) -> np.ndarray:
    """The full basis, or a cubic basis of the given features only."""
    if inputs is None:
        return _basis(x, mean, std)
    idx = list(inputs)
    return _poly3((x[:, idx] - mean[idx]) / std[idx])


def _basis(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Cubic basis plus hinges in the lift (FWS supply − outdoor dry / wet bulb) and their products with load.

    Free cooling and chiller power change slope where the facility water crosses the outdoor temperature plus the
    heat-rejection approach; a hinge per knot lets a least-squares fit follow those kinks without knowing where the
    plant's approach is.
    """
    z = (x - mean) / std
    cols = [_poly3(z)]
    u = z[:, 0]
    for sink in (1, 2):
        lift = x[:, 5] - x[:, sink]
        for k in _KNOTS_K:
            h = np.maximum(lift - k, 0.0) / 5.0
            cols.append(np.stack([h, h * u, h * h], axis=1))
    return np.concatenate(cols, axis=1)


@dataclass
class OnlinePlantModel:
    """A bootstrap ensemble of ridge regressions on a cubic basis, for scoring many candidate setpoints at once.

    Smooth in the setpoints (so the arg-min over candidates follows the physics, not tree steps), cheap to refit
    (a least-squares solve), and honest about what it does not know: the ensemble spread grows away from the data,
    and :meth:`distance` measures how far each candidate is from the nearest training row in
    :data:`DISTANCE_SCALE` units, so a model trained in July is not trusted in January.
    """

    mean: np.ndarray
    std: np.ndarray
    coefs: dict[str, np.ndarray]  # target -> (members, n_basis)
    resid_q: dict[str, tuple[float, float]]  # target -> (P05, P95) of out-of-bag residuals
    train_x: np.ndarray  # scaled training features for the distance query
    provenance: dict[str, object]
    _tree: object = None
    _context_tree: object = None

    @classmethod
    def fit(cls, x: np.ndarray, y: dict[str, np.ndarray], *, members: int = 5, alpha: float = 1e-3,
            seed: int = 0, window: tuple[str, str] | None = None,
            half_life_rows: float | None = None) -> OnlinePlantModel:
        """Fit on rows ``x`` (columns :data:`ONLINE_FEATURES`) and targets ``y``; DataError if too few rows.

        Targets in :data:`TARGET_INPUTS` see only the features that physically drive them (IT power: load and
        coolant; the GPU margin: load, coolant and facility water), which keeps weather noise out of their fit and
        lets them carry over between seasons. Given ``it_power_kw`` and ``nonit_power_kw``, the model predicts
        ``facility_power_kw`` as their sum, member by member (the members share their bootstrap rows).
        ``half_life_rows``: rows (time-ordered) are drawn into the bootstrap with a weight that halves every that
        many rows back, so the fit follows where the plant operates now.
        """
        if len(x) < 200:
            raise DataError(f"online plant model: only {len(x)} training rows; need at least 200")
        names = ONLINE_FEATURES + OPTIONAL_FEATURES
        if x.ndim != 2 or not len(ONLINE_FEATURES) <= x.shape[1] <= len(names):
            raise DataError(f"online plant model: {x.shape[-1]} feature columns; expected "
                            f"{len(ONLINE_FEATURES)} to {len(names)} ({', '.join(names)})")
        if not np.isfinite(x).all():
            raise DataError("online plant model: training features contain NaN")
        mean, std = x.mean(axis=0), np.maximum(x.std(axis=0), 1e-6)
        rng = np.random.default_rng(seed)
        n = len(x)
        if half_life_rows is None:
            draws = [rng.integers(0, n, n) for _ in range(members)]
        else:  # recent rows drawn more often: the model follows the plant's and the season's drift
            w = 0.5 ** ((n - 1 - np.arange(n)) / half_life_rows)
            draws = [rng.choice(n, n, p=w / w.sum()) for _ in range(members)]
        coefs: dict[str, np.ndarray] = {}
        resid_q: dict[str, tuple[float, float]] = {}
        scores: dict[str, float] = {}
        bases: dict[tuple[int, ...] | None, np.ndarray] = {}
        for t, yt in y.items():
            inputs = _inputs(t, x.shape[1])
            if inputs not in bases:
                bases[inputs] = _target_basis(x, mean, std, inputs)
            basis = bases[inputs]
            m = basis.shape[1]
            reg = alpha * n * np.eye(m)
            reg[0, 0] = 0.0
            cs, oob_res = [], []
            for idx in draws:
                b, v = basis[idx], yt[idx]
                c = np.linalg.solve(b.T @ b + reg, b.T @ v)
                cs.append(c)
                mask = np.ones(n, dtype=bool)
                mask[idx] = False
                if mask.any():
                    oob_res.append(yt[mask] - basis[mask] @ c)
            coefs[t] = np.stack(cs)
            res = np.concatenate(oob_res) if oob_res else np.zeros(1)
            resid_q[t] = (float(np.quantile(res, 0.05)), float(np.quantile(res, 0.95)))
            scores[f"{t}_oob_mae"] = float(np.mean(np.abs(res)))
        from sklearn.neighbors import KDTree

        scaled = x / DISTANCE_SCALE[: x.shape[1]]
        prov: dict[str, object] = {
            "kind": "bootstrap ridge ensemble, cubic basis",
            "members": members,
            "rows": int(n),
            "window": list(window) if window else None,
            "features": list(names[: x.shape[1]]),
            "targets": list(y),
            "ranges": {f: [float(x[:, i].min()), float(x[:, i].max())] for i, f in enumerate(names[: x.shape[1]])},
            "scores": scores,
        }
        if "facility_power_kw" not in y and {"it_power_kw", "nonit_power_kw"} <= set(y):
            lo = resid_q["it_power_kw"][0] + resid_q["nonit_power_kw"][0]
            hi = resid_q["it_power_kw"][1] + resid_q["nonit_power_kw"][1]
            resid_q["facility_power_kw"] = (lo, hi)
        return cls(mean, std, coefs, resid_q, scaled, prov, KDTree(scaled), KDTree(scaled[:, :CONTEXT_DIMS]))

    def predict(self, x: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per target: (ensemble mean, ensemble spread) for each candidate row."""
        bases: dict[tuple[int, ...] | None, np.ndarray] = {}
        members: dict[str, np.ndarray] = {}
        for t, c in self.coefs.items():
            inputs = _inputs(t, x.shape[1])
            if inputs not in bases:
                bases[inputs] = _target_basis(x, self.mean, self.std, inputs)
            members[t] = bases[inputs] @ c.T  # (n, members)
        if "facility_power_kw" not in members and {"it_power_kw", "nonit_power_kw"} <= set(members):
            members["facility_power_kw"] = members["it_power_kw"] + members["nonit_power_kw"]
        return {t: (p.mean(axis=1), p.std(axis=1)) for t, p in members.items()}

    def context_distance(self, x: np.ndarray) -> np.ndarray:
        """Distance of each row's load and weather (the first :data:`CONTEXT_DIMS` features) to the training data."""
        k = min(EVIDENCE_ROWS, len(self.train_x))
        d, _ = self._context_tree.query(x[:, :CONTEXT_DIMS] / DISTANCE_SCALE[:CONTEXT_DIMS], k=k)  # type: ignore[attr-defined]
        return np.asarray(d[:, -1], dtype=np.float64)

    def distance(self, x: np.ndarray) -> np.ndarray:
        """Distance of each candidate to its :data:`EVIDENCE_ROWS`-th nearest training row, in
        :data:`DISTANCE_SCALE` units: one stray sample is not evidence."""
        k = min(EVIDENCE_ROWS, len(self.train_x))
        d, _ = self._tree.query(x / DISTANCE_SCALE[: x.shape[1]], k=k)  # type: ignore[attr-defined]
        return np.asarray(d[:, -1], dtype=np.float64)
