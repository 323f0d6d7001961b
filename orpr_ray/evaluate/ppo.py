"""The pure-RL baseline: RLlib PPO trained from scratch on the gymnasium version of the decision problem.

What a user would try instead of ORPR: a stock RL algorithm on the same decisions, without the OR
labels. The environment is the RL stage's ``ReplenishmentEnv`` (``orpr_ray.rl.env``: observation
= the network's three feature streams flattened, action = an index into the inventory-days grid,
one decision point per step), with two changes that keep the OR labels out of it:

- reward = -(simulated total cost of the action over the label horizon, replayed like the labels)
  / (expected demand value over that horizon: trailing-mean d_hat x horizon, at least one unit, at
  unit cost). No rule reward and no label as the Pareto reference. Episodes are one decision
  (the environment's default), so a positive per-state factor leaves each state's best action
  unchanged while keeping fast and slow movers on one scale;
- the label-derived objectives (calibrated alpha, the last label's turnover and in-stock) are
  masked in the observation.
The labels supply only the training window's decision dates (the states RLOO also draws from),
and the network checkpoint only its feature-scaling statistics; the PPO network is its own MLP.

Speed: the environment's ``step`` replays one action and gathers one observation (about 100 steps
per second on this machine kind), so :func:`build_tables` computes every state's observation in
batched gathers and every (state, action) cost in chunked vectorised replays once, and
:class:`TabulatedCostEnv` steps by lookup; a test pins both tables to the environment's own
``_observe`` and ``step``. Budget: ``evaluate.ppo.sample_budget`` steps (a demo-sized default), or,
when it is None, as many as the RLOO run scored (``rl.steps x rl.batch_states x rl.k x workers``,
from its manifest).

Output ``backtest/ppo/``: ``tables.npz``, ``checkpoint/`` (RLlib), ``progress.csv``, ``manifest.json``
(last); a finished run with the same settings is reused.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import gymnasium as gym
import numpy as np
import pandas as pd

from orpr_ray.core.artifacts import atomic_path, read_manifest, write_manifest, write_text_atomic
from orpr_ray.sim.policies import trailing_mean_demand
from orpr_ray.train.stages import Points, make_batch

if TYPE_CHECKING:
    from orpr_ray.config import OrprConfig
    from orpr_ray.evaluate.backtest import Setup
    from orpr_ray.sim.scheduled import ReviewPoints, ScheduledDaysPolicy
    from orpr_ray.rl.env import ReplenishmentEnv

COST_ENV_NAME = "orpr-replenishment-cost-v0"
TABLES_FILE = "tables.npz"
MODULE_PATH = ("learner_group", "learner", "rl_module", "default_policy")  # inside an RLlib checkpoint


# ----------------------------------------------------------------------------------------------
# Observations and rewards of the environment, in batches.

def observations(env: "ReplenishmentEnv", points: Points, batch_size: int = 4096) -> np.ndarray:
    """float32 (N, D): the environment's flattened observation of each point, gathered in batches.

    The same assembly as ``ReplenishmentEnv._observe`` (pinned by a test); gymnasium flattens a
    Dict space key by key in the space's order, each Box in C order.
    """
    out = []
    for lo in range(0, len(points), batch_size):
        f = make_batch(env.panel, points.take(slice(lo, lo + batch_size)), env.meta.stats).features
        n = len(f["category"])
        parts = {"sales": f["days"].numpy(),
                 "attributes": np.concatenate([f["attributes"].numpy(), f["attributes_mask"].numpy(),
                                               f["category"].numpy()[:, None], f["dc"].numpy()[:, None],
                                               f["extra_categories"].numpy()], axis=1),
                 "objectives": np.concatenate([f["objectives"].numpy(), f["objectives_mask"].numpy()], axis=1)}
        out.append(np.concatenate([parts[key].astype(np.float32).reshape(n, -1) for key in env.dict_space.spaces],
                                  axis=1))
    return np.concatenate(out) if out else np.zeros((0, env.observation_space.shape[0]), dtype=np.float32)


def action_costs(env: "ReplenishmentEnv", unit: np.ndarray, day: np.ndarray, chunk_cells: int) -> np.ndarray:
    """float64 (N, G): simulated total cost of every grid action at each point (the env's replay)."""
    from orpr_ray.label.candidates import evaluate_decisions

    grid = env.grid.astype(np.float64)
    rows = max(1, chunk_cells // len(grid))
    out = np.empty((len(unit), len(grid)))
    for lo in range(0, len(unit), rows):
        part = slice(lo, lo + rows)
        v = np.broadcast_to(grid, (len(unit[part]), len(grid)))
        out[part] = evaluate_decisions(env.ds, unit[part], day[part], v, sim=env.cfg.sim,
                                       label=env.cfg.label).total_cost
    return out


def cost_scale(env: "ReplenishmentEnv", unit: np.ndarray, day: np.ndarray) -> np.ndarray:
    """(N,) expected demand value over the label horizon, known at the decision day (>= one unit)."""
    from orpr_ray.label.candidates import label_horizon

    d_hat = trailing_mean_demand(env.ds.sales, env.cfg.sim.demand_window_days)[unit, day]
    cost = env.ds.units["unit_cost"].to_numpy(np.float64)[unit]
    return np.maximum(d_hat * label_horizon(env.ds, env.cfg.label), 1.0) * cost


def without_labels(points: Points) -> Points:
    """The points with the label-derived objectives unknown (masked) and no label attached."""
    return Points(points.unit, points.day)


@dataclass(frozen=True)
class Tables:
    """Everything the tabulated environment steps through: N states, G actions, D observation floats."""

    obs: np.ndarray     # float32 (N, D)
    cost: np.ndarray    # float64 (N, G)
    scale: np.ndarray   # float64 (N,)
    grid: np.ndarray    # int64 (G,)

    def save(self, path: Path) -> Path:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, obs=self.obs, cost=self.cost, scale=self.scale, grid=self.grid)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Tables":
        data = np.load(path)
        return cls(obs=data["obs"], cost=data["cost"], scale=data["scale"], grid=data["grid"])


def build_tables(env: "ReplenishmentEnv", *, max_states: int, seed: int, batch_size: int,
                 chunk_cells: int) -> Tables:
    """Observations, costs and scales of (a seeded sample of at most ``max_states`` of) the env's states."""
    rows = np.arange(len(env.states))
    if len(rows) > max_states:
        rows = np.sort(np.random.default_rng(seed).choice(len(rows), size=max_states, replace=False))
    points = without_labels(env.states.points.take(rows))
    return Tables(obs=observations(env, points, batch_size),
                  cost=action_costs(env, points.unit, points.day, chunk_cells),
                  scale=cost_scale(env, points.unit, points.day), grid=env.grid.copy())


class TabulatedCostEnv(gym.Env):
    """One-step episodes over tabulated states: reset draws a state, step pays -cost / scale.

    ``env_config``: ``tables`` (path of a :class:`Tables` file). Spaces: a flat float32 Box and
    Discrete(G), as the environment it tabulates.
    """

    metadata = {"render_modes": []}

    def __init__(self, env_config: dict):
        self.tables = Tables.load(env_config["tables"])
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=self.tables.obs.shape[1:], dtype=np.float32)
        self.action_space = gym.spaces.Discrete(len(self.tables.grid))
        self.row = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.row = int(self.np_random.integers(len(self.tables.obs)))
        return self.tables.obs[self.row], {"row": self.row}

    def step(self, action):
        action = int(action)
        cost = float(self.tables.cost[self.row, action])
        reward = -cost / float(self.tables.scale[self.row])
        info = {"row": self.row, "v": int(self.tables.grid[action]), "total_cost": cost}
        return self.tables.obs[self.row], reward, True, False, info


