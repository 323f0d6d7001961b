"""Every bad-input case of the data contract: the message names file, column, row/unit and problem,
the CLI exits non-zero, and nothing is written (neither the output folder nor anything in the input)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from orpr_ray.cli import main
from orpr_ray.core.errors import InputError
from orpr_ray.data.config import SynthConfig
from orpr_ray.data.io import demand_frame, load_dataset, write_dataset
from orpr_ray.data.synth import synthesize

ROW = 5  # the data row a case spoils: line ROW + 2 of a CSV, row ROW of a Parquet file


def _label(fmt: str, row: int = ROW) -> str:
    return f"line {row + 2}" if fmt == "csv" else f"row {row}"


def _unit(frame: pd.DataFrame, row: int = ROW) -> str:
    return f"unit (sku={frame['sku'].iloc[row]}, dc={frame['dc'].iloc[row]})"


# Each case spoils valid (demand, units) frames in place and returns (file, column, fragments of the message).
def sales_text(d, u, fmt):
    d["sales"] = d["sales"].astype(str)  # a text column in Parquet too
    d.loc[ROW, "sales"] = "abc"
    return "demand", "sales", ["not a number", "'abc'", _label(fmt), _unit(d)]


def sales_negative(d, u, fmt):
    d.loc[ROW, "sales"] = -3
    return "demand", "sales", ["negative sales", _label(fmt), _unit(d)]


def sales_nan(d, u, fmt):
    d["sales"] = d["sales"].astype(float)
    d.loc[ROW, "sales"] = np.nan
    return "demand", "sales", ["value missing (NaN)", _label(fmt), _unit(d)]


def date_text(d, u, fmt):
    d["date"] = d["date"].astype(str)
    d.loc[ROW, "date"] = "31/01/2024"
    return "demand", "date", ["not an ISO date", _label(fmt), _unit(d)]


def date_with_time(d, u, fmt):
    d["date"] = d["date"].astype(str)
    d.loc[ROW, "date"] = "2024-01-06T10:30:00"
    return "demand", "date", ["time of day", _label(fmt)]


def duplicate_row(d, u, fmt):
    d.loc[ROW + 1] = d.loc[ROW]  # the next row repeats (sku, dc, date); the dataset loses one day there
    return "demand", "date", ["duplicate (sku, dc, date)", f"same unit and date is on {_label(fmt)}",
                              _label(fmt, ROW + 1), _unit(d)]


def date_gap(d, u, fmt):
    gone = d.loc[ROW, "date"]
    d.drop(index=ROW, inplace=True)
    return "demand", "date", ["1 day(s) missing", f"between {(gone - pd.Timedelta(days=1)).date()}",
                              "fill_missing_days", _unit(d.reset_index(drop=True))]


def missing_demand_column(d, u, fmt):
    d.drop(columns="sales", inplace=True)
    return "demand", "sales", ["required column missing"]


def unknown_demand_column(d, u, fmt):
    d["promotion"] = 0
    return "demand", "promotion", ["unknown column", "promo"]


def missing_units_column(d, u, fmt):
    u.drop(columns="unit_cost", inplace=True)
    return "units", "unit_cost", ["required column missing"]


def demand_without_attributes(d, u, fmt):
    orphan = u.iloc[0]
    u.drop(index=0, inplace=True)
    return "demand", "sku", ["has no attribute row in", f"sku={orphan['sku']}, dc={orphan['dc']}", _label(fmt, 0)]


def attributes_without_demand(d, u, fmt):
    unit = u.iloc[1]
    d.drop(index=d.index[(d["sku"] == unit["sku"]) & (d["dc"] == unit["dc"])], inplace=True)
    return "units", "sku", ["has attributes but no rows in", _unit(u, 1), _label(fmt, 1)]


def duplicate_unit(d, u, fmt):
    u.loc[len(u)] = u.loc[2]
    return "units", "sku", ["appears more than once", _unit(u, 2), _label(fmt, len(u) - 1)]


def blank_sku(d, u, fmt):
    u.loc[2, "sku"] = "  "
    return "units", "sku", ["blank", _label(fmt, 2)]


def lead_time_negative(d, u, fmt):
    u.loc[1, "lead_time_days"] = -1
    return "units", "lead_time_days", ["must be >= 0", _unit(u, 1), _label(fmt, 1)]


def lead_time_fraction(d, u, fmt):
    u["lead_time_days"] = u["lead_time_days"].astype(float)
    u.loc[1, "lead_time_days"] = 2.5
    return "units", "lead_time_days", ["not a whole number", "2.5", _unit(u, 1)]


def review_period_zero(d, u, fmt):
    u.loc[3, "review_period_days"] = 0
    return "units", "review_period_days", ["must be >= 1", _unit(u, 3), _label(fmt, 3)]


def unit_cost_zero(d, u, fmt):
    u.loc[2, "unit_cost"] = 0.0
    return "units", "unit_cost", ["must be > 0", _unit(u, 2)]


def unit_cost_negative(d, u, fmt):
    u.loc[0, "unit_cost"] = -1.5
    return "units", "unit_cost", ["must be > 0", "-1.5", _unit(u, 0)]


def price_below_cost(d, u, fmt):
    u.loc[1, "unit_price"] = u.loc[1, "unit_cost"] / 2
    return "units", "unit_price", ["is below unit_cost", _unit(u, 1)]


def target_not_positive(d, u, fmt):
    u.loc[0, "target_turnover_days"] = 0.0
    return "units", "target_turnover_days", ["must be > 0", _unit(u, 0)]


def demand_price_zero(d, u, fmt):
    d.loc[ROW, "price"] = 0.0
    return "demand", "price", ["must be > 0", _label(fmt)]


def promo_negative(d, u, fmt):
    d.loc[ROW, "promo"] = -1.0
    return "demand", "promo", ["must be >= 0", _label(fmt)]


def demand_without_dc_many_dcs(d, u, fmt):
    d.drop(columns="dc", inplace=True)
    return "demand", "dc", ["column missing", "names 2 DCs"]


CASES = [sales_text, sales_negative, sales_nan, date_text, date_with_time, duplicate_row, date_gap,
         missing_demand_column, unknown_demand_column, missing_units_column, demand_without_attributes,
         attributes_without_demand, duplicate_unit, blank_sku, lead_time_negative, lead_time_fraction,
         review_period_zero, unit_cost_zero, unit_cost_negative, price_below_cost, target_not_positive,
         demand_price_zero, promo_negative, demand_without_dc_many_dcs]


def _valid_frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    """A small valid dataset (4 units over 2 DCs, 60 days) as the long frames the writer produces."""
    ds = synthesize(SynthConfig(units=4, days=60, dcs=2, categories=2), seed=1)
    ds.units.loc[:, "dc"] = ["DC1", "DC2", "DC1", "DC2"]  # both DCs present whatever the draw
    return demand_frame(ds), ds.units.copy()


def _write(frame: pd.DataFrame, path: Path) -> None:
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _assert_rejected(folder: Path, tmp_path: Path, capsys, file: str, column: str | None,
                     fragments: list[str], fill: bool = False) -> InputError:
    """Library raises InputError naming file/column; CLI exits 2 with the same message; nothing written."""
    before = _snapshot(folder)
    with pytest.raises(InputError) as info:
        load_dataset(folder, fill_missing_days=fill)
    err = info.value
    assert Path(err.file).name.startswith(file), err
    assert err.field == column, err
    for fragment in fragments:
        assert fragment in str(err), (fragment, str(err))
    out = tmp_path / "out"
    rc = main(["data", "validate", str(folder), "--out", str(out)])
    stderr = capsys.readouterr().err
    assert rc == 2
    assert str(err) in stderr
    assert not out.exists()
    assert _snapshot(folder) == before
    return err


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_bad_input_is_rejected_with_a_precise_message(case, fmt, tmp_path, capsys):
    demand, units = _valid_frames()
    file, column, fragments = case(demand, units, fmt)
    folder = tmp_path / "in"
    folder.mkdir()
    _write(demand, folder / f"demand.{fmt}")
    _write(units, folder / f"units.{fmt}")
    err = _assert_rejected(folder, tmp_path, capsys, file, column, fragments)
    assert err.file.endswith(f"{file}.{fmt}")


def _folder_with(tmp_path: Path, fmt: str = "csv") -> Path:
    demand, units = _valid_frames()
    folder = tmp_path / "in"
    folder.mkdir()
    _write(demand, folder / f"demand.{fmt}")
    _write(units, folder / f"units.{fmt}")
    return folder


def test_empty_file(tmp_path, capsys):
    folder = _folder_with(tmp_path)
    (folder / "demand.csv").write_bytes(b"")
    _assert_rejected(folder, tmp_path, capsys, "demand", None, ["empty (0 bytes)"])


def test_header_only_file(tmp_path, capsys):
    folder = _folder_with(tmp_path)
    (folder / "units.csv").write_text((folder / "units.csv").read_text().splitlines()[0] + "\n")
    _assert_rejected(folder, tmp_path, capsys, "units", None, ["header but no data rows"])


def test_blank_lines_only_file(tmp_path, capsys):
    folder = _folder_with(tmp_path)
    (folder / "demand.csv").write_text("\n\n")
    _assert_rejected(folder, tmp_path, capsys, "demand", None, ["empty (no header)"])


def test_unreadable_parquet(tmp_path, capsys):
    folder = _folder_with(tmp_path, fmt="parquet")
    (folder / "demand.parquet").write_bytes(b"PAR1 this is not a parquet file")
    _assert_rejected(folder, tmp_path, capsys, "demand", None, ["cannot be read as Parquet"])


def test_unreadable_csv(tmp_path, capsys):
    folder = _folder_with(tmp_path)
    (folder / "units.csv").write_text('sku,dc\n"unterminated,DC1\n')
    _assert_rejected(folder, tmp_path, capsys, "units", None, ["cannot be read as CSV"])


def test_missing_file(tmp_path, capsys):
    folder = _folder_with(tmp_path)
    (folder / "units.csv").unlink()
    _assert_rejected(folder, tmp_path, capsys, "in", None, ["no units.parquet or units.csv"])


def test_both_formats_present_is_ambiguous(tmp_path, capsys):
    folder = _folder_with(tmp_path)
    pd.read_csv(folder / "demand.csv").to_parquet(folder / "demand.parquet")
    _assert_rejected(folder, tmp_path, capsys, "in", None, ["both demand.parquet and demand.csv"])


def test_missing_folder(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["data", "validate", str(tmp_path / "nowhere"), "--out", str(out)]) == 2
    assert "dataset folder not found" in capsys.readouterr().err
    assert not out.exists()


def test_gap_is_accepted_when_filling(tmp_path, capsys):
    """The same gap that is an error by default loads with fill_missing_days (the day becomes 0 sales)."""
    demand, units = _valid_frames()
    date_gap(demand, units, "csv")
    folder = tmp_path / "in"
    folder.mkdir()
    _write(demand, folder / "demand.csv")
    _write(units, folder / "units.csv")
    ds = load_dataset(folder, fill_missing_days=True)
    assert ds.meta["filled_days"] == 1
    assert ds.observed.all()
    assert main(["data", "validate", str(folder), "--fill-missing-days"]) == 0


def test_write_refuses_a_folder_holding_the_other_format(tmp_path):
    ds = synthesize(SynthConfig(units=3, days=60), seed=0)
    write_dataset(ds, tmp_path, fmt="csv")
    before = _snapshot(tmp_path)
    with pytest.raises(InputError, match="ambiguous"):
        write_dataset(ds, tmp_path, fmt="parquet")
    assert _snapshot(tmp_path) == before
