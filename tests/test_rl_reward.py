"""The hybrid reward: direction-aware rule reward, Pareto simulation reward, one vectorised replay."""
from __future__ import annotations

import numpy as np
import pytest
from rl_helpers import make_world

from orpr_ray.label.candidates import evaluate_decisions
from orpr_ray.rl.reward import (DOMINATED, DOMINATES, EQUAL, TRADEOFF, hybrid_reward, pareto_outcome, pareto_reward,
                                relative_cost_reward, rule_reward, score_actions)
from orpr_ray.sim.engine import GridMetrics


@pytest.fixture(scope="module")
def world():
    return make_world()


def rule(v, target, current, tolerance=4.0, wrong_weight=1.0):
    return rule_reward(np.array([v], dtype=float), np.array([target]), np.array([current]), tolerance=tolerance,
                       wrong_weight=wrong_weight)[0]


def test_rule_reward_is_one_at_the_label_and_falls_with_the_distance():
    r = rule([6, 7, 8, 10, 14, 30], target=6, current=6)
    assert r[0] == 1.0 and np.all(np.diff(r[:5]) < 0) and r[5] == r[4]  # falls, then floors
    assert r[3] == pytest.approx(0.0)                        # 4 days off = the tolerance
    assert r.min() == -1.0 and np.all((r >= -1) & (r <= 1))  # bounded


def test_rule_reward_is_direction_aware():
    # The label says cut (current 10 -> label 9): overshooting upwards moves stock the wrong way.
    cut = rule([7, 11], target=9, current=10)
    assert cut[0] > cut[1]              # both 2 days off; raising to 11 goes against the cut
    # The label says raise (10 -> 11): a 2-day miss downwards goes against the raise.
    raise_ = rule([13, 9], target=11, current=10)
    assert raise_[0] > raise_[1]
    # Without a direction (label = current) equal misses cost the same; the extra weight is tunable.
    assert rule([8, 12], target=10, current=10).tolist() == pytest.approx(rule([12, 8], target=10, current=10).tolist())
    assert rule([11], target=9, current=10, wrong_weight=0.0)[0] == pytest.approx(rule([7], target=9, current=10)[0])
    # Moving the right way but past the label is an ordinary deviation, not a wrong-direction one.
    assert rule([7], target=9, current=10)[0] == pytest.approx(rule([11], target=9, current=9)[0])


def metrics(stock, lost, holding_rate=0.01, penalty_per_value=0.5) -> GridMetrics:
    stock, lost = np.atleast_2d(np.asarray(stock, float)), np.atleast_2d(np.asarray(lost, float))
    zeros = np.zeros_like(stock)
    return GridMetrics(stock_value=stock, holding_cost=stock * holding_rate, sales_units=zeros, sales_value=zeros,
                       lost_units=lost, lost_value=lost, demand_units=zeros, demand_value=zeros,
                       in_stock_days=zeros, penalty_cost=lost * penalty_per_value, n_days=7)


def test_pareto_cases():
    ref = metrics([[100.0]], [[10.0]])
    sample = metrics([[90.0, 110.0, 100.0, 100.0, 90.0, 50.0, 200.0]],
                     [[10.0, 12.0, 10.0, 8.0, 12.0, 30.0, 5.0]])
    outcome = pareto_outcome(sample, ref)[0]
    assert outcome.tolist() == [DOMINATES, DOMINATED, EQUAL, DOMINATES, TRADEOFF, TRADEOFF, TRADEOFF]
    r = pareto_reward(sample, ref, tradeoff_scale=0.5)[0]
    assert r[:4].tolist() == [1.0, -1.0, 0.0, 1.0]
    # Trade-offs: the cost-weighted gain vs loss, bounded by the scale, positive when cheaper.
    # 90/12: holding -0.1, penalty +1.0 -> (0.1 - 1.0) / 1.1; 50/30: (0.5 - 10) / 10.5; 200/5: (2.5 - 1) / 3.5.
    assert r[4:].tolist() == pytest.approx([0.5 * -0.9 / 1.1, 0.5 * -9.5 / 10.5, 0.5 * 1.5 / 3.5])
    assert np.all(np.abs(r[4:]) < 0.5)


