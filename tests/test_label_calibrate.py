"""Turnover calibration and the end-to-end solve of one group, degenerate and infeasible cases included."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from orpr_ray.label.calibrate import (GroupTarget, calibrate_on_path, calibration_table, group_target, least_cost_on_path,
                                      solve_group)
from orpr_ray.label.config import LabelConfig
from orpr_ray.label.knapsack import lagrangian_path
from test_label_knapsack import brute_force, picked, random_group

DEFAULT = GroupTarget(float("nan"), "default")


def test_target_sources_in_order_and_weighted_by_demand():
    label = LabelConfig()
    nan = np.full(3, np.nan)
    t = group_target(np.array([10.0, np.nan, 30.0]), np.array([5.0, 5.0, 5.0]), np.array([3.0, 1.0, 1.0]), label)
    assert t == GroupTarget(15.0, "attribute")
    assert group_target(nan, np.array([8.0, np.nan, 12.0]), np.zeros(3), label) == GroupTarget(10.0, "historical")
    assert group_target(nan, nan, np.ones(3), label).source == "default"
    assert group_target(np.ones(3), nan, np.ones(3), LabelConfig(calibrate=False)).source == "default"


@pytest.mark.parametrize("seed", range(5))
def test_least_cost_point_matches_a_scan_of_every_path_point(seed):
    rng = np.random.default_rng(seed)
    stock, lost = random_group(rng, 12, 6)
    cost = 0.01 * stock + rng.uniform(0.2, 0.6, size=(12, 1)) * lost  # per-unit penalty weights, like margins
    path = lagrangian_path(stock, lost)
    scanned = [picked(cost, path.choice(k)) for k in range(path.n_steps + 1)]
    assert least_cost_on_path(path, cost) == int(np.argmin(scanned))


def test_total_cost_target_labels_the_least_cost_path_point():
    rng = np.random.default_rng(11)
    stock, lost = random_group(rng, 20, 8)
    cost = 0.05 * stock + lost
    demand = lost.max(axis=1) + 1.0
    label = LabelConfig(calibrate_to="total_cost")
    target = group_target(np.full(20, 5.0), np.full(20, np.nan), demand, label)
    assert target.source == "total_cost"  # the turnover attribute is not the target any more
    out = solve_group(stock, lost, demand, target, label, cost=cost)
    path = lagrangian_path(stock, lost)
    best = min(picked(cost, path.choice(k)) for k in range(path.n_steps + 1))
    assert picked(cost, out.choice) == pytest.approx(best)
    assert out.status == "optimal" and 0 < out.alpha <= 1


def test_calibration_finds_the_nearest_turnover_on_the_rising_part():
    # demand 100; turnover along the path: 10/20=0.5 (falls) 12/60=0.2, 30/90=0.33, 60/100=0.6
    stock, loss = np.array([10.0, 12.0, 30.0, 60.0]), np.array([80.0, 40.0, 10.0, 0.0])
    assert calibrate_on_path(stock, loss, 100.0, 0.35) == (2, "")
    assert calibrate_on_path(stock, loss, 100.0, 0.5)[0] == 3  # 0.6 is nearer than 0.33
    k, note = calibrate_on_path(stock, loss, 100.0, 0.1)
    assert k == 1 and "below the reachable" in note  # the lowest turnover, not the least stock
    k, note = calibrate_on_path(stock, loss, 100.0, 5.0)
    assert k == 3 and "above the reachable" in note


def test_calibrated_group_is_an_exact_optimum_at_its_alpha_and_hits_the_target():
    rng = np.random.default_rng(7)
    stock, lost = random_group(rng, 5, 4)
    demand = lost.max(axis=1) + 1.0
    path = lagrangian_path(stock, lost)
    sales = demand.sum() - path.total_loss
    target = float(path.total_stock[-2] / sales[-2])
    out = solve_group(stock, lost, demand, GroupTarget(target, "attribute"), LabelConfig())
    assert out.status == "optimal" and out.solver == "lagrangian" and out.mip_gap == 0.0
    assert out.achieved_turnover == pytest.approx(target)
    budget = (1 - out.alpha) * demand.sum()
    best, _ = brute_force(stock, lost, budget)
    assert out.objective == pytest.approx(best)


def test_default_service_level_group_and_its_crosscheck_with_highs():
    rng = np.random.default_rng(8)
    stock, lost = random_group(rng, 40, 10)
    demand = lost.max(axis=1) * 1.5
    out = solve_group(stock, lost, demand, DEFAULT, LabelConfig(default_service_level=0.8), crosscheck=True)
    assert out.alpha == 0.8 and not out.fallback
    assert lost[np.arange(40), out.choice].sum() <= 0.2 * demand.sum() + 1e-9
    assert out.crosscheck_status == "optimal"
    assert 0 <= out.crosscheck_diff <= out.mip_gap + 1e-4


def test_pyomo_model_of_record_agrees_with_the_fast_path():
    rng = np.random.default_rng(9)
    stock, lost = random_group(rng, 30, 8)
    demand = lost.max(axis=1) + 2.0
    target = GroupTarget(float(stock.mean(axis=0)[4] / demand.mean()), "attribute")
    fast = solve_group(stock, lost, demand, target, LabelConfig())
    exact = solve_group(stock, lost, demand, target, LabelConfig(solver="pyomo", mip_rel_gap=0.0))
    assert exact.solver == "pyomo" and exact.status == "optimal"
    assert exact.objective == pytest.approx(fast.objective, rel=1e-6)  # HiGHS feasibility tolerance
    assert exact.alpha == pytest.approx(fast.alpha)


def test_binding_stock_budget_lowers_alpha_through_the_model_of_record():
    rng = np.random.default_rng(10)
    stock, lost = random_group(rng, 6, 5)
    demand = lost.max(axis=1) * 4.0
    cap_coef = stock / 10.0
    free = solve_group(stock, lost, demand, DEFAULT, LabelConfig(default_service_level=0.9))
    assert not free.fallback
    cap = 0.8 * cap_coef[np.arange(6), free.choice].sum()
    capped = solve_group(stock, lost, demand, DEFAULT, LabelConfig(default_service_level=0.9, stock_budget=cap),
                         cap_coef=cap_coef)
    assert capped.solver == "pyomo" and "alpha lowered" in capped.note
    assert capped.alpha < 0.9
    assert cap_coef[np.arange(6), capped.choice].sum() <= cap * (1 + 1e-9)
    best, _ = brute_force(stock, lost, (1 - capped.alpha) * demand.sum(), None, cap_coef, cap)
    assert capped.objective == pytest.approx(best, rel=1e-6)
    # A budget below the least stock: flagged fallback to the least-stock choice, never an exception.
    hopeless = solve_group(stock, lost, demand, DEFAULT, LabelConfig(stock_budget=1e-6), cap_coef=cap_coef)
    assert hopeless.fallback and hopeless.solver == "fallback" and "least stock" in hopeless.note
    assert list(hopeless.choice) == list(lagrangian_path(stock, lost).choice(0))


def test_infeasible_service_falls_back_to_least_loss_and_is_flagged():
    stock = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 4.0]])
    lost = np.array([[9.0, 6.0, 5.0], [9.0, 3.0, 3.0]])  # least loss 8 of demand 20: service 0.6 at best
    out = solve_group(stock, lost, np.array([10.0, 10.0]), DEFAULT, LabelConfig(default_service_level=0.95))
    assert out.fallback and out.status == "infeasible" and out.solver == "fallback"
    assert list(out.choice) == [2, 1]  # least loss per unit, least stock among ties
    assert np.isnan(out.mip_gap) and "fallback" in out.note


@pytest.mark.parametrize("shape", [(1, 5), (4, 1), (1, 1)])
def test_one_unit_or_one_candidate_groups(shape):
    rng = np.random.default_rng(11)
    stock, lost = random_group(rng, *shape)
    demand = lost.max(axis=1) + 1.0
    for target in (DEFAULT, GroupTarget(3.0, "attribute")):
        out = solve_group(stock, lost, demand, target, LabelConfig(default_service_level=0.5))
        assert out.choice.shape == (shape[0],) and np.all((out.choice >= 0) & (out.choice < shape[1]))
        if shape[1] == 1:
            assert list(out.choice) == [0] * shape[0]


def test_all_zero_demand_group_takes_least_stock():
    stock = np.array([[3.0, 5.0], [0.0, 1.0]])
    out = solve_group(stock, np.zeros((2, 2)), np.zeros(2), GroupTarget(10.0, "attribute"), LabelConfig())
    assert out.status == "degenerate" and list(out.choice) == [0, 0] and np.isnan(out.alpha)
    assert not out.fallback and out.achieved_turnover == np.inf


def test_calibration_table_per_category():
    labels = pd.DataFrame({
        "group": ["a1", "a1", "a2", "b1"], "category": ["a", "a", "a", "b"],
        "fallback": [False, False, False, True], "demand_value": [10.0, 10.0, 20.0, 5.0],
        "lost_value": [1.0, 1.0, 4.0, 1.0], "stock_value": [34.0, 34.0, 32.0, 8.0]})
    groups = pd.DataFrame({"group": ["a1", "a2", "b1"], "alpha": [0.9, 0.8, 0.95],
                           "target_turnover": [4.0, 1.0, np.nan], "target_source": ["attribute", "attribute", "default"]})
    table = calibration_table(labels, groups).set_index("category")
    assert table.loc["a", "target_turnover"] == pytest.approx((4 * 20 + 1 * 20) / 40)
    assert table.loc["a", "achieved_turnover"] == pytest.approx(100.0 / 34.0)
    assert table.loc["a", "alpha"] == pytest.approx(0.85)
    assert table.loc["b", "target_source"] == "default" and np.isnan(table.loc["b", "target_turnover"])
    assert table.loc["b", "n_fallback_labels"] == 1 and table.loc["a", "n_labels"] == 3
    assert table.loc["a", "n_groups"] == 2
