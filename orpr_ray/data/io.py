"""Load a dataset folder (demand panel + unit attributes) into a ``Dataset``, and write one back.

The whole input is validated before anything is returned (DESIGN.md section 3): a bad file raises
an ``InputError`` naming the file, column, row/unit and problem. Every step is vectorised over rows,
so a 1,000 x 730 panel loads in well under a second from Parquet.

Decisions the contract leaves open (documented in docs/DATA.md):
- a unit with attributes but no demand rows is an error, like demand without attributes: nothing is
  silently dropped or invented;
- a demand file without ``dc`` is allowed only when the units file names exactly one DC;
- unknown demand columns are errors (a typo like ``promotion`` must not vanish silently);
- with ``fill_missing_days`` a missing day inside a unit's range counts as 0 sales, no promotion and
  the price of the unit's previous day.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from orpr_ray.core.artifacts import MANIFEST_NAME, atomic_path, read_manifest, write_manifest, write_parquet_atomic
from orpr_ray.core.errors import InputError
from orpr_ray.data.config import DataConfig
from orpr_ray.data.dataset import OPTIONAL_ATTRIBUTES, REQUIRED_ATTRIBUTES, Dataset
from orpr_ray.data.stats import summarize
from orpr_ray.data.tables import (FORMATS, Table, Text, date_column, find_table, integer_column, numeric_column,
                                  read_table, require_columns, text_codes, text_column, unit_index,
                                  unit_positions)

DEMAND_REQUIRED = ("sku", "date", "sales")
DEMAND_COLUMNS = ("sku", "dc", "date", "sales", "promo", "price")


@dataclass(frozen=True)
class _Units:
    """Validated attribute table plus the key index that maps (sku, dc) to a row."""

    frame: pd.DataFrame
    index: pd.MultiIndex
    extra: tuple[str, ...]
    table: Table


@dataclass(frozen=True)
class _Demand:
    """Validated demand rows, one entry per file row (shape (n_rows,) each)."""

    unit: np.ndarray  # int64 position in the units table
    date: np.ndarray  # datetime64[D]
    sales: np.ndarray  # float64
    promo: np.ndarray | None  # float64, None when the column is absent
    price: np.ndarray | None  # float64, None when the column is absent
    table: Table


def load_dataset(path: str | Path, *, fill_missing_days: bool = False) -> Dataset:
    """Read ``demand.{parquet,csv}`` and ``units.{parquet,csv}`` from ``path`` and validate them."""
    folder = Path(path)
    if not folder.is_dir():
        raise InputError("dataset folder not found", file=str(folder))
    units_path, demand_path = find_table(folder, "units"), find_table(folder, "demand")
    units = _parse_units(read_table(units_path, text_columns=("sku", "dc", "category")))
    demand = _parse_demand(read_table(demand_path, text_columns=("sku", "dc", "date")), units)
    meta = _written_meta(folder)
    meta.update(source=str(folder), units_file=units_path.name, demand_file=demand_path.name)
    return _assemble(units, demand, fill_missing_days=fill_missing_days, meta=meta)


def load_from_config(cfg: DataConfig, seed: int) -> Dataset:
    """The dataset a run uses: the folder ``cfg.path``, or the synthetic catalogue when it is None."""
    if cfg.path is not None:
        return load_dataset(cfg.path, fill_missing_days=cfg.fill_missing_days)
    from orpr_ray.data.synth import synthesize

    return synthesize(cfg.synth, seed)


def write_dataset(ds: Dataset, path: str | Path, *, fmt: str = "parquet") -> Path:
    """Write ``demand.<fmt>`` and ``units.<fmt>`` atomically, then ``manifest.json`` last.

    Only observed unit-days are written (the long format of the contract), so loading the folder
    gives back the same dataset. Returns the folder.
    """
    if fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}", field="format")
    folder = Path(path)
    other = next(f for f in FORMATS if f != fmt)
    clashes = [f"{stem}.{other}" for stem in ("demand", "units") if (folder / f"{stem}.{other}").exists()]
    if clashes:
        raise InputError(f"already holds {', '.join(clashes)}; writing {fmt} beside it would make the "
                         "folder ambiguous: use an empty folder", file=str(folder))
    folder.mkdir(parents=True, exist_ok=True)
    # A rewrite invalidates the old manifest first, so a crash mid-way never looks finished.
    (folder / MANIFEST_NAME).unlink(missing_ok=True)
    outputs = [_write_frame(demand_frame(ds), folder / f"demand.{fmt}"),
               _write_frame(ds.units, folder / f"units.{fmt}")]
    write_manifest(folder, stage="data", config=ds.meta.get("config", {}), inputs=ds.meta.get("inputs", {}),
                   outputs=outputs, figures=summarize(ds),
                   extra={"format": fmt, "extra_attributes": list(ds.extra_attributes),
                          "dataset_meta": ds.meta})
    return folder


def _parse_units(table: Table) -> _Units:
    require_columns(table, REQUIRED_ATTRIBUTES)
    frame = table.frame
    sku, dc = text_column(table, "sku"), text_column(table, "dc")
    category = text_column(table, "category")
    cost = numeric_column(table, "unit_cost")
    table.fail("unit_cost", cost <= 0, "must be > 0")
    price = numeric_column(table, "unit_price")
    table.fail("unit_price", price < cost, "is below unit_cost (selling at a loss is not a valid unit)")
    lead = integer_column(table, "lead_time_days", minimum=0)
    review = integer_column(table, "review_period_days", minimum=1)
    target = np.full(len(frame), np.nan)
    if "target_turnover_days" in frame.columns:
        target = numeric_column(table, "target_turnover_days", allow_nan=True)
        table.fail("target_turnover_days", target <= 0, "must be > 0 (leave it empty for no target)")
    index = unit_index(sku, dc)
    table.fail("sku", index.duplicated(), "unit (sku, dc) appears more than once")
    extra = tuple(str(c) for c in frame.columns if c not in REQUIRED_ATTRIBUTES + OPTIONAL_ATTRIBUTES)
    units = pd.DataFrame({"sku": sku, "dc": dc, "category": category, "unit_cost": cost, "unit_price": price,
                          "lead_time_days": lead, "review_period_days": review,
                          "target_turnover_days": target})
    for name in extra:
        units[name] = _extra_attribute(frame[name])
    return _Units(frame=units, index=index, extra=extra, table=table)


def _extra_attribute(column: pd.Series) -> pd.Series:
    """Numeric columns become float64 (NaN = unknown); anything else is categorical text (NaN kept)."""
    if pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
        return column.astype(np.float64).reset_index(drop=True)
    return column.map(lambda v: v if pd.isna(v) else str(v)).astype(object).reset_index(drop=True)


def _parse_demand(table: Table, units: _Units) -> _Demand:
    require_columns(table, DEMAND_REQUIRED, allowed=DEMAND_COLUMNS)
    frame = table.frame
    sku = text_codes(table, "sku")
    dc = text_codes(table, "dc") if "dc" in frame.columns else _single_dc(table, units)
    date = date_column(table, "date")
    sales = numeric_column(table, "sales")
    table.fail("sales", sales < 0, "negative sales")
    promo = price = None
    if "promo" in frame.columns:
        promo = numeric_column(table, "promo")
        table.fail("promo", promo < 0, "must be >= 0 (a flag or an intensity)")
    if "price" in frame.columns:
        price = numeric_column(table, "price")
        table.fail("price", price <= 0, "must be > 0")
    unit = unit_positions(units.index, sku, dc)
    table.fail("sku", unit < 0, f"unit has no attribute row in {units.table.name}")
    _check_every_unit_has_demand(unit, units, table)
    return _Demand(unit=unit, date=date, sales=sales, promo=promo, price=price, table=table)


def _single_dc(table: Table, units: _Units) -> Text:
    """Without a ``dc`` column every row belongs to the one DC of the units file."""
    dcs = units.frame["dc"].unique()
    if len(dcs) != 1:
        raise InputError(f"column missing, and {units.table.name} names {len(dcs)} DCs, so rows cannot "
                         "be matched to units", file=table.name, field="dc")
    return Text(codes=np.zeros(len(table.frame), dtype=np.int64), names=np.asarray(dcs, dtype=object))


def _check_every_unit_has_demand(unit: np.ndarray, units: _Units, demand: Table) -> None:
    rows = np.bincount(unit, minlength=len(units.frame))
    units.table.fail("sku", rows == 0, f"unit has attributes but no rows in {demand.name}")


def _assemble(units: _Units, demand: _Demand, *, fill_missing_days: bool, meta: dict) -> Dataset:
    """Put every unit on the shared calendar min..max date; reject duplicates and (unless filling) gaps.

    Rows are placed by their flat cell index ``unit * T + day`` into (U, T) grids: one pass, no sort.
    """
    n_units = len(units.frame)
    start = demand.date.min()
    n_days = int((demand.date.max() - start).astype(np.int64)) + 1
    cell = demand.unit * n_days + (demand.date - start).astype(np.int64)  # (n_rows,)
    has_row = np.zeros(n_units * n_days, dtype=bool)
    has_row[cell] = True
    if has_row.sum() < len(cell):
        _raise_first_duplicate(demand, cell)
    has_row = has_row.reshape(n_units, n_days)
    first = has_row.argmax(axis=1)
    last = n_days - 1 - has_row[:, ::-1].argmax(axis=1)
    gaps = has_row.sum(axis=1) < last - first + 1  # (U,)
    if gaps.any() and not fill_missing_days:
        _raise_first_gap(demand, has_row, cell, first, gaps, start)
    calendar = np.arange(n_days)
    observed = (calendar >= first[:, None]) & (calendar <= last[:, None])  # (U, T)
    sales = _grid(cell, demand.sales, (n_units, n_days), 0.0, np.float64)
    promo = _grid(cell, demand.promo, (n_units, n_days), 0.0, np.float32)
    unit_price = units.frame["unit_price"].to_numpy()[:, None]  # (U, 1)
    price = np.repeat(unit_price, n_days, axis=1)
    if demand.price is not None:
        price.ravel()[cell] = demand.price
        price = _carry_price_forward(price, has_row, observed)
    meta = dict(meta, filled_days=int(observed.sum() - len(cell)))
    return Dataset(units=units.frame, dates=start + calendar.astype("timedelta64[D]"), sales=sales,
                   promo=promo, price=price, observed=observed, extra_attributes=units.extra, meta=meta)


def _grid(cell: np.ndarray, values: np.ndarray | None, shape: tuple[int, int], fill: float, dtype) -> np.ndarray:
    """A (U, T) array holding ``values`` at the flat ``cell`` indices and ``fill`` elsewhere."""
    grid = np.full(shape, fill, dtype=dtype)
    if values is not None:
        grid.ravel()[cell] = values
    return grid


def _raise_first_duplicate(demand: _Demand, cell: np.ndarray) -> None:
    """Name the second of the first two rows that share (sku, dc, date), and the first one."""
    order = np.argsort(cell, kind="stable")
    k = int(np.flatnonzero(np.diff(cell[order]) == 0)[0])
    bad = np.zeros(len(cell), dtype=bool)
    bad[order[k + 1]] = True
    other = demand.table.row_label(int(order[k]))
    demand.table.fail("date", bad, f"duplicate (sku, dc, date) row: the same unit and date is on {other}")


def _raise_first_gap(demand: _Demand, has_row: np.ndarray, cell: np.ndarray, first: np.ndarray,
                     gaps: np.ndarray, start: np.datetime64) -> None:
    """Name the first unit with a missing day, the dates around the gap, and how many units have gaps."""
    unit = int(np.flatnonzero(gaps)[0])
    missing = int(first[unit] + has_row[unit, first[unit]:].argmin())  # first missing day of the unit
    after = int(missing + has_row[unit, missing:].argmax())  # next day with a row
    row = int(np.flatnonzero(cell == unit * has_row.shape[1] + after)[0])
    before_date, after_date = start + np.timedelta64(missing - 1, "D"), start + np.timedelta64(after, "D")
    others = f"; {int(gaps.sum()) - 1} more units have gaps" if gaps.sum() > 1 else ""
    raise InputError(
        f"{after - missing} day(s) missing between {before_date} and {after_date}{others}; a unit's dates "
        "must be contiguous (load with fill_missing_days / --fill-missing-days to count missing days as 0 sales)",
        file=demand.table.name, field="date", where=demand.table.where(row))


def _carry_price_forward(price: np.ndarray, has_row: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Filled days take the price of the unit's previous day with a row (all arrays (U, T))."""
    if (has_row == observed).all():
        return price
    source_day = np.where(has_row, np.arange(price.shape[1]), 0)
    np.maximum.accumulate(source_day, axis=1, out=source_day)
    carried = np.take_along_axis(price, source_day, axis=1)
    return np.where(observed, carried, price)


