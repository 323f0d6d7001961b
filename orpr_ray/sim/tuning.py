"""Tune the classic policies per unit on a training window with one grid simulation each.

Every tuner simulates all units x all candidates of its grid in one ``simulate_grid`` call over the
window's days and picks per unit (``choose``): min total cost, or min stock value among the
candidates meeting the fill-rate target (none meets it: the highest fill rate). Grids are ascending
in stock, so ties go to the leaner candidate.

Warm start: each candidate starts the window with its own order-up-to level on hand (the
constant-order policy with ``L + R`` days of mean demand) and nothing on order, so the first
lead time is not scored as an artificial stock-out.

The incumbent is the planner's rule of thumb: one days-of-cover ``v`` per category, the smallest
whose category in-stock rate meets ``incumbent_in_stock_target``. The category rate averages the
units' in-stock rates weighted by their demand value in the window (fast movers count more;
units without demand count equally if the whole category has none).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from orpr_ray.sim.config import SimConfig
from orpr_ray.sim.engine import GridMetrics, UnitParams, inventory_days_to_levels, simulate_grid
from orpr_ray.sim.policies import BaseStockPolicy, ConstantOrderPolicy, InventoryDaysPolicy, SSPolicy
from orpr_ray.sim.rolling import Policy


@dataclass(frozen=True)
class TuneWindow:
    """Days ``[start, stop)`` of a calendar to tune on; the days before ``start`` only feed d_hat.

    demand, d_hat: (U, T) over the calendar; column t of d_hat uses data before t only, so the
    tuners read both only below ``stop`` and the policies may keep d_hat for later days.
    """

    demand: np.ndarray
    d_hat: np.ndarray
    params: UnitParams
    category: np.ndarray  # (U,) labels
    start: int
    stop: int

    def __post_init__(self):
        if not 0 <= self.start < self.stop <= self.demand.shape[1]:
            raise ValueError(f"tuning window [{self.start}, {self.stop}) does not fit "
                             f"{self.demand.shape[1]} days")

    @property
    def sim_demand(self) -> np.ndarray:
        return self.demand[:, self.start:self.stop]

    @property
    def sim_rate(self) -> np.ndarray:
        return self.d_hat[:, self.start:self.stop]

    @property
    def mean_demand(self) -> np.ndarray:
        """(U,) mean daily demand over the window: the scale of the static policies' grids."""
        return self.sim_demand.mean(axis=1)


@dataclass(frozen=True)
class Tuned:
    name: str
    policy: Policy
    choice: np.ndarray   # (U,) index of the chosen candidate in the unit's grid
    train: GridMetrics   # (U, 1) the chosen candidates' metrics on the window
    detail: dict = field(default_factory=dict)


def choose(metrics: GridMetrics, cfg: SimConfig) -> np.ndarray:
    """(U,) the best candidate per unit under ``cfg.tune_objective`` (first of ties)."""
    if cfg.tune_objective == "cost":
        return np.argmin(metrics.total_cost, axis=1)
    fill = metrics.fill_rate
    feasible = fill >= cfg.fill_rate_target
    leanest = np.argmin(np.where(feasible, metrics.stock_value, np.inf), axis=1)
    return np.where(feasible.any(axis=1), leanest, np.argmax(fill, axis=1))


def _simulate(window: TuneWindow, targets: np.ndarray, cfg: SimConfig, **kwargs) -> GridMetrics:
    p = window.params
    return simulate_grid(window.sim_demand, targets, p.lead_time, p.review_period, p.unit_cost,
                         p.unit_price, review_offset=p.offsets_from(window.start),
                         holding_rate=cfg.holding_rate_per_day,
                         penalty_share=cfg.lost_sales_penalty_share, **kwargs)


def _pick(values: np.ndarray, choice: np.ndarray) -> np.ndarray:
    """values (U, C) -> (U,) the chosen column of each row."""
    return values[np.arange(len(choice)), choice]


def tune_base_stock(window: TuneWindow, cfg: SimConfig) -> Tuned:
    """S = ceil(v x mean demand) for v in the days grid, fixed over the window."""
    levels = inventory_days_to_levels(np.asarray(cfg.days_grid)[None, :], window.mean_demand[:, None])
    metrics = _simulate(window, levels, cfg, on_hand0=levels)                 # (U, C)
    choice = choose(metrics, cfg)
    return Tuned("base_stock", BaseStockPolicy(_pick(levels, choice)), choice, metrics.select(choice))


