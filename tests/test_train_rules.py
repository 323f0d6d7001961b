"""The decision rule chosen on the validation window by the backtest's own rolling simulation."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from rl_helpers import make_world

from orpr_ray.evaluate.policies import network_targets
from orpr_ray.label.candidates import label_horizon
from orpr_ray.model.checkpoint import build_from_checkpoint, save_checkpoint
from orpr_ray.model.features import LabelHistory
from orpr_ray.sim.engine import UnitParams
from orpr_ray.sim.policies import trailing_mean_demand
from orpr_ray.sim.rolling import simulate_rolling, warm_start
from orpr_ray.sim.scheduled import review_points, scheduled_policy
from orpr_ray.train.rules import RULE_QUANTILES, choose_rule, rolling_rule_costs, rule_name


@pytest.fixture(scope="module")
def world():
    return make_world()


def backtest_cost_on_validation(world, checkpoint_dir, history) -> float:
    """The slow way: the backtest's network targets of a saved checkpoint, rolled over validation."""
    cfg, ds, split = world.cfg, world.ds, world.split
    params = UnitParams.from_units(ds.units)
    d_hat = trailing_mean_demand(ds.sales, cfg.sim.demand_window_days)
    start = max(0, split.val_start - cfg.sim.warmup_days)
    points = review_points(params, start, split.test_start)
    v = network_targets(checkpoint_dir, ds, points, history.lookup(points.unit, points.day), batch_size=97)
    result = simulate_rolling(scheduled_policy(points, v, d_hat), ds.sales, params, start=start,
                              record_from=split.val_start, stop=split.test_start, state=warm_start(params, d_hat, start),
                              holding_rate=cfg.sim.holding_rate_per_day, penalty_share=cfg.sim.lost_sales_penalty_share)
    return float(result.metrics.total_cost.sum())


def test_every_rule_costs_what_the_backtest_of_that_checkpoint_costs_on_validation(world, tmp_path):
    history = LabelHistory(world.labels, label_horizon(world.ds, world.cfg.label))
    model = build_from_checkpoint(world.state, world.meta)
    costs = rolling_rule_costs(model, world.meta, world.ds, world.split, world.cfg, history)
    assert list(costs) == list(RULE_QUANTILES)
    for quantile in (None, 0.6, 0.95):
        folder = tmp_path / rule_name(quantile)
        save_checkpoint(folder, model, dataclasses.replace(world.meta, decision_quantile=quantile))
        assert costs[quantile] == pytest.approx(backtest_cost_on_validation(world, folder, history), rel=1e-9)
    assert len(set(np.round(list(costs.values()), 6))) > 1  # the rules really differ on this network


def test_the_chosen_rule_is_the_cheapest_and_never_looks_at_the_test_window(world):
    history = LabelHistory(world.labels, label_horizon(world.ds, world.cfg.label))
    model = build_from_checkpoint(world.state, world.meta)
    chosen, costs = choose_rule(model, world.meta, world.ds, world.split, world.cfg, history)
    assert costs[rule_name(chosen)] == min(costs.values())
    scrambled = dataclasses.replace(world.ds, sales=world.ds.sales.copy())
    scrambled.sales[:, world.split.test_start:] = 0.0  # the test window's demand is gone
    assert choose_rule(model, world.meta, scrambled, world.split, world.cfg, history) == (chosen, costs)
