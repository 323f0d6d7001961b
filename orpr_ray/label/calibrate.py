"""Turnover calibration of a group's service level, and the solve of one group end to end.

Target of a group, first source that has one (docs/LABELS.md):
1. ``attribute``: the units' ``target_turnover_days`` (demand-value weighted mean over the units
   that have it);
2. ``historical``: the turnover observed in the units' stock history, carried by the unit attribute
   ``label.historical_turnover_column`` (the Dataset has no on-hand panel of its own);
3. ``default``: no turnover target; alpha is ``label.default_service_level``.

With ``label.calibrate_to = "total_cost"`` the target is instead the group's least simulated total
cost (source ``total_cost``): the labels then optimise the objective the backtest scores.

Calibration runs along the Lagrangian path of the group (knapsack.py): service rises monotonically
from its least-stock start to its least-loss end, and every point is the exact optimum of the
knapsack at the alpha implied by its own loss, so the search over alpha is a search over path points
(no re-solve). Turnover = stock / sales along the path first falls (while a step's marginal turnover
is below the average) and then rises monotonically; the target is matched on the rising part, at the
point whose turnover is nearest to it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from orpr_ray.label.config import LabelConfig
from orpr_ray.label.knapsack import LagrangianPath, Solution, lagrangian_path, solve_budget, solve_with_model


@dataclass(frozen=True)
class GroupTarget:
    turnover: float  # days; NaN for the default source
    source: str  # attribute | historical | default


def group_target(attribute: np.ndarray, historical: np.ndarray, weight: np.ndarray,
                 label: LabelConfig) -> GroupTarget:
    """The group's turnover target from per-unit values (n,) (NaN = none), weighted by demand value."""
    if label.calibrate and label.calibrate_to == "total_cost":
        return GroupTarget(float("nan"), "total_cost")
    if label.calibrate:
        for values, source in ((attribute, "attribute"), (historical, "historical")):
            has = np.isfinite(values)
            if has.any():
                w = weight[has] if weight[has].sum() > 0 else None
                return GroupTarget(float(np.average(values[has], weights=w)), source)
    return GroupTarget(float("nan"), "default")


def least_cost_on_path(path: LagrangianPath, cost: np.ndarray) -> int:
    """Path index (0..K) of the least group total cost; cost (n, C) per unit and candidate.

    Each step moves one unit one hull position, so the group's cost along the path is a running
    sum of per-step changes (no re-evaluation of the K + 1 choices). Ties go to the least stock."""
    rows = np.arange(len(path.hull))
    start = cost[rows, path.hull[:, 0]].sum()
    if path.n_steps == 0:
        return 0
    before = path.hull[path.step_unit, path.step_pos - 1]
    after = path.hull[path.step_unit, path.step_pos]
    along = start + np.concatenate([[0.0], np.cumsum(cost[path.step_unit, after] - cost[path.step_unit, before])])
    return int(np.argmin(along))


def calibrate_on_path(total_stock: np.ndarray, total_loss: np.ndarray, demand: float,
                      target: float) -> tuple[int, str]:
    """Path index whose turnover is nearest ``target`` on the rising part, and a note when clipped."""
    sales = demand - total_loss  # (K + 1,)
    with np.errstate(divide="ignore", invalid="ignore"):
        turnover = np.where(sales > 0, total_stock / np.where(sales > 0, sales, 1.0), np.inf)
    low = int(np.argmin(turnover))
    rising = np.maximum.accumulate(turnover[low:])  # monotone in exact arithmetic; max removes noise
    j = int(np.searchsorted(rising, target, side="left"))  # first point at or above the target
    if j == len(rising):
        return len(turnover) - 1, f"target {target:.1f} above the reachable {rising[-1]:.1f}: least-loss labels"
    if j == 0:
        note = f"target {target:.1f} below the reachable {rising[0]:.1f}" if rising[0] > target else ""
        return low, note
    nearer_below = abs(rising[j - 1] - target) <= abs(rising[j] - target)
    return low + j - (1 if nearer_below else 0), ""


