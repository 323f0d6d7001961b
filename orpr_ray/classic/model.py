"""The classic lost-sales model: one item, i.i.d. integer demand, lead time L >= 1, lost sales.

Period convention (issue 8; it changes the numbers, so it is defined here once and used everywhere):
    1. the order placed L periods ago arrives and is added to on hand;
    2. a new order ``z >= 0`` is placed;
    3. demand ``D`` is met from on hand, the excess is lost;
    4. cost ``h * (on_hand - D)^+ + p * (D - on_hand)^+``.
No ordering or purchase cost; the objective is the long-run average cost per period.

State (at decision time, after the arrival): ``x = (y, q_1, ..., q_{L-1})``, int64 shape (L,):
``y`` on hand, ``q_k`` the order that arrives k periods from now. After the decision the
*post-decision* state is ``(y, q_1, ..., q_{L-1}, z)`` (L + 1 entries) and the next state is
``((y - D)^+ + q_1, q_2, ..., q_{L-1}, z)`` (for L = 1: ``((y - D)^+ + z,)``).
The inventory position is ``IP(x) = y + q_1 + ... + q_{L-1}`` (excluding the new order).

A *policy* is any callable mapping states, int64 (n, L), to orders, integer (n,). A policy may
declare ``ip_bound``: an inventory position it never orders above, so {IP <= ip_bound} is closed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Protocol

import numpy as np

from orpr_ray.classic.distributions import DemandDistribution
from orpr_ray.core.errors import InputError


class Policy(Protocol):
    def __call__(self, states: np.ndarray) -> np.ndarray:
        """states: int64 (n, L) -> orders: integer (n,), >= 0."""


@dataclass(frozen=True, eq=False)
class LostSalesProblem:
    demand: DemandDistribution
    lead_time: int
    holding: float
    penalty: float

    def __post_init__(self):
        if not (isinstance(self.lead_time, (int, np.integer)) and self.lead_time >= 1):
            raise InputError(f"must be an integer >= 1 (got {self.lead_time!r})", field="lead_time")
        for name in ("holding", "penalty"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise InputError(f"must be a finite number > 0 (got {value!r})", field=name)

    @property
    def critical_ratio(self) -> float:
        return self.penalty / (self.penalty + self.holding)

    @cached_property
    def ip_bound(self) -> int:
        """S-bar: the (L + 1)-period newsvendor fractile at p / (p + h).

        Morton (1971), restated by Zipkin (2008, "Old and new methods for lost-sales inventory
        systems", section 3): some optimal policy never raises the inventory position after
        ordering above S-bar, so {IP <= S-bar} is closed under it and the exact solver can
        restrict itself to that finite set (docs/CLASSIC.md; tests check that a larger bound does
        not change the optimum).
        """
        return self.demand.sum_of(self.lead_time + 1).quantile(self.critical_ratio)

    @cached_property
    def newsvendor_level(self) -> int:
        """The single-period fractile: the on-hand level minimising ``period_cost``."""
        return self.demand.quantile(self.critical_ratio)

    def period_cost(self, n: int) -> np.ndarray:
        """Expected cost of a period entered with on hand y, for y = 0..n. float64 (n + 1,).

        E(y - D)^+ = sum_{k < y} P(D <= k) and E(D - y)^+ = E(D) - y + E(y - D)^+.
        """
        cdf = self.demand.cdf_upto(n)
        over = np.concatenate([[0.0], np.cumsum(cdf[:-1])])  # E(y - D)^+
        short = self.demand.mean - np.arange(n + 1) + over  # E(D - y)^+
        return self.holding * over + self.penalty * np.maximum(short, 0.0)

    def leftover_matrix(self, n: int) -> np.ndarray:
        """``B[y, j] = P((y - D)^+ = j)`` for y, j = 0..n: float64 (n + 1, n + 1), lower triangular.

        j >= 1 needs D = y - j exactly; j = 0 collects every D >= y (the lost-sales tail), so no
        demand truncation is involved.
        """
        pmf = self.demand.pmf_upto(n)
        y = np.arange(n + 1)[:, None]
        j = np.arange(n + 1)[None, :]
        d = y - j
        out = np.where((d >= 0) & (j >= 1), pmf[np.clip(d, 0, n)], 0.0)
        out[:, 0] = np.maximum(1.0 - out[:, 1:].sum(axis=1), 0.0)
        return out

    def describe(self) -> dict:
        return {"demand": self.demand.describe(), "lead_time": int(self.lead_time),
                "holding": self.holding, "penalty": self.penalty,
                "critical_ratio": self.critical_ratio, "ip_bound": self.ip_bound}


def successor(post: np.ndarray, leftover: np.ndarray) -> np.ndarray:
    """The next state. post: int (n, L + 1) = (y, q_1..q_{L-1}, z); leftover: (n,) = (y - D)^+.

    Returns int64 (n, L) = (leftover + q_1, q_2, ..., z): the oldest order arrives on top of what
    is left. The one place the transition is written; the solver and the simulator both call it.
    """
    nxt = np.array(post[:, 1:], dtype=np.int64, copy=True)
    nxt[:, 0] += leftover
    return nxt


@dataclass(frozen=True, eq=False)
class StateSpace:
    """All states of ``dim`` non-negative integers with sum <= ``bound``, lexicographically sorted.

    states: int64 (n, dim); keys: int64 (n,), the mixed-radix code of each row (radix bound + 1),
    increasing, so ``index_of`` is a binary search and no dense (bound + 1)^dim array is needed.
    """

    dim: int
    bound: int
    states: np.ndarray
    keys: np.ndarray

    @staticmethod
    def size(dim: int, bound: int) -> int:
        return math.comb(bound + dim, dim)

    @classmethod
    def build(cls, dim: int, bound: int) -> "StateSpace":
        if (bound + 1) ** dim >= 2 ** 62:
            raise InputError(f"state space of dimension {dim} with bound {bound} is too large to index")
        points = np.zeros((1, 0), dtype=np.int64)
        for _ in range(dim):
            # Each row is extended by every value its remaining budget allows, in increasing
            # order, so the result stays lexicographically sorted.
            room = bound - points.sum(axis=1) + 1
            starts = np.cumsum(room) - room
            value = np.arange(room.sum()) - np.repeat(starts, room)
            points = np.column_stack([np.repeat(points, room, axis=0), value])
        return cls(dim, bound, points, _keys(points, bound))

    def __len__(self) -> int:
        return len(self.states)

    @property
    def inventory_position(self) -> np.ndarray:
        return self.states.sum(axis=1)

    def index_of(self, states: np.ndarray, *, strict: bool = True) -> np.ndarray:
        """Row of each state, int64 (n,); -1 for states outside (an InputError if ``strict``)."""
        states = np.asarray(states, dtype=np.int64).reshape(-1, self.dim)
        inside = (states >= 0).all(axis=1) & (states.sum(axis=1) <= self.bound)
        out = np.full(len(states), -1, dtype=np.int64)
        out[inside] = np.searchsorted(self.keys, _keys(states[inside], self.bound))
        if strict and not inside.all():
            bad = states[int(np.flatnonzero(~inside)[0])]
            raise InputError(f"state {tuple(int(v) for v in bad)} is outside the state space "
                             f"(entries >= 0 summing to at most {self.bound})")
        return out


def _keys(states: np.ndarray, bound: int) -> np.ndarray:
    radix = bound + 1
    weights = radix ** np.arange(states.shape[1] - 1, -1, -1, dtype=np.int64)
    return states @ weights


def orders_of(policy: Policy, states: np.ndarray) -> np.ndarray:
    """Call a policy and check what it returns: int64 (n,), integer-valued, >= 0."""
    raw = np.asarray(policy(states))
    if raw.shape != (len(states),):
        raise InputError(f"policy returned shape {raw.shape} for {len(states)} states; expected ({len(states)},)")
    if raw.dtype.kind == "f" and not np.all(np.isfinite(raw) & (raw == np.round(raw))):
        raise InputError("policy returned a non-integer order")
    orders = raw.astype(np.int64)
    if orders.size and orders.min() < 0:
        row = int(np.argmin(orders))
        raise InputError(f"policy ordered {int(orders[row])} < 0",
                         where=f"state {tuple(int(v) for v in states[row])}")
    return orders


@dataclass(frozen=True, eq=False)
class TablePolicy:
    """A policy given as one order per state of a StateSpace (e.g. the optimal policy)."""

    space: StateSpace
    orders: np.ndarray  # int64 (len(space),)

    @property
    def ip_bound(self) -> int:
        return self.space.bound

    def __call__(self, states: np.ndarray) -> np.ndarray:
        return self.orders[self.space.index_of(states)]
