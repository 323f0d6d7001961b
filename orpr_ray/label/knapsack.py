"""The multiple-choice knapsack of one label group, and two exact ways to solve it.

One group holds ``n`` units (a unit here is a decision point: a unit at a decision date) and ``C``
candidate targets each. With ``stock`` and ``lost`` of shape (n, C) (stock value held and sales value
lost over the horizon by each candidate):

    minimise    sum_i stock[i, c_i]
    subject to  sum_i lost[i, c_i] <= budget                 budget = (1 - alpha) * demand value
                c_i in allowed[i]                             per-unit min / max days of cover
                sum_i cap_coef[i, c_i] <= cap   (optional)   a stock-value budget of the group

- ``build_model`` / ``solve_model``: the Pyomo model of record, solved by HiGHS. It takes every side
  constraint and is the cross-check of the fast path.
- ``lagrangian_path`` / ``solve_budget``: the fast path for the single-constraint problem (min / max
  cover only remove candidates). ``min sum(stock + lam * lost)`` is separable by unit; as ``lam``
  grows each unit walks its lower convex hull of (lost, stock) points, so sorting every hull step of
  the group by its price ``d stock / d lost`` gives the whole Lagrangian path at once. Every prefix of
  that path is an exact optimum for the budget equal to its own loss; at any other budget the LP
  bound (the fractional crossing step) and an integer repair give a solution with a reported gap.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numba
import numpy as np

# Relative slack on budget comparisons: sums of the same floats in another order differ in the last bits.
BUDGET_RTOL = 1e-9


def relative_gap(objective: float, bound: float) -> float:
    """(objective - bound) / |objective|, 0 when both are 0 (a minimisation's optimality gap)."""
    if not np.isfinite(objective) or not np.isfinite(bound):
        return float("nan")
    return float(max(objective - bound, 0.0) / max(abs(objective), 1e-12)) if objective or bound else 0.0


def _with_slack(budget: float) -> float:
    return budget + BUDGET_RTOL * max(abs(budget), 1.0)


@numba.njit(cache=True)
def _hull_kernel(stock, lost, allowed, hull, hull_len):  # pragma: no cover - compiled
    """Per row: candidates of the lower convex hull of (lost, stock), from least stock to least loss.

    stock, lost (n, C) float64; allowed (n, C) bool; writes hull (n, C) int64 (-1 padded), hull_len (n,).
    Ties go to the lower candidate index (the smaller v), so labels are deterministic.
    """
    n, n_cand = stock.shape
    order = np.empty(n_cand, np.int64)
    frontier = np.empty(n_cand, np.int64)
    for i in range(n):
        m = 0
        for c in range(n_cand):
            if allowed[i, c]:
                # Insertion sort by (stock, lost, index): candidates usually arrive sorted already.
                b = m - 1
                while b >= 0 and (stock[i, order[b]] > stock[i, c] or
                                  (stock[i, order[b]] == stock[i, c] and lost[i, order[b]] > lost[i, c])):
                    order[b + 1] = order[b]
                    b -= 1
                order[b + 1] = c
                m += 1
        f = 0  # Pareto frontier: stock strictly up, loss strictly down.
        for a in range(m):
            c = order[a]
            if f == 0 or lost[i, c] < lost[i, frontier[f - 1]]:
                frontier[f] = c
                f += 1
        h = 0  # Lower hull: drop a point above the chord of its neighbours (collinear points stay).
        for a in range(f):
            c = frontier[a]
            while h >= 2:
                p0 = hull[i, h - 2]
                p1 = hull[i, h - 1]
                left = (stock[i, p1] - stock[i, p0]) * (lost[i, p1] - lost[i, c])
                right = (stock[i, c] - stock[i, p1]) * (lost[i, p0] - lost[i, p1])
                if left > right:
                    h -= 1
                else:
                    break
            hull[i, h] = c
            h += 1
        for a in range(h, n_cand):
            hull[i, a] = -1
        hull_len[i] = h


@dataclass(frozen=True)
class LagrangianPath:
    """All Lagrangian optima of a group, from least stock (k = 0) to least loss (k = K).

    hull (n, C) int64: each unit's hull candidates in walking order (-1 padded).
    step_unit, step_pos (K,): step k moves unit ``step_unit[k]`` to its hull position ``step_pos[k]``.
    step_stock, step_loss (K,): stock added and loss removed by step k (both > 0).
    total_stock, total_loss (K + 1,): group totals after the first k steps.
    """

    hull: np.ndarray
    step_unit: np.ndarray
    step_pos: np.ndarray
    step_stock: np.ndarray
    step_loss: np.ndarray
    total_stock: np.ndarray
    total_loss: np.ndarray

    @property
    def n_steps(self) -> int:
        return len(self.step_unit)

    def choice(self, k: int) -> np.ndarray:
        """Candidate index per unit (n,) after the first ``k`` steps."""
        pos = np.zeros(len(self.hull), dtype=np.int64)
        np.maximum.at(pos, self.step_unit[:k], self.step_pos[:k])
        return self.hull[np.arange(len(self.hull)), pos]


def allowed_or_all(stock: np.ndarray, allowed: np.ndarray | None) -> np.ndarray:
    allowed = np.ones(stock.shape, dtype=bool) if allowed is None else np.asarray(allowed, dtype=bool)
    if not allowed.any(axis=1).all():
        raise ValueError("a unit has no allowed candidate")
    return allowed


def lagrangian_path(stock: np.ndarray, lost: np.ndarray, allowed: np.ndarray | None = None) -> LagrangianPath:
    """Hull steps of every unit, merged in order of price (stock added per loss removed)."""
    stock = np.ascontiguousarray(stock, dtype=np.float64)
    lost = np.ascontiguousarray(lost, dtype=np.float64)
    allowed = allowed_or_all(stock, allowed)
    n, n_cand = stock.shape
    hull = np.empty((n, n_cand), dtype=np.int64)
    hull_len = np.empty(n, dtype=np.int64)
    _hull_kernel(stock, lost, np.ascontiguousarray(allowed), hull, hull_len)
    n_steps = int((hull_len - 1).sum())
    unit, pos = np.empty(n_steps, dtype=np.int64), np.empty(n_steps, dtype=np.int64)
    step_stock, step_loss, price = np.empty(n_steps), np.empty(n_steps), np.empty(n_steps)
    _step_kernel(stock, lost, hull, hull_len, unit, pos, step_stock, step_loss, price)
    order = np.argsort(price, kind="stable")  # ties keep unit-major, walking order
    unit, pos, step_stock, step_loss = unit[order], pos[order], step_stock[order], step_loss[order]
    start = hull[:, 0]
    total_stock = np.concatenate([[stock[np.arange(n), start].sum()], step_stock])
    total_loss = np.concatenate([[lost[np.arange(n), start].sum()], -step_loss])
    return LagrangianPath(hull=hull, step_unit=unit, step_pos=pos, step_stock=step_stock,
                          step_loss=step_loss, total_stock=np.cumsum(total_stock),
                          total_loss=np.cumsum(total_loss))


@numba.njit(cache=True)
def _step_kernel(stock, lost, hull, hull_len, unit, pos, d_stock, d_loss, price):  # pragma: no cover - compiled
    """The hull steps in unit-major walking order: unit, hull position reached, stock added, loss
    removed, price. Convexity makes prices rise along a hull; the running max removes rounding noise
    so a unit's steps can never be sorted out of order."""
    k = 0
    for i in range(len(hull_len)):
        floor = -np.inf
        for p in range(1, hull_len[i]):
            a = hull[i, p - 1]
            b = hull[i, p]
            d_stock[k] = stock[i, b] - stock[i, a]
            d_loss[k] = lost[i, a] - lost[i, b]
            floor = max(floor, d_stock[k] / d_loss[k])
            unit[k] = i
            pos[k] = p
            price[k] = floor
            k += 1


@dataclass(frozen=True)
class Solution:
    """A solved group: choice (n,) candidate indices (None when no feasible one), objective, bound."""

    status: str  # optimal | feasible (gap > 0) | infeasible | time_limit | error: ...
    choice: np.ndarray | None
    objective: float
    bound: float
    build_s: float = 0.0
    solve_s: float = 0.0

    @property
    def gap(self) -> float:
        return relative_gap(self.objective, self.bound)


def solve_budget(path: LagrangianPath, stock: np.ndarray, lost: np.ndarray, budget: float,
                 allowed: np.ndarray | None = None) -> Solution:
    """The fast path at a fixed loss budget: exact on the path, else LP bound + integer repair.

    Repair: from the last path point that misses the budget, the single cheapest move of one unit to
    any allowed candidate that covers the excess (the crossing step is one such move), then the single
    move that saves most stock within the slack left. The bound is the LP relaxation's value (the
    crossing step taken fractionally), so ``gap`` bounds the distance to the optimum.
    """
    t0 = time.perf_counter()
    limit = _with_slack(budget)
    k = int(np.argmax(path.total_loss <= limit)) if path.total_loss[-1] <= limit else -1
    if k < 0:
        return Solution("infeasible", None, float("nan"), float("nan"), solve_s=time.perf_counter() - t0)
    if k == 0 or path.total_loss[k] >= budget:
        objective = float(path.total_stock[k])
        return Solution("optimal", path.choice(k), objective, objective, solve_s=time.perf_counter() - t0)
    excess = path.total_loss[k - 1] - budget  # > 0: what step k - 1 must still remove
    bound = path.total_stock[k - 1] + path.step_stock[k - 1] * excess / path.step_loss[k - 1]
    allowed = allowed_or_all(stock, allowed)
    choice = path.choice(k - 1)
    choice = _best_move(stock, lost, allowed, choice, need=excess, slack=None)
    slack = budget - lost[np.arange(len(choice)), choice].sum()
    choice = _best_move(stock, lost, allowed, choice, need=None, slack=slack)
    objective = float(stock[np.arange(len(choice)), choice].sum())
    status = "optimal" if objective <= bound * (1 + BUDGET_RTOL) else "feasible"
    return Solution(status, choice, objective, float(min(bound, objective)), solve_s=time.perf_counter() - t0)


def _best_move(stock, lost, allowed, choice, *, need: float | None, slack: float | None) -> np.ndarray:
    """One unit changes candidate: cheapest that removes ``need`` loss, or biggest saving within ``slack``."""
    rows = np.arange(len(choice))
    d_stock = stock - stock[rows, choice][:, None]  # (n, C)
    d_loss = lost - lost[rows, choice][:, None]
    if need is not None:
        ok = allowed & (-d_loss >= need - BUDGET_RTOL * max(need, 1.0))
        gain = np.where(ok, -d_stock, -np.inf)
    else:
        ok = allowed & (d_loss <= slack) & (d_stock < 0)
        gain = np.where(ok, -d_stock, -np.inf)
    if not ok.any():
        return choice
    flat = int(np.argmax(gain))  # first best: lowest unit, then lowest candidate
    unit, cand = divmod(flat, stock.shape[1])
    moved = choice.copy()
    moved[unit] = cand
    return moved


def build_model(stock: np.ndarray, lost: np.ndarray, budget: float | None, *,
                allowed: np.ndarray | None = None, cap_coef: np.ndarray | None = None,
                cap: float | None = None, objective: str = "stock"):
    """The Pyomo model of record: binary x[i, c] over allowed pairs, one candidate per unit.

    ``objective="stock"`` minimises stock under the loss budget (the labelling problem);
    ``objective="loss"`` minimises loss (used to find the best service a stock cap allows).
    """
    import pyomo.environ as pyo

    allowed = allowed_or_all(stock, allowed)
    pairs = [(int(i), int(c)) for i, c in np.argwhere(allowed)]
    by_unit: dict[int, list[int]] = {}
    for i, c in pairs:
        by_unit.setdefault(i, []).append(c)
    m = pyo.ConcreteModel(name="label_group")
    m.I = pyo.RangeSet(0, stock.shape[0] - 1)
    m.P = pyo.Set(dimen=2, initialize=pairs, ordered=True)
    m.x = pyo.Var(m.P, domain=pyo.Binary)
    m.one_per_unit = pyo.Constraint(m.I, rule=lambda m, i: pyo.quicksum(m.x[i, c] for c in by_unit[i]) == 1)
    loss_expr = pyo.quicksum(float(lost[i, c]) * m.x[i, c] for i, c in pairs)
    stock_expr = pyo.quicksum(float(stock[i, c]) * m.x[i, c] for i, c in pairs)
    if budget is not None:
        m.service = pyo.Constraint(expr=loss_expr <= _with_slack(budget))
    if cap is not None:
        m.stock_cap = pyo.Constraint(expr=pyo.quicksum(float(cap_coef[i, c]) * m.x[i, c] for i, c in pairs) <= cap)
    m.obj = pyo.Objective(expr=stock_expr if objective == "stock" else loss_expr, sense=pyo.minimize)
    return m


def solve_model(m, *, rel_gap: float, time_limit: float) -> Solution:
    """Solve with HiGHS through Pyomo; every outcome, including a solver error, becomes a status."""
    from pyomo.contrib.solver.common.results import TerminationCondition as TC
    from pyomo.contrib.solver.solvers.highs import Highs

    t0 = time.perf_counter()
    try:
        res = Highs().solve(m, load_solutions=False, raise_exception_on_nonoptimal_result=False,
                            rel_gap=rel_gap, time_limit=time_limit)
    except Exception as exc:  # noqa: BLE001 - a failed solve is recorded, never fatal to the run
        return Solution(f"error: {type(exc).__name__}: {exc}", None, float("nan"), float("nan"),
                        solve_s=time.perf_counter() - t0)
    solve_s = time.perf_counter() - t0
    tc = res.termination_condition
    if tc in (TC.provenInfeasible, TC.locallyInfeasible, TC.infeasibleOrUnbounded):
        return Solution("infeasible", None, float("nan"), float("nan"), solve_s=solve_s)
    if res.incumbent_objective is None:
        return Solution(f"error: {tc.name} without a solution", None, float("nan"), float("nan"), solve_s=solve_s)
    res.solution_loader.load_vars()
    n = len(m.I)
    choice = np.full(n, -1, dtype=np.int64)
    for (i, c), var in m.x.items():
        if var.value is not None and var.value > 0.5:
            choice[i] = c
    status = "optimal" if tc == TC.convergenceCriteriaSatisfied else (
        "time_limit" if tc == TC.maxTimeLimit else tc.name)
    bound = res.objective_bound if res.objective_bound is not None else float("nan")
    return Solution(status, choice, float(res.incumbent_objective), float(bound), solve_s=solve_s)


def solve_with_model(stock: np.ndarray, lost: np.ndarray, budget: float | None, *, rel_gap: float,
                     time_limit: float, allowed: np.ndarray | None = None, cap_coef: np.ndarray | None = None,
                     cap: float | None = None, objective: str = "stock") -> Solution:
    """Build and solve the model of record, timing both."""
    t0 = time.perf_counter()
    m = build_model(stock, lost, budget, allowed=allowed, cap_coef=cap_coef, cap=cap, objective=objective)
    build_s = time.perf_counter() - t0
    sol = solve_model(m, rel_gap=rel_gap, time_limit=time_limit)
    return Solution(sol.status, sol.choice, sol.objective, sol.bound, build_s=build_s, solve_s=sol.solve_s)
