"""The HTTP contract of the decision service: request and response models, and their limits.

A request unit is a :class:`orpr_ray.model.features.UnitRecord` (the record the feature code reads)
with tighter checks for input that arrives over the network (no NaN or infinity, no negative sales
or stock, bounded list lengths) plus the unit's stock, which the order quantity needs. The limits
are constants of the contract, so a client can read them from the OpenAPI document.
"""
from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from orpr_ray.model.features import UnitRecord

MAX_BATCH_UNITS = 5_000      # units in one POST /v1/decide/batch (a nightly run sends several)
MIN_HISTORY_DAYS = 7         # at least a week of sales: the demand rate needs some history
MAX_HISTORY_DAYS = 730       # two years; the network reads only its last history_days anyway
MAX_AHEAD_DAYS = 366         # planned promotion flags; the network reads only its horizon_days
MAX_NAME_LENGTH = 200        # sku, dc, category
MAX_BODY_BYTES = 64 << 20    # 5,000 units x 730 days of sales fit with room to spare

NonNegative = Annotated[float, Field(ge=0)]
Positive = Annotated[float, Field(gt=0)]
Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME_LENGTH)]


class UnitRequest(UnitRecord):
    """One unit to decide for: recent sales, attributes, objectives and stock (sales oldest first)."""

    model_config = ConfigDict(allow_inf_nan=False)

    sku: Name
    dc: Name = "DC"
    category: Name = Field(description="a category the model never saw falls back to its 'unknown' "
                                       "embedding and is listed in the answer's fallbacks")
    sales: list[NonNegative] = Field(min_length=MIN_HISTORY_DAYS, max_length=MAX_HISTORY_DAYS,
                                     description="daily units sold on the days just before decision_date, "
                                                 "oldest first")
    promo: list[NonNegative] | None = Field(None, max_length=MAX_HISTORY_DAYS,
                                            description="promo flag/intensity of the same days as sales")
    promo_ahead: list[NonNegative] = Field(default_factory=list, max_length=MAX_AHEAD_DAYS,
                                           description="planned promo flags from decision_date on "
                                                       "(missing days = no promotion)")
    price: list[Positive] | None = Field(None, max_length=MAX_HISTORY_DAYS,
                                         description="selling prices of the same days as sales (None = unit_price)")
    target_turnover_days: float | None = Field(None, gt=0, description="turnover target of the unit's group")
    on_hand: float = Field(ge=0, description="units on hand now, before today's demand")
    on_order: float = Field(0.0, ge=0, description="units ordered and not yet arrived")

    @field_validator("unit_price")
    @classmethod
    def _price_covers_cost(cls, price: float, info: ValidationInfo) -> float:
        cost = info.data.get("unit_cost")
        if cost is not None and price < cost:
            raise ValueError(f"unit_price {price} is below unit_cost {cost} (selling at a loss is not a valid unit)")
        return price


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    units: list[UnitRequest] = Field(min_length=1, max_length=MAX_BATCH_UNITS,
                                     description=f"at most {MAX_BATCH_UNITS} units per request")


class GridProbability(BaseModel):
    inventory_days: int
    probability: float


class UnitDecision(BaseModel):
    """Today's decision for one unit.

    order_up_to_level = ceil(inventory_days x daily_demand) (the simulator's rule);
    order_quantity = max(0, order_up_to_level - (on_hand + on_order)).
    """

    sku: str
    dc: str
    inventory_days: int = Field(description="the chosen inventory-days target v (days of cover)")
    order_quantity: float = Field(description="units to order today")
    order_up_to_level: float
    inventory_position: float = Field(description="on_hand + on_order")
    daily_demand: float = Field(description="d_hat: mean daily sales over the last demand_window_days sent "
                                            "(the rate the OR labels, hence v, are expressed in)")
    forecast: list[float] = Field(description="the network's daily demand forecast from decision_date on")
    forecast_over_cover: float = Field(description="forecast summed over lead time + review period")
    top: list[GridProbability] = Field(description="the most probable targets, most probable first")
    fallbacks: list[str] = Field(description="inputs the model did not know, answered with its 'unknown' "
                                             "embedding (category, dc, extra.<name>)")


class DecideResponse(UnitDecision):
    model_version: str


class BatchResponse(BaseModel):
    model_version: str
    count: int
    decisions: list[UnitDecision]


class Health(BaseModel):
    status: str
    model_version: str


class ErrorItem(BaseModel):
    field: str = Field(description="dotted path of the offending field, e.g. units[3].sales[5]")
    message: str
    where: str | None = None


class ErrorResponse(BaseModel):
    error: str = Field(description="the first problem, field first")
    detail: list[ErrorItem]


def field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    """``('body', 'units', 3, 'sales', 5)`` -> ``units[3].sales[5]`` (the body itself is ``body``)."""
    parts = [p for p in loc if p != "body"]
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


def json_safe(obj: Any) -> Any:
    """Nested data with non-finite floats turned into None (JSON has no NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj
