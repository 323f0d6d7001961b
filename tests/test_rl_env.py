"""The gymnasium environment: valid spaces, the hybrid reward of the learner, episodes along a unit,
and creation through RLlib's env registry from a policy folder."""
from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from rl_helpers import make_world, materialise

from orpr_ray.rl.env import ENV_NAME, ReplenishmentEnv, make_env, register
from orpr_ray.rl.reward import score_actions


@pytest.fixture(scope="module")
def world():
    return make_world()


def make(world, **kwargs) -> ReplenishmentEnv:
    return ReplenishmentEnv(world.ds, world.job().train, world.meta, world.cfg, **kwargs)


def test_env_passes_gymnasiums_checker_flat_and_as_three_streams(world):
    for flatten in (True, False):
        env = make(world, flatten=flatten)
        check_env(env, skip_render_check=True)
        obs, _ = env.reset(seed=1)
        assert env.observation_space.contains(obs)
    assert set(env.observation_space.spaces) == {"sales", "attributes", "objectives"}
    assert env.action_space.n == len(world.cfg.label.grid)


def test_reward_is_the_learners_hybrid_reward(world):
    env = make(world)
    _, info = env.reset(seed=3)
    grid = np.asarray(world.cfg.label.grid)
    row = env.states.take([env.row])
    _, reward, terminated, truncated, step_info = env.step(5)
    expected = score_actions(world.ds, row.unit, row.day, grid[[[5]]], target=grid[row.target], current=row.current,
                             reference=grid[row.target], cfg=world.cfg)
    assert reward == pytest.approx(float(expected.reward[0, 0]))
    assert terminated and not truncated and step_info["unit"] == info["unit"] and step_info["v"] == grid[5]
    with pytest.raises(ValueError, match="not an index"):
        env.step(len(grid))


def test_episodes_follow_one_unit_through_consecutive_decisions(world):
    env = make(world, episode_length=3)
    _, info = env.reset(seed=0)
    env.row = int(np.flatnonzero(env.states.unit == info["unit"])[0])  # start at the unit's first decision
    days = []
    for _ in range(3):
        _, _, terminated, _, step_info = env.step(0)
        assert step_info["unit"] == info["unit"]
        days.append(step_info["day"])
    assert terminated and days == sorted(days) and len(set(days)) == 3


@pytest.mark.ray
@pytest.mark.slow
def test_registered_env_builds_from_a_policy_folder(ray_session, world, tmp_path):
    from ray.tune.registry import ENV_CREATOR, _global_registry

    paths = materialise(world, tmp_path)
    assert register() == ENV_NAME
    creator = _global_registry.get(ENV_CREATOR, ENV_NAME)
    env = creator({"checkpoint": str(paths["start"]), "overrides": ["rl.omega=1.0"]})
    assert env.cfg.rl.omega == 1.0 and len(env.states) == len(world.job().train)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert make_env({"checkpoint": str(paths["start"]), "window": "val"}).states.day.min() >= world.split.val_start
