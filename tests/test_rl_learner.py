"""The RLOO learner: updates only what it trains, checkpoints and resumes exactly, anchors expert states."""
from __future__ import annotations

import dataclasses
from typing import get_args

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from rl_helpers import make_world, tiny_config

from orpr_ray.model.checkpoint import read_checkpoint
from orpr_ray.model.network import PARTS, target_index
from orpr_ray.rl.config import Part, RLConfig
from orpr_ray.rl.learner import RLOOLearner, greedy, reference_log_probs, run_learner
from orpr_ray.train.runner import LocalContext


@pytest.fixture(scope="module")
def world():
    return make_world()


def parameters(model: torch.nn.Module, part: str) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.part_parameters(part)]


def changed(before: list[torch.Tensor], model: torch.nn.Module, part: str) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(before, model.part_parameters(part)))


def test_config_parts_are_the_networks_parts():
    assert set(get_args(Part)) == set(PARTS)
    with pytest.raises(ValidationError):
        RLConfig(trainable_parts=[])


def test_a_step_changes_the_trained_parts_only_and_never_the_reference(world):
    learner = RLOOLearner(world.job())
    head, encoders = parameters(learner.model, "decision_head"), parameters(learner.model, "encoders")
    reference = parameters(learner.reference, "decision_head")
    terms = learner.step()
    assert changed(head, learner.model, "decision_head")
    assert not changed(encoders, learner.model, "encoders")
    assert not changed(reference, learner.reference, "decision_head")
    assert {"loss", "policy", "kl", "latent", "reward", "r_rule", "r_sim"} <= set(terms)
    assert learner.steps_done == 1
    assert -1.0 <= terms["reward"] <= 1.0 and terms["kl"] >= 0


def test_beta_zero_step_has_no_kl_term(world):
    cfg = tiny_config(beta=0.0)
    terms = RLOOLearner(world.job(cfg)).step()
    assert "kl" not in terms and np.isfinite(terms["loss"])


def test_checkpoint_restore_continues_exactly(world, tmp_path):
    uninterrupted = RLOOLearner(world.job())
    for _ in range(3):
        last = uninterrupted.step()
    first = RLOOLearner(world.job())
    first.step(), first.step()
    first.save(str(tmp_path), history=[{"step": 2}])
    resumed = RLOOLearner(world.job())
    assert resumed.restore(str(tmp_path)) == [{"step": 2}] and resumed.steps_done == 2
    again = resumed.step()
    assert again["loss"] == pytest.approx(last["loss"], rel=1e-5)  # same states and samples as step 3
    for a, b in zip(uninterrupted.model.parameters(), resumed.model.parameters()):
        assert torch.allclose(a, b, atol=1e-6)


def test_run_learner_reports_every_eval_and_resumes_after_the_last_report(world, tmp_path):
    cfg = tiny_config(steps=4, eval_every=2)
    context = LocalContext(tmp_path / "run")
    history = run_learner(world.job(cfg), context)
    assert [h["step"] for h in history] == [0, 2, 4]  # step 0: the start policy
    assert {"val_total_cost", "val_in_stock_rate", "val_turnover_days", "val_kl", "val_pareto_rate"} <= set(history[0])
    # A longer run in the same folder starts from the checkpoint at step 4, not from scratch.
    longer = run_learner(world.job(tiny_config(steps=6, eval_every=2)), context)
    assert [h["step"] for h in longer] == [0, 2, 4, 6]
    assert longer[:3] == history


def test_expert_states_anchor_the_kl_to_the_expert_label():
    ref_logits = torch.zeros(3, 10)
    target, expert = np.array([2, 7, 4]), np.array([False, True, False])
    log_probs = reference_log_probs(ref_logits, target, expert, width=1.0)
    assert torch.allclose(log_probs[[0, 2]], torch.log_softmax(ref_logits[[0, 2]], dim=-1))
    probs = log_probs[1].exp()
    assert int(probs.argmax()) == 7 and float(probs.sum()) == pytest.approx(1.0, abs=1e-5)
    assert torch.isfinite(log_probs).all()


def test_expert_states_can_shift_the_reference_distribution_by_the_experts_correction():
    ref_logits = torch.log(torch.tensor([[0.1, 0.2, 0.4, 0.2, 0.1, 1e-9],
                                         [0.5, 0.3, 0.2, 1e-9, 1e-9, 1e-9],
                                         [0.1, 0.1, 0.2, 0.3, 0.2, 0.1]]))
    label, target = np.array([2, 0, 3]), np.array([4, 0, 1])  # corrections +2, 0 (not expert), -2
    expert = np.array([True, False, True])
    probs = reference_log_probs(ref_logits, target, expert, width=1.0, shift_from=label).exp()
    assert probs[0].tolist() == pytest.approx([0, 0, 0.1, 0.2, 0.4, 0.3], abs=1e-6)  # the tail piles at the end
    assert probs[1].tolist() == pytest.approx(torch.softmax(ref_logits[1], dim=-1).tolist(), abs=1e-6)
    assert probs[2].tolist() == pytest.approx([0.4, 0.3, 0.2, 0.1, 0, 0], abs=1e-6)
    assert torch.allclose(probs.sum(dim=-1), torch.ones(3))


def test_promotion_batches_mix_expert_and_other_states(world):
    labels = world.labels.copy()
    labels["expert_index"] = -1
    labels.loc[labels.index[::10], "expert_index"] = 3
    job = world.job(labels=labels, promo_share=0.5)
    learner = RLOOLearner(job)
    batch = learner.draw(np.random.default_rng(0))
    assert batch.expert[:8].all()  # half of 16 states from the expert states
    assert (batch.target[batch.expert] == 3).all()
    assert (batch.target[~batch.expert] == batch.label[~batch.expert]).all()
    # Other states are only anchored: no policy gradient, the anchor's KL weight.
    advantages = torch.ones(len(batch), 4)
    weights = learner.kl_weights(batch, advantages)
    promo = world.cfg.rl.promo
    assert (advantages[torch.from_numpy(~batch.expert)] == 0).all() and (advantages[:8] == 1).all()
    assert weights.tolist() == [promo.expert_beta if e else promo.anchor_beta for e in batch.expert]


def test_the_policy_is_read_and_saved_with_the_start_checkpoints_decision_rule(world, tmp_path):
    """RL scores and exports the policy as the backtest and the service read it (the start's quantile)."""
    meta = dataclasses.replace(world.meta, decision_quantile=0.9)
    job = dataclasses.replace(world.job(), meta=meta)
    learner = RLOOLearner(job)
    choice, log_probs = greedy(learner.model, job, job.val, learner.panel, quantile=0.9)
    assert torch.equal(torch.from_numpy(choice), target_index(log_probs, 0.9))
    assert not torch.equal(torch.from_numpy(choice), log_probs.argmax(dim=-1))  # a rule the mode would miss
    learner.save(str(tmp_path), history=[])
    assert read_checkpoint(tmp_path)[1].decision_quantile == 0.9

