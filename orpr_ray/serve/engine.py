"""Decisions for request units: the policy's forward pass plus today's order, without Ray or HTTP.

The order follows the simulator's inventory-days rule (DESIGN.md section 4): the network picks
``v`` days of cover, the order-up-to level is ``S = ceil(v * d_hat)``
(:func:`orpr_ray.sim.engine.inventory_days_to_levels`) and the order is ``max(0, S - (on_hand +
on_order))``. ``d_hat`` is the trailing mean of the sales sent, over ``sim.demand_window_days``:
the same demand rate the OR labels were computed with, so ``v`` means here what it meant in
training. The network's own forecast is returned beside it, not used for the order.
"""
from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import numpy as np

from orpr_ray.core.artifacts import read_manifest, sha256_file
from orpr_ray.model.checkpoint import checkpoint_file
from orpr_ray.model.features import Features, select
from orpr_ray.model.policy import Decision, Policy
from orpr_ray.serve.schemas import UnitRequest, json_safe
from orpr_ray.sim.engine import inventory_days_to_levels

# Checkpoint bookkeeping that is for resuming training, not for describing the model.
_RESUME_ONLY = ("optimizer", "scheduler")


def trailing_daily_demand(units: list[UnitRequest], window: int) -> np.ndarray:
    """(B,) mean of each unit's last ``window`` sales (fewer when fewer were sent).

    Equals ``orpr_ray.sim.policies.trailing_mean_demand`` on the unit's series at the decision day.
    """
    return np.array([sum(u.sales[-window:]) / len(u.sales[-window:]) for u in units], dtype=np.float64)


def model_version(checkpoint_dir: str | Path, stage: str) -> str:
    """``<stage>-<first 12 hex digits of model.pt's sha256>``: changes whenever the weights do."""
    return f"{stage}-{sha256_file(checkpoint_file(checkpoint_dir))[:12]}"


class DecisionEngine:
    """One loaded policy answering request units: what each Serve replica holds (plain code, no Ray)."""

    def __init__(self, policy: Policy, *, version: str, demand_window_days: int, top_k: int,
                 chunk_units: int, describe: dict | None = None):
        self.policy = policy
        self.version = version
        self.window = demand_window_days
        self.top_k = min(top_k, len(policy.grid))
        self.chunk = chunk_units
        self.describe = describe or {}
        stats = policy.meta.stats
        self._categories = set(stats.categories)
        self._dcs = set(stats.dcs)
        self._extra_vocab = {name: set(vocab) for name, vocab in zip(stats.extra_categorical, stats.extra_vocab)}

    @classmethod
    def load(cls, checkpoint_dir: str | Path, *, demand_window_days: int, top_k: int,
             chunk_units: int) -> "DecisionEngine":
        policy = Policy.load(checkpoint_dir)
        file = checkpoint_file(checkpoint_dir)
        manifest = read_manifest(checkpoint_dir, verify=False) or read_manifest(file.parent, verify=False)
        return cls(policy, version=model_version(checkpoint_dir, policy.meta.stage),
                   demand_window_days=demand_window_days, top_k=top_k, chunk_units=chunk_units,
                   describe={"checkpoint": str(file), "manifest": manifest})

    def forward(self, features: Features) -> Decision:
        """The policy's decisions, one forward pass per ``chunk_units`` rows (bounds activation memory)."""
        n = len(features["scale"])
        parts = [self.policy.decide(select(features, slice(lo, lo + self.chunk))) for lo in range(0, n, self.chunk)]
        if len(parts) == 1:
            return parts[0]
        return Decision(**{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(Decision)})

    def decide(self, units: list[UnitRequest]) -> list[dict]:
        """One answer dict (schemas.UnitDecision fields) per unit, in order.

        Raises InputError (naming the record and field) for what only the model can check, such as
        extra attributes it was not trained with.
        """
        return self.answers(units, self.forward(self.policy.features_from_records(units)))

    def answers(self, units: list[UnitRequest], decision: Decision) -> list[dict]:
        """Today's order and the answer dicts from the policy's decisions for ``units``."""
        d_hat = trailing_daily_demand(units, self.window)  # (B,)
        position = np.array([u.on_hand + u.on_order for u in units])  # (B,)
        level = inventory_days_to_levels(decision.v, d_hat)  # (B,)
        order = np.maximum(level - position, 0.0)
        top = np.argsort(-decision.probs, axis=1, kind="stable")[:, :self.top_k]  # (B, k), ties: lower v first
        top_days = self.policy.grid[top].tolist()
        top_probs = np.take_along_axis(decision.probs, top, axis=1).tolist()
        forecasts = decision.forecast.tolist()
        return [{
            "sku": u.sku, "dc": u.dc, "inventory_days": int(decision.v[i]), "order_quantity": float(order[i]),
            "order_up_to_level": float(level[i]), "inventory_position": float(position[i]),
            "daily_demand": float(d_hat[i]), "forecast": forecasts[i],
            "forecast_over_cover": float(decision.demand_over_horizon[i]),
            "top": [{"inventory_days": d, "probability": p} for d, p in zip(top_days[i], top_probs[i])],
            "fallbacks": self.fallbacks(u),
        } for i, u in enumerate(units)]

    def fallbacks(self, unit: UnitRequest) -> list[str]:
        """Inputs that map to the model's 'unknown' embedding row (the feature code does the mapping)."""
        out = [] if unit.category in self._categories else ["category"]
        if unit.dc not in self._dcs:
            out.append("dc")
        for name, vocab in self._extra_vocab.items():
            value = unit.extra.get(name)
            if value is not None and str(value) not in vocab:
                out.append(f"extra.{name}")
        return out

    def info(self) -> dict:
        """What GET /v1/model answers: version, grid, config, vocabularies and the training provenance."""
        meta = self.policy.meta
        training = {k: v for k, v in meta.training.items() if k not in _RESUME_ONLY}
        return json_safe({
            "model_version": self.version,
            "stage": meta.stage,
            "grid": [int(v) for v in meta.grid],
            "config": meta.model_config.model_dump(mode="json"),
            "features": {"categories": meta.stats.categories, "dcs": meta.stats.dcs,
                         "extra_numeric": meta.stats.extra_numeric,
                         "extra_categorical": meta.stats.extra_categorical},
            "demand_window_days": self.window,
            "sources": meta.sources,
            "training": training,
            **self.describe,
        })
