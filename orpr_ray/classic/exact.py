"""Exact long-run average cost: the optimum by relative value iteration, any policy by evaluation.

Both run the same iteration on the finite set {IP <= ip_max} (model.StateSpace):

    (T h)(x) = C(y) + min_z E h(next(x, z, D))     (the optimum)
    (T h)(x) = C(y) +       E h(next(x, pi(x), D))  (a policy pi)

with C the expected period cost. For any h, min_x (T h - h)(x) <= g <= max_x (T h - h)(x)
(Odoni's bounds, valid for a unichain model/policy), so every result carries a certified interval
and iteration stops when it is narrower than the tolerance. An aperiodicity step
``h <- h + (1 - APERIODICITY) (T h - h)`` keeps periodic chains (deterministic demand) converging
without moving g.

Demand is never truncated: the next state depends on D only through the leftover (y - D)^+,
whose law is one row of ``LostSalesProblem.leftover_matrix`` (all of D >= y lumps into 0).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from orpr_ray.classic.model import LostSalesProblem, Policy, StateSpace, TablePolicy, orders_of, successor
from orpr_ray.core.errors import InputError

APERIODICITY = 0.05  # share of the old h kept each step: g is unchanged, periodic chains converge


@dataclass(frozen=True)
class ExactResult:
    """Long-run average cost of one policy (or the optimum) with its certified bounds."""

    cost: float
    lower: float
    upper: float
    converged: bool
    iterations: int
    states: int
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, eq=False)
class OptimalSolution:
    """The optimum on {IP <= space.bound}: cost, one optimal order per state, relative values."""

    result: ExactResult
    space: StateSpace
    orders: np.ndarray  # int64 (len(space),), an optimal order per state (the smallest on exact ties)
    bias: np.ndarray  # float64 (len(space),), relative values h with h[state 0] = 0

    @property
    def policy(self) -> TablePolicy:
        return TablePolicy(self.space, self.orders)


class StateSpaceTooLarge(InputError):
    """The instance is beyond the exact solver's size limit (evaluate it by simulation)."""


def check_size(states: int, max_states: int, what: str) -> None:
    if states > max_states:
        raise StateSpaceTooLarge(f"{what} needs {states:,} states, more than the limit of "
                                 f"{max_states:,} (classic.max_exact_states); evaluate by simulation instead")


def relative_value_iteration(bellman: Callable[[np.ndarray], np.ndarray], n: int, *, tolerance: float,
                             max_iterations: int) -> tuple[np.ndarray, float, float, bool, int]:
    """Iterate h <- h + (1 - APERIODICITY)(T h - h), pinned at h[0] = 0, until the bounds meet.

    ``bellman``: h (n,) -> T h (n,). ``tolerance`` is relative to the cost (absolute below cost 1).
    Returns (h, lower, upper, converged, iterations).
    """
    h = np.zeros(n)
    lower, upper = -math.inf, math.inf
    for iteration in range(1, max_iterations + 1):
        diff = bellman(h) - h
        lower, upper = float(diff.min()), float(diff.max())
        if upper - lower <= tolerance * max(1.0, abs(upper + lower) / 2):
            return h, lower, upper, True, iteration
        h += (1.0 - APERIODICITY) * diff
        h -= h[0]
    return h, lower, upper, False, max_iterations


def _result(lower: float, upper: float, converged: bool, iterations: int, states: int,
            started: float) -> ExactResult:
    return ExactResult((lower + upper) / 2, lower, upper, converged, iterations, states,
                       time.perf_counter() - started)


