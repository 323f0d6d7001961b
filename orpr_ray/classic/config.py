"""Config of the classic lost-sales benchmark (issue 8): solver tolerance, size limit, simulation."""
from __future__ import annotations

from pydantic import Field

from orpr_ray.core.schema import Strict

MIN_REPLICATIONS = 10  # fewer replication means give no usable spread for a confidence interval


class LearnedConfig(Strict):
    """The learned policy of the classic setting (classic/learned.py): a small OrprNet, its
    supervised stage on capped base-stock labels, its RLOO stage on simulated rollouts, then
    rounds of policy iteration by simulation."""

    dim: int = Field(16, ge=8, description="token width of each of the three Transformer streams")
    layers: int = Field(1, ge=1, description="encoder layers per stream")
    heads: int = Field(2, ge=1, description="attention heads per stream; must divide dim")
    ff_dim: int = Field(32, ge=8, description="feed-forward width inside each encoder layer")
    fused_dim: int = Field(32, ge=8, description="width of the fused state the decision head reads")
    head_hidden: int = Field(64, ge=8, description="hidden width of the decision head")
    latent_dim: int = Field(4, ge=1, description="size of the decision head's latent z")
    state_replications: int = Field(64, ge=1, description="systems simulated to collect training states")
    state_periods: int = Field(400, ge=1, description="periods per system whose states are collected "
                               "(after a warm-up of 4 (L + 1))")
    explore: float = Field(0.2, ge=0, le=1, description="share of collection periods with a random order "
                           "offset in -2..2, so states next to the label policy's path are seen too")
    pretrain_steps: int = Field(300, ge=0, description="supervised steps on the capped base-stock labels")
    pretrain_lr: float = Field(3e-3, gt=0)
    label_width: float = Field(1.0, ge=0, description="Gaussian width (orders) of the soft label targets: "
                               "keeps the pretrained policy spread over neighbouring orders, which RLOO "
                               "must sample to compare")
    rl_steps: int = Field(200, ge=0, description="RLOO steps")
    rl_lr: float = Field(1e-3, gt=0)
    batch: int = Field(128, ge=1, description="states per step")
    samples: int = Field(8, ge=2, description="actions sampled per state (the RLOO group k)")
    paths: int = Field(32, ge=1, description="demand paths per state, shared by its k actions (common random numbers)")
    horizon: int = Field(24, ge=2, description="periods per rollout; must exceed L so the order arrives")
    beta: float = Field(0.3, ge=0, description="weight of KL(pi || pi_pretrained): where the simulated "
                        "rewards cannot tell orders apart the policy stays with its labels")
    rounds: int = Field(3, ge=0, description="policy-iteration rounds after RLOO: relabel the training "
                        "states by simulated rollouts of the network's own policy, refit, keep the refit "
                        "only if a paired simulation finds it cheaper")
    relabel_span: int = Field(1, ge=1, description="orders compared per state: the current order +- this")
    relabel_rollouts: int = Field(1 << 20, ge=1, description="rollouts per relabelling, split evenly over "
                                  "states and compared orders (few states: many paths each)")
    relabel_error: float = Field(0.05, gt=0, lt=1, description="chance, over all states together "
                                 "(Bonferroni), that relabelling changes an order to one that is not better")
    refit_steps: int = Field(200, ge=0, description="supervised steps of each refit to the relabelled orders")
    refit_lr: float = Field(1e-3, gt=0)
    check_periods: int = Field(20_000, ge=1, description="periods per replication of the paired simulation "
                               "that decides whether a round is kept")
    check_replications: int = Field(100, ge=MIN_REPLICATIONS, description="replications of that simulation")
    threads: int = Field(1, ge=1, description="torch threads while training and deciding (more only "
                         "contend for the cores at this network size)")


class ClassicConfig(Strict):
    tolerance: float = Field(1e-7, gt=0, lt=1, description="value iteration stops when the certified "
                             "interval on the average cost is narrower than this share of the cost")
    max_iterations: int = Field(20_000, ge=1, description="value iteration gives up (converged=false) after this many")
    max_exact_states: int = Field(3_000_000, ge=1, description="largest state space solved exactly "
                                  "(post-decision states for the optimum); larger instances are simulated")
    sim_periods: int = Field(20_000, ge=1, description="measured periods per simulated replication")
    sim_replications: int = Field(100, ge=MIN_REPLICATIONS, description="independent replications (the CI comes from their spread)")
    sim_warmup: int = Field(500, ge=0, description="periods discarded at the start of each replication (it starts empty)")
    confidence: float = Field(0.95, gt=0, lt=1, description="confidence level of the simulation interval")
    learned: LearnedConfig = Field(default_factory=LearnedConfig)
