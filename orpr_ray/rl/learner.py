"""The RLOO learner: plain torch, owns the policy, the frozen reference policy and the optimiser.

One :meth:`RLOOLearner.step` draws ``batch_states`` decision points, samples ``k`` grid actions per
state from the policy, scores all of them (and the reference action) in one vectorised replay
(reward.score_actions), and takes one gradient step on the RLOO loss (rloo.rloo_loss). There is no
per-step gymnasium loop here: env.py exposes the same problem to RLlib, this is the fast path.

:func:`run_learner` is the loop one worker runs, written against the same ``WorkerContext``
protocol as the supervised stages (orpr_ray.train.stages): in this process (``LocalContext``), on
Ray Train workers (``RayWorkerContext``, data-parallel: each worker draws its own states, DDP
averages the gradients) or inside a Ray Tune trial (tune.TuneContext). It reports validation
metrics and a checkpoint every ``eval_every`` steps and resumes from the last one.
Randomness: step s of worker r draws from ``derive_seed(seed, RL_STREAM, r, s)``, so a resumed run
continues exactly as an uninterrupted one would.
"""
from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from orpr_ray.config import OrprConfig
from orpr_ray.data.dataset import Dataset
from orpr_ray.data.split import TimeSplit
from orpr_ray.label.candidates import evaluate_decisions
from orpr_ray.model.checkpoint import CheckpointMeta, build_from_checkpoint, model_for, read_checkpoint, save_checkpoint
from orpr_ray.model.features import Features, PanelFeatures
from orpr_ray.model.network import OrprNet, set_trainable, soft_targets, target_index
from orpr_ray.rl.reward import DOMINATED, DOMINATES, EQUAL, columns, pareto_outcome, score_actions
from orpr_ray.rl.rloo import exact_kl, leave_one_out_advantages, rloo_loss, sample_actions
from orpr_ray.train.report import SIM_KEYS
from orpr_ray.train.stages import Points, WorkerContext, derive_seed, label_points, make_batch, window_bounds

RL_STREAM = 7  # seed stream of the RL stage (the supervised stages use 0..2)
PROB_FLOOR = 1e-8  # floor of the expert's reference distribution, so the KL to it stays finite
# Simulated figures of an evaluation: the supervised stages' report keys, plus lost sales (promotions).
SUMMARY_KEYS = (*SIM_KEYS, "lost_sales_value")


@dataclass
class States:
    """Decision points the learner draws from.

    points: the labelled points (unit, day, OR label's grid index, and whatever the network is fed
    besides the panel, as train.stages.Points carries it); target (N,): grid index of the rule
    target (the expert's label where ``expert``, else the OR label); current (N,): the unit's
    current days of cover (rl.current_cover); expert (N,) bool.
    """

    points: Points
    target: np.ndarray
    current: np.ndarray
    expert: np.ndarray

    def __len__(self) -> int:
        return len(self.points)

    @property
    def unit(self) -> np.ndarray:
        return self.points.unit

    @property
    def day(self) -> np.ndarray:
        return self.points.day

    @property
    def label(self) -> np.ndarray:
        return self.points.label

    def take(self, rows) -> "States":
        return States(self.points.take(rows), self.target[rows], self.current[rows], self.expert[rows])


def states_from_labels(labels: pd.DataFrame, split: TimeSplit, window: str, cfg: OrprConfig) -> States:
    """States of a window from labels prepared by ``train.runner.load_inputs`` (label_index, the
    network's label-derived inputs, previous_label, category_median); an ``expert_index`` column
    (grid index, -1 = none) makes the expert's label the rule target of those rows."""
    points = label_points(labels, split, window)
    start, stop = window_bounds(split, window)
    rows = labels[(labels["day"] >= start) & (labels["day"] < stop)]  # the rows label_points took, in order
    expert_index = (rows["expert_index"].to_numpy(np.int64) if "expert_index" in rows
                    else np.full(len(rows), -1, dtype=np.int64))
    expert = expert_index >= 0
    return States(points, target=np.where(expert, expert_index, points.label),
                  current=rows[cfg.rl.current_cover].to_numpy(np.float64), expert=expert)


