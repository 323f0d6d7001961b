"""The RLOO maths: group layout, leave-one-out advantages, exact KL, the loss and its terms."""
from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError

from orpr_ray.rl.config import RLConfig
from orpr_ray.rl.rloo import exact_kl, leave_one_out_advantages, rloo_loss, sample_actions


def test_group_layout_states_on_axis_0_samples_on_axis_1():
    rewards = torch.tensor([[1.0, 2.0, 3.0], [10.0, 20.0, 30.0]])  # 2 states x k = 3
    advantages = leave_one_out_advantages(rewards)
    # Each state's baseline averages ITS OWN other samples: the groups never mix across states.
    assert torch.allclose(advantages, torch.tensor([[-1.5, 0.0, 1.5], [-15.0, 0.0, 15.0]]))
    # Sampling puts state i's k draws in row i: a state that puts all mass on one target draws only it.
    logits = torch.full((2, 6), -1e4)
    logits[0, 3] = logits[1, 5] = 0.0
    actions = sample_actions(logits, 4, torch.Generator().manual_seed(0))
    assert actions.shape == (2, 4)
    assert (actions[0] == 3).all() and (actions[1] == 5).all()
    # Row-major flattening: flat index i * k + j is sample j of state i.
    assert actions.reshape(-1)[1 * 4 + 2] == actions[1, 2]


def test_leave_one_out_baseline_excludes_the_sample_itself():
    rewards = torch.tensor([[4.0, 0.0, 2.0, 6.0]])
    advantages = leave_one_out_advantages(rewards)
    for j in range(4):
        others = torch.cat([rewards[0, :j], rewards[0, j + 1:]])
        assert advantages[0, j] == pytest.approx(float(rewards[0, j] - others.mean()))
    # Equal rewards give no signal; the advantages of a group sum to zero.
    assert torch.equal(leave_one_out_advantages(torch.full((3, 5), 7.0)), torch.zeros(3, 5))
    assert float(advantages.sum()) == pytest.approx(0.0, abs=1e-6)


def test_k_equal_one_is_rejected_everywhere():
    with pytest.raises(ValueError, match="k >= 2"):
        leave_one_out_advantages(torch.ones(4, 1))
    with pytest.raises(ValueError, match="k >= 2"):
        sample_actions(torch.zeros(4, 6), 1)
    with pytest.raises(ValidationError):
        RLConfig(k=1)


def test_exact_kl_over_the_grid():
    log_p = torch.log(torch.tensor([[0.25, 0.5, 0.25]]))
    uniform = torch.log(torch.full((1, 3), 1 / 3))
    expected = 0.25 * math.log(0.75) + 0.5 * math.log(1.5) + 0.25 * math.log(0.75)
    assert float(exact_kl(log_p, uniform)[0]) == pytest.approx(expected, rel=1e-6)
    assert float(exact_kl(log_p, log_p)[0]) == pytest.approx(0.0, abs=1e-7)
    assert float(exact_kl(uniform, log_p)[0]) > 0


def value(tensor: torch.Tensor) -> float:
    return tensor.detach().item()


def hand_example():
    logits = torch.log(torch.tensor([[0.25, 0.5, 0.25]])).requires_grad_(True)  # softmax = these probs
    actions = torch.tensor([[0, 1]])                                              # k = 2 samples of state 0
    advantages = leave_one_out_advantages(torch.tensor([[1.0, 0.0]]))             # [1, -1]
    ref = torch.log(torch.full((1, 3), 1 / 3))
    mu, logvar = torch.tensor([[1.0]]), torch.tensor([[0.0]])
    return logits, actions, advantages, ref, mu, logvar


def test_hand_computed_loss():
    logits, actions, advantages, ref, mu, logvar = hand_example()
    terms = rloo_loss(logits, actions, advantages, ref_log_probs=ref, beta=0.1, mu=mu, logvar=logvar,
                      latent_weight=0.2)
    policy = -(1.0 * math.log(0.25) + (-1.0) * math.log(0.5)) / 2      # -mean(A * log pi(a))
    kl = 0.5 * math.log(0.75) + 0.5 * math.log(1.5)                   # KL(p || uniform)
    latent = 0.5 * (1.0 + 1.0 - 1.0 - 0.0)                            # KL(N(1, 1) || N(0, 1))
    assert value(terms["policy"]) == pytest.approx(policy, rel=1e-6)
    assert value(terms["kl"]) == pytest.approx(kl, rel=1e-6)
    assert value(terms["latent"]) == pytest.approx(latent, rel=1e-6)
    assert value(terms["loss"]) == pytest.approx(policy + 0.1 * kl + 0.2 * latent, rel=1e-6)
    # The policy gradient raises the logit of the better action and lowers the worse one's.
    terms["policy"].backward()
    assert logits.grad[0, 0] < 0 < logits.grad[0, 1]


def test_beta_zero_removes_the_kl_term_and_needs_no_reference():
    logits, actions, advantages, ref, mu, logvar = hand_example()
    without = rloo_loss(logits, actions, advantages, ref_log_probs=None, beta=0.0, mu=mu, logvar=logvar,
                        latent_weight=0.2)
    ignored = rloo_loss(logits, actions, advantages, ref_log_probs=ref, beta=0.0, mu=mu, logvar=logvar,
                        latent_weight=0.2)
    assert "kl" not in without and "kl" not in ignored
    assert value(without["loss"]) == pytest.approx(value(without["policy"] + 0.2 * without["latent"]))
    assert value(ignored["loss"]) == value(without["loss"])
    with_kl = rloo_loss(logits, actions, advantages, ref_log_probs=ref, beta=0.5, mu=mu, logvar=logvar,
                        latent_weight=0.2)
    assert value(with_kl["loss"]) > value(without["loss"])
    with pytest.raises(ValueError, match="reference"):
        rloo_loss(logits, actions, advantages, ref_log_probs=None, beta=0.5)


def test_per_state_kl_weights_weigh_each_states_kl():
    logits = torch.log(torch.tensor([[0.25, 0.5, 0.25], [0.6, 0.2, 0.2]]))
    ref = torch.log(torch.full((2, 3), 1 / 3))
    actions, advantages = torch.zeros(2, 2, dtype=torch.long), torch.zeros(2, 2)
    kl = exact_kl(torch.log_softmax(logits, dim=-1), ref)
    terms = rloo_loss(logits, actions, advantages, ref_log_probs=ref, beta=torch.tensor([0.0, 2.0]))
    assert value(terms["loss"]) == pytest.approx(float(2.0 * kl[1] / 2), rel=1e-6)
    assert value(terms["kl"]) == pytest.approx(float(kl.mean()), rel=1e-6)  # logged unweighted
