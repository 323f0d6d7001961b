"""The vectorised trace-driven lost-sales simulator (DESIGN.md section 4).

Semantics, per unit and day ``t`` of the window (day indices are window-relative, 0..D-1):

1. orders due on ``t`` arrive (initial pipeline entries and orders placed ``L`` days earlier);
2. if ``t`` is a review day (``t >= offset`` and ``(t - offset) % review_period == 0``), order
   ``q = max(0, S_t - IP)`` with ``IP`` = on hand + on order; it arrives on ``t + L``, and with
   ``L = 0`` it arrives at once, before demand;
3. ``sales = min(on_hand, D_t)``; the rest of the demand is lost;
4. the end-of-day on hand is charged for holding.

A day is *in stock* when on hand is positive after that day's arrivals (an ``L = 0`` order
included) and before demand.

Valuation convention: every "value" (stock, sales, lost sales, demand) is at ``unit_cost``, so
``turnover days = sum end-of-day stock value / sum sales value`` is days of cost of goods sold.
``holding cost = stock value x holding_rate`` (per day) and the lost-sales penalty is
``penalty_share x (unit_price - unit_cost)`` per lost unit; ``total cost = holding + penalty``.

Order rules: ``order_up_to`` (the default: ``targets`` are order-up-to levels ``S``, or
inventory-days ``v`` turned into ``S_t = ceil(v * d_hat_t)`` when ``demand_rate`` is given; with
``reorder_points`` an (s, S) rule orders only when ``IP <= s``) and ``constant`` (``targets`` are
the quantity ordered at every review).

The grid kernel (numba, compiled once and cached) loops units x days x candidates with the
candidates innermost: they share the unit's demand and review day, so the inner loop is
branch-uniform over contiguous (C,) state, and each unit's orders in transit sit in a ring buffer
of ``L + 1`` days per candidate. Memory grows with units x candidates (and the longest lead time),
never with days.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

import numba
import numpy as np

# v * d_hat within this many units above an integer rounds down to it: float noise such as
# 50 * 1.1 = 55.00000000000001 must not add a whole unit of stock.
LEVEL_TOLERANCE = 1e-6

OrderRule = Literal["order_up_to", "constant"]


def inventory_days_to_levels(days, d_hat):
    """Order-up-to level ``S = ceil(v * d_hat)`` (>= 0), with LEVEL_TOLERANCE against float noise.

    Broadcasts like numpy; the grid kernel uses the same expression, so both agree bit for bit.
    """
    return np.maximum(np.ceil(np.multiply(days, d_hat) - LEVEL_TOLERANCE), 0.0)


@dataclass(frozen=True)
class UnitParams:
    """The per-unit constants the simulator needs, as arrays of shape (U,)."""

    lead_time: np.ndarray      # int64, days >= 0
    review_period: np.ndarray  # int64, days >= 1
    unit_cost: np.ndarray      # float64, > 0
    unit_price: np.ndarray     # float64, >= unit_cost in valid data
    review_offset: np.ndarray  # int64, first review day (relative to the calendar's day 0)

    @classmethod
    def from_units(cls, units) -> "UnitParams":
        """From a Dataset's ``units`` frame (review offsets 0: every unit reviews on day 0)."""
        n = len(units)
        return cls(lead_time=units["lead_time_days"].to_numpy(np.int64),
                   review_period=units["review_period_days"].to_numpy(np.int64),
                   unit_cost=units["unit_cost"].to_numpy(np.float64),
                   unit_price=units["unit_price"].to_numpy(np.float64),
                   review_offset=np.zeros(n, dtype=np.int64))

    def offsets_from(self, start: int) -> np.ndarray:
        """(U,) review offsets relative to a window that starts on calendar day ``start``."""
        shifted = self.review_offset - start
        return np.where(shifted >= 0, shifted, shifted % self.review_period)