def test_pareto_reward_is_scale_free_and_ignores_float_noise():
    ref = metrics([[100.0]], [[10.0]])
    sample = metrics([[90.0, 130.0]], [[12.0, 4.0]])
    big = pareto_reward(metrics([[9000.0, 13000.0]], [[1200.0, 400.0]]), metrics([[10000.0]], [[1000.0]]),
                        tradeoff_scale=0.5)
    assert pareto_reward(sample, ref, tradeoff_scale=0.5) == pytest.approx(big)
    noisy = metrics([[100.0 * (1 + 1e-13)]], [[10.0]])
    assert pareto_outcome(noisy, ref)[0, 0] == EQUAL


def test_relative_cost_reward_follows_the_cost_difference_and_is_bounded():
    ref = metrics([[100.0]], [[10.0]])  # cost 1 + 5 = 6
    sample = metrics([[90.0, 110.0, 100.0, 300.0, 0.0]], [[10.0, 10.5, 10.0, 0.0, 100.0]])
    r = relative_cost_reward(sample, ref)[0]
    cost = np.array([0.9 + 5.0, 1.1 + 5.25, 6.0, 3.0, 50.0])
    assert r.tolist() == pytest.approx(((6.0 - cost) / (6.0 + cost)).tolist())
    assert r[0] > 0 > r[1] and r[2] == 0.0  # dominates, dominated, equal keep their signs
    assert r[1] > r[4] > -1.0  # a slight loss is scored above a stock-out, not alike as in pareto_reward
    assert pareto_reward(sample, ref, tradeoff_scale=0.5)[0, 1] == -1.0
    big = relative_cost_reward(metrics([[9000.0, 11000.0]], [[1000.0, 1050.0]]), metrics([[10000.0]], [[1000.0]]))
    assert big[0] == pytest.approx(relative_cost_reward(metrics([[90.0, 110.0]], [[10.0, 10.5]]), ref)[0])
    nothing = metrics([[0.0]], [[0.0]])
    assert relative_cost_reward(nothing, nothing)[0, 0] == 0.0


def test_hybrid_mixes_linearly():
    r_rule, r_sim = np.array([[1.0, -1.0]]), np.array([[-0.5, 0.5]])
    assert hybrid_reward(r_rule, r_sim, 1.0).tolist() == r_rule.tolist()
    assert hybrid_reward(r_rule, r_sim, 0.0).tolist() == r_sim.tolist()
    assert hybrid_reward(r_rule, r_sim, 0.25)[0].tolist() == pytest.approx([-0.125, 0.125])


def test_score_actions_simulates_every_sample_and_the_reference_in_one_replay(world):
    states = world.job().train.take(np.arange(12))
    grid = np.asarray(world.cfg.label.grid)
    rng = np.random.default_rng(0)
    v = grid[rng.integers(len(grid), size=(12, 3))]
    v[:, 0] = grid[states.label]  # the first sample of every state is the OR label itself
    target = grid[states.target]
    rewards = score_actions(world.ds, states.unit, states.day, v, target=target, current=states.current,
                            reference=target, cfg=world.cfg)
    assert rewards.reward.shape == rewards.rule.shape == rewards.sim.shape == (12, 3)
    omega = world.cfg.rl.omega
    assert rewards.reward == pytest.approx(omega * rewards.rule + (1 - omega) * rewards.sim)
    assert (rewards.rule[:, 0] == 1.0).all() and (rewards.sim[:, 0] == 0.0).all()  # the label vs itself
    # Same metrics as replaying each sample on its own (each starts from its own steady state).
    for j in range(3):
        alone = evaluate_decisions(world.ds, states.unit, states.day, v[:, j:j + 1].astype(float), sim=world.cfg.sim,
                                   label=world.cfg.label)
        assert np.array_equal(alone.stock_value[:, 0], rewards.sample.stock_value[:, j])
        assert np.array_equal(alone.lost_value[:, 0], rewards.sample.lost_value[:, j])
    # More cover than the label never loses more sales, and holds at least as much stock.
    more = np.minimum(v[:, :1] + 5, grid[-1]).astype(float)
    higher = score_actions(world.ds, states.unit, states.day, more, target=target, current=states.current,
                           reference=target, cfg=world.cfg)
    assert (higher.sample.lost_value[:, 0] <= higher.reference.lost_value[:, 0] + 1e-9).all()
    assert (higher.sample.stock_value[:, 0] >= higher.reference.stock_value[:, 0] - 1e-9).all()
