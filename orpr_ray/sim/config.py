"""Config of the simulator and the cost model shared by every stage that scores a policy."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from orpr_ray.core.schema import Strict


def _days(start: float, stop: float, step: float) -> list[float]:
    return [round(start + i * step, 6) for i in range(int(round((stop - start) / step)) + 1)]


class SimConfig(Strict):
    holding_rate_per_day: float = Field(0.25 / 365, ge=0, description="holding cost per unit of stock value per day")
    lost_sales_penalty_share: float = Field(1.0, ge=0, description="penalty per lost unit as a share of its margin")
    demand_window_days: int = Field(28, ge=1, description="trailing window of the d_hat estimate")
    # Tuning the classic policies (orpr baseline).
    tune_objective: Literal["cost", "fill_rate"] = Field(
        "cost", description="per unit: min total cost, or min stock value with fill rate >= fill_rate_target")
    fill_rate_target: float = Field(0.95, gt=0, le=1, description="fill-rate floor of the fill_rate objective")
    tune_window: Literal["train", "train_val"] = Field(
        "train_val", description="tune on the training window, or on everything before the test window")
    days_grid: list[float] = Field(default_factory=lambda: _days(0, 60, 1),
                                   description="candidate days of cover (ascending): base-stock, inventory-days, "
                                               "incumbent, and the s of (s, S)")
    s_S_gap_days: list[float] = Field(default_factory=lambda: [1.0, 2.0, 4.0, 7.0, 14.0, 28.0],
                                      description="(s, S) candidates: S = s + gap, in days of cover")
    constant_cover_factors: list[float] = Field(default_factory=lambda: _days(0.5, 1.5, 0.05),
                                                description="constant-order candidates: q = factor x review "
                                                            "period x mean demand")
    incumbent_in_stock_target: float = Field(0.95, gt=0, le=1,
                                             description="incumbent: smallest category days of cover whose "
                                                         "demand-value-weighted in-stock rate meets this")
    warmup_days: int = Field(56, ge=0, description="backtest days simulated before the test window, not scored")

    @field_validator("days_grid", "s_S_gap_days", "constant_cover_factors")
    @classmethod
    def _ascending_non_negative(cls, values: list[float]) -> list[float]:
        if not values:
            raise ValueError("must not be empty")
        if min(values) < 0 or any(b <= a for a, b in zip(values, values[1:])):
            raise ValueError("must be >= 0 and strictly ascending")
        return values
