"""Property-based checks (hypothesis) of the two doors bad input comes through: the dataset loader
and the service's request models. Whatever the content, the answer is a valid object or the
project's own error naming a file/field — never another exception, never a silently odd value."""
from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from serve_support import request_units

from orpr_ray.core.errors import InputError
from orpr_ray.data.config import SynthConfig
from orpr_ray.data.io import load_dataset
from orpr_ray.data.synth import synthesize
from orpr_ray.serve.schemas import (MAX_AHEAD_DAYS, MAX_BATCH_UNITS, MAX_HISTORY_DAYS, MIN_HISTORY_DAYS,
                                    BatchRequest, UnitRequest, field_path)

VALID = Path(__file__).resolve().parent / "bad_inputs" / "valid_data"
PROPS = settings(max_examples=60, deadline=None)

# Cell contents a spreadsheet export might hold: numbers of every kind, dates, blanks, text, odd unicode.
CELLS = st.one_of(
    st.integers(-10**12, 10**12).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", " ", "NaN", "inf", "-0", "1e400", "2024-01-03", "2024-02-30", "null", "TRUE", "A1",
                     "DC1", "\u00e9t\u00e9", "1,5", "0x10", "\x00"]),
    st.text(max_size=8),
)


def _read_rows(path: Path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_text())))


def _write_rows(path: Path, rows: list[list[str]]) -> None:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    path.write_text(buffer.getvalue())


@contextlib.contextmanager
def valid_copy() -> Iterator[Path]:
    """A fresh copy of the valid folder for each example (a fixture would be shared by all examples)."""
    with tempfile.TemporaryDirectory(prefix="orpr-props-") as tmp:
        target = Path(tmp) / "in"
        shutil.copytree(VALID, target)
        yield target


@PROPS
@given(table=st.sampled_from(["demand.csv", "units.csv"]), edits=st.lists(
    st.tuples(st.integers(0, 30), st.integers(0, 7), CELLS), min_size=1, max_size=4))
def test_loader_answers_any_spoiled_cell_with_a_dataset_or_an_input_error(table, edits):
    """Cells of a valid folder replaced by arbitrary text (header cells included)."""
    with valid_copy() as folder:
        rows = _read_rows(folder / table)
        for row, col, value in edits:
            row %= len(rows)
            rows[row][col % len(rows[row])] = value
        _write_rows(folder / table, rows)
        try:
            ds = load_dataset(folder)
        except InputError as err:
            assert err.file and Path(err.file).name in {"demand.csv", "units.csv"}, err
            assert err.problem
            return
    # Accepted: then the panel obeys the contract the other stages rely on.
    assert np.isfinite(ds.sales).all() and (ds.sales >= 0).all()
    assert (ds.units["unit_cost"] > 0).all() and (ds.units["unit_price"] >= ds.units["unit_cost"]).all()
    assert (ds.units["lead_time_days"] >= 0).all() and (ds.units["review_period_days"] >= 1).all()


@PROPS
@given(data=st.binary(max_size=200))
def test_loader_answers_arbitrary_bytes_with_an_input_error(data):
    with valid_copy() as folder, pytest.raises(InputError) as info:
        (folder / "units.csv").write_bytes(data)
        load_dataset(folder)
    assert Path(info.value.file).name == "units.csv"


@pytest.fixture(scope="module")
def unit() -> dict:
    return request_units(synthesize(SynthConfig(units=2, days=60), seed=3))[0]


JSON = st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=10),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
                    max_leaves=10)
FIELDS = ["sku", "dc", "category", "decision_date", "sales", "promo", "price", "unit_cost", "unit_price",
          "lead_time_days", "review_period_days", "extra", "target_turnover_days", "sales_share", "on_hand",
          "on_order", "promo_ahead", "unknown_field"]
DEPENDS = {"unit_cost": ("unit_price",), "sales": ("promo", "price")}  # checked against the key's value


def _accepted_is_sane(request: UnitRequest) -> None:
    numbers = [*request.sales, *(request.promo or []), *(request.price or []), *request.promo_ahead,
               request.unit_cost, request.unit_price, request.on_hand, request.on_order]
    assert all(math.isfinite(x) and x >= 0 for x in numbers)
    assert MIN_HISTORY_DAYS <= len(request.sales) <= MAX_HISTORY_DAYS
    assert len(request.promo_ahead) <= MAX_AHEAD_DAYS
    assert request.unit_price >= request.unit_cost and request.sku


@PROPS
@given(changes=st.dictionaries(st.sampled_from(FIELDS), JSON, min_size=1, max_size=3),
       dropped=st.sets(st.sampled_from(FIELDS), max_size=2))
def test_request_model_accepts_only_sane_units_and_names_the_field(unit, changes, dropped):
    body = {k: v for k, v in {**unit, **changes}.items() if k not in dropped}
    try:
        request = UnitRequest.model_validate(body)
    except ValidationError as err:
        fields = {field_path(e["loc"]) for e in err.errors()}
        touched = set(changes) | set(dropped)
        # A changed field may also spoil the fields checked against it.
        touched |= {dep for key, deps in DEPENDS.items() if key in touched for dep in deps}
        assert all(f.split("[")[0].split(".")[0] in touched for f in fields), (fields, touched)
        return
    _accepted_is_sane(request)


@PROPS
@given(sales=st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=MAX_HISTORY_DAYS + 5))
def test_request_sales_history_is_bounded_and_finite(unit, sales):
    body = json.loads(json.dumps({**unit, "sales": sales, "promo": None, "price": None}))
    ok = (MIN_HISTORY_DAYS <= len(sales) <= MAX_HISTORY_DAYS) and all(math.isfinite(x) and x >= 0 for x in sales)
    try:
        request = UnitRequest.model_validate(body)
    except ValidationError as err:
        assert not ok, err
        assert all(field_path(e["loc"]).startswith("sales") for e in err.errors())
        return
    assert ok
    _accepted_is_sane(request)


def test_batch_request_is_bounded(unit):
    short = {**unit, "sales": unit["sales"][:MIN_HISTORY_DAYS], "promo": None, "price": None}
    assert len(BatchRequest.model_validate({"units": [short] * MAX_BATCH_UNITS}).units) == MAX_BATCH_UNITS
    with pytest.raises(ValidationError, match="at most 5000 items"):
        BatchRequest.model_validate({"units": [short] * (MAX_BATCH_UNITS + 1)})
