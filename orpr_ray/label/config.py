"""Config of the OR labelling stage (docs/LABELS.md explains every choice)."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from orpr_ray.core.schema import Strict


class LabelConfig(Strict):
    # Candidate grid and decision points.
    v_min: int = Field(1, ge=0, description="smallest inventory-days target in the grid")
    v_max: int = Field(60, ge=1, description="largest inventory-days target in the grid")
    v_step: int = Field(1, ge=1, description="step of the integer grid v_min, v_min + v_step, ..., <= v_max")
    decision_stride_days: int = Field(7, ge=1, description="days between decision dates (one shared calendar)")
    horizon_days: int | None = Field(
        None, ge=1, description="replay horizon of a candidate; None = per unit, the smallest multiple of its "
                                "review period that covers lead time + review period")

    # Groups and the knapsack.
    group_by: list[str] = Field(["category", "dc"], description="unit attribute columns that define a group")
    group_by_date: bool = Field(True, description="a group is also one decision date (else all dates together)")
    calibrate: bool = Field(True, description="calibrate alpha to a turnover target (else default service level)")
    calibrate_to: Literal["turnover", "total_cost"] = Field(
        "turnover", description="what the calibration matches: turnover = the group's turnover target (attribute, "
                                "then historical); total_cost = the group's least simulated total cost (holding + "
                                "lost-sales penalty, the evaluation objective), whatever its turnover")
    default_service_level: float = Field(0.95, gt=0, le=1,
                                         description="alpha of a group without a turnover target")
    historical_turnover_column: str = Field(
        "historical_turnover_days", description="unit attribute holding the turnover observed in stock history; "
                                                "the second target source after target_turnover_days")
    min_cover_days: int | None = Field(None, ge=0, description="no label below this v (per-unit column "
                                                              "min_cover_days overrides)")
    max_cover_days: int | None = Field(None, ge=0, description="no label above this v (per-unit column "
                                                              "max_cover_days overrides)")
    stock_budget: float | None = Field(None, gt=0, description="cap on a group's mean on-hand value over the "
                                                               "horizon; needs the Pyomo model of record")

    # Solvers.
    solver: Literal["auto", "pyomo"] = Field(
        "auto", description="auto: exact Lagrangian path, Pyomo + HiGHS only where a side constraint binds; "
                            "pyomo: every group through the Pyomo model of record")
    crosscheck_every: int = Field(0, ge=0, description="also solve every k-th group of a shard with Pyomo + "
                                                       "HiGHS and record the difference (0 = never)")
    mip_rel_gap: float = Field(1e-4, ge=0, description="HiGHS relative MIP gap")
    time_limit_s: float = Field(60.0, gt=0, description="HiGHS time limit per solve")

    # Ray driver.
    shard_size: int = Field(1000, ge=1, description="units per task (x decision dates = labels per shard), "
                                                    "made of whole groups")
    max_in_flight: int = Field(4, ge=1, description="tasks submitted but not yet collected")
    max_retries: int = Field(3, ge=0, description="Ray retries of a task whose worker died")
    sim_chunk_cells: int = Field(2_000_000, ge=1, description="decision points x candidates per simulator call "
                                                              "(bounds memory)")

    @model_validator(mode="after")
    def _ranges_are_ordered(self) -> "LabelConfig":
        if self.v_max < self.v_min:
            raise ValueError(f"v_max ({self.v_max}) is below v_min ({self.v_min})")
        if (self.min_cover_days is not None and self.max_cover_days is not None
                and self.max_cover_days < self.min_cover_days):
            raise ValueError(f"max_cover_days ({self.max_cover_days}) is below min_cover_days "
                             f"({self.min_cover_days})")
        return self

    @property
    def grid(self) -> list[int]:
        """The candidate inventory-days targets, ascending."""
        return list(range(self.v_min, self.v_max + 1, self.v_step))
