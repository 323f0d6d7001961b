"""Classic replenishment policies for the rolling simulation, and the trailing-mean forecast.

Each policy holds one tuned parameter (or pair) per unit and implements ``rolling.Policy``:
given the units under review on day ``t`` it returns their order-up-to levels (the constant-order
policy returns quantities and says so with ``rule = "constant"``). ``params()`` names the per-unit
parameters for result tables.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from orpr_ray.sim.engine import SimState, inventory_days_to_levels


def trailing_mean_demand(demand: np.ndarray, window: int) -> np.ndarray:
    """d_hat (U, T): column t is the mean demand over days [t - window, t), data before t only.

    Fewer than ``window`` days of history (t < window) average what there is; day 0 has no
    history and gets 0.
    """
    n_units, n_days = demand.shape
    cumulative = np.zeros((n_units, n_days + 1))
    np.cumsum(demand, axis=1, out=cumulative[:, 1:])
    t = np.arange(n_days)
    lower = np.maximum(t - window, 0)
    total = cumulative[:, t] - cumulative[:, lower]          # (U, T) sum over the window
    count = np.maximum(t - lower, 1)                          # (T,) days in it (>= 1 avoids 0/0)
    return np.maximum(total / count, 0.0)                     # cumsum differences can be -1e-16


@dataclass(frozen=True)
class BaseStockPolicy:
    """Order up to a fixed level S per unit."""

    levels: np.ndarray  # (U,)

    def decide(self, t: int, units: np.ndarray, state: SimState) -> np.ndarray:
        return self.levels[units]

    def params(self) -> dict[str, np.ndarray]:
        return {"S": self.levels}


@dataclass(frozen=True)
class InventoryDaysPolicy:
    """Order up to ``ceil(v * d_hat_t)``: ``v`` days of cover at the demand rate known on day t."""

    days: np.ndarray   # (U,) inventory-days target v
    d_hat: np.ndarray  # (U, T) expected daily demand per calendar day, from data before it

    def decide(self, t: int, units: np.ndarray, state: SimState) -> np.ndarray:
        return inventory_days_to_levels(self.days[units], self.d_hat[units, t])

    def params(self) -> dict[str, np.ndarray]:
        return {"v": self.days}


@dataclass(frozen=True)
class SSPolicy:
    """(s, S): when the inventory position is at or below s, order up to S; else order nothing."""

    reorder_point: np.ndarray  # (U,) s
    levels: np.ndarray         # (U,) S >= s

    def decide(self, t: int, units: np.ndarray, state: SimState) -> np.ndarray:
        position = state.inventory_position[units]
        return np.where(position <= self.reorder_point[units], self.levels[units], 0.0)

    def params(self) -> dict[str, np.ndarray]:
        return {"s": self.reorder_point, "S": self.levels}


@dataclass(frozen=True)
class ConstantOrderPolicy:
    """Order the same quantity q at every review, whatever the stock."""

    quantity: np.ndarray  # (U,)
    rule = "constant"

    def decide(self, t: int, units: np.ndarray, state: SimState) -> np.ndarray:
        return self.quantity[units]

    def params(self) -> dict[str, np.ndarray]:
        return {"q": self.quantity}