@dataclass(frozen=True)
class GroupOutcome:
    """How one group was labelled (one row of groups.parquet, plus the choice per unit)."""

    choice: np.ndarray  # (n,) candidate index per unit
    status: str  # optimal | feasible | infeasible | time_limit | degenerate | error: ...
    solver: str  # lagrangian | pyomo | fallback | degenerate
    objective: float
    bound: float
    mip_gap: float
    build_s: float
    solve_s: float
    alpha: float
    target_turnover: float
    target_source: str
    achieved_turnover: float
    fallback: bool
    note: str = ""
    crosscheck_objective: float = float("nan")
    crosscheck_status: str = ""
    crosscheck_diff: float = float("nan")  # (fast - HiGHS) / HiGHS objective


def solve_group(stock: np.ndarray, lost: np.ndarray, demand: np.ndarray, target: GroupTarget,
                label: LabelConfig, *, allowed: np.ndarray | None = None, cap_coef: np.ndarray | None = None,
                cost: np.ndarray | None = None, crosscheck: bool = False) -> GroupOutcome:
    """Label one group: stock, lost (n, C); demand (n,) demand value; allowed (n, C) bool.

    cap_coef (n, C): each candidate's share of ``label.stock_budget`` (needed when a budget is set).
    cost (n, C): each candidate's total cost (needed by the ``total_cost`` target).
    """
    t0 = time.perf_counter()
    path = lagrangian_path(stock, lost, allowed)
    build_s = time.perf_counter() - t0
    demand_total = float(demand.sum())
    common = dict(target_turnover=target.turnover, target_source=target.source)
    if demand_total <= 0:
        choice = path.choice(0)
        objective = _picked(stock, choice)
        return GroupOutcome(choice, "degenerate", "degenerate", objective, objective, 0.0, build_s, 0.0,
                            float("nan"), achieved_turnover=_turnover(stock, lost, demand, choice), fallback=False,
                            note="no demand over the horizon: least stock", **common)
    t1 = time.perf_counter()
    if target.source == "default":
        alpha, note = label.default_service_level, ""
        sol = solve_budget(path, stock, lost, (1 - alpha) * demand_total, allowed)
    else:
        if target.source == "total_cost":
            k, note = least_cost_on_path(path, cost), ""
        else:
            k, note = calibrate_on_path(path.total_stock, path.total_loss, demand_total, target.turnover)
        alpha = min(1.0, max(0.0, 1.0 - path.total_loss[k] / demand_total))
        objective = float(path.total_stock[k])
        sol = Solution("optimal", path.choice(k), objective, objective)
    sol = Solution(sol.status, sol.choice, sol.objective, sol.bound, build_s, time.perf_counter() - t1)
    solver = "lagrangian"
    over_cap = (label.stock_budget is not None and sol.choice is not None
                and _picked(cap_coef, sol.choice) > label.stock_budget)
    if sol.choice is not None and (label.solver == "pyomo" or over_cap):
        sol, alpha, model_note = _model_of_record(stock, lost, demand_total, alpha, label, allowed, cap_coef)
        sol = Solution(sol.status, sol.choice, sol.objective, sol.bound, build_s + sol.build_s, sol.solve_s)
        note, solver = "; ".join(n for n in (note, model_note) if n), "pyomo"
    if sol.choice is None:
        return _fallback(path, stock, lost, demand, sol, alpha, note, **common)
    check = _crosscheck(stock, lost, demand_total, alpha, label, allowed, cap_coef, sol) if (
        crosscheck and solver == "lagrangian") else {}
    return GroupOutcome(sol.choice, sol.status, solver, sol.objective, sol.bound, sol.gap, sol.build_s, sol.solve_s,
                        float(alpha), achieved_turnover=_turnover(stock, lost, demand, sol.choice), fallback=False,
                        note=note, **common, **check)


def _model_of_record(stock, lost, demand_total, alpha, label, allowed, cap_coef) -> tuple[Solution, float, str]:
    """Pyomo + HiGHS at ``alpha``; a binding stock cap first lowers alpha to the best service it allows."""
    budget, note = (1 - alpha) * demand_total, ""
    build_s = solve_s = 0.0
    options = dict(rel_gap=label.mip_rel_gap, time_limit=label.time_limit_s, allowed=allowed,
                   cap_coef=cap_coef, cap=label.stock_budget)
    if label.stock_budget is not None:
        best = solve_with_model(stock, lost, None, objective="loss", **options)
        build_s, solve_s = best.build_s, best.solve_s
        if best.choice is None:
            failed = Solution(best.status, None, np.nan, np.nan, build_s, solve_s)
            return failed, alpha, "stock budget below the least stock"
        if best.objective > budget:
            budget = best.objective
            alpha, note = 1 - budget / demand_total, "stock budget binds: alpha lowered to the best it allows"
    sol = solve_with_model(stock, lost, budget, **options)
    return Solution(sol.status, sol.choice, sol.objective, sol.bound, build_s + sol.build_s,
                    solve_s + sol.solve_s), alpha, note


