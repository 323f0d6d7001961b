"""Decision points, demand estimates and the replay of candidate targets: the one place the
initial-state convention lives (labels, model scoring and the RL reward all call it).

Initial state at a decision date (docs/LABELS.md): the unit is in the steady state of its own
inventory-days policy. The decision date is a review day; the orders placed at the past reviews
``-R, -2R, ...`` that are still in transit (arriving on days ``L - kR >= 0``) each hold one review
period of expected demand, ``round(R * d_hat)``; on hand is the rest of the order-up-to level,
``max(0, S_v - pipeline)`` with ``S_v = ceil(v * d_hat)``. So the inventory position equals ``S_v``
and the order at the decision date is zero: the candidate decides the level the unit is held at,
not a one-off correction of an arbitrary past. The Dataset carries no observed on-hand panel, so
the steady state is the only state that is consistent for every candidate.

The horizon is one number for the catalogue: ``label.horizon_days``, else the largest over units of
the smallest multiple of the review period that covers lead time + review period (every unit sees
at least one full order cycle after the first order it controls arrives).
"""
from __future__ import annotations

from dataclasses import fields

import numpy as np

from orpr_ray.core.errors import InputError
from orpr_ray.data.dataset import Dataset
from orpr_ray.label.config import LabelConfig
from orpr_ray.sim.config import SimConfig
from orpr_ray.sim.engine import GridMetrics, inventory_days_to_levels, simulate_grid
from orpr_ray.sim.policies import trailing_mean_demand as panel_trailing_mean

# Units per d_hat panel in trailing_mean_demand: bounds its memory to a few (units x days) arrays.
_PANEL_UNITS = 4096


