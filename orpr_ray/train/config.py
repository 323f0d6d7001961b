"""Config of the three supervised stages (forecast pretraining, decision head, fine-tuning) on Ray Train."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from orpr_ray.core.schema import Strict


class StageConfig(Strict):
    epochs: int = Field(3, ge=1)
    samples_per_epoch: int | None = Field(None, ge=1, description="training points drawn per epoch (all "
                                                                  "workers together); None = every point once")
    lr: float = Field(1e-3, gt=0, description="peak learning rate (linear warm-up, cosine decay to 10%)")
    weight_decay: float = Field(0.01, ge=0)


class TrainConfig(Strict):
    num_workers: int = Field(1, ge=0, description="Ray Train workers (data-parallel); 0 = run the same loop "
                                                  "in this process without Ray (debugging, quick tests)")
    cpus_per_worker: float = Field(1, gt=0)
    torch_threads: int | None = Field(1, ge=1, description="torch threads per worker; None = the machine's "
                                                           "cores divided by the workers. 1 by default: on a "
                                                           "shared machine a second intra-op thread made a step "
                                                           "4x slower (docs/MODEL.md); add workers instead")
    batch_size: int = Field(256, ge=1, description="points per optimizer step, all workers together (each "
                                                   "worker takes batch_size / num_workers), so the number of "
                                                   "workers does not change the optimisation")
    eval_batch_size: int = Field(1024, ge=1)
    grad_clip: float = Field(1.0, gt=0)
    warmup_share: float = Field(0.05, ge=0, lt=1, description="share of the steps spent warming up")
    min_history_days: int = Field(28, ge=1, description="a forecast training point needs this many observed days "
                                                        "before it")
    val_points: int = Field(4096, ge=1, description="validation points scored after every epoch (a fixed sample)")
    eval_points: int = Field(8000, ge=1, description="forecast points of each window scored in the final report")
    forecast: StageConfig = Field(default_factory=lambda: StageConfig(epochs=2, samples_per_epoch=16000, lr=1e-3))
    decision: StageConfig = Field(default_factory=lambda: StageConfig(epochs=2, lr=2e-3))
    finetune: StageConfig = Field(default_factory=lambda: StageConfig(epochs=3, samples_per_epoch=24000, lr=3e-4))
    kl_weight: float = Field(0.01, ge=0, description="weight of the latent's KL in the decision loss")
    label_width: float = Field(1.0, ge=0, description="std (grid steps) of the soft label around the OR label; "
                                                      "0 = one-hot cross-entropy")
    finetune_forecast_weight: float = Field(0.0, ge=0, description="weight of the forecast loss while "
                                                                   "fine-tuning; 0 = decision loss only (the "
                                                                   "sales head stays frozen, its loss is logged)")
    decision_quantile: float | None = Field(
        0.6, gt=0, lt=1, description="how the policy reads a target from its distribution over the grid: the "
                                     "q-quantile (0.5 = median; higher = more stock against lost sales), or "
                                     "None for the mode; stored in the checkpoint, used by every metric")
    choose_decision_quantile: bool = Field(
        True, description="after fine-tuning, store instead the rule (the mode, quantiles 0.5-0.95) of least "
                          "total cost in a rolling simulation of the validation window (train/rules.py)")
    alpha_source: Literal["past", "label"] = Field(
        "past", description="service level fed to the objective stream: past = the unit's latest calibrated "
                            "alpha whose label horizon ended by the decision day (what a deployed policy "
                            "knows); label = the label's own hindsight alpha")