def register_cost_env() -> str:
    from ray.tune.registry import register_env

    register_env(COST_ENV_NAME, TabulatedCostEnv)
    return COST_ENV_NAME


# ----------------------------------------------------------------------------------------------
# Training and deciding.

def sample_budget(run_dir: Path, cfg: "OrprConfig") -> tuple[int, str]:
    """Environment steps for PPO, and where the number comes from."""
    ppo = cfg.evaluate.ppo
    if ppo.sample_budget is not None:
        return ppo.sample_budget, "evaluate.ppo.sample_budget"
    for folder in ("rl", "sweep"):
        manifest = read_manifest(run_dir / folder, verify=False)
        rl = (manifest or {}).get("config", {}).get("rl")
        if rl:
            samples = rl["steps"] * rl["batch_states"] * rl["k"] * max(1, rl.get("num_workers", 0))
            return int(samples), f"the RLOO budget of {folder}/ (steps x batch_states x k x workers)"
    return ppo.fallback_budget, "evaluate.ppo.fallback_budget (no RLOO run to match)"


def algorithm_config(tables_path: Path, cfg: "OrprConfig"):
    """RLlib PPO (new API stack, default MLP module with a value head) on the tabulated environment."""
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    ppo = cfg.evaluate.ppo
    return (PPOConfig()
            .environment(register_cost_env(), env_config={"tables": str(tables_path)})
            .env_runners(num_env_runners=ppo.env_runners, num_envs_per_env_runner=ppo.envs_per_runner)
            .training(train_batch_size_per_learner=ppo.train_batch_size, minibatch_size=ppo.minibatch_size,
                      num_epochs=ppo.num_epochs, lr=ppo.lr, entropy_coeff=ppo.entropy_coeff, gamma=0.0)
            .rl_module(model_config=DefaultModelConfig(fcnet_hiddens=list(ppo.hidden)))
            .debugging(seed=cfg.seed))


def progress_row(result: dict) -> dict:
    """The figures of one PPO iteration kept in progress.csv."""
    learner = result.get("learners", {}).get("default_policy", {})
    runners = result.get("env_runners", {})
    return {"iteration": int(result.get("training_iteration", 0)),
            "env_steps": float(result.get("num_env_steps_sampled_lifetime",
                                          runners.get("num_env_steps_sampled_lifetime", 0.0))),
            "episode_return_mean": float(runners.get("episode_return_mean", np.nan)),
            "train_loss": float(learner.get("total_loss", np.nan)),
            "policy_loss": float(learner.get("policy_loss", np.nan)),
            "vf_loss": float(learner.get("vf_loss", np.nan)), "entropy": float(learner.get("entropy", np.nan)),
            "mean_kl": float(learner.get("mean_kl_loss", np.nan))}


