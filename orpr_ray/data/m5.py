"""Import the M5 (Walmart) competition layout into the demand-panel and attribute contracts.

Inputs in one folder: ``sales_train_evaluation.csv`` or ``sales_train_validation.csv`` (wide:
``item_id, dept_id, cat_id, store_id, state_id, d_1..d_N``), ``calendar.csv`` (``date, d,
wm_yr_wk, event_name_1/2, event_type_1/2, snap_<state>``) and ``sell_prices.csv`` (``store_id,
item_id, wm_yr_wk, sell_price``). The mapping and its assumptions (docs/DATA.md):

- unit = (sku = item_id, dc = store_id), category = cat_id, extra attribute ``dept_id``;
- promo = 1.0 on a calendar event day (event_name_1 or _2 set), 0.5 on a SNAP day of the unit's
  state without an event, 0 otherwise;
- daily price = the unit's weekly sell price of that day's ``wm_yr_wk``; unit_price = median daily
  price over observed days; unit_cost = unit_price x (1 - margin), margin 0.3 by default;
- a unit is observed from its first price week (its launch) to the last day; a week without a price
  after launch keeps the previous price; a sale before the first price week (rare) starts the
  unit at that sale and takes the first price;
- lead time and review period from the config defaults (3 and 7 days) or a CSV
  ``sku, dc, lead_time_days, review_period_days`` overriding some or all units;
- no target turnover (NaN): labelling falls back to historical turnover.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from orpr_ray.core.errors import InputError
from orpr_ray.data.config import M5Config
from orpr_ray.data.dataset import Dataset
from orpr_ray.data.tables import (Table, date_column, integer_column, numeric_column, read_table, require_columns,
                                  text_codes, text_column, unit_index, unit_positions)

SALES_FILES = ("sales_train_evaluation.csv", "sales_train_validation.csv")  # the longer one first
ID_COLUMNS = ("item_id", "dept_id", "cat_id", "store_id", "state_id")
CALENDAR_COLUMNS = ("date", "d", "wm_yr_wk", "event_name_1", "event_type_1", "event_name_2", "event_type_2")
PRICE_COLUMNS = ("store_id", "item_id", "wm_yr_wk", "sell_price")
PARAM_COLUMNS = ("sku", "dc", "lead_time_days", "review_period_days")
EVENT_PROMO = 1.0
SNAP_PROMO = 0.5
UNIT_KEYS = ("item_id", "store_id")
DAY_COLUMN = re.compile(r"d_(\d+)")


def import_m5(folder: str | Path, cfg: M5Config | None = None) -> Dataset:
    """Read and validate the three M5 files in ``folder``; return the dataset (nothing is written)."""
    cfg = cfg or M5Config()
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("M5 folder not found", file=str(folder))
    calendar = read_table(folder / "calendar.csv", text_columns=("date", "d", "event_name_1", "event_name_2"),
                          unit_columns=())
    require_columns(calendar, CALENDAR_COLUMNS)
    sales_table = read_table(_sales_path(folder), text_columns=("id",) + ID_COLUMNS, unit_columns=UNIT_KEYS)
    day_columns = _day_columns(sales_table)
    day_rows, dates = _calendar_rows(calendar, day_columns, sales_table)  # (T,) calendar row and date of each day
    sales = _sales_matrix(sales_table, day_columns)  # (U, T)
    item, store = text_column(sales_table, "item_id"), text_column(sales_table, "store_id")
    index = unit_index(item, store)
    sales_table.fail("item_id", index.duplicated(), "unit (item_id, store_id) appears more than once")
    listed_price = _daily_prices(folder / "sell_prices.csv", calendar, day_rows, index, sales_table)  # (U, T)
    observed, first_price_day, first_sale_day = _observed_block(sales, listed_price)
    price, filled = _fill_prices(listed_price, observed, first_price_day)
    unit_price = np.round(_row_median(np.where(observed, price, np.nan)), 2)
    price = np.where(observed, price, unit_price[:, None])
    state = text_column(sales_table, "state_id")
    promo = np.where(observed, _promo(calendar, day_rows, state, sales_table), 0).astype(np.float32)
    lead, review = _lead_and_review(cfg, index, len(item))
    units = pd.DataFrame({
        "sku": item, "dc": store, "category": text_column(sales_table, "cat_id"),
        "unit_cost": np.minimum(np.maximum(np.round(unit_price * (1 - cfg.margin), 2), 0.01), unit_price),
        "unit_price": unit_price, "lead_time_days": lead, "review_period_days": review,
        "target_turnover_days": np.full(len(item), np.nan), "dept_id": text_column(sales_table, "dept_id"),
    })
    meta = {"kind": "m5", "uncensored": False, "source": str(folder), "sales_file": sales_table.path.name,
            "config": cfg.model_dump(mode="json"), "inputs": {"m5_folder": str(folder)},
            "promo_encoding": {"event": EVENT_PROMO, "snap_only": SNAP_PROMO, "none": 0.0},
            "first_day": str(dates[0]), "last_day": str(dates[-1]),
            "units_launched_late": int((~observed[:, 0]).sum()),
            "units_with_sales_before_first_price": int((first_sale_day < first_price_day).sum()),
            "price_days_filled": filled}
    return Dataset(units=units, dates=dates, sales=sales, promo=promo, price=price,
                   observed=observed, extra_attributes=("dept_id",), meta=meta)


def _sales_path(folder: Path) -> Path:
    for name in SALES_FILES:
        if (folder / name).is_file():
            return folder / name
    raise InputError(f"no {' or '.join(SALES_FILES)} in the M5 folder", file=str(folder))


def _day_columns(table: Table) -> list[str]:
    """The ``d_k`` columns in day order; they must run without a gap."""
    days = sorted((int(m.group(1)), c) for c in table.frame.columns if (m := DAY_COLUMN.fullmatch(str(c))))
    if not days:
        raise InputError("no daily sales columns d_1..d_N", file=table.name, field="d_1")
    require_columns(table, ID_COLUMNS, allowed=("id",) + ID_COLUMNS + tuple(c for _, c in days))
    numbers = np.array([k for k, _ in days])
    gap = np.flatnonzero(np.diff(numbers) > 1)
    if gap.size:
        k = int(numbers[gap[0]])
        raise InputError(f"daily column missing: d_{numbers[0]}..d_{numbers[-1]} must run without a gap, "
                         f"but d_{k} is followed by d_{numbers[gap[0] + 1]}", file=table.name, field=f"d_{k + 1}")
    return [c for _, c in days]


def _calendar_rows(calendar: Table, day_columns: list[str], sales: Table) -> tuple[np.ndarray, np.ndarray]:
    """Calendar row and date of each daily column, shape (T,); unknown days and date gaps are errors."""
    d = text_column(calendar, "d")
    calendar.fail("d", pd.Index(d).duplicated(), "day appears more than once")
    rows = pd.Index(d).get_indexer(day_columns)
    if (rows < 0).any():
        missing = day_columns[int(np.flatnonzero(rows < 0)[0])]
        raise InputError(f"day {missing} of {sales.name} is not in the calendar", file=calendar.name, field="d")
    dates = date_column(calendar, "date")[rows]
    step = np.diff(dates).astype(np.int64)
    if (step != 1).any():
        k = int(np.flatnonzero(step != 1)[0])
        raise InputError(f"{day_columns[k]} ({dates[k]}) and {day_columns[k + 1]} ({dates[k + 1]}) are not "
                         "consecutive days", file=calendar.name, field="date", where=calendar.row_label(rows[k + 1]))
    return rows, dates


def _sales_matrix(table: Table, day_columns: list[str]) -> np.ndarray:
    """Daily sales as float64 (U, T); text, NaN and negative cells are errors naming the cell."""
    frame = table.frame
    text = [c for c in day_columns if not pd.api.types.is_numeric_dtype(frame[c])]
    if text:
        numeric_column(table, text[0])  # raises at the first non-numeric cell
    values = frame[day_columns].to_numpy(dtype=np.float64)
    for bad, problem in ((np.isnan(values), "value missing (NaN)"), (values < 0, "negative sales")):
        if bad.any():
            col = int(np.flatnonzero(bad.any(axis=0))[0])
            table.fail(day_columns[col], bad[:, col], problem)
    return values


def _daily_prices(path: Path, calendar: Table, day_rows: np.ndarray, index: pd.MultiIndex,
                  sales: Table) -> np.ndarray:
    """Each unit's sell price on each day (NaN where its week has no price), shape (U, T)."""
    table = read_table(path, text_columns=("store_id", "item_id"), unit_columns=UNIT_KEYS)
    require_columns(table, PRICE_COLUMNS)
    price = numeric_column(table, "sell_price")
    table.fail("sell_price", price <= 0, "must be > 0")
    week = integer_column(table, "wm_yr_wk", minimum=0)
    unit = unit_positions(index, text_codes(table, "item_id"), text_codes(table, "store_id"))
    unit_week = unit * (int(week.max()) + 1) + week  # one int64 key per (unit, week)
    table.fail("wm_yr_wk", pd.Index(unit_week).duplicated() & (unit >= 0),
               "more than one price for the unit and week")
    day_week = integer_column(calendar, "wm_yr_wk", minimum=0)[day_rows]  # (T,)
    weeks, week_of_day = np.unique(day_week, return_inverse=True)
    week_pos = pd.Index(weeks).get_indexer(week)
    keep = (unit >= 0) & (week_pos >= 0)  # prices of other items or outside the imported days are not needed
    weekly = np.full((len(index), len(weeks)), np.nan)
    weekly[unit[keep], week_pos[keep]] = price[keep]
    none = np.flatnonzero(np.isnan(weekly).all(axis=1))
    if none.size:
        raise InputError(f"no sell_price for any imported week (needed for the unit's prices and launch); "
                         f"{none.size} unit(s) lack prices", file=table.name, field="sell_price",
                         where=sales.unit_name(int(none[0])))
    return weekly[:, week_of_day]


