"""The learned policy of the classic lost-sales setting (issue 8 item 3): features, mask, rollout
rewards, simulated policy improvement against exact policy improvement, the keep-or-drop rule of a
policy-iteration round, seeding, and real trainings that must land near the exact optimum and below
every heuristic."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from orpr_ray.classic import learned
from orpr_ray.classic.benchmark import POLICY_NAMES, run_policies
from orpr_ray.classic.config import ClassicConfig, LearnedConfig
from orpr_ray.classic.distributions import parse_demand
from orpr_ray.classic.exact import evaluate_policy, solve_optimal
from orpr_ray.classic.heuristics import CappedBaseStock
from orpr_ray.classic.learned import (
    LearnedPolicy,
    improved_orders,
    label_targets,
    network_config,
    policy_iteration,
    rollout_rewards,
    state_features,
    supervised,
    train_learned,
)
from orpr_ray.classic.model import LostSalesProblem, StateSpace
from orpr_ray.classic.simulate import Comparison
from orpr_ray.core.errors import InputError
from orpr_ray.model.features import DAY_CHANNELS, OBJECTIVES
from orpr_ray.model.network import build_model

TINY = LearnedConfig(state_replications=8, state_periods=30, pretrain_steps=5, rl_steps=3, batch=8,
                     samples=2, paths=2, horizon=6, rounds=1, relabel_rollouts=4096, refit_steps=3,
                     check_periods=200, check_replications=10)


def problem(lead_time: int, penalty: float) -> LostSalesProblem:
    return LostSalesProblem(parse_demand("poisson:5"), lead_time, 1.0, penalty)


def test_state_features_place_the_pipeline_and_the_costs():
    prob = problem(3, 9.0)
    cfg = network_config(prob, LearnedConfig())
    states = np.array([[4, 2, 6], [0, 0, 0]])
    feats = state_features(prob, cfg, states)
    days = feats["days"].numpy()  # (2, T + 1, C)
    assert days.shape == (2, cfg.history_days + 1, len(DAY_CHANNELS))
    sales, observed = DAY_CHANNELS.index("sales"), DAY_CHANNELS.index("observed")
    T = cfg.history_days
    np.testing.assert_allclose(days[0, T - 3:T, sales], [4 / 5, 2 / 5, 6 / 5], rtol=1e-6)
    assert days[0, :T - 3, observed].sum() == 0 and days[0, T - 3:T, observed].sum() == 3
    assert days[0, T, sales] == pytest.approx(12 / 5)  # the inventory position
    assert feats["attributes"][0, 0] == 3 and feats["attributes"][0, 2] == pytest.approx(np.log(9.0))
    assert feats["objectives_mask"][0].tolist() == [n == "alpha" for n in OBJECTIVES]
    assert feats["objectives"][0, OBJECTIVES.index("alpha")] == pytest.approx(0.9)
    out = build_model(cfg, grid_size=prob.ip_bound + 1)(feats)
    assert out["logits"].shape == (2, prob.ip_bound + 1)


def test_any_network_keeps_the_inventory_position_within_s_bar():
    prob = problem(2, 4.0)
    model = build_model(network_config(prob, LearnedConfig()), grid_size=prob.ip_bound + 1, seed=3)
    policy = LearnedPolicy(prob, model)
    space = StateSpace.build(2, prob.ip_bound)
    orders = policy(space.states)
    assert orders.min() >= 0
    assert (space.inventory_position + orders).max() <= prob.ip_bound
    # untabulated (direct) and tabulated orders agree
    np.testing.assert_array_equal(policy.orders(space.states[:50]), orders[:50])
    result = evaluate_policy(prob, policy)  # refuses any order above S-bar
    assert result.converged and result.cost >= solve_optimal(prob).result.lower - 1e-9


def test_rollout_rewards_share_demand_across_a_states_actions():
    prob = problem(2, 9.0)
    follow = CappedBaseStock(19, 6)
    states = np.array([[3, 5], [10, 0]])
    same = rollout_rewards(prob, states, np.array([[4, 4], [2, 2]]), follow, horizon=10, paths=8,
                           rng=np.random.default_rng(1))
    np.testing.assert_array_equal(same[:, 0], same[:, 1])  # same action, same paths: same reward
    again = rollout_rewards(prob, states, np.array([[4, 4], [2, 2]]), follow, horizon=10, paths=8,
                            rng=np.random.default_rng(1))
    np.testing.assert_array_equal(same, again)
    # within L periods the new order has not arrived: no action can change the reward
    blind = rollout_rewards(prob, states, np.array([[0, 9], [1, 7]]), follow, horizon=2, paths=8,
                            rng=np.random.default_rng(1))
    np.testing.assert_array_equal(blind[:, 0], blind[:, 1])


def test_rollout_reward_estimates_the_expected_cost():
    """L = 1, two periods: the reward's mean is -(C(y) + sum_j P((y - D)^+ = j) C(j + a))."""
    prob = problem(1, 9.0)
    y, actions = 7, np.array([[0, 3, 8]])
    rewards = rollout_rewards(prob, np.array([[y]]), actions, CappedBaseStock(14, 6), horizon=2,
                              paths=40_000, rng=np.random.default_rng(0))
    cost = prob.period_cost(40)
    leftover = prob.leftover_matrix(y)[y]  # (y + 1,)
    expected = [-(cost[y] + leftover @ cost[np.arange(y + 1) + a]) for a in actions[0]]
    np.testing.assert_allclose(rewards[0], expected, rtol=5e-3)


