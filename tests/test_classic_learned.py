"""The learned policy of the classic lost-sales setting (issue 8 item 3): features, mask, rollout
rewards, seeding, and one real training that must land near the exact optimum."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from orpr_ray.classic.benchmark import run_policies
from orpr_ray.classic.config import ClassicConfig, LearnedConfig
from orpr_ray.classic.distributions import parse_demand
from orpr_ray.classic.exact import evaluate_policy, solve_optimal
from orpr_ray.classic.heuristics import CappedBaseStock
from orpr_ray.classic.learned import (
    LearnedPolicy,
    network_config,
    rollout_rewards,
    state_features,
    train_learned,
)
from orpr_ray.classic.model import LostSalesProblem, StateSpace
from orpr_ray.core.errors import InputError
from orpr_ray.model.features import DAY_CHANNELS, OBJECTIVES
from orpr_ray.model.network import build_model

TINY = LearnedConfig(state_replications=8, state_periods=30, pretrain_steps=5, rl_steps=3, batch=8,
                     samples=2, paths=2, horizon=6)


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
def test_learned_policy_gets_within_one_percent_of_the_optimum():
    """The default training on L = 2, p = 9 (capped base-stock labels at +0.42%): the learned
    policy, evaluated exactly, must be within 1% of the optimum and never below it."""
    reports = {r.name: r for r in run_policies(problem(2, 9.0), ["optimal", "learned"], ClassicConfig(),
                                               seed=0, simulate=False)}
    optimum, learned = reports["optimal"].exact, reports["learned"]
    assert learned.exact.converged
    assert learned.exact.cost >= optimum.lower - 1e-9
    assert learned.gap_pct < 1.0
    assert learned.params["label_policy"] == {"S": 19, "r": 6}
