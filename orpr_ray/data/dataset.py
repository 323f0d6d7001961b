"""The one typed in-memory dataset every later stage reads.

Units are rows (a SKU at a DC), days are columns on one shared calendar. A unit's own days are a
contiguous block of that calendar (``first_day[u] .. last_day[u]``); outside it ``observed`` is
False and ``sales`` / ``promo`` are 0, so whole-panel arrays stay rectangular and vectorisable.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

# Columns of the unit-attribute table, in contract order (DESIGN.md section 3).
REQUIRED_ATTRIBUTES = ("sku", "dc", "category", "unit_cost", "unit_price", "lead_time_days",
                       "review_period_days")
OPTIONAL_ATTRIBUTES = ("target_turnover_days",)


@dataclass(frozen=True, eq=False)
class Dataset:
    """Demand panel (units x days) plus one attribute row per unit.

    units: one row per unit, columns REQUIRED_ATTRIBUTES, ``target_turnover_days`` (NaN where
        absent) and any extra attribute columns; row ``u`` describes ``sales[u]``.
    dates: ``datetime64[D]``, shape (T,), consecutive days.
    sales: float64 (U, T), units sold (or true demand for synthetic data), >= 0.
    promo: float32 (U, T), promotion flag or intensity, 0 where absent.
    price: float64 (U, T), selling price per day (the unit's ``unit_price`` where the panel has none).
    observed: bool (U, T), True on the unit's own contiguous block of days.
    extra_attributes: names of the extra attribute columns of ``units`` (fed to the attribute stream).
    meta: provenance; ``meta["uncensored"]`` is True when ``sales`` is true demand (synthetic data),
        False when it is censored by past stockouts (real sales history).
    """

    units: pd.DataFrame
    dates: np.ndarray
    sales: np.ndarray
    promo: np.ndarray
    price: np.ndarray
    observed: np.ndarray
    extra_attributes: tuple[str, ...] = ()
    meta: dict = field(default_factory=dict)

    @property
    def n_units(self) -> int:
        return len(self.units)

    @property
    def n_days(self) -> int:
        return len(self.dates)

    @property
    def unit_keys(self) -> list[tuple[str, str]]:
        return list(zip(self.units["sku"], self.units["dc"]))

    @property
    def first_day(self) -> np.ndarray:
        return self.observed.argmax(axis=1)

    @property
    def last_day(self) -> np.ndarray:
        return self.n_days - 1 - self.observed[:, ::-1].argmax(axis=1)

    def subset(self, rows: np.ndarray | list[int]) -> "Dataset":
        """The same dataset restricted to some units (rows keep their order)."""
        rows = np.asarray(rows, dtype=np.int64)
        return Dataset(units=self.units.iloc[rows].reset_index(drop=True), dates=self.dates,
                       sales=self.sales[rows], promo=self.promo[rows], price=self.price[rows],
                       observed=self.observed[rows], extra_attributes=self.extra_attributes,
                       meta=dict(self.meta))

    def window(self, start: int, stop: int) -> "Dataset":
        """Days ``start:stop`` of every unit (used for time splits)."""
        return Dataset(units=self.units, dates=self.dates[start:stop], sales=self.sales[:, start:stop],
                       promo=self.promo[:, start:stop], price=self.price[:, start:stop],
                       observed=self.observed[:, start:stop], extra_attributes=self.extra_attributes,
                       meta=dict(self.meta))
