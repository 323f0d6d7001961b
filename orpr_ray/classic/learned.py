"""The learned policy of the classic lost-sales setting: the retail OrprNet, OR labels, RLOO, then
policy iteration by simulation.

Same network class and the same RLOO maths as the retail problem (``model.network.OrprNet``,
``rl.rloo``), fed this setting's state instead of a sales history (docs/CLASSIC.md, "Learned
policy"):

- sales stream: one token per pipeline position (on hand y, then q_1..q_{L-1}), divided by the
  demand mean, in the last L history days; the single horizon day carries the inventory position;
- attribute stream: lead time L, review period 1, log p (as log price), log h (as log cost),
  p / (p + h) (as margin), log E[D] (as log sales scale);
- objective stream: alpha = p / (p + h) (the cost ratio); the other objectives are masked;
- decision head: logits over orders 0..S-bar, masked where IP + z > S-bar (the closed set the
  exact solver works on), the order is the mode.

Training, vectorised and seeded (numpy and torch Generators only):

1. states: simulate the best capped base-stock policy (the OR label policy) with a share of
   random order offsets, keep the distinct states and how often each was seen;
2. supervised: cross-entropy of the decision head against the label policy's order per state;
3. RLOO: per state k orders sampled from the network, each scored by a simulated rollout of
   ``horizon`` periods (the sampled order, then the label policy) on demand paths shared by the k
   orders (common random numbers); reward = minus the mean summed expected period cost C(y).
   The expected-value reward is a one-step policy improvement of the label policy estimated by
   simulation;
4. policy iteration: rounds that relabel the training states with the order that simulated
   rollouts of the network's *own* policy find significantly better, refit copies of the network,
   and keep the cheapest copy only when a paired simulation finds it cheaper than the network.

The exact solver is used only to evaluate the result, never to train it.
"""
from __future__ import annotations

import copy
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from statistics import NormalDist

import numpy as np
import torch

from orpr_ray.classic.config import LearnedConfig
from orpr_ray.classic.model import LostSalesProblem, Policy, StateSpace, TablePolicy, orders_of, successor
from orpr_ray.classic.simulate import compare_policies
from orpr_ray.core.errors import InputError
from orpr_ray.model.config import ModelConfig, StreamConfig
from orpr_ray.model.features import BASE_ATTRIBUTES, DAY_CHANNELS, OBJECTIVES, Features
from orpr_ray.model.network import (OrprNet, build_model, count_parameters, kl_to_standard_normal, soft_targets,
                                    target_index)
from orpr_ray.rl.rloo import leave_one_out_advantages, rloo_loss, sample_actions

TABLE_STATES = 200_000  # above this many states in {IP <= S-bar} orders are computed per call
CHUNK = 8_192  # states per forward pass when tabulating
LATENT_WEIGHT = 1e-3  # weight of the latent's KL to N(0, I) in the supervised stage
MASKED = -1e4  # logit of an infeasible order: finite, so KL and log-softmax stay finite
CHECK_WARMUP = 200  # periods from the empty system discarded before two policies are compared
ACCEPT_ERROR = 0.025  # chance that a round no better than the current policy is kept anyway (one-sided)
MIN_RELABEL_PATHS = 8  # paths per candidate at least, so the paired standard error means something
HISTORY_DAYS_MIN = 7  # ModelConfig's smallest history (ge=7); the pipeline fills its last L days
_DAY = {name: i for i, name in enumerate(DAY_CHANNELS)}
_OBJ = {name: i for i, name in enumerate(OBJECTIVES)}


def network_config(problem: LostSalesProblem, cfg: LearnedConfig) -> ModelConfig:
    """A small ModelConfig whose sales stream holds one token per day (patch_days = 1)."""
    stream = StreamConfig(dim=cfg.dim, layers=cfg.layers, heads=cfg.heads, ff_dim=cfg.ff_dim)
    return ModelConfig(history_days=max(HISTORY_DAYS_MIN, problem.lead_time), horizon_days=1, patch_days=1,
                       sales=stream, attributes=stream, objectives=stream, fused_dim=cfg.fused_dim,
                       head_hidden=cfg.head_hidden, latent_dim=cfg.latent_dim, dropout=0.0,
                       category_buckets=1, dc_buckets=1)


