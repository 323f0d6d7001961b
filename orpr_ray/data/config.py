"""Config of the data stage: the synthetic catalogue and how real files are read."""
from __future__ import annotations

from datetime import date

from pydantic import Field

from orpr_ray.core.schema import Strict


class SynthConfig(Strict):
    units: int = Field(600, ge=1, description="number of units (SKU x DC) in the synthetic catalogue")
    days: int = Field(730, ge=56, description="length of the daily history")
    start_date: date = Field(date(2024, 1, 1), description="first day of the history (ISO date)")
    categories: int = Field(6, ge=1)
    dcs: int = Field(3, ge=1)
    volume_median: float = Field(2.0, gt=0, description="median base daily demand of a unit")
    volume_sigma: float = Field(1.3, ge=0, description="log-normal sigma of base volumes: larger = stronger ABC skew")
    promo_share: float = Field(0.06, ge=0, le=0.5, description="expected share of a promoted unit's days on promotion")


class M5Config(Strict):
    """Assumptions the M5 files do not carry (docs/DATA.md): margin, lead times, review periods."""

    margin: float = Field(0.3, gt=0, lt=1, description="gross margin: unit_cost = unit_price x (1 - margin)")
    lead_time_days: int = Field(3, ge=0, description="default lead time of every unit (store delivery)")
    review_period_days: int = Field(7, ge=1, description="default review period (weekly replenishment)")
    params_file: str | None = Field(None, description="CSV sku,dc,lead_time_days,review_period_days: "
                                                      "per-unit overrides of the defaults")


class SplitConfig(Strict):
    """Time split of the calendar: train, then validation, then test (never random rows)."""

    val_days: int = Field(91, ge=1, description="days of the validation window, just before the test window")
    test_days: int = Field(182, ge=1, description="days of the held-out test window at the end of the history")


class DataConfig(Strict):
    path: str | None = Field(None, description="folder with demand + attribute files; None = synthetic")
    fill_missing_days: bool = Field(False, description="treat a missing day inside a unit's range as 0 sales")
    synth: SynthConfig = Field(default_factory=SynthConfig)
    m5: M5Config = Field(default_factory=M5Config)
    split: SplitConfig = Field(default_factory=SplitConfig)