@dataclass
class RLJob:
    """Everything a learner needs; ``config`` is the plain-dict config tree (crosses Ray boundaries)."""

    config: dict
    ds: Dataset
    meta: CheckpointMeta              # of the start policy: model config, feature statistics, grid
    init_state: dict[str, torch.Tensor]  # start weights, also the frozen reference policy
    train: States
    val: States
    sources: dict = field(default_factory=dict)
    run_key: str = ""
    stage: str = "rl"
    promo_share: float | None = None  # promotion fine-tune: share of each batch from expert states

    @property
    def cfg(self) -> OrprConfig:
        return OrprConfig.model_validate(self.config)

    def checkpoint_meta(self, training: dict) -> CheckpointMeta:
        return CheckpointMeta(model_config=self.meta.model_config, stats=self.meta.stats, grid=self.meta.grid,
                              stage=self.stage, sources=self.sources, training=training,
                              decision_quantile=self.meta.decision_quantile)


def reference_log_probs(ref_logits: torch.Tensor, target: np.ndarray, expert: np.ndarray, width: float, *,
                        shift_from: np.ndarray | None = None) -> torch.Tensor:
    """(B, G) log pi_ref: the reference network's, replaced on expert states by a discretised
    Gaussian of ``width`` grid steps around the expert's label (floored, renormalised), or, with
    ``shift_from`` (B,) the OR labels' grid indices, by the reference network's own distribution
    moved by the expert's correction ``target - shift_from`` grid steps (mass beyond an end of the
    grid stays at that end): the expert corrects the label, and the policy keeps its own spread
    around it, which its decision rule reads as it reads every other state."""
    log_probs = torch.log_softmax(ref_logits, dim=-1)
    if expert.any():
        rows = torch.from_numpy(np.flatnonzero(expert))
        if shift_from is not None:
            log_probs[rows] = shifted(log_probs[rows], torch.from_numpy(target[expert] - shift_from[expert]))
        else:
            anchor = soft_targets(torch.from_numpy(target[expert]), ref_logits.shape[-1], width).clamp_min(PROB_FLOOR)
            log_probs[rows] = torch.log(anchor / anchor.sum(dim=-1, keepdim=True))
    return log_probs