def state_features(problem: LostSalesProblem, model_cfg: ModelConfig, states: np.ndarray) -> Features:
    """The network's inputs for states int64 (n, L); see the module docstring for the mapping."""
    n, lead = states.shape
    mean = problem.demand.mean
    history = model_cfg.history_days
    days = np.zeros((n, history + 1, len(DAY_CHANNELS)), dtype=np.float32)  # (n, T + 1, C)
    scaled = states / mean  # (n, L)
    days[:, history - lead:history, _DAY["sales"]] = scaled
    days[:, history - lead:history, _DAY["log_sales"]] = np.log1p(scaled)
    days[:, history - lead:history, _DAY["observed"]] = 1.0
    days[:, history, _DAY["sales"]] = states.sum(axis=1) / mean  # the inventory position
    days[:, history, _DAY["future"]] = 1.0
    ratio = problem.critical_ratio
    attributes = np.array([lead, 1.0, np.log(problem.penalty), np.log(problem.holding), ratio, np.log(mean)],
                          dtype=np.float32)
    assert len(attributes) == len(BASE_ATTRIBUTES)
    objectives = np.zeros(len(OBJECTIVES), dtype=np.float32)
    objectives[_OBJ["alpha"]] = ratio
    objectives_mask = np.arange(len(OBJECTIVES)) == _OBJ["alpha"]
    zeros = torch.zeros(n, dtype=torch.int64)
    return {
        "days": torch.from_numpy(days),
        "category": zeros, "dc": zeros, "extra_categories": torch.zeros((n, 0), dtype=torch.int64),
        "attributes": torch.from_numpy(attributes).expand(n, -1),
        "attributes_mask": torch.ones((n, len(BASE_ATTRIBUTES)), dtype=torch.bool),
        "objectives": torch.from_numpy(objectives).expand(n, -1),
        "objectives_mask": torch.from_numpy(objectives_mask).expand(n, -1),
        "scale": torch.full((n,), mean, dtype=torch.float32),
        "horizon": torch.full((n,), lead + 1, dtype=torch.int64),
    }


def feasible_mask(problem: LostSalesProblem, states: np.ndarray) -> torch.Tensor:
    """(n, S-bar + 1) bool: order z allowed when IP + z <= S-bar (z = 0 always, even above it)."""
    room = problem.ip_bound - states.sum(axis=1)  # (n,)
    orders = np.arange(problem.ip_bound + 1)
    return torch.from_numpy((orders[None, :] <= np.maximum(room, 0)[:, None]))


def masked_outputs(model: OrprNet, problem: LostSalesProblem, states: np.ndarray) -> dict[str, torch.Tensor]:
    """The network's outputs with the logits (n, S-bar + 1) of infeasible orders masked."""
    out = model(state_features(problem, model.cfg, states))
    out["logits"] = out["logits"].masked_fill(~feasible_mask(problem, states), MASKED)
    return out


def rollout_rewards(problem: LostSalesProblem, states: np.ndarray, actions: np.ndarray, follow: Policy, *,
                    horizon: int, paths: int, rng: np.random.Generator) -> np.ndarray:
    """Minus the mean over paths of ``rollout_costs``: states (B, L), actions (B, k) -> (B, k)."""
    return -rollout_costs(problem, states, actions, follow, horizon=horizon, paths=paths, rng=rng).mean(axis=2)


def rollout_costs(problem: LostSalesProblem, states: np.ndarray, actions: np.ndarray, follow: Policy, *,
                  horizon: int, paths: int, rng: np.random.Generator) -> np.ndarray:
    """The expected-period-cost sum of ``horizon`` simulated periods, per demand path.

    states (B, L), actions (B, k) -> (B, k, paths). Period 0 orders the action, later periods ``follow``.
    The B x k x paths systems run side by side; the k actions of a state share its demand paths
    (common random numbers), so their rewards differ only through the actions. Each period adds
    C(y), the expected cost of its on hand y (not the realised cost: same mean, less noise).
    """
    batch, k = actions.shape
    systems = np.repeat(states, k * paths, axis=0)  # (B * k * paths, L), ordered [state, action, path]
    first = np.repeat(actions.reshape(-1), paths)  # (B * k * paths,)
    demand = problem.demand.sample(rng, (horizon, batch, 1, paths))  # broadcast over the k actions
    top = int(max(states.sum(axis=1).max() + actions.max(), getattr(follow, "ip_bound", 0), problem.ip_bound))
    cost = problem.period_cost(top)  # on hand never exceeds max(IP + first order, follow's level)
    total = np.zeros(len(systems))
    for t in range(horizon):
        on_hand = systems[:, 0]
        total += cost[on_hand]
        orders = first if t == 0 else orders_of(follow, systems)
        d = np.broadcast_to(demand[t], (batch, k, paths)).reshape(-1)
        systems = successor(np.column_stack([systems, orders]), np.maximum(on_hand - d, 0))
    return total.reshape(batch, k, paths)