def train_ppo(tables_path: Path, cfg: "OrprConfig", budget: int, checkpoint: Path,
              progress: Callable[[str], None]) -> list[dict]:
    """Train until ``budget`` environment steps are sampled; save the algorithm; return the history."""
    from orpr_ray.core.ray_env import ensure_ray

    ensure_ray()
    algo = algorithm_config(tables_path, cfg).build_algo()
    history: list[dict] = []
    try:
        while not history or history[-1]["env_steps"] < budget:
            history.append(progress_row(algo.train()))
            row = history[-1]
            progress(f"ppo: iteration {row['iteration']}, {row['env_steps']:.0f}/{budget} steps, mean reward "
                     f"{row['episode_return_mean']:.4f}")
        algo.save_to_path(str(checkpoint.resolve()))
    finally:
        algo.stop()
    return history


def load_module(checkpoint: Path):
    from ray.rllib.core.rl_module.rl_module import RLModule

    return RLModule.from_checkpoint(str(checkpoint.joinpath(*MODULE_PATH).resolve()))


def greedy_actions(module, obs: np.ndarray, batch_size: int) -> np.ndarray:
    """(N,) argmax action of the PPO policy (its deterministic choice) for observations (N, D)."""
    import torch

    out = np.empty(len(obs), dtype=np.int64)
    with torch.no_grad():
        for lo in range(0, len(obs), batch_size):
            logits = module.forward_inference({"obs": torch.from_numpy(obs[lo:lo + batch_size])})["action_dist_inputs"]
            out[lo:lo + batch_size] = logits.argmax(dim=-1).numpy()
    return out


def settings_key(env_config: dict, cfg: "OrprConfig", budget: int) -> str:
    blob = json.dumps({"env": env_config, "ppo": cfg.evaluate.ppo.model_dump(mode="json"), "budget": budget,
                       "seed": cfg.seed, "sim": cfg.sim.model_dump(mode="json")}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def ppo_policy(run_dir: Path, setup: "Setup", cfg: "OrprConfig", points: "ReviewPoints", out: Path,
               progress: Callable[[str], None]) -> tuple["ScheduledDaysPolicy | None", str]:
    """Train (or reuse) PPO and turn its greedy choices at the review points into a policy.

    Returns (policy, note), or (None, why) when the run lacks what the environment needs.
    """
    from orpr_ray.evaluate.backtest import CHECKPOINTS, checkpoint_dir, finished
    from orpr_ray.sim.scheduled import scheduled_policy
    from orpr_ray.rl.env import make_env

    network, note = checkpoint_dir(run_dir, CHECKPOINTS["network"])
    if network is None or finished(run_dir, "labels") is None:
        return None, ("needs labels/ (decision dates) and a pretrain/ or finetune/ checkpoint (feature scaling): "
                      + ("no finished labels/ stage" if network is not None else note))
    ppo = cfg.evaluate.ppo
    budget, source = sample_budget(run_dir, cfg)
    env_config = {"checkpoint": str(network.resolve()), "window": "train"}
    key = settings_key(env_config, cfg, budget)
    progress(f"ppo: building the environment from {note}/ ({budget} steps: {source})")
    env = make_env(env_config)
    manifest = read_manifest(out)
    if manifest is None or manifest.get("key") != key:
        (out / "manifest.json").unlink(missing_ok=True)
        tables = build_tables(env, max_states=ppo.max_states, seed=cfg.seed,
                              batch_size=cfg.evaluate.decision_batch_size, chunk_cells=cfg.label.sim_chunk_cells)
        tables.save(out / TABLES_FILE)
        history = train_ppo(out / TABLES_FILE, cfg, budget, out / "checkpoint", progress)
        write_text_atomic(out / "progress.csv", pd.DataFrame(history).to_csv(index=False))
        write_manifest(out, stage="ppo", config=cfg.evaluate.ppo.model_dump(mode="json"),
                       inputs={"network": str(network), "labels": str(run_dir / "labels")},
                       outputs=[TABLES_FILE, "progress.csv"],
                       figures={"env_steps": history[-1]["env_steps"], "iterations": len(history),
                                "final_return_mean": history[-1]["episode_return_mean"]},
                       extra={"key": key, "budget": budget, "budget_source": source, "states": len(tables.obs)})
        manifest = read_manifest(out)
    obs = observations(env, Points(points.unit, points.day), cfg.evaluate.decision_batch_size)
    choice = greedy_actions(load_module(out / "checkpoint"), obs, cfg.evaluate.decision_batch_size)
    policy = scheduled_policy(points, env.grid[choice].astype(np.float64), setup.d_hat)
    return policy, (f"RLlib PPO, {manifest['figures']['env_steps']:.0f} env steps ({manifest['budget_source']}), "
                    f"{manifest['states']} training states; observation scaling from {note}/")
