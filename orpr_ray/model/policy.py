"""A trained network as a replenishment policy: features in, inventory-days targets out.

This is what backtests, RL and serving call. ``decide`` is deterministic (latent z = mu) and
never tracks gradients.

A checkpoint folder with a ``base/`` folder next to its ``model.pt`` is a routed policy (the
promotion fine-tune writes one): decision points with a promotion planned in the days ahead the
features carry go to the fine-tuned network, all others to the base policy it started from, so the
fine-tune cannot move a decision outside promotions.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch

from orpr_ray.data.dataset import Dataset
from orpr_ray.model.checkpoint import (CHECKPOINT_FILE, CheckpointMeta, build_from_checkpoint, checkpoint_file,
                                       read_checkpoint)
from orpr_ray.model.features import DAY_CHANNELS, Features, PanelFeatures, UnitRecord, encode, raw_from_records
from orpr_ray.model.network import OrprNet, target_index


@dataclass
class Decision:
    """Decisions for a batch of B units (G grid targets, H horizon days).

    v: int64 (B,) chosen inventory-days target (a grid value); probs: float32 (B, G) over ``grid``;
    forecast: float32 (B, H) daily demand forecast in units; demand_over_horizon: float32 (B,)
    forecast summed over the unit's lead time + review period (capped at H days).
    """

    v: np.ndarray
    probs: np.ndarray
    forecast: np.ndarray
    demand_over_horizon: np.ndarray


BASE_FOLDER = "base"  # of a routed policy's checkpoint folder: the policy of the non-promotion points


def load_policy(checkpoint_dir: str | Path) -> tuple[OrprNet, CheckpointMeta]:
    """The network (eval mode) and its metadata from a checkpoint or stage output folder."""
    state_dict, meta = read_checkpoint(checkpoint_dir)
    return build_from_checkpoint(state_dict, meta), meta


def horizon_sum(forecast: torch.Tensor, horizon: torch.Tensor) -> torch.Tensor:
    """(B,) sum of the first ``horizon[i]`` days of ``forecast[i]`` (B, H); horizon capped at H."""
    days = torch.arange(forecast.shape[1], device=forecast.device)
    return (forecast * (days[None, :] < horizon[:, None])).sum(dim=1)


class Policy:
    def __init__(self, model: OrprNet, meta: CheckpointMeta):
        self.model = model.eval()
        self.meta = meta
        self.grid = np.asarray(meta.grid, dtype=np.int64)

    @classmethod
    def load(cls, checkpoint_dir: str | Path) -> "Policy":
        """The policy of a checkpoint folder; a RoutedPolicy when it has a base/ policy (module docstring)."""
        policy = cls(*load_policy(checkpoint_dir))
        base = checkpoint_file(checkpoint_dir).parent / BASE_FOLDER
        if (base / CHECKPOINT_FILE).is_file():
            return RoutedPolicy(policy, Policy(*load_policy(base)))
        return policy

    def panel(self, ds: Dataset) -> PanelFeatures:
        """Feature gatherer for decision points of a dataset (reuse it across calls on the same data)."""
        return PanelFeatures(ds, self.meta.model_config)

    def features_from_panel(self, panel: PanelFeatures, unit: np.ndarray, day: np.ndarray,
                            known: np.ndarray | None = None) -> Features:
        """known: (B, len(LABEL_OBJECTIVES)) alpha / recent turnover / recent in-stock per point, e.g.
        ``LabelHistory(labels, horizon).lookup(unit, day)``; None = unknown (masked)."""
        return encode(panel.raw(unit, day, known), self.meta.stats, self.meta.model_config)

    def features_from_records(self, records: list[UnitRecord]) -> Features:
        return encode(raw_from_records(records, self.meta.stats, self.meta.model_config), self.meta.stats,
                      self.meta.model_config)

    @torch.no_grad()
    def decide(self, features: Features) -> Decision:
        """Targets read from the logits by the checkpoint's rule (``meta.decision_quantile``)."""
        outputs = self.model(features)
        probs = torch.softmax(outputs["logits"], dim=-1)
        chosen = target_index(outputs["logits"], self.meta.decision_quantile)
        return Decision(v=self.grid[chosen.numpy()], probs=probs.numpy(),
                        forecast=outputs["forecast"].numpy(),
                        demand_over_horizon=horizon_sum(outputs["forecast"], features["horizon"]).numpy())


def promotion_ahead(features: Features, horizon_days: int) -> np.ndarray:
    """(B,) bool: a promotion is planned in the ``horizon_days`` days ahead that the features carry."""
    promo = features["days"][:, -horizon_days:, DAY_CHANNELS.index("promo")]
    return (promo > 0).any(dim=1).numpy()


class RoutedPolicy(Policy):
    """Promotion points to this policy (a promotion fine-tune), every other point to ``base``."""

    def __init__(self, promotion: Policy, base: Policy):
        super().__init__(promotion.model, promotion.meta)
        self.base = base

    def decide(self, features: Features) -> Decision:
        promo = promotion_ahead(features, self.meta.model_config.horizon_days)
        mine, theirs = super().decide(features), self.base.decide(features)
        return Decision(**{f.name: np.where(promo.reshape(-1, *[1] * (getattr(mine, f.name).ndim - 1)),
                                            getattr(mine, f.name), getattr(theirs, f.name))
                           for f in fields(Decision)})