def _days_grid_metrics(window: TuneWindow, cfg: SimConfig) -> tuple[np.ndarray, GridMetrics]:
    """Every unit under every days-of-cover candidate, S_t = ceil(v x d_hat_t)."""
    days = np.asarray(cfg.days_grid, dtype=np.float64)
    rate = window.sim_rate
    on_hand0 = inventory_days_to_levels(days[None, :], rate[:, :1])           # (U, C)
    return days, _simulate(window, days, cfg, demand_rate=rate, on_hand0=on_hand0)


def tune_inventory_days(window: TuneWindow, cfg: SimConfig) -> Tuned:
    """v per unit from the days grid; S_t = ceil(v x trailing-mean d_hat_t) at each review."""
    days, metrics = _days_grid_metrics(window, cfg)
    choice = choose(metrics, cfg)
    return Tuned("inventory_days", InventoryDaysPolicy(days[choice], window.d_hat), choice,
                 metrics.select(choice))


def s_S_grid(cfg: SimConfig) -> tuple[np.ndarray, np.ndarray]:
    """(C,) s and S in days of cover: every s of the days grid with every gap, ordered by S then s."""
    s_days, gaps = np.meshgrid(np.asarray(cfg.days_grid), np.asarray(cfg.s_S_gap_days), indexing="ij")
    s_days, big_days = s_days.ravel(), (s_days + gaps).ravel()
    order = np.lexsort((s_days, big_days))
    return s_days[order], big_days[order]


def tune_s_S(window: TuneWindow, cfg: SimConfig) -> Tuned:
    """(s, S) per unit, both ceil(days x mean demand), from ``s_S_grid``."""
    s_days, big_days = s_S_grid(cfg)
    mean = window.mean_demand[:, None]
    small, big = inventory_days_to_levels(s_days[None, :], mean), inventory_days_to_levels(big_days[None, :], mean)
    metrics = _simulate(window, big, cfg, reorder_points=small, on_hand0=big)
    choice = choose(metrics, cfg)
    return Tuned("s_S", SSPolicy(_pick(small, choice), _pick(big, choice)), choice, metrics.select(choice))


def tune_constant(window: TuneWindow, cfg: SimConfig) -> Tuned:
    """q = ceil(factor x review period x mean demand) ordered at every review."""
    p, mean = window.params, window.mean_demand
    factors = np.asarray(cfg.constant_cover_factors)
    quantities = inventory_days_to_levels(factors[None, :] * p.review_period[:, None], mean[:, None])
    on_hand0 = inventory_days_to_levels(p.lead_time + p.review_period, mean)  # (U,)
    metrics = _simulate(window, quantities, cfg, rule="constant", on_hand0=on_hand0)
    choice = choose(metrics, cfg)
    return Tuned("constant", ConstantOrderPolicy(_pick(quantities, choice)), choice, metrics.select(choice))


def category_in_stock_rates(metrics: GridMetrics, category: np.ndarray) -> dict:
    """category -> (C,) demand-value-weighted in-stock rate of its units under each candidate."""
    rates = {}
    for label in np.unique(category):
        rows = category == label
        weight = metrics.demand_value[rows, 0]                                # (n,)
        weight = weight if weight.sum() > 0 else np.ones_like(weight)
        rates[label] = weight @ metrics.in_stock_rate[rows] / weight.sum()    # (C,)
    return rates


def tune_incumbent(window: TuneWindow, cfg: SimConfig) -> Tuned:
    """One days of cover per category: the smallest meeting the in-stock target (else the best)."""
    days, metrics = _days_grid_metrics(window, cfg)
    choice = np.zeros(len(window.category), dtype=np.int64)
    per_category = {}
    for label, rate in category_in_stock_rates(metrics, window.category).items():
        meets = np.flatnonzero(rate >= cfg.incumbent_in_stock_target)
        index = int(meets[0]) if meets.size else int(np.argmax(rate))
        choice[window.category == label] = index
        per_category[str(label)] = {"days": float(days[index]), "in_stock_rate": float(rate[index])}
    return Tuned("incumbent", InventoryDaysPolicy(days[choice], window.d_hat), choice,
                 metrics.select(choice), detail={"categories": per_category})


TUNERS: dict[str, Callable[[TuneWindow, SimConfig], Tuned]] = {
    "base_stock": tune_base_stock,
    "inventory_days": tune_inventory_days,
    "s_S": tune_s_S,
    "constant": tune_constant,
    "incumbent": tune_incumbent,
}