def _observed_block(sales: np.ndarray, price: np.ndarray) -> tuple[np.ndarray, ...]:
    """Observed (U, T) from launch (first price day, or an earlier first sale) to the end; also both first days.

    Every sale is on an observed day, so no sales are dropped.
    """
    n_days = sales.shape[1]
    first_price = np.isfinite(price).argmax(axis=1)
    sold = sales > 0
    first_sale = np.where(sold.any(axis=1), sold.argmax(axis=1), n_days)
    first = np.minimum(first_price, first_sale)
    return np.arange(n_days) >= first[:, None], first_price, first_sale


def _fill_prices(price: np.ndarray, observed: np.ndarray, first_price: np.ndarray) -> tuple[np.ndarray, int]:
    """Carry the last price forward over weeks without one, the first price back to an earlier first sale."""
    n_days = price.shape[1]
    has = np.isfinite(price)
    source = np.where(has, np.arange(n_days), -1)
    np.maximum.accumulate(source, axis=1, out=source)
    source = np.where(source < 0, first_price[:, None], source)
    filled = np.take_along_axis(price, source, axis=1)
    return filled, int((observed & ~has).sum())


def _row_median(values: np.ndarray) -> np.ndarray:
    """Median of the finite values of each row of a (U, T) array (every row has one), shape (U,).

    ``np.nanmedian`` loops over rows in Python; sorting puts NaN last, so the middle is indexable.
    """
    ordered = np.sort(values, axis=1)
    count = np.isfinite(values).sum(axis=1)
    rows = np.arange(len(values))
    return (ordered[rows, (count - 1) // 2] + ordered[rows, count // 2]) / 2


def _promo(calendar: Table, day_rows: np.ndarray, state: np.ndarray, sales: Table) -> np.ndarray:
    """EVENT_PROMO on event days, SNAP_PROMO on SNAP days of the unit's state, else 0; shape (U, T)."""
    frame = calendar.frame
    event = (frame["event_name_1"].notna() | frame["event_name_2"].notna()).to_numpy()[day_rows]  # (T,)
    states, state_of_unit = np.unique(state, return_inverse=True)
    snap = np.zeros((len(states), len(day_rows)), dtype=bool)
    for s, name in enumerate(states):  # one column per state (three in M5), not per row
        column = f"snap_{name}"
        if column not in frame.columns:
            raise InputError(f"column missing: state {name} of {sales.name} needs its SNAP days",
                             file=calendar.name, field=column)
        flag = integer_column(calendar, column, minimum=0)
        calendar.fail(column, flag > 1, "must be 0 or 1")
        snap[s] = flag[day_rows] == 1
    return np.where(event, EVENT_PROMO, np.where(snap[state_of_unit], SNAP_PROMO, 0.0))


def _lead_and_review(cfg: M5Config, index: pd.MultiIndex, n_units: int) -> tuple[np.ndarray, np.ndarray]:
    """Defaults for every unit, overridden per unit by ``cfg.params_file`` when given."""
    lead = np.full(n_units, cfg.lead_time_days, dtype=np.int64)
    review = np.full(n_units, cfg.review_period_days, dtype=np.int64)
    if cfg.params_file is None:
        return lead, review
    table = read_table(Path(cfg.params_file), text_columns=("sku", "dc"))
    require_columns(table, PARAM_COLUMNS, allowed=PARAM_COLUMNS)
    unit = unit_positions(index, text_codes(table, "sku"), text_codes(table, "dc"))
    table.fail("sku", unit < 0, "unit is not in the M5 sales file")
    table.fail("sku", pd.Index(unit).duplicated(), "unit appears more than once")
    lead[unit] = integer_column(table, "lead_time_days", minimum=0)
    review[unit] = integer_column(table, "review_period_days", minimum=1)
    return lead, review
