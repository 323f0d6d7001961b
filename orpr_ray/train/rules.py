"""How a trained network's targets are read from its distribution, chosen on the validation window.

The network gives a distribution over the inventory-days grid; a decision rule (the mode, or the
q-quantile of RULE_QUANTILES) reads one target from it. The labels are hindsight optima, so how far
above their typical value a decision must sit to pay for the uncertainty depends on the cost model
and the catalogue: the rule is chosen, not fixed. It is chosen by the backtest's own evaluation,
run on the validation window: every unit rolls through ``[val_start, test_start)`` after a warm-up,
deciding at every review day and carrying its stock across days, and the rule of least total cost
(holding + lost-sales penalty) wins. The test window is never looked at.

The network's targets do not depend on the simulated stock, so one forward pass per review point
serves every rule (orpr_ray.sim.scheduled).
"""
from __future__ import annotations

import numpy as np
import torch

from orpr_ray.config import OrprConfig
from orpr_ray.data.dataset import Dataset
from orpr_ray.data.split import TimeSplit
from orpr_ray.model.checkpoint import CheckpointMeta
from orpr_ray.model.features import LabelHistory
from orpr_ray.model.network import OrprNet, target_index
from orpr_ray.model.policy import Policy
from orpr_ray.sim.engine import UnitParams
from orpr_ray.sim.policies import trailing_mean_demand
from orpr_ray.sim.rolling import simulate_rolling, warm_start
from orpr_ray.sim.scheduled import review_points, scheduled_policy

RULE_QUANTILES = (None, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)  # decision rules compared (None = the mode)
BATCH_POINTS = 2048  # review points per forward pass


def rule_name(quantile: float | None) -> str:
    return "mode" if quantile is None else f"quantile_{quantile:g}"


def rolling_rule_costs(model: OrprNet, meta: CheckpointMeta, ds: Dataset, split: TimeSplit, cfg: OrprConfig,
                       history: LabelHistory | None, quantiles: tuple[float | None, ...] = RULE_QUANTILES
                       ) -> dict[float | None, float]:
    """Total cost of the validation window's rolling simulation under each rule of ``quantiles``.

    history: what past labels tell at each review day (only labels whose horizon had ended), as the
    backtest feeds the network; None = unknown (masked).
    """
    params = UnitParams.from_units(ds.units)
    d_hat = trailing_mean_demand(ds.sales, cfg.sim.demand_window_days)
    start = max(0, split.val_start - cfg.sim.warmup_days)
    points = review_points(params, start, split.test_start)
    known = history.lookup(points.unit, points.day) if history is not None else None
    policy = Policy(model, meta)
    panel = policy.panel(ds)
    grid = np.asarray(meta.grid, dtype=np.float64)
    log_probs = np.empty((len(points), len(grid)))
    for lo in range(0, len(points), BATCH_POINTS):
        rows = slice(lo, lo + BATCH_POINTS)
        features = policy.features_from_panel(panel, points.unit[rows], points.day[rows],
                                              None if known is None else known[rows])
        log_probs[rows] = np.log(np.maximum(policy.decide(features).probs, 1e-30))
    costs = {}
    for quantile in quantiles:
        v = grid[target_index(torch.from_numpy(log_probs), quantile).numpy()]
        result = simulate_rolling(scheduled_policy(points, v, d_hat), ds.sales, params, start=start,
                                  record_from=split.val_start, stop=split.test_start,
                                  state=warm_start(params, d_hat, start), holding_rate=cfg.sim.holding_rate_per_day,
                                  penalty_share=cfg.sim.lost_sales_penalty_share)
        costs[quantile] = float(result.metrics.total_cost.sum())
    return costs


def choose_rule(model: OrprNet, meta: CheckpointMeta, ds: Dataset, split: TimeSplit, cfg: OrprConfig,
                history: LabelHistory | None) -> tuple[float | None, dict[str, float]]:
    """The rule of least validation cost (ties go to the earlier rule) and every rule's cost by name."""
    costs = rolling_rule_costs(model, meta, ds, split, cfg, history)
    chosen = min(costs, key=lambda q: (costs[q], RULE_QUANTILES.index(q)))
    return chosen, {rule_name(q): cost for q, cost in costs.items()}