@dataclass(frozen=True)
class GridMetrics:
    """Per (unit, candidate) metrics over a window; every array float64 (U, C)."""

    stock_value: np.ndarray    # sum over days of end-of-day on-hand value
    holding_cost: np.ndarray   # stock_value x holding rate per day
    sales_units: np.ndarray
    sales_value: np.ndarray
    lost_units: np.ndarray
    lost_value: np.ndarray
    demand_units: np.ndarray
    demand_value: np.ndarray
    in_stock_days: np.ndarray  # days with positive on hand after arrivals, before demand
    penalty_cost: np.ndarray   # lost units x penalty share x margin
    n_days: int

    @property
    def turnover_days(self) -> np.ndarray:
        """stock value / sales value: inf where stock was held but nothing sold, 0 where neither."""
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = self.stock_value / self.sales_value
        return np.where(self.sales_value > 0, ratio, np.where(self.stock_value > 0, np.inf, 0.0))

    @property
    def fill_rate(self) -> np.ndarray:
        """sales / demand in units; 1 where there was no demand."""
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = self.sales_units / self.demand_units
        return np.where(self.demand_units > 0, ratio, 1.0)

    @property
    def in_stock_rate(self) -> np.ndarray:
        return self.in_stock_days / self.n_days

    @property
    def total_cost(self) -> np.ndarray:
        return self.holding_cost + self.penalty_cost

    def _arrays(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "n_days"}

    def select(self, choice: np.ndarray) -> "GridMetrics":
        """One candidate per unit: ``choice`` (U,) column indices -> metrics of shape (U, 1)."""
        rows = np.arange(len(choice))
        return GridMetrics(**{k: v[rows, choice][:, None] for k, v in self._arrays().items()},
                           n_days=self.n_days)

    def rows(self, index) -> "GridMetrics":
        """The same metrics restricted to some units (a boolean mask or row indices)."""
        return GridMetrics(**{k: v[index] for k, v in self._arrays().items()}, n_days=self.n_days)

    def summary(self) -> dict[str, float]:
        """Totals over every cell (normally units with C == 1); ratios from the sums (by value).

        in_stock_rate is the share of unit-days in stock; fill_rate is sales value / demand value.
        """
        total = {k: float(v.sum()) for k, v in self._arrays().items()}
        cells = self.stock_value.size
        one = GridMetrics(**{k: np.array([[v]]) for k, v in total.items()}, n_days=self.n_days * cells)
        return {
            "turnover_days": float(one.turnover_days[0, 0]),
            "in_stock_rate": float(one.in_stock_rate[0, 0]) if cells else float("nan"),
            "fill_rate": (total["sales_value"] / total["demand_value"]) if total["demand_value"] > 0 else 1.0,
            "holding_cost": total["holding_cost"],
            "lost_sales_value": total["lost_value"],
            "penalty_cost": total["penalty_cost"],
            "total_cost": total["holding_cost"] + total["penalty_cost"],
            "stock_value": total["stock_value"],
            "sales_value": total["sales_value"],
            "demand_value": total["demand_value"],
        }


@dataclass(frozen=True)
class UnitSums:
    """What the kernel accumulates, in units, per (unit, candidate): float64 (U, C) each.

    Kept separate from GridMetrics so a rolling simulation can add day sums in the same order as
    the grid kernel (values are taken once, at the end, in ``to_metrics``).
    """

    stock_units: np.ndarray
    sales_units: np.ndarray
    lost_units: np.ndarray
    demand_units: np.ndarray
    in_stock_days: np.ndarray
    ordered_units: np.ndarray  # units ordered at reviews (arriving in or after the window)
    order_count: np.ndarray    # reviews with a positive order

    def __add__(self, other: "UnitSums") -> "UnitSums":
        return UnitSums(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})

    @classmethod
    def zeros(cls, n_units: int, n_candidates: int = 1) -> "UnitSums":
        return cls(**{f.name: np.zeros((n_units, n_candidates)) for f in fields(cls)})

    def to_metrics(self, unit_cost, unit_price, *, holding_rate: float, penalty_share: float,
                   n_days: int) -> GridMetrics:
        cost = np.asarray(unit_cost, dtype=np.float64)[:, None]                       # (U, 1)
        penalty_per_unit = (penalty_share * (np.asarray(unit_price, dtype=np.float64)[:, None] - cost))
        stock_value = self.stock_units * cost
        return GridMetrics(
            stock_value=stock_value, holding_cost=stock_value * holding_rate,
            sales_units=self.sales_units, sales_value=self.sales_units * cost,
            lost_units=self.lost_units, lost_value=self.lost_units * cost,
            demand_units=self.demand_units, demand_value=self.demand_units * cost,
            in_stock_days=self.in_stock_days, penalty_cost=self.lost_units * penalty_per_unit,
            n_days=n_days)


