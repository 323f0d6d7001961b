"""Reading one input table and checking its columns, with errors that point at the offending row.

Every check is vectorised: it builds a boolean mask of bad rows and, when any is set, raises an
``InputError`` naming the file, the column, the first bad row (and its unit when known) and how
many rows share the problem. Row labels are what a planner sees in the file: ``line N`` of a CSV
(the header is line 1) and ``row N`` (0-based) of a Parquet file.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from orpr_ray.core.errors import InputError

FORMATS = ("parquet", "csv")
# What a CSV may write for a missing number (pandas' defaults); text keys are missing only when empty.
NUMBER_NA = ["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>",
             "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"]


@dataclass(frozen=True)
class Table:
    """A table read from ``path``; row positions in ``frame`` are the file's row order.

    ``unit_columns`` are the key columns that name a row's unit in messages.
    """

    frame: pd.DataFrame
    path: Path
    unit_columns: tuple[str, ...] = ("sku", "dc")

    @property
    def name(self) -> str:
        return str(self.path)

    def row_label(self, i: int) -> str:
        return f"line {i + 2}" if self.path.suffix == ".csv" else f"row {i}"

    def unit_name(self, i: int) -> str | None:
        """``unit (sku=A, dc=B)`` of row ``i``, from the key columns the table has (None without any)."""
        keys = [f"{c}={self.frame[c].iloc[i]}" for c in self.unit_columns if c in self.frame.columns]
        return f"unit ({', '.join(keys)})" if keys else None

    def where(self, i: int) -> str:
        """``unit (sku=A, dc=B), line 7``, or just the row label when the table has no key columns."""
        unit = self.unit_name(i)
        return f"{unit}, {self.row_label(i)}" if unit else self.row_label(i)

    def fail(self, column: str | None, bad: np.ndarray, problem: str) -> None:
        """Raise for the first row of the boolean mask ``bad`` (shape (n_rows,)), if any is set."""
        rows = np.flatnonzero(bad)
        if rows.size == 0:
            return
        first = int(rows[0])
        value = self.frame[column].iloc[first] if column in self.frame.columns else None
        value = value.item() if isinstance(value, np.generic) else value  # 2.5, not np.float64(2.5)
        got = f" (got {value!r})" if column is not None and value is not None else ""
        more = f"; {rows.size - 1} more rows have the same problem" if rows.size > 1 else ""
        raise InputError(f"{problem}{got}{more}", file=self.name, field=column,
                         where=self.where(first))


def find_table(folder: Path, stem: str) -> Path:
    """The one ``stem.parquet`` or ``stem.csv`` in ``folder``; both or neither is an error."""
    found = [folder / f"{stem}.{fmt}" for fmt in FORMATS if (folder / f"{stem}.{fmt}").exists()]
    if not found:
        raise InputError(f"no {stem}.parquet or {stem}.csv in the dataset folder", file=str(folder))
    if len(found) > 1:
        raise InputError(f"both {found[0].name} and {found[1].name} exist; keep one so the input is "
                         "unambiguous", file=str(folder))
    return found[0]


def read_table(path: Path, *, text_columns: tuple[str, ...] = (),
               unit_columns: tuple[str, ...] = ("sku", "dc")) -> Table:
    """Read CSV or Parquet; empty or unreadable files are input errors.

    ``text_columns`` are kept as text in a CSV (``"007"`` stays ``"007"``, a date stays a string
    for strict ISO parsing) instead of pandas' type guessing, stored as categoricals (few distinct
    values, many rows).
    """
    if not path.is_file():
        raise InputError("file not found", file=str(path))
    if path.stat().st_size == 0:
        raise InputError("file is empty (0 bytes)", file=str(path))
    try:
        if path.suffix == ".csv":
            frame = _read_csv(path, text_columns)
        else:
            frame = pd.read_parquet(path)
    except pd.errors.EmptyDataError as exc:
        raise InputError("file is empty (no header)", file=str(path)) from exc
    except Exception as exc:  # any parser failure means the same thing to the user: unreadable
        kind = "CSV" if path.suffix == ".csv" else "Parquet"
        raise InputError(f"cannot be read as {kind}: {type(exc).__name__}: {exc}", file=str(path)) from exc
    if len(frame) == 0:
        raise InputError("file has a header but no data rows", file=str(path))
    return Table(frame=frame, path=path, unit_columns=unit_columns)


def _read_csv(path: Path, text_columns: tuple[str, ...]) -> pd.DataFrame:
    """Only an empty field is missing text: a DC may be called ``NA`` (numbers keep pandas' NA words)."""
    header = pd.read_csv(path, nrows=0).columns
    missing = {c: [""] if c in text_columns else NUMBER_NA for c in header}
    return pd.read_csv(path, dtype={c: "category" for c in text_columns if c in header}, keep_default_na=False,
                       na_values=missing, low_memory=False)


def require_columns(table: Table, required: tuple[str, ...], allowed: tuple[str, ...] | None = None) -> None:
    """Missing required columns (and, with ``allowed``, unknown ones) are errors."""
    columns = [str(c) for c in table.frame.columns]
    missing = [c for c in required if c not in columns]
    if missing:
        raise InputError(f"required column missing (the file has: {', '.join(columns)})",
                         file=table.name, field=missing[0])
    duplicated = sorted({c for c in columns if columns.count(c) > 1})
    if duplicated:
        raise InputError("column appears more than once", file=table.name, field=duplicated[0])
    if allowed is not None:
        unknown = [c for c in columns if c not in allowed]
        if unknown:
            raise InputError(f"unknown column; allowed columns are {', '.join(allowed)}",
                             file=table.name, field=unknown[0])


@dataclass(frozen=True)
class Text:
    """A text column as codes into its distinct values: row ``i`` holds ``names[codes[i]]``.

    Key columns repeat each value on many rows (a demand file names a unit on every day), so all
    string work runs on the distinct values and the rows carry integers.
    """

    codes: np.ndarray  # int64 (n_rows,)
    names: np.ndarray  # object (k,), distinct stripped strings

    def values(self) -> np.ndarray:
        return self.names[self.codes]


def text_codes(table: Table, column: str) -> Text:
    """A key column as stripped strings (coded); missing and blank values are errors."""
    raw = table.frame[column]
    if isinstance(raw.dtype, pd.CategoricalDtype):  # CSV text columns and written Parquet: codes are ready
        codes, distinct = raw.cat.codes.to_numpy(), raw.cat.categories
    else:
        codes, distinct = pd.factorize(raw)
    table.fail(column, codes < 0, "value missing")  # codes (n_rows,), -1 where missing
    stripped = pd.Index(distinct).astype(str).str.strip()
    table.fail(column, (stripped == "")[codes], "value is blank")
    merged, names = pd.factorize(stripped)  # "A" and " A" are one name once stripped
    return Text(codes=merged[codes].astype(np.int64), names=np.asarray(names, dtype=object))


def text_column(table: Table, column: str) -> np.ndarray:
    """A key column as stripped Python strings (object array, shape (n_rows,))."""
    return text_codes(table, column).values()


def numeric_column(table: Table, column: str, *, allow_nan: bool = False) -> np.ndarray:
    """A column as float64 (shape (n_rows,)); text, booleans, infinities and (unless allowed) NaN are errors."""
    raw = table.frame[column]
    if pd.api.types.is_bool_dtype(raw):
        table.fail(column, np.ones(len(raw), dtype=bool), "is boolean, expected numbers")
    if pd.api.types.is_numeric_dtype(raw):
        values = raw.to_numpy(dtype=np.float64)
    else:
        coerced = pd.to_numeric(raw, errors="coerce")
        table.fail(column, (coerced.isna() & raw.notna()).to_numpy(), "not a number")
        values = coerced.to_numpy(dtype=np.float64)
    if not allow_nan:
        table.fail(column, np.isnan(values), "value missing (NaN)")
    table.fail(column, np.isinf(values), "value is infinite")
    return values


def integer_column(table: Table, column: str, *, minimum: int) -> np.ndarray:
    """A whole-number column (``3`` or ``3.0``) as int64, every value >= ``minimum``."""
    values = numeric_column(table, column)
    table.fail(column, values != np.round(values), "not a whole number")
    table.fail(column, values < minimum, f"must be >= {minimum}")
    return values.astype(np.int64)


def date_column(table: Table, column: str) -> np.ndarray:
    """ISO dates as ``datetime64[D]`` (shape (n_rows,)); unparseable values and times of day are errors.

    Text dates are parsed once per distinct value (a panel repeats each date for every unit).
    """
    raw = table.frame[column]
    every_row = np.ones(len(raw), dtype=bool)
    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        table.fail(column, every_row, "has a time zone; expected plain dates")
    if pd.api.types.is_numeric_dtype(raw) or pd.api.types.is_bool_dtype(raw):
        table.fail(column, every_row, "not a date (expected ISO dates like 2024-01-31)")
    if pd.api.types.is_datetime64_any_dtype(raw):
        values = raw.to_numpy()
        table.fail(column, np.isnat(values), "date missing")
    else:
        codes, distinct = pd.factorize(raw)  # -1 where missing
        table.fail(column, codes < 0, "date missing")
        parsed = pd.to_datetime(pd.Index(distinct).astype(str), format="ISO8601", errors="coerce").to_numpy()
        table.fail(column, np.isnat(parsed)[codes], "not an ISO date (expected like 2024-01-31)")
        values = parsed[codes]
    days = values.astype("datetime64[D]")
    table.fail(column, days != values, "has a time of day; expected dates")
    return days


def unit_index(sku: np.ndarray, dc: np.ndarray) -> pd.MultiIndex:
    """The (sku, dc) keys of a unit table, one per row."""
    return pd.MultiIndex.from_arrays([sku, dc], names=["sku", "dc"])


def unit_positions(index: pd.MultiIndex, sku: Text, dc: Text, *, dense_limit: int = 1 << 24) -> np.ndarray:
    """Position in ``index`` (unique keys) of each row's (sku, dc), -1 when unknown; (n_rows,) int64.

    Each row's pair is one integer ``sku_code * n_dc + dc_code``; only the distinct pairs are looked
    up as strings. While the pair space is small (up to ``dense_limit``, or the row count) a lookup
    table maps pairs to positions in two vector passes; beyond, the pairs are hashed.
    """
    n_dc = len(dc.names)
    pair = sku.codes * n_dc + dc.codes  # (n_rows,)
    n_pairs = len(sku.names) * n_dc
    if n_pairs <= max(dense_limit, len(pair)):
        seen = np.zeros(n_pairs, dtype=bool)
        seen[pair] = True
        distinct = np.flatnonzero(seen)
        lookup = np.full(n_pairs, -1, dtype=np.int64)
        lookup[distinct] = index.get_indexer(unit_index(sku.names[distinct // n_dc], dc.names[distinct % n_dc]))
        return lookup[pair]
    pair_of_row, distinct = pd.factorize(pair)
    keys = unit_index(sku.names[distinct // n_dc], dc.names[distinct % n_dc])
    return index.get_indexer(keys)[pair_of_row].astype(np.int64)
