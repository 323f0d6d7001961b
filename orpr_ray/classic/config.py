"""Config of the classic lost-sales benchmark (issue 8): solver tolerance, size limit, simulation."""
from __future__ import annotations

from pydantic import Field

from orpr_ray.core.schema import Strict

MIN_REPLICATIONS = 10  # fewer replication means give no usable spread for a confidence interval


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