def demand_frame(ds: Dataset) -> pd.DataFrame:
    """Long format of the observed unit-days, ordered by unit then date."""
    rows, days = np.nonzero(ds.observed)
    sales = ds.sales[rows, days]
    if np.array_equal(sales, np.round(sales)):
        sales = sales.astype(np.int64)  # integer counts read better in a CSV
    return pd.DataFrame({"sku": _repeated_text(ds.units["sku"], rows), "dc": _repeated_text(ds.units["dc"], rows),
                         "date": ds.dates[days].astype("datetime64[s]"), "sales": sales,
                         "promo": ds.promo[rows, days].astype(np.float64), "price": ds.price[rows, days]})


def _repeated_text(column: pd.Series, rows: np.ndarray) -> pd.Categorical:
    """``column[rows]`` as a categorical: Parquet stores it dictionary-encoded, readers get codes back."""
    codes, names = pd.factorize(column)
    return pd.Categorical.from_codes(codes[rows], categories=names)


def _write_frame(frame: pd.DataFrame, path: Path) -> str:
    if path.suffix == ".parquet":
        write_parquet_atomic(path, frame)
    else:
        with atomic_path(path) as tmp:
            frame.to_csv(tmp, index=False, date_format="%Y-%m-%d")
    return path.name


def _written_meta(folder: Path) -> dict:
    """What the writer recorded about the dataset (e.g. synthetic = uncensored), when its manifest verifies."""
    manifest = read_manifest(folder) if (folder / MANIFEST_NAME).is_file() else None
    return dict(manifest.get("dataset_meta", {})) if manifest else {}
