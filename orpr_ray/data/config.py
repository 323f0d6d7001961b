"""Config of the data stage: the synthetic catalogue and how real files are read."""
from __future__ import annotations

from pydantic import Field

from orpr_ray.core.schema import Strict


class SynthConfig(Strict):
    units: int = Field(600, ge=1, description="number of units (SKU x DC) in the synthetic catalogue")
    days: int = Field(730, ge=56, description="length of the daily history")
    start_date: str = Field("2024-01-01", description="first day of the history (ISO date)")
    categories: int = Field(6, ge=1)
    dcs: int = Field(3, ge=1)


class SplitConfig(Strict):
    """Time split of the calendar: train, then validation, then test (never random rows)."""

    val_days: int = Field(91, ge=1, description="days of the validation window, just before the test window")
    test_days: int = Field(182, ge=1, description="days of the held-out test window at the end of the history")


class DataConfig(Strict):
    path: str | None = Field(None, description="folder with demand + attribute files; None = synthetic")
    fill_missing_days: bool = Field(False, description="treat a missing day inside a unit's range as 0 sales")
    synth: SynthConfig = Field(default_factory=SynthConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
