"""Config of the RLOO alignment stage, its Ray Tune sweep and the expert-guided promotion fine-tune.

docs/RL.md gives the formulas every field refers to.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationError

from orpr_ray.core.schema import Strict

# The network's parameter groups (orpr_ray.model.network.PARTS; spelled out so the config tree loads
# without torch, a test keeps the two equal).
Part = Literal["encoders", "sales_head", "decision_head"]


class SweepConfig(Strict):
    """How ``orpr sweep`` runs the Tuner; the search space itself lives in a YAML file (tune_configs/)."""

    name: str = Field("rloo_sweep", min_length=1, description="experiment name: a stable name, so an interrupted "
                                                              "sweep resumes with Tuner.restore")
    storage_path: str | None = Field(None, description="where Tune keeps trials: a local folder, a shared path or "
                                                       "a bucket URI; None = <out>/tune")
    num_samples: int = Field(1, ge=1, description="samples of the space (grids are crossed, then repeated)")
    max_concurrent: int = Field(2, ge=1, description="trials running at once")
    cpus_per_trial: float = Field(1.0, gt=0)
    grace_period: int = Field(1, ge=1, description="ASHA: evaluations every trial gets before it may be stopped")
    reduction_factor: int = Field(2, ge=2, description="ASHA: share of trials kept at each rung is 1 / this")
    metric: str = Field("val_total_cost", description="reported metric the scheduler and the best trial use")
    mode: Literal["min", "max"] = "min"


class PromoConfig(Strict):
    """Expert-guided secondary fine-tune on promotion decision points (docs/RL.md, "Promotions")."""

    steps: int = Field(60, ge=1, description="learner steps of the promotion fine-tune")
    eval_every: int = Field(20, ge=1)
    lr: float = Field(2e-4, gt=0)
    promo_share: float = Field(0.5, gt=0, le=1, description="share of each batch drawn from the expert-labelled "
                                                            "states (the rest from all training states, so "
                                                            "behaviour outside promotions is anchored too)")
    anchor_others: bool = Field(True, description="states without an expert label contribute only the KL term "
                                                   "(no policy gradient), so the policy outside promotions stays "
                                                   "at its start")
    anchor_beta: float = Field(5.0, ge=0, description="KL weight on the states without an expert label, whose "
                                                      "reference is the start policy")
    expert_beta: float = Field(1.0, ge=0, description="KL weight on the expert-labelled states, whose reference is "
                                                      "the distribution around the expert's label")
    expert_reference: Literal["shift", "label"] = Field(
        "shift", description="KL reference on expert states: shift = the start policy's distribution moved by the "
                             "expert's correction of the OR label; label = a narrow distribution at the expert's "
                             "label (expert_label_width)")
    expert_label_width: float = Field(1.0, gt=0, description="std (grid steps) of the KL reference placed on the "
                                                             "expert label")
    synthetic_expert: Literal["uplift", "hindsight"] = Field(
        "uplift", description="the demo's expert when no expert file is given: uplift = the unit's typical cover "
                              "plus the planned promotion's expected extra demand; hindsight = the least cover "
                              "meeting expert_service_level on the demand that followed (rl/promo.py)")
    expert_service_level: float = Field(0.98, gt=0, le=1, description="synthetic expert: smallest cover whose "
                                                                      "lost-sales value is at most (1 - this) of "
                                                                      "demand value over the horizon")


class RLConfig(Strict):
    # Reward.
    omega: float = Field(0.5, ge=0, le=1, description="weight of the rule reward; 1 - omega weighs the simulation "
                                                      "reward")
    rule_tolerance_days: float = Field(6.0, gt=0, description="rule penalty (days) at which r_rule reaches 0; "
                                                              "it bottoms out at -1 at twice this")
    wrong_direction_weight: float = Field(1.0, ge=0, description="extra rule penalty per day an action moves away "
                                                                 "from the current cover against the label's "
                                                                 "direction")
    current_cover: Literal["previous_label", "category_median"] = Field(
        "previous_label", description="the unit's current days of cover: its previous decision's label, or the "
                                      "incumbent-style category median")
    sim_reference: Literal["label", "reference_policy"] = Field(
        "label", description="the action r_sim compares against: the rule target (OR or expert label), or the "
                             "frozen reference network's choice")
    sim_score: Literal["pareto", "cost"] = Field(
        "pareto", description="r_sim: pareto = +1 dominates / -1 dominated / a bounded cost score for trade-offs; "
                              "cost = the relative total-cost saving (c_ref - c) / (c_ref + c) in every case")
    tradeoff_scale: float = Field(0.5, gt=0, le=1, description="bound of the trade-off score, so a dominating "
                                                               "action always beats a trade-off")
    # RLOO.
    k: int = Field(8, ge=2, description="actions sampled per state (the leave-one-out group)")
    beta: float = Field(0.05, ge=0, description="weight of the exact KL(pi || pi_ref) over the grid; 0 = no "
                                                "reference model")
    latent_weight: float = Field(0.01, ge=0, description="weight of the VAE latent term KL(q(z|s) || N(0, I))")
    sample_latent: bool = Field(True, description="draw the latent z per state (else z = mu)")
    trainable_parts: list[Part] = Field(["decision_head"], min_length=1, description="network parts RL updates")
    # Optimisation.
    steps: int = Field(150, ge=1, description="learner steps (each: batch_states x k simulated actions)")
    batch_states: int = Field(128, ge=1, description="states per step and worker")
    eval_every: int = Field(25, ge=1, description="steps between validations (one Tune report and checkpoint)")
    lr: float = Field(1e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    val_points: int = Field(2048, ge=1, description="validation decision points scored at every evaluation")
    choose_decision_quantile: bool = Field(
        True, description="after training, store the decision rule (mode, quantiles 0.5-0.95) of least total cost "
                          "in a rolling simulation of the validation window; else keep the start checkpoint's rule")
    # Ray.
    num_workers: int = Field(0, ge=0, description="0 = this process; >= 1 = Ray Train workers (data-parallel, "
                                                  "each drawing its own states)")
    torch_threads: int | None = Field(None, ge=1, description="torch threads per learner; None = torch's default")
    sweep: SweepConfig = Field(default_factory=SweepConfig)
    promo: PromoConfig = Field(default_factory=PromoConfig)

    @property
    def evaluations(self) -> int:
        """Reports of a run: one after every ``eval_every`` steps (the last one may be shorter)."""
        return -(-self.steps // self.eval_every)


# ----------------------------------------------------------------------------------------------
# The sweep's search space (tune_configs/*.yaml): one dimension per swept RLConfig field.

SWEEPABLE = ("omega", "beta", "k", "lr", "latent_weight", "rule_tolerance_days", "wrong_direction_weight",
             "tradeoff_scale", "batch_states")
INTEGER_FIELDS = ("k", "batch_states")
KINDS = ("grid", "choice", "uniform", "loguniform")


class Dimension(Strict):
    """Exactly one of: ``grid`` (every value, crossed with the other grids), ``choice`` (one value per
    sample), ``uniform`` / ``loguniform`` ([low, high])."""

    grid: list[float] | None = None
    choice: list[float] | None = None
    uniform: list[float] | None = None
    loguniform: list[float] | None = None

    @property
    def kind(self) -> str:
        return next(kind for kind in KINDS if getattr(self, kind) is not None)

    @property
    def values(self) -> list[float]:
        return getattr(self, self.kind)

    def model_post_init(self, _context) -> None:
        given = [kind for kind in KINDS if getattr(self, kind) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of {KINDS}, got {given or 'none'}")
        values = self.values
        if not values:
            raise ValueError(f"{self.kind}: empty; give at least one value")
        if self.kind in ("uniform", "loguniform") and (len(values) != 2 or values[0] >= values[1]):
            raise ValueError(f"{self.kind}: expected [low, high] with low < high, got {values}")
        if self.kind == "loguniform" and values[0] <= 0:
            raise ValueError(f"loguniform: bounds must be > 0, got {values}")


class SweepSpace(Strict):
    """Swept fields of RLConfig -> their dimension; every value must itself be a valid RLConfig value."""

    dims: dict[str, Dimension]

    def model_post_init(self, _context) -> None:
        if not self.dims:
            raise ValueError(f"the space is empty; sweep at least one of {SWEEPABLE}")
        for name, dim in self.dims.items():
            if name not in SWEEPABLE:
                raise ValueError(f"{name!r} cannot be swept; sweepable fields are {SWEEPABLE}")
            for value in dim.values:
                _check_value(name, value)


def _check_value(name: str, value: float) -> None:
    """A swept value must be one RLConfig accepts (omega in [0, 1], beta >= 0, whole k >= 2, ...)."""
    if name in INTEGER_FIELDS and value != int(value):
        raise ValueError(f"{name}: {value} is not a whole number")
    try:
        RLConfig.model_validate({name: int(value) if name in INTEGER_FIELDS else value})
    except ValidationError as exc:
        raise ValueError(f"{name}: {value} is not a valid rl.{name} ({exc.errors()[0]['msg']})") from None
