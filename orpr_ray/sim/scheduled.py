"""Policies whose targets are decided ahead: the rolling simulator looks each review day's target up.

A learned policy decides an inventory-days target ``v`` per (unit, review day) from information that
does not depend on the simulated stock (feature streams of days before the review day, promotions
planned ahead), so its targets are computed up front in large batches into a (units x days) table and
the policy the simulator rolls only looks them up: ``S = inventory_days_to_levels(v, d_hat)`` with the
simulator's causal trailing-mean ``d_hat``, the convention of the labels and of the tuned classic
policies, so policies differ only in ``v``. Backtests and the choice of a network's decision rule on
the validation window both roll these.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

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