def shifted(log_probs: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """(n, G) distributions moved by ``steps`` (n,) grid steps; what would leave the grid piles up at its end."""
    n, grid = log_probs.shape
    probs = torch.zeros_like(log_probs)
    to = (torch.arange(grid)[None, :] + steps[:, None]).clamp(0, grid - 1)       # (n, G) where each bin lands
    probs.scatter_add_(1, to, log_probs.exp())
    return torch.log(probs.clamp_min(PROB_FLOOR) / probs.clamp_min(PROB_FLOOR).sum(dim=-1, keepdim=True))


class RLOOLearner:
    """Policy, frozen reference and optimiser; ``step`` updates once, ``evaluate`` scores greedily."""

    def __init__(self, job: RLJob, *, rank: int = 0):
        self.job = job
        self.cfg = job.cfg
        self.rl = self.cfg.rl
        self.rank = rank
        self.grid = np.asarray(job.meta.grid, dtype=np.int64)
        self.model = model_for(job.meta)
        self.model.load_state_dict(job.init_state)
        set_trainable(self.model, tuple(self.rl.trainable_parts))
        self.model.eval()  # no dropout: the distribution actions are sampled from is the one differentiated
        self.reference = build_from_checkpoint(job.init_state, job.meta).requires_grad_(False)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        lr = self.rl.promo.lr if job.stage == "promo" else self.rl.lr
        self.optimizer = torch.optim.AdamW(self.params, lr=lr, weight_decay=self.rl.weight_decay)
        self.panel = PanelFeatures(job.ds, job.meta.model_config)
        self.wrapped: torch.nn.Module = self.model
        self.steps_done = 0
        self._val_reference: torch.Tensor | None = None

    def features(self, states: States) -> Features:
        return make_batch(self.panel, states.points, self.job.meta.stats).features

    def draw(self, rng: np.random.Generator) -> States:
        """This step's states: uniform over the training states, or (promotion fine-tune) a
        ``promo_share`` of them from the expert-labelled states."""
        train, size = self.job.train, self.rl.batch_states
        if self.job.promo_share is None or not train.expert.any():
            return train.take(rng.integers(len(train), size=size))
        n_expert = int(round(size * self.job.promo_share))
        expert_rows = rng.choice(np.flatnonzero(train.expert), size=n_expert)
        return train.take(np.concatenate([expert_rows, rng.integers(len(train), size=size - n_expert)]))

    @property
    def promotion(self) -> bool:
        return self.job.promo_share is not None

    def kl_weights(self, batch: States, advantages: torch.Tensor) -> float | torch.Tensor:
        """rl.beta; in the promotion fine-tune (B,) weights: rl.promo.expert_beta on expert states,
        rl.promo.anchor_beta on the others, whose advantages are zeroed in place when
        rl.promo.anchor_others (then only the KL anchor acts on them)."""
        if not self.promotion:
            return self.rl.beta
        promo = self.rl.promo
        others = torch.from_numpy(~batch.expert)
        if promo.anchor_others:
            advantages[others] = 0.0
        return torch.where(others, promo.anchor_beta, promo.expert_beta)

    def step(self) -> dict[str, float]:
        """One RLOO update on ``batch_states`` x ``k`` sampled actions; returns named terms and reward stats."""
        rl = self.rl
        seed = derive_seed(self.cfg.seed, RL_STREAM, self.rank, self.steps_done)
        batch = self.draw(np.random.default_rng(seed))
        generator = torch.Generator().manual_seed(seed)
        features = self.features(batch)
        outputs = self.wrapped(features, sample=rl.sample_latent, generator=generator)
        actions = sample_actions(outputs["logits"], rl.k, generator)                     # (B, k)
        ref_log_probs, ref_choice = None, self.grid[batch.target]
        if self.promotion or rl.beta > 0 or rl.sim_reference == "reference_policy":
            with torch.no_grad():
                ref_logits = self.reference(features)["logits"]
            ref_log_probs = reference_log_probs(
                ref_logits, batch.target, batch.expert, rl.promo.expert_label_width,
                shift_from=batch.points.label if rl.promo.expert_reference == "shift" else None)
            if rl.sim_reference == "reference_policy":
                deployed = target_index(ref_logits, self.job.meta.decision_quantile).numpy()
                ref_choice = np.where(batch.expert, ref_choice, self.grid[deployed])
        rewards = score_actions(self.job.ds, batch.unit, batch.day, self.grid[actions.numpy()],
                                target=self.grid[batch.target], current=batch.current, reference=ref_choice,
                                cfg=self.cfg)
        advantages = leave_one_out_advantages(torch.from_numpy(rewards.reward).float())
        beta = self.kl_weights(batch, advantages)
        terms = rloo_loss(outputs["logits"], actions, advantages, ref_log_probs=ref_log_probs, beta=beta,
                          mu=outputs["mu"], logvar=outputs["logvar"], latent_weight=rl.latent_weight)
        self.optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, rl.grad_clip)
        self.optimizer.step()
        self.steps_done += 1
        return {**{k: float(v.detach()) for k, v in terms.items()}, **rewards.stats(), "grad_norm": float(grad_norm)}

    def evaluate(self, states: States | None = None, prefix: str = "val_") -> dict[str, float]:
        """The greedy policy on ``states`` (default: the job's validation states) scored by score_policy;
        the frozen reference's log-probs on the validation states are computed once."""
        rule = self.job.meta.decision_quantile
        if states is None:
            if self._val_reference is None:
                self._val_reference = greedy(self.reference, self.job, self.job.val, self.panel, quantile=rule)[1]
            states, reference = self.job.val, self._val_reference
        else:
            reference = greedy(self.reference, self.job, states, self.panel, quantile=rule)[1]
        choice, log_probs = greedy(self.model, self.job, states, self.panel, quantile=rule)
        return score_policy(self.job, states, choice, log_probs, reference, prefix)

    # Checkpoints: the weights plus {step, optimizer, history} in the self-describing format.
    def save(self, directory: str, history: list[dict]) -> None:
        training = {"step": self.steps_done, "run_key": self.job.run_key, "history": history,
                    "optimizer": self.optimizer.state_dict(), "rl": self.rl.model_dump(mode="json")}
        save_checkpoint(directory, self.model, self.job.checkpoint_meta(training))

    def restore(self, directory: str) -> list[dict]:
        """Load a checkpoint written by :meth:`save`; returns its metrics history."""
        state_dict, meta = read_checkpoint(directory)
        self.model.load_state_dict(state_dict)
        self.optimizer.load_state_dict(meta.training["optimizer"])
        self.steps_done = int(meta.training["step"])
        return list(meta.training["history"])


@torch.no_grad()
def greedy(model: OrprNet, job: RLJob, states: States, panel: PanelFeatures, *, quantile: float | None,
           batch_size: int = 1024) -> tuple[np.ndarray, torch.Tensor]:
    """The deterministic policy (z = mu) on ``states``: (N,) grid indices read by the decision rule
    ``quantile`` (a checkpoint's ``decision_quantile``, as the backtest and the service read them)
    and (N, G) log-probs."""
    model.eval()
    choices, log_probs = [], []
    for start in range(0, len(states), batch_size):
        part = states.take(slice(start, start + batch_size))
        logits = model(make_batch(panel, part.points, job.meta.stats).features)["logits"]
        log_probs.append(torch.log_softmax(logits, dim=-1))
        choices.append(target_index(logits, quantile).numpy())
    return np.concatenate(choices), torch.cat(log_probs)


