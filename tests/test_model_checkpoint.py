"""Checkpoints describe themselves, load safely, reproduce outputs exactly and refuse other configs."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from model_helpers import tiny_config, tiny_dataset, tiny_model_config, tiny_stats
from orpr_ray.core.errors import ConfigError, InputError
from orpr_ray.model.checkpoint import (CHECKPOINT_FILE, CheckpointMeta, check_compatible, model_for,
                                       read_checkpoint, save_checkpoint)
from orpr_ray.model.policy import Policy, load_policy

CFG = tiny_config()


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    ds = tiny_dataset(CFG)
    stats = tiny_stats(ds, CFG.model)
    meta = CheckpointMeta(model_config=CFG.model, stats=stats, grid=CFG.label.grid, stage="decision",
                          sources={"data": {"path": "somewhere"}}, training={"epoch": 3, "history": [{"loss": 1.0}]})
    model = model_for(meta, seed=7)
    folder = tmp_path_factory.mktemp("ckpt")
    save_checkpoint(folder, model, meta)
    return ds, model.eval(), meta, folder


def test_round_trip_reproduces_outputs_exactly(saved):
    ds, model, meta, folder = saved
    loaded, loaded_meta = load_policy(folder)
    policy = Policy(loaded, loaded_meta)
    feats = policy.features_from_panel(policy.panel(ds), np.arange(ds.n_units), np.full(ds.n_units, 150))
    with torch.no_grad():
        a, b = model(feats), loaded(feats)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert loaded_meta.grid == meta.grid and loaded_meta.stats == meta.stats
    assert loaded_meta.model_config == meta.model_config
    assert loaded_meta.sources == meta.sources and loaded_meta.training["epoch"] == 3


def test_stage_output_folder_resolves_to_its_policy(saved, tmp_path):
    _, model, meta, folder = saved
    save_checkpoint(tmp_path / "policy", model, meta)
    _, again = load_policy(tmp_path)
    assert again.stage == "decision"
    with pytest.raises(InputError, match="no model.pt"):
        load_policy(tmp_path / "nothing")


def test_policy_decides_grid_targets_with_probabilities(saved):
    ds, _, _, folder = saved
    policy = Policy.load(folder)
    unit = np.arange(ds.n_units)
    decision = policy.decide(policy.features_from_panel(policy.panel(ds), unit, np.full(ds.n_units, 150)))
    assert decision.v.shape == (ds.n_units,) and set(decision.v) <= set(CFG.label.grid)
    assert np.allclose(decision.probs.sum(axis=1), 1.0, atol=1e-5)
    assert decision.forecast.shape == (ds.n_units, CFG.model.horizon_days)
    horizon = np.minimum((ds.units["lead_time_days"] + ds.units["review_period_days"]).to_numpy(),
                         CFG.model.horizon_days)
    expected = [decision.forecast[i, :h].sum() for i, h in enumerate(horizon)]
    assert np.allclose(decision.demand_over_horizon, expected, rtol=1e-5)


def test_checkpoint_from_another_config_is_refused(saved):
    _, _, meta, folder = saved
    _, stored = read_checkpoint(folder)
    check_compatible(stored, model_config=CFG.model, grid=CFG.label.grid)  # the same config passes
    other = tiny_model_config(fused_dim=48)
    with pytest.raises(ConfigError, match=r"model\.fused_dim: 32 in the checkpoint, 48 now"):
        check_compatible(stored, model_config=other)
    with pytest.raises(ConfigError, match=r"grid: 1\.\.30 \(30 targets\) in the checkpoint, 1\.\.60"):
        check_compatible(stored, grid=list(range(1, 61)))


def test_loading_never_runs_pickled_code(tmp_path):
    class Sneaky:
        def __reduce__(self):
            return (print, ("this must not run",))

    torch.save({"format": "orpr-checkpoint/1", "payload": Sneaky()}, tmp_path / CHECKPOINT_FILE)
    with pytest.raises(InputError, match="not a readable checkpoint"):
        read_checkpoint(tmp_path)
    torch.save({"format": "something-else"}, tmp_path / CHECKPOINT_FILE)
    with pytest.raises(InputError, match="checkpoint format 'something-else'"):
        read_checkpoint(tmp_path)
