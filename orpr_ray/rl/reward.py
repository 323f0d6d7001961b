"""The hybrid reward r = omega * r_rule + (1 - omega) * r_sim (docs/RL.md has the formulas).

- ``rule_reward``: direction-aware agreement with the rule target (the OR label, or an expert's);
- ``pareto_reward``: Pareto comparison of the simulated (stock value, lost-sales value) of an action
  against a reference action from the same state (or, with ``rl.sim_score = "cost"``,
  ``relative_cost_reward``: its relative total-cost saving against the reference);
- ``score_actions``: both for a (B, k) batch of sampled actions, all of them and the reference
  simulated in ONE vectorised call of the labels' replay (``evaluate_decisions``).

Plain numpy; arrays are (B, k) with the state on axis 0 and its samples on axis 1 (as in rloo.py).
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from orpr_ray.config import OrprConfig
from orpr_ray.data.dataset import Dataset
from orpr_ray.label.candidates import evaluate_decisions
from orpr_ray.rl.config import RLConfig
from orpr_ray.sim.engine import GridMetrics

# Outcomes of a Pareto comparison of an action against the reference.
DOMINATED, TRADEOFF, DOMINATES, EQUAL = -1, 0, 1, 2
RULE_FLOOR = -1.0  # r_rule is clipped here (at a penalty of twice the tolerance)
RELATIVE_TOLERANCE = 1e-9  # simulated values this close (relative) count as equal: float noise is no gain


def rule_reward(v: np.ndarray, target: np.ndarray, current: np.ndarray, *, tolerance: float,
                wrong_weight: float) -> np.ndarray:
    """r_rule in [-1, 1]: 1 at the target, 0 at a penalty of ``tolerance`` days, -1 at twice that.

    v (B, k) actions in days; target, current (B,) the rule target and the unit's current cover.
    penalty = |v - target| + wrong_weight * (days v moves from ``current`` against the direction
    from ``current`` to ``target``): when the label says cut stock, raising it costs extra.
    """
    v = np.asarray(v, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)[:, None]
    current = np.asarray(current, dtype=np.float64)[:, None]
    direction = np.sign(target - current)                          # (B, 1): +1 raise, -1 cut, 0 hold
    wrong = np.maximum(0.0, -direction * (v - current))            # (B, k) days moved the wrong way
    penalty = np.abs(v - target) + wrong_weight * wrong
    return np.maximum(1.0 - penalty / tolerance, RULE_FLOOR)


def _sign(delta: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """-1 / 0 / +1 for delta = a - b, with differences within float noise of a and b counted as 0."""
    noise = RELATIVE_TOLERANCE * (np.abs(a) + np.abs(b)) + 1e-12
    return np.where(np.abs(delta) <= noise, 0, np.sign(delta)).astype(np.int8)


def pareto_outcome(sample: GridMetrics, reference: GridMetrics) -> np.ndarray:
    """(B, k) int8: DOMINATES / DOMINATED / EQUAL / TRADEOFF on (stock value, lost-sales value),
    both to be minimised; sample (B, k), reference (B, 1)."""
    stock = _sign(sample.stock_value - reference.stock_value, sample.stock_value, reference.stock_value)
    lost = _sign(sample.lost_value - reference.lost_value, sample.lost_value, reference.lost_value)
    out = np.full(stock.shape, TRADEOFF, dtype=np.int8)
    out[(stock <= 0) & (lost <= 0)] = DOMINATES
    out[(stock >= 0) & (lost >= 0)] = DOMINATED
    out[(stock == 0) & (lost == 0)] = EQUAL
    return out


def pareto_reward(sample: GridMetrics, reference: GridMetrics, *, tradeoff_scale: float) -> np.ndarray:
    """r_sim in [-1, 1], (B, k): +1 dominates the reference, -1 dominated, 0 equal; a trade-off scores
    ``tradeoff_scale * (gain - loss) / (gain + loss)`` with gain / loss the holding and lost-sales
    penalty costs it saves / adds: bounded, free of the unit's scale, positive when it is cheaper."""
    outcome = pareto_outcome(sample, reference)
    d_holding = sample.holding_cost - reference.holding_cost            # (B, k)
    d_penalty = sample.penalty_cost - reference.penalty_cost
    gain = np.maximum(-d_holding, 0.0) + np.maximum(-d_penalty, 0.0)
    loss = np.maximum(d_holding, 0.0) + np.maximum(d_penalty, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        tradeoff = np.where(gain + loss > 0, (gain - loss) / (gain + loss), 0.0)
    score = {DOMINATES: 1.0, DOMINATED: -1.0, EQUAL: 0.0}
    reward = tradeoff_scale * tradeoff
    for code, value in score.items():
        reward = np.where(outcome == code, value, reward)
    return reward


def relative_cost_reward(sample: GridMetrics, reference: GridMetrics) -> np.ndarray:
    """r_sim in [-1, 1], (B, k): the relative total-cost saving against the reference,
    ``(c_ref - c) / (c_ref + c)`` (0 when both cost nothing). Dominating the reference scores > 0 and
    being dominated < 0, as in pareto_reward, but by how much: a slightly dominated action is not
    scored like a stock-out, so the learner follows expected cost, the quantity the backtest scores."""
    cost = sample.holding_cost + sample.penalty_cost
    ref = reference.holding_cost + reference.penalty_cost
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cost + ref > 0, (ref - cost) / (cost + ref), 0.0)