def score_policy(job: RLJob, states: States, choice: np.ndarray, log_probs: torch.Tensor,
                 ref_log_probs: torch.Tensor, prefix: str = "val_") -> dict[str, float]:
    """Metrics of greedy choices (N,) on ``states``: simulated outcome, KL to the reference, Pareto
    rates vs the OR labels. The policy's and the labels' targets are replayed in one (N, 2) call."""
    if len(states) == 0:
        return {}
    cfg, grid = job.cfg, np.asarray(job.meta.grid)
    targets = np.stack([grid[choice], grid[states.label]], axis=1).astype(np.float64)  # (N, 2)
    metrics = evaluate_decisions(job.ds, states.unit, states.day, targets, sim=cfg.sim, label=cfg.label)
    policy, labels = columns(metrics, slice(0, 1)), columns(metrics, slice(1, 2))
    outcome = pareto_outcome(policy, labels)
    summary = policy.summary()
    out = {f"{prefix}{key}": summary[key] for key in SUMMARY_KEYS}
    out.update({
        f"{prefix}kl": float(exact_kl(log_probs, ref_log_probs).mean()),
        f"{prefix}pareto_rate": float(np.isin(outcome, (DOMINATES, EQUAL)).mean()),
        f"{prefix}dominated_rate": float((outcome == DOMINATED).mean()),
        f"{prefix}label_agreement": float((choice == states.label).mean()),
        f"{prefix}mean_days": float(grid[choice].mean()),
        f"{prefix}label_total_cost": labels.summary()["total_cost"],
        f"{prefix}points": float(len(states)),
    })
    return out


def sample_states(states: States, n: int, seed: int) -> States:
    """A fixed random sample of at most ``n`` states (in their original order), like train's sample_points."""
    if len(states) <= n:
        return states
    return states.take(np.sort(np.random.default_rng(seed).choice(len(states), size=n, replace=False)))


# ----------------------------------------------------------------------------------------------
# The loop one worker runs.

def _mean(rows: list[dict[str, float]]) -> dict[str, float]:
    return {key: float(np.mean([row[key] for row in rows])) for key in rows[0]} if rows else {}


def run_learner(job: RLJob, ctx: WorkerContext) -> list[dict]:
    """Train until ``steps`` (rl.steps, or rl.promo.steps for the promotion stage), reporting every
    ``eval_every`` steps; resumes after the last report. Returns the metrics history."""
    learner = RLOOLearner(job, rank=ctx.rank)
    steps, eval_every = ((learner.rl.promo.steps, learner.rl.promo.eval_every) if job.stage == "promo"
                         else (learner.rl.steps, learner.rl.eval_every))
    with ctx.resume_dir() as directory:
        history = learner.restore(directory) if directory is not None else []
    if not history:  # the start policy's validation figures open the curve (recorded, not reported)
        history.append({"step": 0, "iteration": 0, **learner.evaluate()})
    learner.wrapped = ctx.wrap(learner.model)
    while learner.steps_done < steps:
        started = time.perf_counter()
        chunk = [learner.step() for _ in range(min(eval_every, steps - learner.steps_done))]
        elapsed = time.perf_counter() - started
        metrics = {"step": learner.steps_done, "iteration": len(history),
                   "samples_per_s": len(chunk) * learner.rl.batch_states * learner.rl.k / max(elapsed, 1e-9),
                   **{f"train_{k}": v for k, v in _mean(chunk).items()}, **learner.evaluate()}
        history.append(metrics)
        if ctx.rank == 0:
            print(progress_line(job.stage, metrics, steps), flush=True)
            with tempfile.TemporaryDirectory(prefix="orpr-rl-ckpt-") as tmp:
                learner.save(tmp, history)
                ctx.report(metrics, tmp)
        else:
            ctx.report(metrics, None)  # every worker reports: it is a barrier
    return history


def progress_line(stage: str, metrics: dict, steps: int) -> str:
    return (f"[{stage}] step {metrics['step']}/{steps} | reward {metrics['train_reward']:.3f} "
            f"(rule {metrics['train_r_rule']:.3f}, sim {metrics['train_r_sim']:.3f}) | val cost "
            f"{metrics['val_total_cost']:.0f}, in-stock {metrics['val_in_stock_rate']:.3f}, "
            f"KL {metrics['val_kl']:.4f}, "
            f"Pareto {metrics['val_pareto_rate']:.3f} | {metrics['samples_per_s']:.0f} samples/s")
