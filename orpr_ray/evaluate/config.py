"""Config of the backtest, its pure-RL PPO baseline and the report (docs/EVALUATION.md explains each)."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from orpr_ray.core.schema import Strict

CLASSIC_POLICIES = ("base_stock", "inventory_days", "s_S", "constant", "incumbent")
FRONTIER_FAMILIES = ("incumbent", "inventory_days", "base_stock")


class PPOConfig(Strict):
    """RLlib PPO trained from scratch on the gymnasium version of the decision problem (no OR labels)."""

    enabled: bool = Field(True, description="train and backtest the pure-RL baseline")
    sample_budget: int | None = Field(
        20000, ge=1, description="environment steps PPO trains on (the default keeps `make demo` near 10 "
                                 "minutes on 2 cores; it is below the RLOO run's scored samples); None = as "
                                 "many as the RLOO run scored (its manifest), else fallback_budget")
    fallback_budget: int = Field(20000, ge=1, description="steps when neither sample_budget nor an RLOO run "
                                                          "gives one")
    max_states: int = Field(20000, ge=1, description="training-window decision points tabulated for the "
                                                     "environment (a seeded sample when there are more)")
    train_batch_size: int = Field(4000, ge=16, description="environment steps per PPO iteration")
    minibatch_size: int = Field(500, ge=8)
    num_epochs: int = Field(5, ge=1, description="SGD passes over each iteration's batch")
    lr: float = Field(3e-4, gt=0)
    entropy_coeff: float = Field(0.01, ge=0)
    hidden: list[int] = Field(default_factory=lambda: [128, 128], description="MLP widths of policy and value nets")
    env_runners: int = Field(0, ge=0, description="RLlib env-runner actors (0 = sample in the driver)")
    envs_per_runner: int = Field(16, ge=1, description="environment copies stepped as one vector per runner "
                                                       "(batched forward passes)")

    @field_validator("hidden")
    @classmethod
    def _positive_widths(cls, values: list[int]) -> list[int]:
        if not values or min(values) < 1:
            raise ValueError("needs at least one layer, every width >= 1")
        return values


class EvaluateConfig(Strict):
    classic_policies: list[str] = Field(default_factory=lambda: list(CLASSIC_POLICIES),
                                        description="classic policies tuned and backtested (incumbent required)")
    segment_window: Literal["train", "train_val"] = Field(
        "train", description="days the ABC-XYZ segments are computed on: the training window, or everything "
                             "before the test window")
    bootstrap_samples: int = Field(1000, ge=10, description="Poisson-bootstrap replicates over units")
    ci_level: float = Field(0.95, gt=0, lt=1, description="two-sided percentile interval")
    decision_batch_size: int = Field(4096, ge=1, description="decision points per network forward pass")
    trajectory_units: int = Field(4, ge=0, description="units whose daily paths are kept for the report")
    frontier_families: list[str] = Field(default_factory=lambda: ["incumbent", "inventory_days"],
                                         description="classic policies re-tuned over frontier_targets")
    frontier_targets: list[float] = Field(
        default_factory=lambda: [0.80, 0.85, 0.90, 0.93, 0.95, 0.97, 0.99],
        description="service targets of the frontier: the incumbent's category in-stock target, the other "
                    "families' fill-rate target (tuned with the fill_rate objective)")
    ppo: PPOConfig = Field(default_factory=PPOConfig)

    @field_validator("classic_policies")
    @classmethod
    def _known_classic(cls, values: list[str]) -> list[str]:
        unknown = sorted(set(values) - set(CLASSIC_POLICIES))
        if unknown:
            raise ValueError(f"unknown policies {unknown}; known: {list(CLASSIC_POLICIES)}")
        if "incumbent" not in values:
            raise ValueError("must include 'incumbent': every change is reported against it")
        return values

    @field_validator("frontier_families")
    @classmethod
    def _known_families(cls, values: list[str]) -> list[str]:
        unknown = sorted(set(values) - set(FRONTIER_FAMILIES))
        if unknown:
            raise ValueError(f"unknown families {unknown}; known: {list(FRONTIER_FAMILIES)}")
        return values

    @field_validator("frontier_targets")
    @classmethod
    def _targets_are_rates(cls, values: list[float]) -> list[float]:
        if any(not 0 < v <= 1 for v in values):
            raise ValueError("every target must be in (0, 1]")
        return sorted(values)
