"""Classic lost-sales heuristics and the searches that tune them.

Policies (callables on states int64 (n, L) -> orders int64 (n,), model.Policy):
    BaseStock(S)            order (S - IP)^+                       (base-stock on the inventory position)
    CappedBaseStock(S, r)   order min((S - IP)^+, r)               (Xin 2021)
    ConstantOrder(q)        order q every period                    (Reiman 2004; Goldberg et al. 2016)
    Myopic(problem)         minimise the expected cost of the period the order arrives in (Zipkin's "Myopic")

The ``tune_*`` searches take ``cost_of``: policy -> average cost (exact where the state space
allows, a common-random-numbers simulation otherwise; see classic.benchmark), so the search logic
is written once whichever evaluation backs it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Callable

import numpy as np

from orpr_ray.classic.exact import ExactResult
from orpr_ray.classic.model import LostSalesProblem, Policy, StateSpace, TablePolicy

MYOPIC_TABLE_STATES = 500_000  # above this the myopic order is computed per call, not tabulated
CostOf = Callable[[Policy], float]  # policy -> long-run average cost


@dataclass(frozen=True)
class BaseStock:
    level: int

    @property
    def ip_bound(self) -> int:
        return self.level

    def __call__(self, states: np.ndarray) -> np.ndarray:
        return np.maximum(self.level - states.sum(axis=1), 0)

    def params(self) -> dict:
        return {"S": self.level}


@dataclass(frozen=True)
class CappedBaseStock:
    level: int
    cap: int

    @property
    def ip_bound(self) -> int:
        return self.level

    def __call__(self, states: np.ndarray) -> np.ndarray:
        return np.minimum(np.maximum(self.level - states.sum(axis=1), 0), self.cap)

    def params(self) -> dict:
        return {"S": self.level, "r": self.cap}


@dataclass(frozen=True)
class ConstantOrder:
    """Orders q every period. It has no inventory-position bound (on hand is unbounded when
    demand stays low), so its exact cost comes from ``constant_order_cost``, not evaluate_policy."""

    quantity: int

    def __call__(self, states: np.ndarray) -> np.ndarray:
        return np.full(len(states), self.quantity, dtype=np.int64)

    def params(self) -> dict:
        return {"q": self.quantity}


@dataclass(frozen=True, eq=False)
class Myopic:
    """Order z minimising E C(X + z), X the on hand left just before the order arrives.

    X follows the lost-sales dynamics over the L periods from the current state (leftovers, then
    the pipeline arrivals q_1..q_{L-1}). C is convex with its minimum at the single-period fractile
    s1 and X >= 0, so the minimiser lies in 0..s1. Ties go to the smallest order. Orders are
    tabulated once on {IP <= S-bar} when that set is small (simulation then looks them up) and
    computed directly otherwise and for states outside it. ``ip_bound`` is S-bar: an exact
    evaluation refuses the policy should it ever order above it (the tests check it does not).
    """

    problem: LostSalesProblem

    @property
    def ip_bound(self) -> int:
        return self.problem.ip_bound

    def params(self) -> dict:
        return {"single_period_level": self.problem.newsvendor_level}

    def __call__(self, states: np.ndarray) -> np.ndarray:
        states = np.asarray(states, dtype=np.int64)
        if StateSpace.size(self.problem.lead_time, self.problem.ip_bound) > MYOPIC_TABLE_STATES:
            return myopic_orders(self.problem, states)
        table = self.table
        idx = table.space.index_of(states, strict=False)
        out = np.empty(len(states), dtype=np.int64)
        inside = idx >= 0
        out[inside] = table.orders[idx[inside]]
        if not inside.all():
            out[~inside] = myopic_orders(self.problem, states[~inside])
        return out

    @cached_property
    def table(self) -> TablePolicy:
        space = StateSpace.build(self.problem.lead_time, self.problem.ip_bound)
        return TablePolicy(space, myopic_orders(self.problem, space.states))


def myopic_orders(problem: LostSalesProblem, states: np.ndarray, chunk: int = 20_000) -> np.ndarray:
    """The myopic order of each state, int64 (n,); computed in chunks of states to bound memory."""
    return np.concatenate([_myopic_chunk(problem, states[i:i + chunk])
                           for i in range(0, len(states), chunk)] or [np.zeros(0, dtype=np.int64)])


def _myopic_chunk(problem: LostSalesProblem, states: np.ndarray) -> np.ndarray:
    top = int(states.sum(axis=1).max())  # on hand never exceeds the inventory position
    leftover = problem.leftover_matrix(top)  # (top + 1, top + 1)
    dist = np.zeros((len(states), top + 1))  # (n, top + 1): law of on hand, per state
    dist[np.arange(len(states)), states[:, 0]] = 1.0
    for k in range(1, problem.lead_time):
        dist = _shift_rows(dist @ leftover, states[:, k])  # demand of a period, then q_k arrives
    dist = dist @ leftover  # X: what is left when the new order arrives
    s1 = problem.newsvendor_level
    cost = problem.period_cost(top + s1)
    by_order = cost[np.arange(top + 1)[:, None] + np.arange(s1 + 1)[None, :]]  # (top + 1, s1 + 1): C(x + z)
    return (dist @ by_order).argmin(axis=1).astype(np.int64)


def _shift_rows(dist: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Row i moved right by shift[i] (adding a known arrival); mass never passes the last column
    because on hand stays below the inventory position."""
    cols = np.arange(dist.shape[1])[None, :] - shift[:, None]
    return np.where(cols >= 0, np.take_along_axis(dist, np.clip(cols, 0, None), axis=1), 0.0)


