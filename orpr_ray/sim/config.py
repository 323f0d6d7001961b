"""Config of the simulator and the cost model shared by every stage that scores a policy."""
from __future__ import annotations

from pydantic import Field

from orpr_ray.core.schema import Strict


class SimConfig(Strict):
    holding_rate_per_day: float = Field(0.25 / 365, ge=0, description="holding cost per unit of stock value per day")
    lost_sales_penalty_share: float = Field(1.0, ge=0, description="penalty per lost unit as a share of its margin")
    demand_window_days: int = Field(28, ge=1, description="trailing window of the d_hat estimate")
