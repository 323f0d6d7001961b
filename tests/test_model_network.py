"""The network: sizes, named outputs, deterministic eval path, seeded init, losses, freeze schedule."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from model_helpers import tiny_config, tiny_dataset, tiny_model_config, tiny_stats
from orpr_ray.model.config import ModelConfig
from orpr_ray.model.features import PanelFeatures, encode, split_extra_attributes
from orpr_ray.model.network import (PARTS, build_model, count_parameters, decision_loss, kl_to_standard_normal,
                                    set_trainable, soft_targets, target_index)
from orpr_ray.train.stages import Batch, stage_loss, trainable_parts


@pytest.fixture(scope="module")
def setup():
    cfg = tiny_config()
    ds = tiny_dataset(cfg)
    stats = tiny_stats(ds, cfg.model)
    panel = PanelFeatures(ds, cfg.model)
    unit = np.arange(ds.n_units)
    day = np.full(ds.n_units, 100)
    raw = panel.raw(unit, day)
    actual, observed = panel.future_sales(unit, day)
    batch = Batch(features=encode(raw, stats, cfg.model), raw=raw, actual=torch.from_numpy(actual).float(),
                  observed=torch.from_numpy(observed), label=torch.arange(ds.n_units) % 30)
    numeric, categorical = split_extra_attributes(ds)
    return cfg, batch, (len(numeric), len(categorical))


def _model(cfg, extras, seed=0):
    return build_model(cfg.model, grid_size=len(cfg.label.grid), n_extra_numeric=extras[0],
                       n_extra_categorical=extras[1], seed=seed)


def test_default_network_has_about_093m_parameters():
    n = count_parameters(build_model(ModelConfig(), grid_size=60))
    assert 850_000 <= n <= 1_000_000, n


def test_every_size_is_configurable():
    small = count_parameters(build_model(tiny_model_config(), grid_size=60))
    wider = count_parameters(build_model(tiny_model_config(fused_dim=64), grid_size=60))
    assert small < 100_000 < 850_000
    assert wider > small


def test_forward_returns_named_outputs_with_shapes(setup):
    cfg, batch, extras = setup
    out = _model(cfg, extras)(batch.features)
    n, horizon, grid = len(batch.actual), cfg.model.horizon_days, len(cfg.label.grid)
    assert out["logits"].shape == (n, grid)
    assert out["forecast"].shape == out["forecast_scaled"].shape == (n, horizon)
    assert out["mu"].shape == out["logvar"].shape == out["z"].shape == (n, cfg.model.latent_dim)
    assert out["state"].shape == (n, cfg.model.fused_dim)
    assert (out["forecast"] >= 0).all()
    assert torch.isfinite(out["logits"]).all()


def test_eval_path_is_deterministic_and_sampling_is_seeded(setup):
    cfg, batch, extras = setup
    model = _model(cfg, extras).eval()
    a, b = model(batch.features), model(batch.features)
    assert torch.equal(a["logits"], b["logits"])
    assert torch.equal(a["z"], a["mu"])
    s1 = model(batch.features, sample=True, generator=torch.Generator().manual_seed(5))
    s2 = model(batch.features, sample=True, generator=torch.Generator().manual_seed(5))
    assert torch.equal(s1["z"], s2["z"])
    assert not torch.equal(s1["z"], a["mu"])


def test_seed_fixes_the_initial_weights(setup):
    cfg, _, extras = setup
    w0, w0_again, w1 = (_model(cfg, extras, seed).state_dict() for seed in (0, 0, 1))
    assert all(torch.equal(w0[k], w0_again[k]) for k in w0)
    assert any(not torch.equal(w0[k], w1[k]) for k in w0 if w0[k].numel() > 1)


def test_fusion_weights_are_a_distribution(setup):
    cfg, _, extras = setup
    weights = _model(cfg, extras).stream_weights
    assert weights.shape == (3,)
    assert torch.isclose(weights.sum(), torch.tensor(1.0))


def test_soft_targets_and_kl():
    label = torch.tensor([0, 5, 9])
    hard = soft_targets(label, 10, 0.0)
    assert torch.equal(hard.argmax(dim=1), label) and torch.equal(hard.sum(dim=1), torch.ones(3))
    soft = soft_targets(label, 10, 1.5)
    assert torch.allclose(soft.sum(dim=1), torch.ones(3))
    assert torch.equal(soft.argmax(dim=1), label)
    assert soft[1, 4] > soft[1, 2] > 0  # neighbours of the label weigh more than far targets
    assert torch.allclose(kl_to_standard_normal(torch.zeros(2, 3), torch.zeros(2, 3)), torch.zeros(2))
    assert (kl_to_standard_normal(torch.ones(2, 3), torch.zeros(2, 3)) > 0).all()


def test_decision_loss_is_low_for_the_labelled_target():
    logits = torch.full((1, 10), -5.0)
    logits[0, 3] = 5.0
    out = {"logits": logits, "mu": torch.zeros(1, 2), "logvar": torch.zeros(1, 2)}
    right = decision_loss(out, torch.tensor([3]), kl_weight=0.1, label_width=0.0)
    wrong = decision_loss(out, torch.tensor([7]), kl_weight=0.1, label_width=0.0)
    assert right["loss"] < 0.01 < wrong["loss"]
    assert set(right) == {"loss", "ce", "kl"}


@pytest.mark.parametrize("stage", ["forecast", "decision", "finetune"])
def test_freeze_schedule_leaves_frozen_weights_unchanged(setup, stage):
    cfg, batch, extras = setup
    model = _model(cfg, extras)
    parts = trainable_parts(stage, cfg.train)
    set_trainable(model, parts)
    before = {part: [p.detach().clone() for p in model.part_parameters(part)] for part in PARTS}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    loss = stage_loss(stage, model(batch.features, sample=True, generator=torch.Generator().manual_seed(0)),
                      batch, cfg.train)["loss"]
    loss.backward()
    optimizer.step()
    for part in PARTS:
        changed = any(not torch.equal(b, p) for b, p in zip(before[part], model.part_parameters(part)))
        assert changed == (part in parts), (stage, part)
    assert sum(len(model.part_parameters(p)) for p in PARTS) == len(list(model.parameters()))


def test_targets_are_read_as_the_mode_or_a_quantile():
    probs = torch.tensor([[0.1, 0.35, 0.05, 0.2, 0.3]])
    logits = probs.log()
    assert target_index(logits, None).item() == 1  # the mode
    assert target_index(logits, 0.55).item() == 3  # cumulative 0.1, 0.45, 0.5, 0.7, 1.0
    assert target_index(logits, 0.4).item() == 1
    assert target_index(logits, 0.99).item() == 4