def constant_order_cost(problem: LostSalesProblem, quantity: int, *, tolerance: float = 1e-10) -> ExactResult:
    """Exact average cost of ordering ``quantity`` every period (independent of the lead time).

    With every arrival equal to q, on hand follows y' = (y - D)^+ + q: a one-dimensional chain,
    solved for its stationary law on 0..top, with top doubled until the law's mass in the last
    q + 1 levels (where the cut could bite) is below ``tolerance``. q > E[D], or q = E[D] with
    random demand, makes on hand drift upwards without limit: the cost is infinite. q = D for
    deterministic demand keeps on hand at q, all of it sold: cost C(q).
    """
    mean = problem.demand.mean
    if quantity >= mean - 1e-12:
        if abs(quantity - mean) <= 1e-12 and problem.demand.variance <= 1e-12:
            cost = float(problem.period_cost(quantity)[quantity])
            return ExactResult(cost, cost, cost, True, 0, 1, 0.0)
        return ExactResult(math.inf, math.inf, math.inf, True, 0, 0, 0.0)
    top = max(4 * (problem.demand.support_max + quantity), 64)
    while True:
        law = _constant_order_law(problem, quantity, top)
        edge = float(law[max(top - quantity, 0):].sum())
        if edge < tolerance or top > 1_000_000:
            cost = float(law @ problem.period_cost(top))
            return ExactResult(cost, cost, cost, edge < tolerance, 0, top + 1, 0.0)
        top *= 2


def _constant_order_law(problem: LostSalesProblem, quantity: int, top: int) -> np.ndarray:
    """Stationary law of on hand (after arrival) on 0..top under a constant order. float64 (top + 1,)."""
    leftover = problem.leftover_matrix(top)  # [y, j]
    transition = np.zeros((top + 1, top + 1))
    nxt = np.minimum(np.arange(top + 1) + quantity, top)  # leftover j -> on hand j + q (cut at top)
    np.add.at(transition.T, nxt, leftover.T)
    # Solve law (P - I) = 0 with sum(law) = 1, replacing one balance equation by the normalisation.
    system = transition.T - np.eye(top + 1)
    system[-1, :] = 1.0
    rhs = np.zeros(top + 1)
    rhs[-1] = 1.0
    return np.maximum(np.linalg.solve(system, rhs), 0.0)


def argmin_convex(cost_of: Callable[[int], float], start: int, lower: int, upper: int) -> tuple[int, float]:
    """Minimise a convex (unimodal) function of an integer on [lower, upper] by walking downhill
    from ``start``: evaluate the neighbours, step towards the lower one until the cost rises."""
    start = min(max(start, lower), upper)
    best, best_cost = start, cost_of(start)
    for step in (-1, 1):
        moved = False
        while lower <= best + step <= upper:
            cost = cost_of(best + step)
            if not cost < best_cost:
                break
            best, best_cost, moved = best + step, cost, True
        if moved:
            break
    return best, best_cost


def tune_base_stock(problem: LostSalesProblem, cost_of: CostOf) -> tuple[BaseStock, float]:
    """Best S. The average cost of base-stock policies in lost-sales systems is convex in S
    (Janakiraman & Roundy 2004), so the downhill walk from S-bar finds the global best."""
    level, cost = argmin_convex(lambda s: cost_of(BaseStock(s)), problem.ip_bound, 0, 4 * problem.ip_bound)
    return BaseStock(level), cost


def tune_constant_order(problem: LostSalesProblem, cost_of: Callable[[int], float]) -> tuple[ConstantOrder, float]:
    """Best q <= E[D] (larger q costs infinity). The cost is convex in q: what is left after a
    period follows Lindley's recursion l' = (l + q - D)^+, a maximum of functions affine in q,
    so E l is convex in q; in steady state q is sold every period, so the cost is
    h E l + p (E[D] - q), convex too, and the downhill walk finds the best q."""
    top = int(math.floor(problem.demand.mean + 1e-12))
    q, cost = argmin_convex(cost_of, top, 0, top)
    return ConstantOrder(q), cost


def tune_capped_base_stock(problem: LostSalesProblem, cost_of: CostOf, *, patience: int = 2
                           ) -> tuple[CappedBaseStock, float]:
    """Best (S, r): for each cap r the best S by a downhill walk (started from the previous cap's
    best S), r increasing from the first cap that can beat the best base-stock policy, stopping
    ``patience`` caps after the best capped cost stopped improving, or once the cap no longer
    binds (r >= S: plain base-stock, which stays the answer when no cap beats it).

    A cap r sells at most r a period, so its cost is at least p (E[D] - r): caps where that already
    exceeds the best base-stock cost are skipped (and would only drive S up without limit).
    Neither convexity in r nor joint convexity is known, so this is a careful local search, the
    same for every instance, not a proof of optimality.
    """
    base, base_cost = tune_base_stock(problem, cost_of)
    first_cap = max(int(math.floor(problem.demand.mean - base_cost / problem.penalty)) + 1, 1)
    best, best_cost = CappedBaseStock(base.level, base.level), math.inf
    level, since_best = base.level, 0
    for cap in range(first_cap, base.level + 1):
        level, cost = argmin_convex(lambda s: cost_of(CappedBaseStock(s, cap)), level, cap,
                                    4 * problem.ip_bound)
        if cost < best_cost:
            best, best_cost, since_best = CappedBaseStock(level, cap), cost, 0
        else:
            since_best += 1
        if since_best >= patience or cap >= level:
            break
    if best_cost < base_cost:
        return best, best_cost
    return CappedBaseStock(base.level, base.level), base_cost  # no binding cap beats base-stock