def hybrid_reward(r_rule: np.ndarray, r_sim: np.ndarray, omega: float) -> np.ndarray:
    return omega * r_rule + (1.0 - omega) * r_sim


@dataclass
class Rewards:
    """Rewards of a (B, k) batch of actions and what they were computed from."""

    reward: np.ndarray       # (B, k) hybrid
    rule: np.ndarray         # (B, k)
    sim: np.ndarray          # (B, k)
    outcome: np.ndarray      # (B, k) Pareto outcome vs the reference
    sample: GridMetrics      # (B, k)
    reference: GridMetrics   # (B, 1)

    def stats(self) -> dict[str, float]:
        return {"reward": float(self.reward.mean()), "r_rule": float(self.rule.mean()),
                "r_sim": float(self.sim.mean()), "dominates_rate": float((self.outcome == DOMINATES).mean()),
                "dominated_rate": float((self.outcome == DOMINATED).mean())}


def columns(metrics: GridMetrics, cols: slice) -> GridMetrics:
    """The same metrics restricted to some candidate columns (GridMetrics.rows does rows)."""
    return GridMetrics(**{f.name: getattr(metrics, f.name)[:, cols] for f in fields(GridMetrics) if f.name != "n_days"},
                       n_days=metrics.n_days)


def score_actions(ds: Dataset, unit: np.ndarray, day: np.ndarray, v: np.ndarray, *, target: np.ndarray,
                  current: np.ndarray, reference: np.ndarray, cfg: OrprConfig) -> Rewards:
    """Hybrid rewards of actions v (B, k) in days at decision points (unit, day) (B,).

    target (B,) rule target in days; current (B,) current cover in days; reference (B,) the action
    r_sim compares against, in days. The k samples and the reference are replayed together in one
    ``evaluate_decisions`` call on a (B, k + 1) grid of targets.
    """
    rl: RLConfig = cfg.rl
    grid = np.concatenate([np.asarray(v, dtype=np.float64), np.asarray(reference, dtype=np.float64)[:, None]], axis=1)
    metrics = evaluate_decisions(ds, unit, day, grid, sim=cfg.sim, label=cfg.label)   # (B, k + 1)
    sample, ref = columns(metrics, slice(0, -1)), columns(metrics, slice(-1, None))
    r_rule = rule_reward(v, target, current, tolerance=rl.rule_tolerance_days, wrong_weight=rl.wrong_direction_weight)
    r_sim = (pareto_reward(sample, ref, tradeoff_scale=rl.tradeoff_scale) if rl.sim_score == "pareto"
             else relative_cost_reward(sample, ref))
    return Rewards(reward=hybrid_reward(r_rule, r_sim, rl.omega), rule=r_rule, sim=r_sim,
                   outcome=pareto_outcome(sample, ref), sample=sample, reference=ref)