@dataclass(frozen=True)
class SimState:
    """Inventory of U units at the start of a day (before that day's arrivals).

    on_hand: float64 (U,); pipeline: float64 (U, P), units arriving on days 0..P-1 from now.
    """

    on_hand: np.ndarray
    pipeline: np.ndarray

    @property
    def inventory_position(self) -> np.ndarray:
        """(U,) on hand + on order; arrivals move stock between the two, so it holds all day."""
        return self.on_hand + self.pipeline.sum(axis=1)

    @classmethod
    def empty(cls, on_hand: np.ndarray, horizon: int = 0) -> "SimState":
        on_hand = np.asarray(on_hand, dtype=np.float64)
        return cls(on_hand=on_hand, pipeline=np.zeros((len(on_hand), horizon)))


@numba.njit(cache=True)
def _grid_kernel(demand, targets, lead_time, review_period, review_offset, rate, use_rate,
                 reorder, use_reorder, constant, on_hand0, pipeline0, want_state,
                 stock, sales, lost, demand_sum, in_stock, ordered, n_orders, end_on_hand, end_pipeline):
    """Simulate every (unit, candidate) over the window; accumulate sums into the output arrays.

    demand (U, D); targets, reorder, on_hand0 (U, C); rate (U, 1) or (U, D); pipeline0 (U, 1|C, P);
    outputs (U, C) except demand_sum (U,); end state (U, C) and (U, C, P_end) when want_state.
    """
    n_units, n_days = demand.shape
    n_cand = targets.shape[1]
    n_pipe = pipeline0.shape[2]
    own_pipeline = pipeline0.shape[1] > 1  # one initial pipeline per candidate
    rate_step = 1 if rate.shape[1] == n_days else 0
    ring = np.zeros((lead_time.max() + 1, n_cand))  # orders in transit: slot (head + k) arrives in k days
    on_hand = np.empty(n_cand)
    on_order = np.empty(n_cand)
    for u in range(n_units):
        lead = lead_time[u]
        n_slots = lead + 1
        period = review_period[u]
        offset = review_offset[u]
        ring[:n_slots, :] = 0.0
        for c in range(n_cand):
            on_hand[c] = on_hand0[u, c]
            total = 0.0
            for k in range(n_pipe):
                total += pipeline0[u, c if own_pipeline else 0, k]
            on_order[c] = total
        head = 0
        tail = lead  # slot of day t + lead, i.e. (head + lead) % n_slots
        d_total = 0.0
        for t in range(n_days):
            d = demand[u, t]
            d_total += d
            review = t >= offset and (t - offset) % period == 0
            d_hat = rate[u, t * rate_step] if use_rate else 0.0
            for c in range(n_cand):
                arrival = ring[head, c]
                if t < n_pipe:
                    arrival += pipeline0[u, c if own_pipeline else 0, t]
                ring[head, c] = 0.0
                x = on_hand[c] + arrival
                o = on_order[c] - arrival
                if review:
                    if constant:
                        q = targets[u, c]
                    else:
                        level = targets[u, c]
                        if use_rate:
                            level = max(np.ceil(level * d_hat - LEVEL_TOLERANCE), 0.0)
                        ip = x + o
                        q = level - ip if level > ip else 0.0
                        if use_reorder and ip > reorder[u, c]:
                            q = 0.0
                    if q > 0.0:
                        ordered[u, c] += q
                        n_orders[u, c] += 1.0
                        if lead == 0:
                            x += q
                        else:
                            ring[tail, c] = q
                            o += q
                if x > 0.0:
                    in_stock[u, c] += 1.0
                sold = min(x, d)
                sales[u, c] += sold
                lost[u, c] += d - sold
                x -= sold
                stock[u, c] += x
                on_hand[c] = x
                on_order[c] = o
            head = head + 1 if head + 1 < n_slots else 0
            tail = tail + 1 if tail + 1 < n_slots else 0
        demand_sum[u] = d_total
        if want_state:
            for c in range(n_cand):
                end_on_hand[u, c] = on_hand[c]
                for k in range(end_pipeline.shape[2]):
                    due = 0.0
                    if k < lead:
                        due = ring[(head + k) % n_slots, c]
                    if n_days + k < n_pipe:
                        due += pipeline0[u, c if own_pipeline else 0, n_days + k]
                    end_pipeline[u, c, k] = due


