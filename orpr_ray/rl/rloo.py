"""REINFORCE leave-one-out (RLOO) over the inventory-days grid: pure torch functions, no Ray.

Group layout (pinned by a test): a batch of B states with k sampled actions each is a (B, k)
tensor; axis 0 is the state, axis 1 holds the state's k samples (its leave-one-out group).
Flattening is row-major, so flat index ``i * k + j`` is sample j of state i.
"""
from __future__ import annotations

import torch

from orpr_ray.model.network import kl_to_standard_normal


def _check_group(k: int) -> None:
    if k < 2:
        raise ValueError(f"RLOO needs k >= 2 samples per state (the baseline leaves one out), got k = {k}")


def sample_actions(logits: torch.Tensor, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """k grid indices per state, drawn with replacement from softmax(logits): (B, G) -> (B, k) int64."""
    _check_group(k)
    probs = torch.softmax(logits.detach(), dim=-1)
    return torch.multinomial(probs, k, replacement=True, generator=generator)


def leave_one_out_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """A_ij = r_ij - mean_{l != j} r_il over each state's group: (B, k) -> (B, k).

    The baseline of sample j is the mean of the other k - 1 rewards of the same state, so it does
    not depend on a_j and the gradient estimate stays unbiased.
    """
    k = rewards.shape[1]
    _check_group(k)
    baseline = (rewards.sum(dim=1, keepdim=True) - rewards) / (k - 1)
    return rewards - baseline


def exact_kl(log_probs: torch.Tensor, ref_log_probs: torch.Tensor) -> torch.Tensor:
    """KL(pi || pi_ref) per state, summed over the whole grid (the action space is discrete): (B, G) -> (B,)."""
    return (log_probs.exp() * (log_probs - ref_log_probs)).sum(dim=-1)


def rloo_loss(logits: torch.Tensor, actions: torch.Tensor, advantages: torch.Tensor, *,
              ref_log_probs: torch.Tensor | None, beta: float | torch.Tensor, mu: torch.Tensor | None = None,
              logvar: torch.Tensor | None = None, latent_weight: float = 0.0) -> dict[str, torch.Tensor]:
    """Named loss terms; ``loss`` = policy-gradient + beta * KL + latent_weight * latent.

    logits (B, G) of the policy; actions, advantages (B, k); ref_log_probs (B, G) log pi_ref, or
    None when ``beta == 0`` (then there is no KL term and no reference is needed); beta: a number, or
    (B,) per-state weights (the logged ``kl`` is the unweighted mean either way); mu, logvar
    (B, Z) of the VAE latent q(z | s), whose KL to N(0, I) keeps the latent a proper posterior.
    """
    log_probs = torch.log_softmax(logits, dim=-1)                       # (B, G)
    taken = log_probs.gather(1, actions)                                 # (B, k) log pi(a_ij | s_i)
    policy = -(advantages.detach() * taken).mean()
    terms = {"policy": policy}
    loss = policy
    if torch.as_tensor(beta).max() > 0:
        if ref_log_probs is None:
            raise ValueError("beta > 0 needs the reference policy's log-probabilities")
        kl = exact_kl(log_probs, ref_log_probs)                           # (B,)
        terms["kl"] = kl.mean()
        loss = loss + (beta * kl).mean()
    if latent_weight > 0 and mu is not None:
        latent = kl_to_standard_normal(mu, logvar).mean()
        terms["latent"] = latent
        loss = loss + latent_weight * latent
    terms["loss"] = loss
    return terms
