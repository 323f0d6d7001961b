"""Long simulation of any policy, vectorised over independent replications, with a confidence
interval on the long-run average cost.

``replications`` independent systems run side by side (numpy arrays over replications; the only
Python loop is over periods). Each starts empty, runs ``warmup`` periods that are discarded, then
``periods`` periods that are averaged. The replication means are independent and identically
distributed, so their mean and standard error give a normal-approximation interval (hence at least
MIN_REPLICATIONS replications). Demand comes from one seeded numpy Generator and does not depend on
the policy: two policies simulated with the same seed see the same demand (common random numbers).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from statistics import NormalDist

import numpy as np

from orpr_ray.classic.config import MIN_REPLICATIONS
from orpr_ray.classic.model import LostSalesProblem, Policy, orders_of, successor
from orpr_ray.core.errors import InputError

DEMAND_BLOCK = 1024  # periods of demand drawn per Generator call


@dataclass(frozen=True)
class SimulationResult:
    """Average cost per period with a confidence interval, and its parts (all per period)."""

    mean: float
    half_width: float
    confidence: float
    holding: float
    penalty: float
    fill_rate: float
    replications: int
    periods: int
    warmup: int
    seed: int
    seconds: float

    @property
    def ci_low(self) -> float:
        return self.mean - self.half_width

    @property
    def ci_high(self) -> float:
        return self.mean + self.half_width

    def to_dict(self) -> dict:
        return {**asdict(self), "ci_low": self.ci_low, "ci_high": self.ci_high}


def simulate_policy(problem: LostSalesProblem, policy: Policy, *,
                    periods: int = 20_000, replications: int = 100, warmup: int = 500, seed: int = 0,
                    confidence: float = 0.95) -> SimulationResult:
    """Simulate ``policy`` (states int64 (R, L) -> orders (R,)) under the model's period convention."""
    if replications < MIN_REPLICATIONS:
        raise InputError(f"need at least {MIN_REPLICATIONS} replications for a confidence interval "
                         f"(got {replications})", field="classic.sim_replications")
    if periods < 1 or warmup < 0:
        raise InputError(f"periods must be >= 1 and warmup >= 0 (got {periods}, {warmup})",
                         field="classic.sim_periods")
    if not 0 < confidence < 1:
        raise InputError(f"must be in (0, 1) (got {confidence})", field="classic.confidence")
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    states = np.zeros((replications, problem.lead_time), dtype=np.int64)  # empty system
    holding = np.zeros(replications)  # per replication, summed over measured periods
    lost = np.zeros(replications)
    demanded = np.zeros(replications)
    total = warmup + periods
    for block_start in range(0, total, DEMAND_BLOCK):
        block = problem.demand.sample(rng, (min(DEMAND_BLOCK, total - block_start), replications))
        for offset, demand in enumerate(block):  # demand: (R,)
            on_hand = states[:, 0]
            post = np.column_stack([states, orders_of(policy, states)])
            if block_start + offset >= warmup:
                holding += np.maximum(on_hand - demand, 0)
                lost += np.maximum(demand - on_hand, 0)
                demanded += demand
            states = successor(post, np.maximum(on_hand - demand, 0))
    per_replication = (problem.holding * holding + problem.penalty * lost) / periods  # (R,)
    mean = float(per_replication.mean())
    stderr = float(per_replication.std(ddof=1)) / math.sqrt(replications)
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    total_demand = float(demanded.sum())
    return SimulationResult(
        mean=mean, half_width=z * stderr, confidence=confidence,
        holding=problem.holding * float(holding.sum()) / (periods * replications),
        penalty=problem.penalty * float(lost.sum()) / (periods * replications),
        fill_rate=1.0 - float(lost.sum()) / total_demand if total_demand > 0 else 1.0,
        replications=replications, periods=periods, warmup=warmup, seed=seed,
        seconds=time.perf_counter() - started)


@dataclass(frozen=True)
class Comparison:
    """Average cost per period of a candidate minus the reference's, paired over common demand paths."""

    difference: float
    stderr: float
    replications: int
    periods: int


def compare_policies(problem: LostSalesProblem, reference: Policy, candidates: list[Policy], *, periods: int,
                     replications: int, warmup: int, seed: int) -> list[Comparison]:
    """Simulate the reference and each candidate on the same demand paths (common random numbers);
    return, per candidate, the mean and standard error of its average cost minus the reference's.

    Each period adds the expected cost C(y) of the on hand y (same mean as the realised cost, less
    noise). Replication r of every policy sees the same demand, so most of the demand noise
    cancels in the paired differences, whose replication means are i.i.d.
    """
    if replications < MIN_REPLICATIONS:
        raise InputError(f"need at least {MIN_REPLICATIONS} replications for a standard error "
                         f"(got {replications})", field="replications")
    policies = [reference, *candidates]
    rng = np.random.default_rng(seed)
    states = np.zeros((len(policies), replications, problem.lead_time), dtype=np.int64)  # [policy, replication]
    total = np.zeros((len(policies), replications))
    cost = problem.period_cost(0)
    for t in range(warmup + periods):
        on_hand = states[:, :, 0]  # (P, R)
        if t >= warmup:
            if on_hand.max() >= len(cost):  # on hand has no bound for a policy without ip_bound
                cost = problem.period_cost(2 * int(on_hand.max()))
            total += cost[on_hand]
        orders = np.stack([orders_of(policy, block) for policy, block in zip(policies, states)])  # (P, R)
        demand = problem.demand.sample(rng, replications)  # shared by every policy
        post = np.concatenate([states, orders[:, :, None]], axis=2).reshape(len(policies) * replications, -1)
        states = successor(post, np.maximum(on_hand - demand, 0).reshape(-1)).reshape(states.shape)
    differences = (total[1:] - total[0]) / periods  # (candidates, R)
    return [Comparison(float(d.mean()), float(d.std(ddof=1)) / math.sqrt(replications), replications, periods)
            for d in differences]