def _as_2d(name: str, array, n_units: int, n_cand: int, *, vector_is: str) -> np.ndarray:
    """(U, C), or a vector broadcast along the other axis -> contiguous float64 (U, C).

    ``vector_is`` says what a 1-D input runs over: "candidates" (C,) or "units" (U,).
    """
    array = np.asarray(array, dtype=np.float64)
    shape = array.shape
    if array.ndim == 1:
        array = array[None, :] if vector_is == "candidates" else array[:, None]
    try:
        array = np.broadcast_to(array, (n_units, n_cand))
    except ValueError:
        raise ValueError(f"{name}: shape {shape} does not fit {n_units} units x {n_cand} "
                         f"candidates") from None
    return np.ascontiguousarray(array)


def _per_unit(name: str, array, n_units: int, dtype) -> np.ndarray:
    array = np.asarray(array)
    if array.shape != (n_units,):
        raise ValueError(f"{name}: shape {array.shape}, expected ({n_units},)")
    if dtype is np.int64 and not np.issubdtype(array.dtype, np.integer):
        if not np.all(array == np.round(array)):
            raise ValueError(f"{name}: must hold whole days")
    return np.ascontiguousarray(array, dtype=dtype)


def _check_non_negative(name: str, array: np.ndarray) -> None:
    if array.size and not (np.isfinite(array).all() and array.min() >= 0):
        raise ValueError(f"{name}: every value must be finite and >= 0")


def simulate_sums(demand, targets, lead_time, review_period, *, demand_rate=None, on_hand0=None,
                  pipeline0=None, review_offset=None, reorder_points=None,
                  rule: OrderRule = "order_up_to", return_state: bool = False):
    """Run the grid kernel; returns ``(UnitSums, end_state)``.

    Arguments as in ``simulate_grid`` (pipeline0 may also be (U, C, P): one pipeline per
    candidate). ``end_state`` is None unless ``return_state``; then it is ``(on_hand (U, C),
    pipeline (U, C, P_end))`` at the start of the day after the window, with
    ``P_end = max(max lead time, P - D)``.
    """
    demand = np.ascontiguousarray(demand, dtype=np.float64)
    if demand.ndim != 2 or demand.shape[1] < 1:
        raise ValueError(f"demand: expected (units, days >= 1), got shape {demand.shape}")
    _check_non_negative("demand", demand)
    n_units, n_days = demand.shape
    targets = np.asarray(targets, dtype=np.float64)
    n_cand = targets.shape[-1]
    targets = _as_2d("targets", targets, n_units, n_cand, vector_is="candidates")
    _check_non_negative("targets", targets)
    lead_time = _per_unit("lead_time", lead_time, n_units, np.int64)
    review_period = _per_unit("review_period", review_period, n_units, np.int64)
    review_offset = (np.zeros(n_units, dtype=np.int64) if review_offset is None
                     else _per_unit("review_offset", review_offset, n_units, np.int64))
    if n_units and (lead_time.min() < 0 or review_period.min() < 1 or review_offset.min() < 0):
        raise ValueError("lead_time must be >= 0, review_period >= 1 and review_offset >= 0")
    if rule not in ("order_up_to", "constant"):
        raise ValueError(f"rule: unknown order rule {rule!r}")

    use_rate = demand_rate is not None
    rate = _rate_2d(demand_rate, n_units, n_days) if use_rate else np.zeros((n_units, 1))
    use_reorder = reorder_points is not None
    reorder = (_as_2d("reorder_points", reorder_points, n_units, n_cand, vector_is="candidates")
               if use_reorder else np.zeros((1, 1)))  # never read without use_reorder
    on_hand0 = (np.zeros((n_units, n_cand)) if on_hand0 is None
                else _as_2d("on_hand0", on_hand0, n_units, n_cand, vector_is="units"))
    _check_non_negative("on_hand0", on_hand0)
    pipeline0 = _pipeline_3d(pipeline0, n_units, n_cand)

    n_end = max(int(lead_time.max(initial=0)), pipeline0.shape[2] - n_days) if return_state else 0
    out = {name: np.zeros((n_units, n_cand)) for name in
           ("stock", "sales", "lost", "in_stock", "ordered", "n_orders")}
    demand_sum = np.zeros(n_units)
    end_on_hand = np.zeros((n_units, n_cand) if return_state else (0, 0))
    end_pipeline = np.zeros((n_units, n_cand, n_end) if return_state else (0, 0, 0))
    if n_units:  # the kernel sizes its ring buffer from the longest lead time
        _grid_kernel(demand, targets, lead_time, review_period, review_offset, rate, use_rate,
                     reorder, use_reorder, rule == "constant", on_hand0, pipeline0, return_state,
                     out["stock"], out["sales"], out["lost"], demand_sum, out["in_stock"],
                     out["ordered"], out["n_orders"], end_on_hand, end_pipeline)
    sums = UnitSums(stock_units=out["stock"], sales_units=out["sales"], lost_units=out["lost"],
                    demand_units=np.repeat(demand_sum[:, None], n_cand, axis=1),
                    in_stock_days=out["in_stock"], ordered_units=out["ordered"],
                    order_count=out["n_orders"])
    return sums, ((end_on_hand, end_pipeline) if return_state else None)