class _OptimalBellman:
    """T h with the minimisation over orders, vectorised through post-decision values.

    W(y, p) = sum_j B[y, j] h(j + p_0, p_1, ...) is the expected next value of post-decision state
    (y, p), p = (q_1, ..., q_{L-1}, z). For all p with the same sum r, y runs over 0..bound - r, so
    W of that group is one matrix product ``h[gather_r] @ B[:m, :m].T`` (m = bound - r + 1).
    The minimum over z then reads W at ``action_index`` (n, bound + 1), padded with an
    infinite entry where IP + z would exceed the bound.
    """

    def __init__(self, problem: LostSalesProblem, space: StateSpace):
        bound, dim = space.bound, space.dim
        self.cost = problem.period_cost(bound)[space.states[:, 0]]  # (n,)
        self.leftover_t = problem.leftover_matrix(bound).T.copy()  # (bound + 1, bound + 1), [j, y]
        rests = StateSpace.build(dim, bound)  # every p = (q_1..q_{L-1}, z) with sum <= bound
        rest_sum = rests.inventory_position
        self.groups: list[tuple[np.ndarray, int]] = []  # (gather (n_r, m) into space, m) per r
        offset = np.zeros(bound + 2, dtype=np.int64)  # where each group's W starts in the flat W
        rank = np.zeros(len(rests), dtype=np.int64)  # position of p inside its group
        for r in range(bound + 1):
            members = np.flatnonzero(rest_sum == r)
            m = bound - r + 1
            rank[members] = np.arange(len(members))
            post = np.column_stack([np.zeros(len(members) * m, dtype=np.int64),
                                    np.repeat(rests.states[members], m, axis=0)])
            leftover = np.tile(np.arange(m), len(members))
            self.groups.append((space.index_of(successor(post, leftover)).reshape(len(members), m), m))
            offset[r + 1] = offset[r] + len(members) * m
        self.n_post = int(offset[-1])
        self.action_index = np.full((len(space), bound + 1), self.n_post, dtype=np.int64)
        ip = space.inventory_position
        for z in range(bound + 1):
            rows = np.flatnonzero(ip + z <= bound)
            rest = np.column_stack([space.states[rows, 1:], np.full(len(rows), z)])
            k = rests.index_of(rest)
            r = rest_sum[k]
            self.action_index[rows, z] = offset[r] + rank[k] * (bound - r + 1) + space.states[rows, 0]

    def post_values(self, h: np.ndarray) -> np.ndarray:
        """W for every post-decision state, plus a trailing +inf for infeasible orders. (n_post + 1,)"""
        w = np.empty(self.n_post + 1)
        w[-1] = math.inf
        start = 0
        for gather, m in self.groups:
            block = h[gather] @ self.leftover_t[:m, :m]  # (n_r, m): [p, y]
            w[start:start + block.size] = block.ravel()
            start += block.size
        return w

    def __call__(self, h: np.ndarray) -> np.ndarray:
        return self.cost + self.post_values(h)[self.action_index].min(axis=1)

    def best_orders(self, h: np.ndarray) -> np.ndarray:
        return self.post_values(h)[self.action_index].argmin(axis=1).astype(np.int64)


def solve_optimal(problem: LostSalesProblem, *, ip_max: int | None = None, tolerance: float = 1e-7,
                  max_iterations: int = 20_000, max_states: int = 3_000_000) -> OptimalSolution:
    """Optimal average cost and policy by relative value iteration on {IP <= ip_max}.

    ip_max defaults to ``problem.ip_bound`` (S-bar), which keeps an optimal policy (docs/CLASSIC.md).
    """
    started = time.perf_counter()
    ip_max = problem.ip_bound if ip_max is None else int(ip_max)
    check_size(StateSpace.size(problem.lead_time + 1, ip_max), max_states,
               "the exact optimum (post-decision states)")
    space = StateSpace.build(problem.lead_time, ip_max)
    bellman = _OptimalBellman(problem, space)
    h, lower, upper, converged, iterations = relative_value_iteration(
        bellman, len(space), tolerance=tolerance, max_iterations=max_iterations)
    result = _result(lower, upper, converged, iterations, len(space), started)
    return OptimalSolution(result, space, bellman.best_orders(h), h)