def _fallback(path, stock, lost, demand, sol: Solution, alpha: float, note: str, **common) -> GroupOutcome:
    """No feasible choice: least loss per unit (service first); below a stock cap, least stock."""
    cap_infeasible = "stock budget below" in note
    choice = path.choice(0 if cap_infeasible else path.n_steps)
    rule = "least stock per unit" if cap_infeasible else "least loss per unit"
    note = "; ".join(n for n in (note, f"infeasible ({sol.status}): fallback to {rule}") if n)
    objective = _picked(stock, choice)
    return GroupOutcome(choice, "infeasible", "fallback", objective, float("nan"), float("nan"), sol.build_s,
                        sol.solve_s, float(alpha), achieved_turnover=_turnover(stock, lost, demand, choice),
                        fallback=True, note=note, **common)


def _crosscheck(stock, lost, demand_total, alpha, label, allowed, cap_coef, sol: Solution) -> dict:
    """The same knapsack through Pyomo + HiGHS, for the record."""
    exact = solve_with_model(stock, lost, (1 - alpha) * demand_total, rel_gap=label.mip_rel_gap,
                             time_limit=label.time_limit_s, allowed=allowed, cap_coef=cap_coef,
                             cap=label.stock_budget)
    diff = (sol.objective - exact.objective) / max(abs(exact.objective), 1e-12) if exact.choice is not None else np.nan
    return dict(crosscheck_objective=exact.objective, crosscheck_status=exact.status, crosscheck_diff=float(diff))


def _picked(values: np.ndarray, choice: np.ndarray) -> float:
    return float(values[np.arange(len(choice)), choice].sum())


def _turnover(stock, lost, demand, choice) -> float:
    """Group turnover days of a choice: stock value / sales value (inf with stock and no sales)."""
    held, sales = _picked(stock, choice), float(demand.sum()) - _picked(lost, choice)
    if sales > 0:
        return held / sales
    return float("inf") if held > 0 else 0.0


def calibration_table(labels: pd.DataFrame, groups: pd.DataFrame) -> pd.DataFrame:
    """Per category: target turnover and its source, achieved turnover and alpha (demand weighted).

    labels: category, group, demand_value, lost_value, stock_value, fallback per label; groups: group,
    alpha, target_turnover, target_source per group. Labels are summed per (category, group) first.
    """
    parts = (labels.groupby(["category", "group"], sort=False)
             .agg(demand_value=("demand_value", "sum"), lost_value=("lost_value", "sum"),
                  stock_value=("stock_value", "sum"), n_labels=("fallback", "size"),
                  n_fallback_labels=("fallback", "sum"))
             .reset_index()
             .merge(groups[["group", "alpha", "target_turnover", "target_source"]], on="group", how="left"))
    out = []
    for category, part in parts.groupby("category", sort=True):
        targeted, calibrated = part[np.isfinite(part["target_turnover"])], part[np.isfinite(part["alpha"])]
        sales = (part["demand_value"] - part["lost_value"]).sum()
        out.append({
            "category": category,
            "target_turnover": _weighted(targeted["target_turnover"], targeted["demand_value"]),
            "target_source": "+".join(sorted(part["target_source"].unique())),
            "achieved_turnover": part["stock_value"].sum() / sales if sales > 0 else float("nan"),
            "alpha": _weighted(calibrated["alpha"], calibrated["demand_value"]),
            "alpha_min": calibrated["alpha"].min() if len(calibrated) else float("nan"),
            "alpha_max": calibrated["alpha"].max() if len(calibrated) else float("nan"),
            "n_labels": int(part["n_labels"].sum()),
            "n_groups": part["group"].nunique(),
            "n_fallback_labels": int(part["n_fallback_labels"].sum()),
        })
    return pd.DataFrame(out)


def _weighted(values: pd.Series, weights: pd.Series) -> float:
    if not len(values):
        return float("nan")
    return float(np.average(values, weights=weights)) if weights.sum() > 0 else float(values.mean())