def _rate_2d(demand_rate, n_units: int, n_days: int) -> np.ndarray:
    """(U,) or (U, D) d_hat -> contiguous float64 (U, 1) or (U, D)."""
    rate = np.asarray(demand_rate, dtype=np.float64)
    rate = rate[:, None] if rate.ndim == 1 else rate
    if rate.shape not in ((n_units, 1), (n_units, n_days)):
        raise ValueError(f"demand_rate: shape {np.shape(demand_rate)}, expected ({n_units},) "
                         f"or ({n_units}, {n_days})")
    _check_non_negative("demand_rate", rate)
    return np.ascontiguousarray(rate)


def _pipeline_3d(pipeline0, n_units: int, n_cand: int) -> np.ndarray:
    """None, (U, P) or (U, C, P) -> contiguous float64 (U, 1 or C, P)."""
    if pipeline0 is None:
        return np.zeros((n_units, 1, 0))
    pipeline0 = np.asarray(pipeline0, dtype=np.float64)
    if pipeline0.ndim == 2:
        pipeline0 = pipeline0[:, None, :]
    if pipeline0.ndim != 3 or pipeline0.shape[0] != n_units or pipeline0.shape[1] not in (1, n_cand):
        raise ValueError(f"pipeline0: shape {pipeline0.shape}, expected ({n_units}, P) or "
                         f"({n_units}, {n_cand}, P)")
    _check_non_negative("pipeline0", pipeline0)
    return np.ascontiguousarray(pipeline0)


def simulate_grid(demand, targets, lead_time, review_period, unit_cost, unit_price, *,
                  demand_rate=None, on_hand0=None, pipeline0=None, review_offset=None,
                  reorder_points=None, rule: OrderRule = "order_up_to",
                  holding_rate: float, penalty_share: float) -> GridMetrics:
    """Metrics of every (unit, candidate target) over the window of ``demand``.

    demand: (U, D) trace replayed as demand. targets: (U, C) or (C,): order-up-to levels S, or
    inventory-days v when ``demand_rate`` is given ((U,) constant d_hat, or (U, D): d_hat known on
    day t, computed from data before t), then ``S_t = ceil(v * d_hat_t)`` at each review day;
    with ``rule="constant"`` the quantity ordered at each review. reorder_points: (U, C) or (C,)
    s of an (s, S) rule (order only when IP <= s). on_hand0: (U,) or (U, C), default 0;
    pipeline0: (U, P), units arriving on days 0..P-1 (orders placed before the window);
    review_offset: (U,) first review day, default 0. lead_time, review_period, unit_cost,
    unit_price: (U,). Memory grows with U x C, not with D.
    """
    sums, _ = simulate_sums(demand, targets, lead_time, review_period, demand_rate=demand_rate,
                            on_hand0=on_hand0, pipeline0=pipeline0, review_offset=review_offset,
                            reorder_points=reorder_points, rule=rule)
    n_units = sums.stock_units.shape[0]
    return sums.to_metrics(_per_unit("unit_cost", unit_cost, n_units, np.float64),
                           _per_unit("unit_price", unit_price, n_units, np.float64),
                           holding_rate=holding_rate, penalty_share=penalty_share,
                           n_days=np.shape(demand)[1])
