"""Learned and hindsight policies in the rolling simulator's ``Policy`` protocol.

The network, the OR labels and the PPO baseline all decide an inventory-days target ``v`` per
(unit, review day) from information that does not depend on the simulated stock: the network and
PPO read the feature streams of days before the review day (plus promotions planned ahead), the
OR labels are a hindsight table. So every target of the backtest is computed up front, in large
batches, into a (units x days) table, and the policy the simulator rolls only looks it up:
``S = inventory_days_to_levels(v, d_hat)`` with the simulator's causal trailing-mean ``d_hat``,
the convention of the labels and of the tuned classic policies, so policies differ only in ``v``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from orpr_ray.data.dataset import Dataset
from orpr_ray.sim.engine import SimState, UnitParams, inventory_days_to_levels
from orpr_ray.sim.rolling import review_mask


@dataclass(frozen=True)
class ReviewPoints:
    """Every (unit, day) on which a unit reviews inside days ``[start, stop)``: int64 (N,) each."""

    unit: np.ndarray
    day: np.ndarray
    start: int
    stop: int

    def __len__(self) -> int:
        return len(self.unit)


def review_points(params: UnitParams, start: int, stop: int) -> ReviewPoints:
    """The review days of every unit in ``[start, stop)``, by the simulator's own review rule."""
    days = np.arange(start, stop)
    mask = np.stack([review_mask(t, params) for t in days], axis=1)  # (U, D)
    unit, offset = np.nonzero(mask)
    return ReviewPoints(unit=unit.astype(np.int64), day=days[offset].astype(np.int64), start=start, stop=stop)


@dataclass(frozen=True)
class ScheduledDaysPolicy:
    """Order up to ``ceil(v[u, t] * d_hat[u, t])`` with ``v`` decided ahead for every review point.

    days: float64 (U, stop - start), the target of unit u on day ``start + j`` (NaN off review days).
    d_hat: float64 (U, T) over the whole calendar, column t from data before t.
    """

    days: np.ndarray
    d_hat: np.ndarray
    start: int

    def decide(self, t: int, units: np.ndarray, state: SimState) -> np.ndarray:
        v = self.days[units, t - self.start]
        if np.isnan(v).any():
            raise ValueError(f"day {t}: no decided target for units {units[np.isnan(v)][:5].tolist()}")
        return inventory_days_to_levels(v, self.d_hat[units, t])

    def params(self) -> dict[str, np.ndarray]:
        """Per unit: the mean target over the review days (for result tables)."""
        with np.errstate(invalid="ignore"):
            return {"v_mean": np.nanmean(self.days, axis=1)}


def scheduled_policy(points: ReviewPoints, v: np.ndarray, d_hat: np.ndarray) -> ScheduledDaysPolicy:
    """The policy ordering ``v`` (N,) days of cover at ``points``."""
    days = np.full((d_hat.shape[0], points.stop - points.start), np.nan)
    days[points.unit, points.day - points.start] = v
    return ScheduledDaysPolicy(days=days, d_hat=d_hat, start=points.start)


def in_batches(n: int, batch_size: int, decide: Callable[[slice], np.ndarray]) -> np.ndarray:
    """``decide(rows)`` over slices of ``n`` points; returns the (n,) concatenated targets."""
    out = np.empty(n)
    for lo in range(0, n, batch_size):
        rows = slice(lo, min(lo + batch_size, n))
        out[rows] = decide(rows)
    return out


# ---------------------------------------------------------------------------------- OR labels


def latest_known(table: pd.DataFrame, column: str, unit: np.ndarray, day: np.ndarray,
                 known_from: str = "day") -> np.ndarray:
    """(N,) ``column`` of the unit's latest ``table`` row with ``known_from <= day`` (NaN if none)."""
    known = table[["unit", known_from, column]].rename(columns={known_from: "_known"}).sort_values("_known")
    query = pd.DataFrame({"unit": np.asarray(unit, dtype=np.int64), "day": np.asarray(day, dtype=np.int64)})
    query = query.reset_index().sort_values("day")
    merged = pd.merge_asof(query, known.astype({"unit": np.int64, "_known": np.int64}), left_on="day",
                           right_on="_known", by="unit", direction="backward")
    return merged.set_index("index")[column].reindex(range(len(query))).to_numpy(np.float64)


def label_targets(labels: pd.DataFrame, points: ReviewPoints, fallback: np.ndarray) -> tuple[np.ndarray, int]:
    """The hindsight OR-label target at each review point: the unit's latest label on or before the
    day (its first label before that; ``fallback`` (U,) for a unit without labels).

    Labels come on a fixed stride of decision dates, each the knapsack's choice for the demand that
    actually followed it, so this policy knows the future: an oracle, not a deployable rule.
    Returns the (N,) targets and the number of review points that used the fallback.
    """
    v = latest_known(labels, "v_label", points.unit, points.day)
    first = labels.groupby("unit")["v_label"].first()  # labels are sorted by (unit, day)
    missing = np.isnan(v)
    v[missing] = pd.Series(points.unit[missing]).map(first).to_numpy(np.float64)
    without = np.isnan(v)
    v[without] = fallback[points.unit[without]]
    return v, int(without.sum())


# ---------------------------------------------------------------------------------- the network


def network_targets(checkpoint_dir, ds: Dataset, points: ReviewPoints, known: np.ndarray | None,
                    batch_size: int) -> np.ndarray:
    """(N,) the deterministic (z = mu) inventory-days target of a trained network at each point.

    known: (N, len(LABEL_OBJECTIVES)) what past labels tell at each point (``LabelHistory.lookup``:
    only labels whose horizon had passed), None without labels (the network sees them masked).
    """
    from orpr_ray.model.policy import Policy

    policy = Policy.load(checkpoint_dir)
    panel = policy.panel(ds)

    def decide(rows: slice) -> np.ndarray:
        features = policy.features_from_panel(panel, points.unit[rows], points.day[rows],
                                              None if known is None else known[rows])
        return policy.decide(features).v

    return in_batches(len(points), batch_size, decide)
