"""Descriptive statistics of a dataset: ABC / XYZ segments, demand patterns, and a summary.

Definitions (DESIGN.md section 5; evaluation reuses these functions so segments mean one thing):
- ABC by sales value over observed days: units sorted by value, A while the value of the units
  ranked above is below 80% of the total, B below 95%, C the rest (and every unit without sales).
- XYZ by the coefficient of variation (population std / mean) of weekly demand over calendar weeks
  the unit is observed on all 7 days: X < 0.5, Y < 1.0, Z >= 1.0; fewer than two such weeks, or
  no demand at all, counts as Z.
- Demand pattern (Syntetos-Boylan): ADI = observed days / days with demand, CV^2 of the non-zero
  sizes; smooth (ADI < 1.32, CV^2 < 0.49), erratic (ADI < 1.32), intermittent (CV^2 < 0.49), lumpy.

Call them on ``ds.window(start, stop)`` to segment on one window (e.g. training only).
"""
from __future__ import annotations

import numpy as np

from orpr_ray.data.dataset import Dataset

ADI_CUT = 1.32
CV2_CUT = 0.49
PATTERNS = ("smooth", "erratic", "intermittent", "lumpy")


def sales_value(ds: Dataset) -> np.ndarray:
    """Sales x price summed over observed days, shape (U,)."""
    return np.where(ds.observed, ds.sales * ds.price, 0.0).sum(axis=1)


def abc_classes(ds: Dataset, *, a_share: float = 0.80, b_share: float = 0.95) -> np.ndarray:
    """'A' / 'B' / 'C' per unit, shape (U,)."""
    value = sales_value(ds)
    total = value.sum()
    classes = np.full(ds.n_units, "C", dtype="<U1")
    if total <= 0:
        return classes
    order = np.argsort(-value, kind="stable")
    share_above = (np.cumsum(value[order]) - value[order]) / total  # value share of better-ranked units
    ranked = np.where(share_above < a_share, "A", np.where(share_above < b_share, "B", "C"))
    ranked[value[order] <= 0] = "C"
    classes[order] = ranked
    return classes


def weekly_cv(ds: Dataset) -> np.ndarray:
    """Coefficient of variation of weekly demand per unit, shape (U,); NaN without two full weeks."""
    n_weeks = ds.n_days // 7
    weeks = ds.sales[:, : n_weeks * 7].reshape(ds.n_units, n_weeks, 7).sum(axis=2)  # (U, W)
    full = ds.observed[:, : n_weeks * 7].reshape(ds.n_units, n_weeks, 7).all(axis=2)  # (U, W)
    count = full.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(full, weeks, 0.0).sum(axis=1) / count
        var = np.where(full, (weeks - mean[:, None]) ** 2, 0.0).sum(axis=1) / count
        cv = np.sqrt(var) / mean
    cv[count < 2] = np.nan
    return cv


def xyz_classes(ds: Dataset, *, x_cv: float = 0.5, y_cv: float = 1.0) -> np.ndarray:
    """'X' / 'Y' / 'Z' per unit, shape (U,)."""
    cv = weekly_cv(ds)
    known = np.isfinite(cv)
    return np.where(known & (cv < x_cv), "X", np.where(known & (cv < y_cv), "Y", "Z"))


def demand_patterns(ds: Dataset) -> np.ndarray:
    """Syntetos-Boylan class per unit ('smooth', 'erratic', 'intermittent', 'lumpy'), shape (U,)."""
    demand_days = (ds.sales > 0) & ds.observed  # (U, T)
    n_demand = demand_days.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        adi = ds.observed.sum(axis=1) / n_demand
        size_mean = np.where(demand_days, ds.sales, 0.0).sum(axis=1) / n_demand
        size_var = np.where(demand_days, (ds.sales - size_mean[:, None]) ** 2, 0.0).sum(axis=1) / n_demand
        cv2 = np.nan_to_num(size_var / size_mean**2)
    frequent = adi < ADI_CUT  # NaN/inf ADI (no demand) counts as infrequent
    steady = cv2 < CV2_CUT
    return np.where(frequent, np.where(steady, "smooth", "erratic"), np.where(steady, "intermittent", "lumpy"))


def _counts(labels: np.ndarray, order: tuple[str, ...]) -> dict[str, int]:
    return {name: int((labels == name).sum()) for name in order}


def summarize(ds: Dataset) -> dict:
    """JSON-ready overview: sizes, calendar, segments, zero and promotion shares of observed days."""
    observed_days = int(ds.observed.sum())
    zero_days = int(((ds.sales == 0) & ds.observed).sum())
    promo_days = int(((ds.promo > 0) & ds.observed).sum())
    return {
        "units": ds.n_units,
        "skus": int(ds.units["sku"].nunique()),
        "days": ds.n_days,
        "first_date": str(ds.dates[0]) if ds.n_days else None,
        "last_date": str(ds.dates[-1]) if ds.n_days else None,
        "categories": int(ds.units["category"].nunique()),
        "dcs": int(ds.units["dc"].nunique()),
        "observed_unit_days": observed_days,
        "zero_share": zero_days / max(observed_days, 1),
        "promo_share": promo_days / max(observed_days, 1),
        "total_sales": float(np.where(ds.observed, ds.sales, 0.0).sum()),
        "abc": _counts(abc_classes(ds), ("A", "B", "C")),
        "xyz": _counts(xyz_classes(ds), ("X", "Y", "Z")),
        "patterns": _counts(demand_patterns(ds), PATTERNS),
        "extra_attributes": list(ds.extra_attributes),
    }
