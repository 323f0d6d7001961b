"""The replenishment decision as a gymnasium environment, registered for RLlib (``ENV_NAME``).

Observation: the network's three feature streams at a decision point, exactly as ``encode``
builds them for the ORPR network (so a pure-RL agent sees what ORPR sees):
    sales       float32 (T + H, len(DAY_CHANNELS)) scaled daily history then the known promo days;
    attributes  float32 (2 A + 2 + K,) standardised attributes, their presence mask, then the
                category, DC and K text-attribute vocabulary indices;
    objectives  float32 (2 O,) standardised objectives and their presence mask.
With ``flatten`` (the default for RLlib, whose stock encoders take a flat Box) the three are one
float32 vector (gymnasium.spaces.flatten).
Action: an index into the inventory-days grid. Reward: the hybrid reward of that action
(reward.score_actions with k = 1 against the rule target), the same the RLOO learner optimises.
An episode follows one unit through ``episode_length`` consecutive decision dates (each decision is
replayed from its own steady state, as in the labels), ending early at the unit's last one.

This is the slow, general path for RLlib's stock algorithms; the RLOO learner does not step it.
"""
from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from orpr_ray.config import OrprConfig
from orpr_ray.data.dataset import Dataset
from orpr_ray.model.checkpoint import CheckpointMeta
from orpr_ray.model.features import DAY_CHANNELS, OBJECTIVES, PanelFeatures
from orpr_ray.rl.learner import States, states_from_labels
from orpr_ray.rl.reward import score_actions
from orpr_ray.train.stages import make_batch

ENV_NAME = "orpr-replenishment-v0"


def observation_space(meta: CheckpointMeta) -> spaces.Dict:
    cfg = meta.model_config
    n_attr = len(meta.stats.attribute_names)
    n_text = len(meta.stats.extra_categorical)
    box = lambda *shape: spaces.Box(-np.inf, np.inf, shape=shape, dtype=np.float32)  # noqa: E731
    return spaces.Dict({"sales": box(cfg.history_days + cfg.horizon_days, len(DAY_CHANNELS)),
                        "attributes": box(2 * n_attr + 2 + n_text), "objectives": box(2 * len(OBJECTIVES))})


class ReplenishmentEnv(gym.Env):
    """One decision point per step; see the module docstring for spaces, reward and episodes."""

    metadata = {"render_modes": []}

    def __init__(self, ds: Dataset, states: States, meta: CheckpointMeta, cfg: OrprConfig, *, flatten: bool = True,
                 episode_length: int = 1):
        if len(states) == 0:
            raise ValueError("the environment needs at least one decision point")
        if episode_length < 1:
            raise ValueError(f"episode_length must be >= 1, got {episode_length}")
        order = np.lexsort((states.day, states.unit))  # consecutive rows = a unit's consecutive decisions
        self.states = states.take(order)
        self.ds, self.meta, self.cfg = ds, meta, cfg
        self.grid = np.asarray(meta.grid, dtype=np.int64)
        self.panel = PanelFeatures(ds, meta.model_config)
        self.flatten = flatten
        self.episode_length = episode_length
        self.dict_space = observation_space(meta)
        self.observation_space = spaces.flatten_space(self.dict_space) if flatten else self.dict_space
        self.action_space = spaces.Discrete(len(self.grid))
        self.row = 0
        self.steps = 0

    def _observe(self) -> Any:
        f = make_batch(self.panel, self.states.take([self.row]).points, self.meta.stats).features
        obs = {"sales": f["days"][0].numpy(),
               "attributes": np.concatenate([f["attributes"][0].numpy(), f["attributes_mask"][0].numpy(),
                                             [f["category"][0].item(), f["dc"][0].item()],
                                             f["extra_categories"][0].numpy()]).astype(np.float32),
               "objectives": np.concatenate([f["objectives"][0].numpy(),
                                             f["objectives_mask"][0].numpy()]).astype(np.float32)}
        return spaces.flatten(self.dict_space, obs) if self.flatten else obs

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.row = int(self.np_random.integers(len(self.states)))
        self.steps = 0
        return self._observe(), {"unit": int(self.states.unit[self.row]), "day": int(self.states.day[self.row])}

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"action {action!r} is not an index of the {len(self.grid)}-target grid")
        here = self.states.take([self.row])
        rewards = score_actions(self.ds, here.unit, here.day, self.grid[[[int(action)]]],
                                target=self.grid[here.target], current=here.current,
                                reference=self.grid[here.target], cfg=self.cfg)
        info = {"unit": int(here.unit[0]), "day": int(here.day[0]), "v": int(self.grid[int(action)]),
                "r_rule": float(rewards.rule[0, 0]), "r_sim": float(rewards.sim[0, 0]),
                "total_cost": float(rewards.sample.total_cost[0, 0]), "label_v": int(self.grid[here.label[0]])}
        self.steps += 1
        same_unit = self.row + 1 < len(self.states) and self.states.unit[self.row + 1] == here.unit[0]
        terminated = self.steps >= self.episode_length or not same_unit
        if not terminated:
            self.row += 1
        observation = self._observe()
        return observation, float(rewards.reward[0, 0]), terminated, False, info


def make_env(env_config: dict) -> ReplenishmentEnv:
    """RLlib's env creator. ``env_config``: ``checkpoint`` (required: a policy folder whose manifest
    names data and labels, or pass ``data`` and ``labels``; its feature statistics encode the
    observations), ``window`` ("train"), ``overrides`` (["rl.omega=0.5", ...]), ``flatten`` (True),
    ``episode_length`` (1). Config: the policy's run config plus the overrides."""
    from orpr_ray.config import apply_overrides, load_config, validate_config
    from orpr_ray.core.artifacts import read_manifest
    from orpr_ray.rl.driver import load_start, start_inputs
    from orpr_ray.train.runner import load_inputs

    checkpoint = env_config["checkpoint"]
    overrides = list(env_config.get("overrides", []))
    manifest = read_manifest(checkpoint, verify=False) or {}
    cfg = (validate_config(apply_overrides(dict(manifest["config"]), overrides)) if "config" in manifest
           else load_config(None, overrides))
    data_dir, labels_dir = start_inputs(checkpoint, env_config.get("data"), env_config.get("labels"))
    _, meta = load_start(cfg, checkpoint)
    inputs = load_inputs(cfg, data_dir, labels_dir)
    states = states_from_labels(inputs.labels, inputs.split, env_config.get("window", "train"), cfg)
    return ReplenishmentEnv(inputs.ds, states, meta, cfg, flatten=env_config.get("flatten", True),
                            episode_length=int(env_config.get("episode_length", 1)))


def register(name: str = ENV_NAME) -> str:
    """Register the environment with RLlib (``AlgorithmConfig().environment(name, env_config=...)``)."""
    from ray.tune.registry import register_env

    register_env(name, make_env)
    return name