def improved_orders(problem: LostSalesProblem, states: np.ndarray, current: Policy, cfg: LearnedConfig,
                    rng: np.random.Generator) -> np.ndarray:
    """One step of policy improvement of ``current`` by simulation: a new order per state, int64 (m,).

    Candidates are the current order + (-relabel_span .. relabel_span), the feasible ones; each is
    scored by ``rollout_costs`` following ``current`` on demand paths shared by the state's
    candidates, so the paired differences to the current order carry little noise. A state's order
    changes to the cheapest candidate only when that candidate beats the current order by a margin
    that all states together exceed by chance with probability ``relabel_error`` (Bonferroni over
    every state and candidate): where the simulation cannot tell orders apart the order stays. The
    rollout budget
    ``relabel_rollouts`` is split evenly over states and candidates: few states (small L) get
    many paths each, where the differences between orders are smallest.
    """
    current_orders = orders_of(current, states)
    span = cfg.relabel_span
    candidates = current_orders[:, None] + np.arange(-span, span + 1)  # (m, K); column span is the current order
    room = np.maximum(problem.ip_bound - states.sum(axis=1), 0)
    feasible = (candidates >= 0) & (candidates <= room[:, None])
    candidates = np.where(feasible, candidates, current_orders[:, None])  # scored as the current order: never chosen
    paths = max(MIN_RELABEL_PATHS, cfg.relabel_rollouts // candidates.size)
    costs = rollout_costs(problem, states, candidates, current, horizon=cfg.horizon, paths=paths, rng=rng)
    diff = costs - costs[:, span:span + 1, :]  # (m, K, paths), paired with the current order
    mean = diff.mean(axis=2)
    stderr = diff.std(axis=2, ddof=1) / np.sqrt(paths)
    # Bonferroni: every (state, other candidate) pair is a test; all of them together switch a
    # state that should not switch with probability at most relabel_error.
    tests = max(int(feasible.sum()) - len(states), 1)
    z = NormalDist().inv_cdf(1.0 - cfg.relabel_error / tests)
    score = np.where(mean + z * stderr < 0, mean, np.inf)
    score[:, span] = 0.0
    return candidates[np.arange(len(states)), score.argmin(axis=1)]


def training_states(problem: LostSalesProblem, label: Policy, cfg: LearnedConfig,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Distinct states int64 (m, L) seen when simulating the label policy with random order
    offsets (share ``cfg.explore``), and how often each was seen, float64 (m,)."""
    systems = np.zeros((cfg.state_replications, problem.lead_time), dtype=np.int64)
    warmup = 4 * (problem.lead_time + 1)
    seen = []
    for t in range(warmup + cfg.state_periods):
        if t >= warmup:
            seen.append(systems)
        orders = orders_of(label, systems)
        offset = np.where(rng.random(len(systems)) < cfg.explore, rng.integers(-2, 3, len(systems)), 0)
        room = np.maximum(problem.ip_bound - systems.sum(axis=1), 0)
        orders = np.clip(orders + offset, 0, room)
        on_hand = systems[:, 0]
        demand = problem.demand.sample(rng, len(systems))
        systems = successor(np.column_stack([systems, orders]), np.maximum(on_hand - demand, 0))
    states, counts = np.unique(np.concatenate(seen), axis=0, return_counts=True)
    return states, counts.astype(np.float64)


@dataclass(eq=False)
class LearnedPolicy:
    """The trained network as a classic policy: states int64 (n, L) -> the mode order (n,).

    ``ip_bound`` is S-bar (the mask keeps IP + z <= S-bar), so ``evaluate_policy`` works on the
    same set as the optimum. Orders are tabulated once on {IP <= S-bar} when it is small.
    """

    problem: LostSalesProblem
    model: OrprNet
    threads: int = 1
    log: dict = field(default_factory=dict)

    @property
    def ip_bound(self) -> int:
        return self.problem.ip_bound

    def params(self) -> dict:
        return {"parameters": count_parameters(self.model), **self.log}

    def orders(self, states: np.ndarray) -> np.ndarray:
        """The network's mode order per state, computed in chunks. int64 (n,)."""
        self.model.eval()
        out = []
        with torch.no_grad(), torch_threads(self.threads):
            for i in range(0, len(states), CHUNK):
                logits = masked_outputs(self.model, self.problem, states[i:i + CHUNK])["logits"]
                out.append(target_index(logits, None).numpy())
        return np.concatenate(out or [np.zeros(0, dtype=np.int64)]).astype(np.int64)

    @cached_property
    def table(self) -> TablePolicy | None:
        if StateSpace.size(self.problem.lead_time, self.problem.ip_bound) > TABLE_STATES:
            return None
        space = StateSpace.build(self.problem.lead_time, self.problem.ip_bound)
        return TablePolicy(space, self.orders(space.states))

    def __call__(self, states: np.ndarray) -> np.ndarray:
        states = np.asarray(states, dtype=np.int64)
        if self.table is None:
            return self.orders(states)
        idx = self.table.space.index_of(states, strict=False)
        out = np.empty(len(states), dtype=np.int64)
        inside = idx >= 0
        out[inside] = self.table.orders[idx[inside]]
        if not inside.all():  # the network only for states outside the table (a forward pass is dear)
            out[~inside] = self.orders(states[~inside])
        return out


def train_learned(problem: LostSalesProblem, label: Policy, cfg: LearnedConfig, *, seed: int) -> LearnedPolicy:
    """Build, pretrain on ``label``'s orders, RLOO-align, then improve the network by policy
    iteration; returns the policy."""
    if cfg.horizon <= problem.lead_time:
        raise InputError(f"must exceed the lead time {problem.lead_time} (got {cfg.horizon}): an order "
                         "arrives L periods later, so a shorter rollout cannot tell orders apart",
                         field="classic.learned.horizon")
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    model = build_model(network_config(problem, cfg), grid_size=problem.ip_bound + 1, seed=seed)
    states, counts = training_states(problem, label, cfg, rng)
    weights = torch.from_numpy(counts / counts.sum())
    targets = label_targets(problem, states, orders_of(label, states), cfg.label_width)
    log = {"train_states": int(len(states))}
    with torch_threads(cfg.threads):
        log["pretrain_ce"] = supervised(model, problem, states, targets, weights, cfg.pretrain_steps,
                                        cfg.pretrain_lr, cfg, generator)
        log["rl_reward"] = align(model, problem, states, weights, label, cfg, generator, rng)
        model, log["rounds"] = policy_iteration(model, problem, states, weights, cfg, generator, rng)
    log["train_seconds"] = round(time.perf_counter() - started, 1)
    return LearnedPolicy(problem, model.eval(), cfg.threads, log)


@contextmanager
def torch_threads(n: int):
    """Run with ``n`` torch threads, then restore the caller's setting."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _batch(weights: torch.Tensor, size: int, generator: torch.Generator) -> np.ndarray:
    """Rows of the training states, drawn in proportion to how often each was seen. int64 (size,)."""
    return torch.multinomial(weights, size, replacement=True, generator=generator).numpy()


def label_targets(problem: LostSalesProblem, states: np.ndarray, labels: np.ndarray, width: float) -> torch.Tensor:
    """(m, S-bar + 1) soft targets of ``width`` orders around each label, restricted to feasible
    orders (mass on a masked order would cost 1e4) and renormalised."""
    mask = feasible_mask(problem, states)
    target = soft_targets(torch.from_numpy(labels), mask.shape[1], width) * mask
    return target / target.sum(dim=1, keepdim=True)


def supervised(model: OrprNet, problem: LostSalesProblem, states: np.ndarray, targets: torch.Tensor,
               weights: torch.Tensor, steps: int, lr: float, cfg: LearnedConfig, generator: torch.Generator
               ) -> float | None:
    """``steps`` of cross-entropy against target distributions over orders, targets (m, S-bar + 1),
    on batches of states drawn by ``weights``. Returns the last cross-entropy."""
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    ce = None
    for _ in range(steps):
        rows = _batch(weights, cfg.batch, generator)
        out = masked_outputs(model, problem, states[rows])
        loss_ce = -(targets[rows] * torch.log_softmax(out["logits"], dim=-1)).sum(dim=1).mean()
        loss = loss_ce + LATENT_WEIGHT * kl_to_standard_normal(out["mu"], out["logvar"]).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        ce = loss_ce.item()
    return ce


def policy_iteration(model: OrprNet, problem: LostSalesProblem, states: np.ndarray, weights: torch.Tensor,
                     cfg: LearnedConfig, generator: torch.Generator, rng: np.random.Generator
                     ) -> tuple[OrprNet, list[dict]]:
    """Up to ``cfg.rounds`` rounds of policy iteration by simulation, each kept only if it helps.

    A round relabels the training states with ``improved_orders`` of the network's own policy and
    fits copies of the network to the new labels (``refits``). A small network cannot move some
    states without moving others, and which fit costs least is not known in advance, so one
    common-random-numbers simulation (``compare_policies``) runs the current policy and every
    copy: the cheapest copy replaces the network when it is cheaper by more than the
    (Bonferroni) ACCEPT_ERROR margin. Iteration stops at the first round that changes no order or
    keeps no copy. Returns the network and one log entry per round.
    """
    log = []
    for _ in range(cfg.rounds):
        current = LearnedPolicy(problem, model.eval(), cfg.threads)
        improved = improved_orders(problem, states, current, cfg, rng)
        changed = improved != orders_of(current, states)
        entry = {"changed": int(changed.sum()), "kept": None}
        log.append(entry)
        if not changed.any():
            break
        fits = refits(model, problem, states, weights, improved, changed, cfg, generator)
        checks = compare_policies(problem, current, [LearnedPolicy(problem, fit, cfg.threads) for fit in fits.values()],
                                  periods=cfg.check_periods, replications=cfg.check_replications,
                                  warmup=CHECK_WARMUP, seed=int(rng.integers(2 ** 31)))
        z = NormalDist().inv_cdf(1.0 - ACCEPT_ERROR / len(fits))
        entry["cost_change"] = {name: [round(c.difference, 6), round(c.stderr, 6)] for name, c in zip(fits, checks)}
        name, best = min(zip(fits, checks), key=lambda pair: pair[1].difference)
        if best.difference + z * best.stderr >= 0:
            break
        entry["kept"] = name
        model = fits[name]
    return model, log


def refits(model: OrprNet, problem: LostSalesProblem, states: np.ndarray, weights: torch.Tensor,
           improved: np.ndarray, changed: np.ndarray, cfg: LearnedConfig, generator: torch.Generator
           ) -> dict[str, OrprNet]:
    """Copies of the network fitted to the improved orders (the network itself is left alone):

    - "distilled": targets are the network's own distribution where the order stays and soft
      labels where it changes: the fit moves the changed states and leaves the rest be;
    - "relabelled": soft labels at the improved order everywhere: a sharper fit of the whole policy.

    Half of each batch is drawn from the changed states: at their own frequency a few hundred steps
    would barely see them.
    """
    with torch.no_grad():
        model.eval()
        own = torch.cat([torch.softmax(masked_outputs(model, problem, states[i:i + CHUNK])["logits"], dim=-1)
                         for i in range(0, len(states), CHUNK)])
    labelled = label_targets(problem, states, improved, cfg.label_width)
    distilled = torch.where(torch.from_numpy(changed)[:, None], labelled, own)
    focus = 0.5 * weights + 0.5 * torch.from_numpy(changed / changed.sum())
    fits = {}
    for name, targets in (("distilled", distilled), ("relabelled", labelled)):
        fits[name] = copy.deepcopy(model)
        supervised(fits[name], problem, states, targets, focus, cfg.refit_steps, cfg.refit_lr, cfg, generator)
    return fits


def align(model: OrprNet, problem: LostSalesProblem, states: np.ndarray, weights: torch.Tensor, follow: Policy,
          cfg: LearnedConfig, generator: torch.Generator, rng: np.random.Generator) -> float | None:
    """RLOO stage on rollout rewards (see ``rollout_rewards``). Returns the last mean reward."""
    reference = copy.deepcopy(model).eval() if cfg.beta > 0 else None
    optimiser = torch.optim.Adam(model.parameters(), lr=cfg.rl_lr)
    model.train()
    reward = None
    for _ in range(cfg.rl_steps):
        batch = states[_batch(weights, cfg.batch, generator)]  # (B, L)
        out = masked_outputs(model, problem, batch)
        actions = sample_actions(out["logits"], cfg.samples, generator)  # (B, k)
        rewards = torch.from_numpy(rollout_rewards(problem, batch, actions.numpy(), follow, horizon=cfg.horizon,
                                                   paths=cfg.paths, rng=rng)).float()
        ref_log_probs = None
        if reference is not None:
            with torch.no_grad():
                ref_log_probs = torch.log_softmax(masked_outputs(reference, problem, batch)["logits"], dim=-1)
        terms = rloo_loss(out["logits"], actions, leave_one_out_advantages(rewards),
                          ref_log_probs=ref_log_probs, beta=cfg.beta)
        optimiser.zero_grad()
        terms["loss"].backward()
        optimiser.step()
        reward = float(rewards.mean())
    return reward
