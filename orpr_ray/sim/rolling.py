"""Rolling simulation: a policy decides at each review day from past data, state carries over.

Backtests use it: a Python loop over days, each day one call of the grid kernel for all units with
one candidate (the policy's decision), so the day's semantics are the engine's, not a copy. A
policy sees the state at the start of day ``t`` (before that day's arrivals) and the indices of
the units under review, and returns their order-up-to levels ``S`` (or, for a policy whose
``rule`` is ``"constant"``, the quantities to order).

Day indices are those of the ``demand`` calendar: a unit reviews on day ``t`` when
``t >= review_offset`` and ``(t - review_offset) % review_period == 0``; with offsets 0 a run
starting at day ``start`` behaves like ``simulate_grid`` over ``demand[:, start:]`` with offsets
``-start mod period``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np

from orpr_ray.sim.engine import GridMetrics, SimState, UnitParams, UnitSums, inventory_days_to_levels, simulate_sums


class Policy(Protocol):
    """Decides for the units under review on day ``t`` from data before ``t`` only.

    ``decide`` returns float64 (len(units),): order-up-to levels S (>= 0), or order quantities
    when the policy has ``rule = "constant"``. A policy without ``rule`` orders up to S.
    """

    def decide(self, t: int, units: np.ndarray, state: SimState) -> np.ndarray: ...


@dataclass(frozen=True)
class Trajectories:
    """Daily paths of a few units for plots: every array (k, n_days) over the simulated days."""

    units: np.ndarray     # (k,) row indices
    days: np.ndarray      # (n_days,) calendar day indices
    demand: np.ndarray
    sales: np.ndarray
    on_hand: np.ndarray   # end of day
    ordered: np.ndarray   # placed that day
    decision: np.ndarray  # the policy's value on review days, NaN otherwise


@dataclass(frozen=True)
class RollingResult:
    metrics: GridMetrics              # (U, 1) over the recorded days
    sums: UnitSums                    # (U, 1) the same in units, with orders placed
    state: SimState                   # at the start of day ``stop``: continue a run from it
    trajectories: Trajectories | None


def review_mask(t: int, params: UnitParams) -> np.ndarray:
    """(U,) bool: which units review on calendar day ``t``."""
    since = t - params.review_offset
    return (since >= 0) & (since % params.review_period == 0)


def warm_start(params: UnitParams, d_hat: np.ndarray, day: int) -> SimState:
    """The state a rolling run starts from on ``day``: nothing on order, lead time + review period of
    expected demand on hand (d_hat (U, T) column ``day``); a warm-up then settles each policy's own state."""
    return SimState.empty(inventory_days_to_levels(params.lead_time + params.review_period, d_hat[:, day]))


def simulate_rolling(policy: Policy, demand: np.ndarray, params: UnitParams, *, start: int = 0,
                     stop: int | None = None, record_from: int | None = None,
                     state: SimState | None = None, holding_rate: float, penalty_share: float,
                     trace_units: Sequence[int] | None = None) -> RollingResult:
    """Roll ``policy`` over days ``[start, stop)`` of ``demand`` (U, T); metrics over ``[record_from, stop)``.

    ``state``: inventory at the start of day ``start`` (default: nothing on hand or on order);
    ``record_from`` (default ``start``) leaves a warm-up out of the metrics.
    """
    n_units, n_days = demand.shape
    stop = n_days if stop is None else stop
    record_from = start if record_from is None else record_from
    if not 0 <= start <= record_from < stop <= n_days:
        raise ValueError(f"need 0 <= start ({start}) <= record_from ({record_from}) < stop ({stop}) "
                         f"<= days ({n_days})")
    state = state or SimState.empty(np.zeros(n_units))
    rule = getattr(policy, "rule", "order_up_to")
    total = UnitSums.zeros(n_units)
    trace = _TraceRecorder(trace_units, demand, start, stop) if trace_units is not None else None
    for t in range(start, stop):
        reviewing = review_mask(t, params)
        values = np.zeros(n_units)
        units = np.flatnonzero(reviewing)
        if units.size:
            values[units] = policy.decide(t, units, state)
        # One day of the grid kernel: offset 0 makes day 0 a review day, offset 1 skips it.
        day, (on_hand, pipeline) = simulate_sums(
            demand[:, t:t + 1], values[:, None], params.lead_time, params.review_period,
            on_hand0=state.on_hand, pipeline0=state.pipeline, review_offset=(~reviewing).astype(np.int64),
            rule=rule, return_state=True)
        state = SimState(on_hand=on_hand[:, 0], pipeline=pipeline[:, 0, :])
        if t >= record_from:
            total = total + day
        if trace is not None:
            trace.record(t, day, state, np.where(reviewing, values, np.nan))
    metrics = total.to_metrics(params.unit_cost, params.unit_price, holding_rate=holding_rate,
                               penalty_share=penalty_share, n_days=stop - record_from)
    return RollingResult(metrics=metrics, sums=total, state=state,
                         trajectories=trace.result() if trace is not None else None)


class _TraceRecorder:
    """Collects the daily paths of a few units during a rolling run."""

    def __init__(self, units: Sequence[int], demand: np.ndarray, start: int, stop: int):
        self.units = np.asarray(units, dtype=np.int64)
        self.start = start
        self.days = np.arange(start, stop)
        shape = (len(self.units), stop - start)
        self.demand = demand[self.units, start:stop].astype(np.float64)
        self.paths = {name: np.zeros(shape) for name in ("sales", "on_hand", "ordered", "decision")}

    def record(self, t: int, day: UnitSums, state: SimState, decision: np.ndarray) -> None:
        i = t - self.start
        self.paths["sales"][:, i] = day.sales_units[self.units, 0]
        self.paths["on_hand"][:, i] = state.on_hand[self.units]
        self.paths["ordered"][:, i] = day.ordered_units[self.units, 0]
        self.paths["decision"][:, i] = decision[self.units]

    def result(self) -> Trajectories:
        return Trajectories(units=self.units, days=self.days, demand=self.demand, **self.paths)