def label_horizon(ds: Dataset, label: LabelConfig) -> int:
    """Days each candidate is replayed for (the same for every unit of the catalogue)."""
    lead = ds.units["lead_time_days"].to_numpy(np.int64)
    if label.horizon_days is not None:
        _check_lead_within_horizon(ds, lead, label.horizon_days)
        return label.horizon_days
    review = ds.units["review_period_days"].to_numpy(np.int64)
    cycles = -(-(lead + review) // review)  # ceil((L + R) / R)
    return int((cycles * review).max(initial=1))


def _check_lead_within_horizon(ds: Dataset, lead: np.ndarray, horizon: int) -> None:
    """A fixed horizon must see an order arrive: with L >= H no order placed in it ever lands, and the
    labels would silently compare candidates on their starting stock alone."""
    late = np.flatnonzero(lead >= horizon)
    if len(late):
        i = late[np.argmax(lead[late])]
        unit = ds.units.iloc[i]
        raise InputError(f"lead time {lead[i]} days is not shorter than label.horizon_days = {horizon}: no order "
                         f"would arrive inside the replay ({len(late)} unit(s) affected); raise label.horizon_days "
                         f"or leave it unset", field="label.horizon_days",
                         where=f"unit (sku={unit['sku']}, dc={unit['dc']})")


def decision_points(ds: Dataset, label: LabelConfig, sim: SimConfig) -> tuple[np.ndarray, np.ndarray]:
    """Every (unit, day) to label, sorted by unit then day: both int64 (N,).

    Days lie on one calendar, ``window + k * stride`` (so units share decision dates and form
    groups), from a unit's first day with a full d_hat window to its last day with a full horizon.
    """
    window, horizon = sim.demand_window_days, label_horizon(ds, label)
    days = np.arange(window, ds.n_days - horizon + 1, label.decision_stride_days)  # (K,)
    ok = ((days[None, :] - window >= ds.first_day[:, None])
          & (days[None, :] + horizon <= ds.last_day[:, None] + 1))  # (U, K)
    unit, k = np.nonzero(ok)
    return unit.astype(np.int64), days[k].astype(np.int64)


def trailing_mean_demand(ds: Dataset, unit: np.ndarray, day: np.ndarray, window: int) -> np.ndarray:
    """d_hat (N,): mean sales over the ``window`` days before ``day``.

    The simulator's own estimator (orpr_ray.sim.policies), so labels and the inventory-days policy
    of a backtest use the same d_hat bit for bit; decision points always have a full window.
    """
    unit, day = np.asarray(unit, dtype=np.int64), np.asarray(day, dtype=np.int64)
    units, row = np.unique(unit, return_inverse=True)
    out = np.zeros(len(unit))
    for lo in range(0, len(units), _PANEL_UNITS):
        panel = panel_trailing_mean(ds.sales[units[lo:lo + _PANEL_UNITS]], window)  # (k, T)
        mine = (row >= lo) & (row < lo + _PANEL_UNITS)
        out[mine] = panel[row[mine] - lo, day[mine]]
    return out


def initial_state(v: np.ndarray, d_hat: np.ndarray, lead: np.ndarray,
                  review: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Steady-state start of an inventory-days policy (module docstring).

    v (N, C) targets; d_hat, lead, review (N,). Returns on_hand0 (N, C) and pipeline0 (N, P):
    ``pipeline0[i, t]`` arrives on day t of the horizon.
    """
    order = np.floor(review * d_hat + 0.5)  # (N,) one review period of expected demand, whole units
    in_transit = lead // review  # (N,) past orders not yet arrived at the decision date
    pipeline = np.zeros((len(d_hat), int(np.maximum(lead - review + 1, 1).max(initial=1))))
    for k in range(1, int(in_transit.max(initial=0)) + 1):
        rows = np.flatnonzero(in_transit >= k)
        pipeline[rows, lead[rows] - k * review[rows]] += order[rows]
    on_hand = np.maximum(inventory_days_to_levels(v, d_hat[:, None]) - pipeline.sum(axis=1)[:, None], 0.0)
    return on_hand, pipeline


def check_points(ds: Dataset, unit: np.ndarray, day: np.ndarray, horizon: int, window: int) -> None:
    """Raise when a point has no full d_hat window or horizon inside the unit's observed days."""
    if len(unit) and (unit.min() < 0 or unit.max() >= ds.n_units):
        raise ValueError(f"unit index out of range 0..{ds.n_units - 1}")
    units, row = np.unique(unit, return_inverse=True)
    observed = ds.observed[units]  # (k, T): Dataset.first_day / last_day for these units only
    first = observed.argmax(axis=1)[row]
    last = (ds.n_days - 1 - observed[:, ::-1].argmax(axis=1))[row]
    bad = (day - window < first) | (day + horizon > last + 1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"decision point {i} (unit {unit[i]}, day {day[i]}) needs days {day[i] - window}.."
                         f"{day[i] + horizon - 1} observed; the unit has {first[i]}..{last[i]} "
                         f"({int(bad.sum())} such points)")


def evaluate_decisions(ds: Dataset, unit: np.ndarray, day: np.ndarray, v: np.ndarray, *, sim: SimConfig,
                       label: LabelConfig, d_hat: np.ndarray | None = None) -> GridMetrics:
    """Replay each unit's demand over the label horizon from ``day`` under targets ``v``.

    unit, day (N,) decision points (each with a full d_hat window and horizon); v (N, C) or (C,)
    inventory-days targets. Starts from the steady state (module docstring) and returns (N, C)
    metrics over ``label_horizon(ds, label)`` days, in chunks of ``label.sim_chunk_cells`` cells.
    ``d_hat`` (N,): the points' trailing_mean_demand when the caller has it already.
    """
    unit, day = np.asarray(unit, dtype=np.int64), np.asarray(day, dtype=np.int64)
    v = np.asarray(v, dtype=np.float64)
    v = np.broadcast_to(v[None, :] if v.ndim == 1 else v, (len(unit), v.shape[-1]))
    horizon, window = label_horizon(ds, label), sim.demand_window_days
    check_points(ds, unit, day, horizon, window)
    if d_hat is None:
        d_hat = trailing_mean_demand(ds, unit, day, window)
    lead = ds.units["lead_time_days"].to_numpy(np.int64)[unit]
    review = ds.units["review_period_days"].to_numpy(np.int64)[unit]
    cost = ds.units["unit_cost"].to_numpy(np.float64)[unit]
    price = ds.units["unit_price"].to_numpy(np.float64)[unit]
    step = max(1, label.sim_chunk_cells // max(v.shape[1], 1))
    parts = []
    for lo in range(0, max(len(unit), 1), step):
        rows = slice(lo, lo + step)
        demand = ds.sales[unit[rows, None], day[rows, None] + np.arange(horizon)]  # (n, H)
        on_hand0, pipeline0 = initial_state(v[rows], d_hat[rows], lead[rows], review[rows])
        parts.append(simulate_grid(demand, v[rows], lead[rows], review[rows], cost[rows], price[rows],
                                   demand_rate=d_hat[rows], on_hand0=on_hand0, pipeline0=pipeline0,
                                   holding_rate=sim.holding_rate_per_day,
                                   penalty_share=sim.lost_sales_penalty_share))
    if len(parts) == 1:
        return parts[0]
    arrays = {f.name: np.concatenate([getattr(p, f.name) for p in parts])
              for f in fields(GridMetrics) if f.name != "n_days"}
    return GridMetrics(**arrays, n_days=horizon)


def cover_limits(ds: Dataset, label: LabelConfig) -> tuple[np.ndarray, np.ndarray]:
    """Per-unit (U,) min and max days of cover: unit columns ``min_cover_days`` / ``max_cover_days``
    where present and not NaN, else the config values, else no limit. A unit whose limits leave no
    candidate of the grid is an InputError."""
    grid = np.asarray(label.grid)
    lo = np.full(ds.n_units, -np.inf if label.min_cover_days is None else float(label.min_cover_days))
    hi = np.full(ds.n_units, np.inf if label.max_cover_days is None else float(label.max_cover_days))
    for column, limit in (("min_cover_days", lo), ("max_cover_days", hi)):
        if column in ds.units.columns:
            values = ds.units[column].to_numpy(np.float64)
            limit[:] = np.where(np.isnan(values), limit, values)
    empty = ~((grid[None, :] >= lo[:, None]) & (grid[None, :] <= hi[:, None])).any(axis=1)
    if empty.any():
        u = int(np.flatnonzero(empty)[0])
        raise InputError(f"cover limits {lo[u]:g}..{hi[u]:g} leave no candidate of the grid {grid[0]}..{grid[-1]} "
                         f"({int(empty.sum())} such units)", field="min_cover_days/max_cover_days",
                         where=f"unit {ds.units['sku'].iloc[u]}@{ds.units['dc'].iloc[u]} (row {u})")
    return lo, hi


def allowed_candidates(lo: np.ndarray, hi: np.ndarray, unit: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """(N, C) bool: candidate v of point i lies within its unit's cover limits."""
    return (grid[None, :] >= lo[unit, None]) & (grid[None, :] <= hi[unit, None])
