"""The group knapsack: fast Lagrangian path and Pyomo + HiGHS against brute force and each other."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from orpr_ray.label.knapsack import lagrangian_path, solve_budget, solve_with_model


def brute_force(stock, lost, budget, allowed=None, cap_coef=None, cap=None):
    """Exhaustive enumeration: (objective, choice) of the cheapest feasible assignment, or (nan, None)."""
    n, n_cand = stock.shape
    allowed = np.ones(stock.shape, bool) if allowed is None else allowed
    best, best_choice = np.inf, None
    for choice in itertools.product(*[np.flatnonzero(allowed[i]) for i in range(n)]):
        rows = np.arange(n)
        if lost[rows, choice].sum() > budget * (1 + 1e-9) + 1e-12:
            continue
        if cap is not None and cap_coef[rows, choice].sum() > cap * (1 + 1e-9):
            continue
        value = stock[rows, choice].sum()
        if value < best - 1e-12:
            best, best_choice = value, np.array(choice)
    return (best, best_choice) if best_choice is not None else (float("nan"), None)


def random_group(rng, n, n_cand, *, monotone=True):
    """stock rising and loss falling in the candidate index (like the simulator's), or arbitrary."""
    if monotone:
        stock = np.cumsum(rng.gamma(1.0, 3.0, size=(n, n_cand)), axis=1)
        lost = np.cumsum(rng.gamma(1.0, 2.0, size=(n, n_cand))[:, ::-1], axis=1)[:, ::-1] - rng.random((n, 1))
        lost = np.maximum(lost, 0.0)
    else:
        stock = rng.integers(0, 20, size=(n, n_cand)).astype(float)
        lost = rng.integers(0, 20, size=(n, n_cand)).astype(float)
    return stock, lost


def picked(a, choice):
    return a[np.arange(len(choice)), choice].sum()


@pytest.mark.parametrize("monotone", [True, False])
def test_every_path_point_is_the_exact_optimum_of_its_own_budget(monotone):
    rng = np.random.default_rng(1)
    for _ in range(15):
        stock, lost = random_group(rng, 4, 5, monotone=monotone)
        path = lagrangian_path(stock, lost)
        assert np.all(np.diff(path.total_stock) > 0) and np.all(np.diff(path.total_loss) < 0)
        for k in range(path.n_steps + 1):
            choice = path.choice(k)
            assert picked(stock, choice) == pytest.approx(path.total_stock[k])
            assert picked(lost, choice) == pytest.approx(path.total_loss[k])
            best, _ = brute_force(stock, lost, path.total_loss[k])
            assert path.total_stock[k] == pytest.approx(best, rel=1e-12, abs=1e-9)


@pytest.mark.parametrize("monotone", [True, False])
def test_fixed_budget_fast_path_brackets_the_brute_force_optimum(monotone):
    rng = np.random.default_rng(2)
    checked = 0
    for _ in range(40):
        stock, lost = random_group(rng, 5, 4, monotone=monotone)
        allowed = rng.random(stock.shape) < 0.8
        allowed[np.arange(5), rng.integers(0, 4, 5)] = True
        path = lagrangian_path(stock, lost, allowed)
        budget = rng.uniform(path.total_loss[-1], path.total_loss[0] + 1e-9)
        sol = solve_budget(path, stock, lost, budget, allowed)
        best, _ = brute_force(stock, lost, budget, allowed)
        assert sol.status in ("optimal", "feasible")
        assert allowed[np.arange(5), sol.choice].all()
        assert picked(lost, sol.choice) <= budget * (1 + 1e-9) + 1e-12
        assert sol.bound <= best + 1e-9 <= sol.objective + 2e-9
        if sol.status == "optimal":
            assert sol.objective == pytest.approx(best)
        checked += 1
    assert checked == 40


def test_fast_path_reports_infeasible_below_the_least_loss():
    stock, lost = random_group(np.random.default_rng(3), 3, 4)
    path = lagrangian_path(stock, lost)
    sol = solve_budget(path, stock, lost, path.total_loss[-1] * 0.5 - 1.0)
    assert sol.status == "infeasible" and sol.choice is None


@pytest.mark.parametrize("monotone", [True, False])
def test_pyomo_highs_equals_brute_force_with_side_constraints(monotone):
    rng = np.random.default_rng(4)
    for trial in range(6):
        stock, lost = random_group(rng, 4, 4, monotone=monotone)
        allowed = np.ones(stock.shape, bool)
        allowed[:, 0] = trial % 2 == 0  # a min-cover rule removes the smallest target
        cap_coef = stock / 10.0
        budget = 0.5 * (lost.min(axis=1).sum() + lost.max(axis=1).sum())
        cap = None if trial < 3 else float(np.median(cap_coef, axis=1).sum())
        sol = solve_with_model(stock, lost, budget, rel_gap=0.0, time_limit=30, allowed=allowed,
                               cap_coef=cap_coef, cap=cap)
        best, _ = brute_force(stock, lost, budget, allowed, cap_coef, cap)
        if np.isnan(best):
            assert sol.status == "infeasible"
            continue
        assert sol.status == "optimal"
        assert sol.objective == pytest.approx(best, rel=1e-9)
        assert picked(stock, sol.choice) == pytest.approx(best, rel=1e-9)
        assert allowed[np.arange(4), sol.choice].all()


def test_pyomo_infeasible_group_is_a_status_not_an_exception():
    stock, lost = random_group(np.random.default_rng(5), 3, 3)
    sol = solve_with_model(stock, lost, -1.0, rel_gap=0.0, time_limit=10)
    assert sol.status == "infeasible" and sol.choice is None and np.isnan(sol.objective)


def test_lagrangian_and_highs_agree_within_the_gap_on_a_larger_group():
    rng = np.random.default_rng(6)
    stock, lost = random_group(rng, 200, 20)
    path = lagrangian_path(stock, lost)
    for budget in (path.total_loss[path.n_steps // 3], 0.5 * (path.total_loss[0] + path.total_loss[-1])):
        fast = solve_budget(path, stock, lost, budget)
        exact = solve_with_model(stock, lost, budget, rel_gap=1e-7, time_limit=60)
        assert exact.status == "optimal"
        # HiGHS' optimum lies between the LP bound and the repaired integer solution of the fast path.
        assert fast.bound <= exact.objective * (1 + 1e-6)
        assert exact.objective <= fast.objective * (1 + 1e-6)
        assert fast.objective - exact.objective <= fast.gap * fast.objective + 1e-6 * exact.objective


def test_degenerate_groups():
    one_unit = lagrangian_path(np.array([[1.0, 2.0, 3.0]]), np.array([[5.0, 1.0, 0.0]]))
    assert one_unit.n_steps == 2 and list(one_unit.choice(1)) == [1]
    one_cand = lagrangian_path(np.array([[4.0], [2.0]]), np.array([[1.0], [0.0]]))
    assert one_cand.n_steps == 0 and list(one_cand.choice(0)) == [0, 0]
    # Identical candidates (zero demand: nothing to gain) collapse to the smallest target.
    same = lagrangian_path(np.zeros((3, 6)), np.zeros((3, 6)))
    assert same.n_steps == 0 and list(same.choice(0)) == [0, 0, 0]
    # Ties keep the smaller candidate index; a dominated candidate is never on the path.
    tied = lagrangian_path(np.array([[2.0, 1.0, 1.0, 3.0]]), np.array([[1.0, 2.0, 2.0, 0.0]]))
    assert [int(tied.choice(k)[0]) for k in range(tied.n_steps + 1)] == [1, 0, 3]