class _PolicyBellman:
    """T h for a fixed policy, on the states it reaches from the empty system.

    The chain is explored breadth-first from state 0 (nothing on hand or on order): each new layer
    of states gets its orders from the policy and one transition per leftover j = 0..y with
    probability B[y, j] > 0. Only reached states are kept, so a policy whose pipeline stays small
    (a capped or myopic order) costs far less than the whole set {IP <= ip_max}. For a unichain
    policy the reached set holds its recurrent class, so g and Odoni's bounds are unchanged.
    rows, cols, probs: the sparse transitions between reached states (renumbered 0..n-1).
    """

    def __init__(self, problem: LostSalesProblem, space: StateSpace, policy: Policy):
        leftover_law = problem.leftover_matrix(space.bound)
        reached = np.zeros(len(space), dtype=bool)
        frontier = np.zeros(1, dtype=np.int64)
        reached[frontier] = True
        parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        while len(frontier):
            states = space.states[frontier]
            post = np.column_stack([states, _checked_orders(policy, states, space.bound)])
            outcomes = states[:, 0] + 1
            source = np.repeat(np.arange(len(frontier)), outcomes)
            leftover = np.arange(outcomes.sum()) - np.repeat(np.cumsum(outcomes) - outcomes, outcomes)
            probs = leftover_law[states[source, 0], leftover]
            possible = probs > 0
            source, leftover, probs = source[possible], leftover[possible], probs[possible]
            cols = space.index_of(successor(post[source], leftover))
            parts.append((frontier[source], cols, probs))
            frontier = np.unique(cols[~reached[cols]])
            reached[frontier] = True
        renumber = np.cumsum(reached) - 1  # old row -> row among reached states
        self.rows = renumber[np.concatenate([p[0] for p in parts])]
        self.cols = renumber[np.concatenate([p[1] for p in parts])]
        self.probs = np.concatenate([p[2] for p in parts])
        self.n = int(reached.sum())
        self.cost = problem.period_cost(space.bound)[space.states[reached, 0]]

    def __call__(self, h: np.ndarray) -> np.ndarray:
        return self.cost + np.bincount(self.rows, weights=self.probs * h[self.cols], minlength=self.n)


def _checked_orders(policy: Policy, states: np.ndarray, ip_max: int) -> np.ndarray:
    """The policy's orders, refusing any that would leave {IP <= ip_max}: the cost of a policy
    clipped to a finite set is not the policy's cost."""
    orders = orders_of(policy, states)
    after = states.sum(axis=1) + orders
    if after.max(initial=0) > ip_max:
        row = int(np.argmax(after))
        raise InputError(f"the policy raises the inventory position to {int(after[row])} > ip_max={ip_max}; "
                         "evaluate it with a larger ip_max",
                         where=f"state {tuple(int(v) for v in states[row])}")
    return orders


def evaluate_policy(problem: LostSalesProblem, policy: Policy, *, ip_max: int | None = None, tolerance: float = 1e-7, max_iterations: int = 20_000,
                    max_states: int = 3_000_000) -> ExactResult:
    """Exact average cost of a stationary policy: any callable state -> order (a TablePolicy too).

    The evaluation works inside {IP <= ip_max}; ip_max defaults to the policy's own ``ip_bound``
    when it declares one, else to ``problem.ip_bound``. A policy that orders above ip_max is
    refused, never clipped. ``states`` of the result counts the states reached from the empty
    system.
    """
    started = time.perf_counter()
    if ip_max is None:
        ip_max = getattr(policy, "ip_bound", None)
        ip_max = problem.ip_bound if ip_max is None else int(ip_max)
    check_size(StateSpace.size(problem.lead_time, ip_max), max_states, "this exact evaluation")
    bellman = _PolicyBellman(problem, StateSpace.build(problem.lead_time, ip_max), policy)
    _, lower, upper, converged, iterations = relative_value_iteration(
        bellman, bellman.n, tolerance=tolerance, max_iterations=max_iterations)
    return _result(lower, upper, converged, iterations, bellman.n, started)
