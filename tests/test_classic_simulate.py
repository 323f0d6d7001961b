"""Simulation of the classic model: agreement with the exact costs within the confidence
interval, reproducibility from the seed, and argument checks."""
from __future__ import annotations

import pytest

from orpr_ray.classic.distributions import parse_demand
from orpr_ray.classic.exact import evaluate_policy, solve_optimal
from orpr_ray.classic.heuristics import CappedBaseStock, ConstantOrder, Myopic, constant_order_cost
from orpr_ray.classic.model import LostSalesProblem
from orpr_ray.classic.simulate import compare_policies, simulate_policy
from orpr_ray.core.errors import InputError

# A 99.9% interval: the seeds are fixed, so a test either always passes or always fails; the wide
# level keeps an unlucky seed from failing a correct simulator.
SETTINGS = dict(periods=4000, replications=40, warmup=200, confidence=0.999)


def test_simulation_agrees_with_exact_costs():
    prob = LostSalesProblem(parse_demand("poisson:4"), 2, 1.0, 9.0)
    optimum = solve_optimal(prob)
    policies = {"optimal": (optimum.policy, optimum.result.cost),
                "capped": (CappedBaseStock(prob.ip_bound, 6), evaluate_policy(prob, CappedBaseStock(prob.ip_bound, 6)).cost),
                "myopic": (Myopic(prob), evaluate_policy(prob, Myopic(prob)).cost),
                "constant": (ConstantOrder(3), constant_order_cost(prob, 3).cost)}
    for seed, (name, (policy, exact)) in enumerate(policies.items()):
        sim = simulate_policy(prob, policy, seed=seed, **SETTINGS)
        assert sim.ci_low <= exact <= sim.ci_high, (name, exact, sim)
        assert sim.holding + sim.penalty == pytest.approx(sim.mean)
        assert 0 < sim.fill_rate < 1


def test_no_simulated_policy_beats_the_optimum_beyond_noise():
    prob = LostSalesProblem(parse_demand("geometric:2"), 3, 1.0, 19.0)
    optimum = solve_optimal(prob).result
    for level in (prob.ip_bound - 3, prob.ip_bound):
        sim = simulate_policy(prob, CappedBaseStock(level, 4), seed=7, **SETTINGS)
        assert sim.ci_high >= optimum.lower


def test_paired_comparison_agrees_with_exact_differences():
    """The CRN difference of two policies' costs against the exact difference, and a policy against
    itself: exactly zero (same demand, same orders)."""
    prob = LostSalesProblem(parse_demand("poisson:4"), 2, 1.0, 9.0)
    reference = CappedBaseStock(prob.ip_bound, 6)
    candidates = [Myopic(prob), CappedBaseStock(prob.ip_bound - 2, 5), reference]
    checks = compare_policies(prob, reference, candidates, periods=4000, replications=40, warmup=200, seed=3)
    base = evaluate_policy(prob, reference).cost
    for policy, check in zip(candidates[:2], checks):
        exact = evaluate_policy(prob, policy).cost - base
        assert abs(check.difference - exact) <= 3.3 * check.stderr, (policy, exact, check)  # 99.9%, two-sided
        assert check.stderr < abs(exact) / 5  # paired: far tighter than the costs' own spread
    assert (checks[2].difference, checks[2].stderr) == (0.0, 0.0)
    with pytest.raises(InputError, match="replications"):
        compare_policies(prob, reference, candidates, periods=10, replications=3, warmup=0, seed=0)


def test_same_seed_same_result_other_seed_other_result():
    prob = LostSalesProblem(parse_demand("poisson:3"), 1, 1.0, 4.0)
    policy = CappedBaseStock(8, 4)
    a = simulate_policy(prob, policy, periods=500, replications=10, seed=1)
    b = simulate_policy(prob, policy, periods=500, replications=10, seed=1)
    c = simulate_policy(prob, policy, periods=500, replications=10, seed=2)
    assert (a.mean, a.half_width) == (b.mean, b.half_width)
    assert a.mean != c.mean


def test_ordering_nothing_loses_everything():
    prob = LostSalesProblem(parse_demand("poisson:3"), 2, 1.0, 4.0)
    sim = simulate_policy(prob, ConstantOrder(0), periods=200, replications=10, seed=0)
    assert sim.fill_rate == 0.0 and sim.holding == 0.0
    assert sim.mean == pytest.approx(4.0 * 3.0, rel=0.05)


def test_bad_settings_and_bad_policies_are_refused():
    prob = LostSalesProblem(parse_demand("poisson:3"), 1, 1.0, 4.0)
    with pytest.raises(InputError, match="replications"):
        simulate_policy(prob, ConstantOrder(1), replications=3)
    with pytest.raises(InputError, match="ordered -1"):
        simulate_policy(prob, lambda states: states[:, 0] * 0 - 1, periods=10, replications=10)
    with pytest.raises(InputError, match="non-integer"):
        simulate_policy(prob, lambda states: states[:, 0] * 0 + 0.5, periods=10, replications=10)
