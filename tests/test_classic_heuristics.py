"""Classic heuristics: their orders on hand-checked states, the myopic order against an explicit
enumeration of demand paths, and the tuning searches against exhaustive grids."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from orpr_ray.classic.distributions import parse_demand
from orpr_ray.classic.exact import evaluate_policy, solve_optimal
from orpr_ray.classic.heuristics import (
    BaseStock,
    CappedBaseStock,
    ConstantOrder,
    Myopic,
    argmin_convex,
    constant_order_cost,
    myopic_orders,
    tune_base_stock,
    tune_capped_base_stock,
    tune_constant_order,
)
from orpr_ray.classic.model import LostSalesProblem
from orpr_ray.core.errors import InputError


def problem(demand: str, lead_time: int, penalty: float, holding: float = 1.0) -> LostSalesProblem:
    return LostSalesProblem(parse_demand(demand), lead_time, holding, penalty)


def exact_cost(prob):
    return lambda policy: evaluate_policy(prob, policy, tolerance=1e-10).cost


def test_base_stock_and_capped_orders():
    states = np.array([[3, 1, 0], [0, 0, 0], [9, 2, 1]])  # IP 4, 0, 12
    assert BaseStock(10)(states).tolist() == [6, 10, 0]
    assert CappedBaseStock(10, 4)(states).tolist() == [4, 4, 0]
    assert ConstantOrder(2)(states).tolist() == [2, 2, 2]
    assert BaseStock(10).ip_bound == 10 and CappedBaseStock(10, 4).ip_bound == 10


def test_myopic_hand_checked():
    """D in {0, 1} w.p. 1/2, L = 1, h = 1, p = 3: C(0) = 1.5, C(1) = 0.5, C(2) = 1.5.
    Empty: the order arrives on X = 0, so z = 1. One on hand: X is 0 or 1 w.p. 1/2, and z = 0, 1
    both cost 1.0: the tie goes to the smaller order."""
    prob = problem("pmf:0.5,0.5", 1, 3.0)
    assert myopic_orders(prob, np.array([[0], [1], [2]])).tolist() == [1, 0, 0]


def enumerated_myopic(prob: LostSalesProblem, state: tuple) -> int:
    """The myopic order by walking every demand path of the L periods before the order arrives."""
    pmf = prob.demand.pmf
    s1 = prob.newsvendor_level
    expected = np.zeros(s1 + 1)
    for path in itertools.product(range(len(pmf)), repeat=prob.lead_time):
        weight = np.prod([pmf[d] for d in path])
        on_hand, pipeline = state[0], list(state[1:])
        for k, d in enumerate(path):
            on_hand = max(on_hand - d, 0) + (pipeline[k] if k < len(pipeline) else 0)
        for z in range(s1 + 1):
            level = on_hand + z
            period = sum(pd * (prob.holding * max(level - d, 0) + prob.penalty * max(d - level, 0))
                         for d, pd in enumerate(pmf))
            expected[z] += weight * period
    return int(np.argmin(expected))


@pytest.mark.parametrize("lead_time", [1, 2, 3])
def test_myopic_matches_path_enumeration(lead_time):
    prob = problem("pmf:0.2,0.3,0.1,0.4", lead_time, 7.0)
    rng = np.random.default_rng(lead_time)
    states = rng.integers(0, 5, size=(25, lead_time))
    got = myopic_orders(prob, states)
    assert got.tolist() == [enumerated_myopic(prob, tuple(s)) for s in states.tolist()]
    # The cached-table path answers the same as the direct computation.
    assert Myopic(prob)(states).tolist() == got.tolist()


def test_myopic_keeps_the_inventory_position_bound():
    """Exact evaluation relies on Myopic.ip_bound = S-bar: it must never order above it."""
    for lead_time, penalty in [(1, 4.0), (2, 19.0), (3, 39.0)]:
        prob = problem("poisson:5", lead_time, penalty)
        evaluate_policy(prob, Myopic(prob))  # raises InputError if an order leaves {IP <= S-bar}


def test_argmin_convex_walks_both_ways():
    f = lambda x: (x - 7) ** 2  # noqa: E731
    assert argmin_convex(f, 0, 0, 20) == (7, 0)
    assert argmin_convex(f, 20, 0, 20) == (7, 0)
    assert argmin_convex(f, 3, 5, 20) == (7, 0)  # start clipped into range
    assert argmin_convex(lambda x: -x, 2, 0, 9) == (9, -9)


def test_best_base_stock_is_the_grid_minimum():
    prob = problem("poisson:3", 2, 9.0)
    cost_of = exact_cost(prob)
    policy, cost = tune_base_stock(prob, cost_of)
    grid = {s: cost_of(BaseStock(s)) for s in range(0, 2 * prob.ip_bound)}
    assert policy.level == min(grid, key=grid.get)
    assert cost == pytest.approx(min(grid.values()))


@pytest.mark.parametrize("demand, lead_time, penalty", [("poisson:3", 2, 4.0), ("poisson:5", 1, 39.0)])
def test_best_capped_base_stock_is_the_grid_minimum(demand, lead_time, penalty):
    prob = problem(demand, lead_time, penalty)
    cost_of = exact_cost(prob)
    policy, cost = tune_capped_base_stock(prob, cost_of)
    grid = {(s, r): cost_of(CappedBaseStock(s, r))
            for s in range(prob.ip_bound - 4, prob.ip_bound + 8) for r in range(2, s + 1)}
    assert cost == pytest.approx(min(grid.values()), abs=1e-9)
    assert cost <= tune_base_stock(prob, cost_of)[1] + 1e-12  # a cap that never binds is base-stock


def test_constant_order_cost_and_tuning():
    prob = problem("poisson:4.5", 3, 4.0)
    # q = 0: nothing ever arrives, every unit of demand is lost.
    assert constant_order_cost(prob, 0).cost == pytest.approx(4.0 * prob.demand.mean)
    assert constant_order_cost(prob, 5).cost == np.inf  # q > E[D]: on hand grows without limit
    costs = {q: constant_order_cost(prob, q).cost for q in range(5)}
    policy, cost = tune_constant_order(prob, lambda q: constant_order_cost(prob, q).cost)
    assert policy.quantity == min(costs, key=costs.get)
    assert cost == pytest.approx(min(costs.values()))


def test_constant_order_equal_to_deterministic_demand_is_free():
    prob = problem("pmf:0,0,1", 2, 4.0)  # D = 2 every period
    assert constant_order_cost(prob, 2).cost == 0.0
    assert tune_constant_order(prob, lambda q: constant_order_cost(prob, q).cost)[0] == ConstantOrder(2)
    assert constant_order_cost(problem("pmf:0.5,0,0.5", 2, 4.0), 1).cost == np.inf  # same mean, random


def test_constant_order_is_refused_by_bounded_exact_evaluation():
    """Its on hand has no bound, so the finite-state evaluation must refuse rather than clip."""
    prob = problem("poisson:4.5", 2, 4.0)
    with pytest.raises(InputError, match="ip_max"):
        evaluate_policy(prob, ConstantOrder(4))


def test_heuristics_never_beat_the_optimum():
    for lead_time, penalty in [(1, 39.0), (2, 4.0), (3, 9.0)]:
        prob = problem("poisson:5", lead_time, penalty)
        optimum = solve_optimal(prob).result
        cost_of = exact_cost(prob)
        costs = [tune_base_stock(prob, cost_of)[1], tune_capped_base_stock(prob, cost_of)[1],
                 cost_of(Myopic(prob)), tune_constant_order(prob, lambda q: constant_order_cost(prob, q).cost)[1]]
        assert min(costs) >= optimum.lower - 1e-9
