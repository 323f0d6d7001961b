"""Exact solver of the classic lost-sales model: hand-solved instances, brute-force enumeration of
every stationary policy, published optimal costs, and the guards around the finite state space."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from orpr_ray.classic.distributions import parse_demand
from orpr_ray.classic.exact import StateSpaceTooLarge, evaluate_policy, solve_optimal
from orpr_ray.classic.heuristics import BaseStock, CappedBaseStock, Myopic
from orpr_ray.classic.model import LostSalesProblem, StateSpace, TablePolicy
from orpr_ray.core.errors import InputError


def problem(demand: str, lead_time: int, penalty: float, holding: float = 1.0) -> LostSalesProblem:
    return LostSalesProblem(parse_demand(demand), lead_time, holding, penalty)


# --- an independent reference: explicit loops over states and demands, no shared vectorised code ---

def reference_transition(prob: LostSalesProblem, states: list[tuple], orders: dict) -> tuple[np.ndarray, np.ndarray]:
    """Transition matrix and expected period cost of a policy, written out period by period."""
    index = {s: i for i, s in enumerate(states)}
    pmf = prob.demand.pmf
    P = np.zeros((len(states), len(states)))
    cost = np.zeros(len(states))
    for s in states:
        on_hand, pipeline = s[0], list(s[1:]) + [orders[s]]
        for d, pd in enumerate(pmf):
            left = max(on_hand - d, 0)
            cost[index[s]] += pd * (prob.holding * left + prob.penalty * max(d - on_hand, 0))
            nxt = (left + pipeline[0], *pipeline[1:])
            P[index[s], index[nxt]] += pd
    return P, cost


def reference_gain_from_empty(P: np.ndarray, cost: np.ndarray) -> float:
    """Long-run average cost from the empty state: the Cesaro limit of P, via repeated squaring
    of the aperiodic (I + P) / 2, which has the same limit; valid for multichain policies too."""
    Q = (np.eye(len(P)) + P) / 2
    for _ in range(40):  # Q^(2^40): far past any mixing time of these small chains
        Q = Q @ Q
        Q /= Q.sum(axis=1, keepdims=True)  # keep rounding from compounding
    return float(Q[0] @ cost)


def all_states(lead_time: int, bound: int) -> list[tuple]:
    return [s for s in itertools.product(range(bound + 1), repeat=lead_time) if sum(s) <= bound]


def brute_force_optimum(prob: LostSalesProblem, bound: int) -> float:
    """Minimum over every deterministic stationary policy on {IP <= bound} (the MDP is
    communicating, so the optimal gain is the same from every state, the empty one included)."""
    states = all_states(prob.lead_time, bound)
    choices = [range(bound - sum(s) + 1) for s in states]
    best = np.inf
    for picks in itertools.product(*choices):
        P, cost = reference_transition(prob, states, dict(zip(states, picks)))
        best = min(best, reference_gain_from_empty(P, cost))
    return best


# --- tests ---

def test_hand_solved_instance():
    """D in {0, 1} w.p. 1/2, L = 1, h = 1, p = 3. S-bar = 1: on hand 0 or 1. Ordering 1 when empty
    gives the chain 0 -> 1, 1 -> {0, 1} w.p. 1/2: stationary (1/3, 2/3), costs C(0) = 1.5, C(1) = 0.5,
    so g = 1.5/3 + 2 x 0.5/3 = 5/6; never ordering costs 1.5."""
    prob = problem("pmf:0.5,0.5", 1, 3.0)
    assert prob.ip_bound == 1
    solution = solve_optimal(prob, tolerance=1e-10)
    assert solution.result.converged
    assert solution.result.cost == pytest.approx(5 / 6, abs=1e-9)
    assert solution.result.lower <= 5 / 6 <= solution.result.upper
    assert solution.orders.tolist() == [1, 0]


def test_deterministic_demand_costs_nothing():
    """D = 1 every period: order 1 each period and keep one unit on hand: zero cost. The chains
    are periodic here, which the aperiodicity step must cope with."""
    for lead_time in (1, 2, 3):
        solution = solve_optimal(problem("pmf:0,1", lead_time, 5.0), tolerance=1e-9)
        assert solution.result.converged
        assert solution.result.cost == pytest.approx(0.0, abs=1e-8)


@pytest.mark.parametrize("lead_time, demand, penalty", [
    (1, "pmf:0.3,0.4,0.3", 4.0),
    (1, "pmf:0.6,0.1,0.3", 9.0),
    (2, "pmf:0.3,0.4,0.3", 1.5),
    (2, "pmf:0.4,0.6", 9.0),
    (2, "pmf:0.6,0.1,0.3", 2.0),
])
def test_optimum_equals_brute_force_enumeration(lead_time, demand, penalty):
    prob = problem(demand, lead_time, penalty)
    bound = prob.ip_bound
    assert StateSpace.size(lead_time, bound) <= 10  # keeps the enumeration small
    expected = brute_force_optimum(prob, bound)
    solution = solve_optimal(prob, tolerance=1e-10)
    assert solution.result.cost == pytest.approx(expected, abs=1e-8)
    # A wider state space does not find anything better: the bound S-bar loses nothing here.
    wider = solve_optimal(prob, ip_max=bound + 3, tolerance=1e-10)
    assert wider.result.cost == pytest.approx(expected, abs=1e-8)


def test_policy_evaluation_matches_reference_chain():
    prob = problem("pmf:0.2,0.5,0.3", 2, 6.0)
    bound = prob.ip_bound + 1
    rng = np.random.default_rng(3)
    states = all_states(2, bound)
    for _ in range(5):
        orders = {s: int(rng.integers(0, bound - sum(s) + 1)) for s in states}
        space = StateSpace.build(2, bound)
        table = TablePolicy(space, np.array([orders[tuple(s)] for s in space.states.tolist()]))
        P, cost = reference_transition(prob, states, orders)
        expected = reference_gain_from_empty(P, cost)
        result = evaluate_policy(prob, table, tolerance=1e-11)
        assert result.cost == pytest.approx(expected, abs=1e-8)


def test_bound_is_not_binding_for_poisson():
    prob = problem("poisson:2", 2, 9.0)
    tight = solve_optimal(prob)
    wide = solve_optimal(prob, ip_max=prob.ip_bound + 5)
    assert wide.result.cost == pytest.approx(tight.result.cost, rel=1e-6)
    # The optimal policy of the wide space never uses the extra room from reachable states.
    assert evaluate_policy(prob, wide.policy).cost == pytest.approx(tight.result.cost, rel=1e-6)


@pytest.mark.parametrize("lead_time, penalty, published", [(4, 4.0, 4.73), (4, 19.0, 8.89)])
def test_published_optimal_costs(lead_time, penalty, published):
    """Zipkin (2008), Old and New Methods for Lost-Sales Inventory Systems, Operations Research
    56(5), Table 3: Poisson mean 5, h = 1, optimal cost to two decimals."""
    result = solve_optimal(problem("poisson:5", lead_time, penalty)).result
    assert result.converged
    assert abs(result.cost - published) <= 0.005 + 1e-9


def test_published_myopic_cost():
    """Zipkin (2008) Table 3, L = 4, p = 4: Myopic 5.06."""
    prob = problem("poisson:5", 4, 4.0)
    assert abs(evaluate_policy(prob, Myopic(prob)).cost - 5.06) <= 0.005 + 1e-9


@pytest.mark.parametrize("lead_time, demand, penalty", [
    (1, "poisson:5", 9.0), (2, "geometric:3", 4.0), (3, "negbin:3:2", 19.0),
])
def test_no_policy_beats_the_optimum(lead_time, demand, penalty):
    prob = problem(demand, lead_time, penalty)
    optimum = solve_optimal(prob)
    assert evaluate_policy(prob, optimum.policy).cost == pytest.approx(optimum.result.cost, rel=1e-6)
    s_bar = prob.ip_bound
    for policy in (BaseStock(s_bar), BaseStock(s_bar - 2), CappedBaseStock(s_bar, 3), Myopic(prob)):
        result = evaluate_policy(prob, policy)
        assert result.converged
        assert result.upper >= optimum.result.lower


def test_a_policy_leaving_the_bounded_set_is_refused():
    prob = problem("poisson:3", 2, 4.0)
    with pytest.raises(InputError, match="ip_max"):
        evaluate_policy(prob, BaseStock(prob.ip_bound + 2), ip_max=prob.ip_bound)


def test_size_limit_is_enforced():
    prob = problem("poisson:5", 4, 39.0)
    with pytest.raises(StateSpaceTooLarge, match="max_exact_states"):
        solve_optimal(prob, max_states=1000)