def exact_q_one_period_lead(prob: LostSalesProblem, orders: np.ndarray) -> np.ndarray:
    """L = 1 by hand: the policy's relative values h from g + h = C + P h (h[0] = 0, a dense
    solve), then Q[y, z] = sum_j P((y - D)^+ = j) h(j + z) (+inf where y + z > S-bar)."""
    n = prob.ip_bound + 1
    leftover = prob.leftover_matrix(n - 1)
    P = np.zeros((n, n))
    for y in range(n):
        P[y, np.arange(y + 1) + orders[y]] += leftover[y, :y + 1]
    A = np.eye(n) - P
    A[:, 0] = 1.0  # the unknown in slot 0 is g, h[0] is pinned at 0
    h = np.linalg.solve(A, prob.period_cost(n - 1))
    h[0] = 0.0
    return np.array([[leftover[y, :y + 1] @ h[np.arange(y + 1) + z] if y + z < n else np.inf for z in range(n)]
                     for y in range(n)])


@pytest.mark.parametrize("penalty, label", [(4.0, CappedBaseStock(12, 6)), (39.0, CappedBaseStock(16, 9))])
def test_simulated_improvement_matches_exact_policy_improvement(penalty, label):
    """L = 1 from the best capped base-stock policy: every order the rollouts change is an exact
    improvement (lower Q under the policy's own relative values), every improvement by one unit
    worth more than 0.03 is found, and the optimal policy is left as it is."""
    prob = problem(1, penalty)
    states = StateSpace.build(1, prob.ip_bound).states
    current = label(states)
    q = exact_q_one_period_lead(prob, current)
    rows = np.arange(len(states))
    new = improved_orders(prob, states, label, LearnedConfig(), np.random.default_rng(0))
    moved = new != current
    assert moved.any()
    assert (q[rows, new] < q[rows, current])[moved].all()
    neighbours = np.stack([q[rows, np.maximum(current - 1, 0)], q[rows, current + 1]], axis=1).min(axis=1)
    assert moved[neighbours < q[rows, current] - 0.03].all()
    optimum = solve_optimal(prob)
    same = improved_orders(prob, states, optimum.policy, LearnedConfig(), np.random.default_rng(0))
    np.testing.assert_array_equal(same, optimum.orders)


@pytest.mark.parametrize("cheaper", [True, False])
def test_a_round_is_kept_only_when_the_simulation_finds_it_cheaper(monkeypatch, cheaper):
    prob = problem(1, 4.0)
    states = StateSpace.build(1, prob.ip_bound).states
    weights = torch.full((len(states),), 1.0 / len(states), dtype=torch.float64)
    model = build_model(network_config(prob, TINY), grid_size=prob.ip_bound + 1, seed=0)
    generator = torch.Generator().manual_seed(0)
    sign = -1.0 if cheaper else 1.0
    monkeypatch.setattr(learned, "compare_policies", lambda problem, reference, candidates, **kw: [
        Comparison(sign * (i + 1), 0.1, 10, 10) for i, _ in enumerate(candidates)])
    with learned.torch_threads(1):  # as in training: more threads only contend at this size
        supervised(model, prob, states, label_targets(prob, states, np.full(len(states), 3), 1.0), weights, 20,
                   3e-3, TINY, generator)  # orders near 3 everywhere: far from optimal, so some orders change
        before = [p.detach().clone() for p in model.parameters()]
        kept, log = policy_iteration(model, prob, states, weights, TINY, generator, np.random.default_rng(0))
    assert log[0]["changed"] > 0
    for a, b in zip(model.parameters(), before):  # the network handed in is never modified
        assert torch.equal(a, b)
    if cheaper:
        assert kept is not model and log[0]["kept"] == "relabelled"  # the cheapest of the two fits
    else:
        assert kept is model and log[0]["kept"] is None


def test_training_is_seeded():
    prob = problem(1, 4.0)
    label = CappedBaseStock(12, 6)
    first = train_learned(prob, label, TINY, seed=5)
    second = train_learned(prob, label, TINY, seed=5)
    states = StateSpace.build(1, prob.ip_bound).states
    np.testing.assert_array_equal(first(states), second(states))
    for a, b in zip(first.model.parameters(), second.model.parameters()):
        assert torch.equal(a, b)
    assert first.log["pretrain_ce"] == second.log["pretrain_ce"]


def test_a_horizon_within_the_lead_time_is_refused():
    with pytest.raises(InputError, match="horizon"):
        train_learned(problem(3, 4.0), CappedBaseStock(20, 5), TINY.model_copy(update={"horizon": 3}), seed=0)


@pytest.mark.slow
def test_learned_policy_is_near_the_optimum_and_below_every_heuristic():
    """The default training on L = 1, p = 4, evaluated exactly: within 1% of the optimum, never
    below it beyond the solver's certified intervals, and below every heuristic with certified
    bounds. This is the cell where RLOO alone kept its capped base-stock labels (+0.61%, the best
    heuristic); policy iteration must move it."""
    reports = {r.name: r for r in run_policies(problem(1, 4.0), POLICY_NAMES, ClassicConfig(), seed=0,
                                               simulate=False)}
    optimum, learned_report = reports["optimal"].exact, reports["learned"]
    assert learned_report.exact.converged
    assert learned_report.exact.upper >= optimum.lower
    assert learned_report.gap_pct < 1.0
    for name in ("base_stock", "myopic", "capped_base_stock", "constant"):
        assert learned_report.exact.upper < reports[name].exact.lower, name
