"""The slow, plain reference simulator: one unit, one candidate, one day at a time.

Written straight from DESIGN.md section 4 to check the fast grid kernel (orpr_ray.sim.engine)
and nothing else: orders in transit are a dict keyed by arrival day, review days come from the
modulo rule, values are taken from unit sums at the end (the engine's valuation convention), and
the order of every floating-point operation is the natural one, so results agree bit for bit.
"""
from __future__ import annotations

import numpy as np

from orpr_ray.sim.engine import GridMetrics, inventory_days_to_levels


def reference_unit(demand, target, lead, period, *, d_hat=None, on_hand=0.0, pipeline=(),
                   offset=0, reorder_point=None, constant=False) -> dict[str, float]:
    """Sums of one (unit, candidate) over the window, in units.

    demand: sequence of D floats; d_hat: None, a float, or a sequence of D floats;
    pipeline: units arriving on days 0..P-1.
    """
    due: dict[int, float] = {day: float(qty) for day, qty in enumerate(pipeline)}
    on_order = 0.0
    for qty in pipeline:
        on_order += float(qty)
    on_hand = float(on_hand)
    sums = dict(stock=0.0, sales=0.0, lost=0.0, demand=0.0, in_stock=0.0, ordered=0.0, orders=0.0)
    for t, d in enumerate(demand):
        d = float(d)
        sums["demand"] += d
        arrival = due.pop(t, 0.0)
        on_hand += arrival
        on_order -= arrival
        if t >= offset and (t - offset) % period == 0:
            position = on_hand + on_order
            if constant:
                qty = float(target)
            else:
                level = float(target)
                if d_hat is not None:
                    rate = d_hat if np.ndim(d_hat) == 0 else d_hat[t]
                    level = float(inventory_days_to_levels(target, rate))
                qty = max(0.0, level - position)
                if reorder_point is not None and position > reorder_point:
                    qty = 0.0
            if qty > 0:
                sums["ordered"] += qty
                sums["orders"] += 1
                if lead == 0:
                    on_hand += qty
                else:
                    due[t + lead] = due.get(t + lead, 0.0) + qty
                    on_order += qty
        if on_hand > 0:
            sums["in_stock"] += 1
        sold = min(on_hand, d)
        sums["sales"] += sold
        sums["lost"] += d - sold
        on_hand -= sold
        sums["stock"] += on_hand
    sums["end_on_hand"] = on_hand
    sums["end_due"] = {t - len(demand): q for t, q in due.items()}
    return sums


def reference_grid(demand, targets, lead_time, review_period, unit_cost, unit_price, *,
                   demand_rate=None, on_hand0=None, pipeline0=None, review_offset=None,
                   reorder_points=None, rule="order_up_to", holding_rate, penalty_share) -> GridMetrics:
    """The grid of ``simulate_grid``, computed unit by unit, candidate by candidate, day by day."""
    demand = np.asarray(demand, dtype=np.float64)
    n_units, n_days = demand.shape
    targets = np.asarray(targets, dtype=np.float64)
    targets = np.broadcast_to(targets, (n_units, targets.shape[-1]))
    n_cand = targets.shape[1]
    fields = {name: np.zeros((n_units, n_cand)) for name in (
        "stock_value", "holding_cost", "sales_units", "sales_value", "lost_units", "lost_value",
        "demand_units", "demand_value", "in_stock_days", "penalty_cost")}
    for u in range(n_units):
        cost, price = float(unit_cost[u]), float(unit_price[u])
        for c in range(n_cand):
            s = reference_unit(
                demand[u], targets[u, c], int(lead_time[u]), int(review_period[u]),
                d_hat=None if demand_rate is None else np.asarray(demand_rate)[u],
                on_hand=_cell(on_hand0, u, c, per_unit=True),
                pipeline=() if pipeline0 is None else _pipeline(pipeline0, u, c),
                offset=0 if review_offset is None else int(review_offset[u]),
                reorder_point=None if reorder_points is None else _cell(reorder_points, u, c, per_unit=False),
                constant=rule == "constant")
            stock_value = s["stock"] * cost
            fields["stock_value"][u, c] = stock_value
            fields["holding_cost"][u, c] = stock_value * holding_rate
            fields["sales_units"][u, c] = s["sales"]
            fields["sales_value"][u, c] = s["sales"] * cost
            fields["lost_units"][u, c] = s["lost"]
            fields["lost_value"][u, c] = s["lost"] * cost
            fields["demand_units"][u, c] = s["demand"]
            fields["demand_value"][u, c] = s["demand"] * cost
            fields["in_stock_days"][u, c] = s["in_stock"]
            fields["penalty_cost"][u, c] = s["lost"] * (penalty_share * (price - cost))
    return GridMetrics(**fields, n_days=n_days)


def _cell(values, u: int, c: int, *, per_unit: bool) -> float:
    """Value for (u, c) of an input given as None, a (U,) / (C,) vector, or (U, C)."""
    if values is None:
        return 0.0
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 2:
        return float(values[u, c])
    return float(values[u] if per_unit else values[c])


def _pipeline(pipeline0, u: int, c: int) -> list[float]:
    pipeline0 = np.asarray(pipeline0, dtype=np.float64)
    row = pipeline0[u] if pipeline0.ndim == 2 else pipeline0[u, c if pipeline0.shape[1] > 1 else 0]
    return [float(x) for x in row]
