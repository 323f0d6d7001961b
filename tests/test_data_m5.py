"""The M5 importer: the mapping on a tiny hand-made M5 folder, bad M5 files, and the real subset."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from orpr_ray.cli import main
from orpr_ray.core.errors import InputError
from orpr_ray.data.config import M5Config
from orpr_ray.data.io import load_dataset
from orpr_ray.data.m5 import EVENT_PROMO, SNAP_PROMO, import_m5

N_DAYS = 28  # four Walmart weeks, Saturday to Friday; the calendar runs one week further, like the real one


def _calendar() -> pd.DataFrame:
    days = np.arange(N_DAYS + 7)
    cal = pd.DataFrame({
        "date": pd.date_range("2011-01-29", periods=len(days)).strftime("%Y-%m-%d"),
        "d": [f"d_{i + 1}" for i in days], "wm_yr_wk": 11101 + days // 7,
        "weekday": "x", "wday": days % 7 + 1, "month": 1, "year": 2011,
        "event_name_1": None, "event_type_1": None, "event_name_2": None, "event_type_2": None,
        "snap_CA": 0, "snap_TX": 0, "snap_WI": 0,
    })
    cal.loc[2, ["event_name_1", "event_type_1"]] = ["SuperBowl", "Sporting"]  # d_3
    cal.loc[9, ["event_name_2", "event_type_2"]] = ["Easter", "Cultural"]  # d_10, second event slot only
    cal.loc[4:7, "snap_CA"] = 1  # d_5..d_8
    cal.loc[9, "snap_CA"] = 1  # d_10: event and SNAP
    cal.loc[7:11, "snap_TX"] = 1  # d_8..d_12
    return cal


def _sales() -> pd.DataFrame:
    day = np.arange(N_DAYS)
    rows = [("A", "FOODS_1", "FOODS", "CA_1", "CA", day % 4),
            ("B", "HOBBIES_1", "HOBBIES", "CA_1", "CA", np.where(day < 7, 0, 2)),
            ("A", "FOODS_1", "FOODS", "TX_1", "TX", np.ones(N_DAYS, dtype=int))]
    frame = pd.DataFrame([[f"{i}_{s}_validation", i, dept, cat, s, st] for i, dept, cat, s, st, _ in rows],
                         columns=["id", "item_id", "dept_id", "cat_id", "store_id", "state_id"])
    daily = pd.DataFrame(np.stack([r[-1] for r in rows]), columns=[f"d_{k + 1}" for k in day])
    return pd.concat([frame, daily], axis=1)


def _prices() -> pd.DataFrame:
    rows = [("CA_1", "A", 11101 + w, p) for w, p in enumerate([2.0, 2.0, 2.5, 2.5, 3.0])]  # last week unused
    rows += [("CA_1", "B", 11102, 4.0), ("CA_1", "B", 11104, 5.0)]  # launch in week 2, no price in week 3
    rows += [("TX_1", "A", 11101 + w, 3.0) for w in range(4)]
    rows += [("CA_1", "C", 11101, 1.0)]  # an item outside the sales file
    return pd.DataFrame(rows, columns=["store_id", "item_id", "wm_yr_wk", "sell_price"])


def _write_m5(folder: Path, calendar=None, sales=None, prices=None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (calendar if calendar is not None else _calendar()).to_csv(folder / "calendar.csv", index=False)
    (sales if sales is not None else _sales()).to_csv(folder / "sales_train_validation.csv", index=False)
    (prices if prices is not None else _prices()).to_csv(folder / "sell_prices.csv", index=False)
    return folder


def test_mapping_of_units_calendar_prices_and_launch(tmp_path):
    ds = import_m5(_write_m5(tmp_path / "m5"))
    assert ds.unit_keys == [("A", "CA_1"), ("B", "CA_1"), ("A", "TX_1")]
    assert ds.units["category"].tolist() == ["FOODS", "HOBBIES", "FOODS"]
    assert ds.units["dept_id"].tolist() == ["FOODS_1", "HOBBIES_1", "FOODS_1"] and ds.extra_attributes == ("dept_id",)
    assert ds.n_days == N_DAYS and str(ds.dates[0]) == "2011-01-29" and str(ds.dates[-1]) == "2011-02-25"
    assert ds.first_day.tolist() == [0, 7, 0] and (ds.last_day == N_DAYS - 1).all()  # B launches in week 2
    assert ds.sales[1, :7].sum() == 0 and ds.sales[0].tolist() == (np.arange(N_DAYS) % 4).tolist()
    assert ds.price[0].tolist() == [2.0] * 14 + [2.5] * 14
    assert ds.price[1, 7:].tolist() == [4.0] * 14 + [5.0] * 7  # week 3 keeps week 2's price
    assert ds.units["unit_price"].tolist() == [2.25, 4.0, 3.0]  # median daily price over observed days
    assert (ds.price[1, :7] == 4.0).all()  # unobserved days carry unit_price
    assert np.allclose(ds.units["unit_cost"] / ds.units["unit_price"], 0.7, atol=0.005)
    assert (ds.units["lead_time_days"] == 3).all() and (ds.units["review_period_days"] == 7).all()
    assert ds.units["target_turnover_days"].isna().all()
    assert ds.meta["units_launched_late"] == 1 and ds.meta["price_days_filled"] == 7


def test_promo_encodes_events_and_snap_days_of_the_units_state(tmp_path):
    ds = import_m5(_write_m5(tmp_path / "m5"))
    expected_ca = np.zeros(N_DAYS)
    expected_ca[[4, 5, 6, 7]] = SNAP_PROMO
    expected_ca[[2, 9]] = EVENT_PROMO
    expected_tx = np.zeros(N_DAYS)
    expected_tx[[7, 8, 10, 11]] = SNAP_PROMO
    expected_tx[[2, 9]] = EVENT_PROMO
    assert ds.promo[0].tolist() == expected_ca.tolist()
    assert ds.promo[1].tolist() == np.where(np.arange(N_DAYS) >= 7, expected_ca, 0).tolist()  # not before launch
    assert ds.promo[2].tolist() == expected_tx.tolist()


def test_margin_lead_times_and_review_periods_are_configurable(tmp_path):
    params = tmp_path / "params.csv"
    params.write_text("sku,dc,lead_time_days,review_period_days\nB,CA_1,10,2\n")
    ds = import_m5(_write_m5(tmp_path / "m5"),
                   M5Config(margin=0.2, lead_time_days=5, review_period_days=1, params_file=str(params)))
    assert ds.units["unit_cost"].tolist() == [1.8, 3.2, 2.4]
    assert ds.units["lead_time_days"].tolist() == [5, 10, 5]
    assert ds.units["review_period_days"].tolist() == [1, 2, 1]


def test_cli_import_writes_a_folder_that_loads_back(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["data", "import-m5", str(_write_m5(tmp_path / "m5")), "--out", str(out), "--margin", "0.4",
                 "--lead-time-days", "2", "--review-period-days", "3", "--format", "csv"]) == 0
    assert "units 3" in capsys.readouterr().out
    direct = import_m5(tmp_path / "m5", M5Config(margin=0.4, lead_time_days=2, review_period_days=3))
    back = load_dataset(out)
    for name in ("sales", "promo", "price", "observed", "dates"):
        assert np.array_equal(getattr(direct, name), getattr(back, name)), name
    pd.testing.assert_frame_equal(direct.units, back.units)
    assert back.meta["kind"] == "m5" and back.meta["uncensored"] is False


def _drop_d5(cal, sales, prices):
    sales.drop(columns="d_5", inplace=True)
    return "sales_train_validation", "d_5", ["d_4 is followed by d_6"]


def _no_day_columns(cal, sales, prices):
    sales.drop(columns=[c for c in sales.columns if c.startswith("d_")], inplace=True)
    return "sales_train_validation", "d_1", ["no daily sales columns"]


def _day_not_in_calendar(cal, sales, prices):
    cal.drop(index=N_DAYS - 1, inplace=True)  # d_28
    return "calendar", "d", [f"day d_{N_DAYS} of", "not in the calendar"]


def _calendar_gap(cal, sales, prices):
    cal.loc[14, "date"] = "2011-03-30"  # d_15
    return "calendar", "date", ["d_14", "d_15", "not consecutive", "line 16"]


def _text_cell(cal, sales, prices):
    sales["d_7"] = sales["d_7"].astype(str)
    sales.loc[2, "d_7"] = "x"
    return "sales_train_validation", "d_7", ["not a number", "unit (item_id=A, store_id=TX_1), line 4"]


def _nan_cell(cal, sales, prices):
    sales["d_9"] = sales["d_9"].astype(float)
    sales.loc[1, "d_9"] = np.nan
    return "sales_train_validation", "d_9", ["value missing", "unit (item_id=B, store_id=CA_1), line 3"]


def _negative_cell(cal, sales, prices):
    sales.loc[0, "d_2"] = -4
    return "sales_train_validation", "d_2", ["negative sales", "line 2"]


def _duplicate_unit(cal, sales, prices):
    sales.loc[3] = sales.loc[0]
    return "sales_train_validation", "item_id", ["appears more than once", "line 5"]


def _missing_snap_column(cal, sales, prices):
    cal.drop(columns="snap_TX", inplace=True)
    return "calendar", "snap_TX", ["state TX"]


def _unit_without_prices(cal, sales, prices):
    prices.drop(index=prices.index[prices["store_id"] == "TX_1"], inplace=True)
    return "sell_prices", "sell_price", ["no sell_price", "unit (item_id=A, store_id=TX_1)"]


def _duplicate_price(cal, sales, prices):
    prices.loc[len(prices)] = ["CA_1", "A", 11102, 2.1]
    return "sell_prices", "wm_yr_wk", ["more than one price", "unit (item_id=A, store_id=CA_1)"]


def _text_price(cal, sales, prices):
    prices["sell_price"] = prices["sell_price"].astype(str)
    prices.loc[3, "sell_price"] = "abc"
    return "sell_prices", "sell_price", ["not a number", "line 5"]


BAD_M5 = [_drop_d5, _no_day_columns, _day_not_in_calendar, _calendar_gap, _text_cell, _nan_cell, _negative_cell,
          _duplicate_unit, _missing_snap_column, _unit_without_prices, _duplicate_price, _text_price]


def _assert_import_rejected(folder: Path, tmp_path: Path, capsys, file: str, field: str | None,
                            fragments: list[str], extra_args: tuple[str, ...] = ()) -> None:
    with pytest.raises(InputError) as info:
        import_m5(folder, M5Config(params_file=extra_args[1]) if extra_args else None)
    err = info.value
    assert Path(err.file).stem == file and err.field == field, err
    for fragment in fragments:
        assert fragment in str(err), (fragment, str(err))
    out = tmp_path / "out"
    assert main(["data", "import-m5", str(folder), "--out", str(out), *extra_args]) == 2
    assert str(err) in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("spoil", BAD_M5, ids=[f.__name__.strip("_") for f in BAD_M5])
def test_bad_m5_files_are_rejected_naming_the_file(spoil, tmp_path, capsys):
    cal, sales, prices = _calendar(), _sales(), _prices()
    file, field, fragments = spoil(cal, sales, prices)
    folder = _write_m5(tmp_path / "m5", cal, sales, prices)
    _assert_import_rejected(folder, tmp_path, capsys, file, field, fragments)


@pytest.mark.parametrize("text, field, fragment", [
    ("sku,dc,lead_time_days,review_period_days\nZ,CA_1,3,7\n", "sku", "not in the M5 sales file"),
    ("sku,dc,lead_time_days,review_period_days\nA,CA_1,1.5,7\n", "lead_time_days", "not a whole number"),
    ("sku,dc,lead_time_days,review_period_days\nA,CA_1,1,0\n", "review_period_days", "must be >= 1"),
    ("sku,dc,lead_time\nA,CA_1,1\n", "lead_time_days", "required column missing"),
])
def test_bad_params_file(text, field, fragment, tmp_path, capsys):
    params = tmp_path / "params.csv"
    params.write_text(text)
    folder = _write_m5(tmp_path / "m5")
    _assert_import_rejected(folder, tmp_path, capsys, "params", field, [fragment], ("--params", str(params)))


def test_missing_m5_file(tmp_path, capsys):
    folder = _write_m5(tmp_path / "m5")
    (folder / "calendar.csv").unlink()
    _assert_import_rejected(folder, tmp_path, capsys, "calendar", None, ["file not found"])


def test_real_m5_subset(m5_dev_dir, tmp_path, capsys):
    """The shared M5 subset: launches follow the first price week, values are the file's, and the
    imported folder loads back unchanged."""
    ds = import_m5(m5_dev_dir)
    wide = pd.read_csv(m5_dev_dir / "sales_train_validation.csv")
    calendar = pd.read_csv(m5_dev_dir / "calendar.csv")
    prices = pd.read_csv(m5_dev_dir / "sell_prices.csv")
    day_columns = [c for c in wide.columns if c.startswith("d_")]
    assert ds.n_units == len(wide) and ds.n_days == len(day_columns)
    assert ds.units["category"].nunique() == wide["cat_id"].nunique()
    # Launch, computed independently: the first calendar date of the unit's first price week.
    week_start = calendar.groupby("wm_yr_wk")["date"].min()
    launch = prices.groupby(["item_id", "store_id"])["wm_yr_wk"].min().map(week_start)
    expected = [launch[(i, s)] for i, s in ds.unit_keys]
    assert [str(ds.dates[f]) for f in ds.first_day] == expected
    assert ds.meta["units_launched_late"] > 0
    observed_sales = np.where(ds.observed, wide[day_columns].to_numpy(float), 0)
    assert np.array_equal(ds.sales, observed_sales)
    assert wide[day_columns].to_numpy()[~ds.observed].sum() == 0  # nothing sold before launch is lost
    super_bowl = int(np.flatnonzero(ds.dates == np.datetime64("2011-02-06"))[0])
    assert (ds.promo[ds.observed[:, super_bowl], super_bowl] == EVENT_PROMO).all()
    assert set(np.unique(ds.promo)) == {0.0, SNAP_PROMO, EVENT_PROMO}
    assert (ds.units["unit_price"] >= ds.units["unit_cost"]).all() and (ds.units["unit_cost"] > 0).all()
    out = tmp_path / "m5_out"
    assert main(["data", "import-m5", str(m5_dev_dir), "--out", str(out)]) == 0
    assert f"units {ds.n_units} " in capsys.readouterr().out
    back = load_dataset(out)
    for name in ("sales", "promo", "price", "observed", "dates"):
        assert np.array_equal(getattr(ds, name), getattr(back, name)), name
    pd.testing.assert_frame_equal(ds.units, back.units)


def test_row_median_matches_nanmedian():
    """The vectorised median (unit_price) equals numpy's per-row nanmedian on ragged rows."""
    from orpr_ray.data.m5 import _row_median

    rng = np.random.default_rng(0)
    values = rng.integers(1, 9, (200, 31)).astype(float)
    values[rng.random(values.shape) < 0.5] = np.nan
    values[:, 7] = 3.0  # every row has a price
    assert np.array_equal(_row_median(values), np.nanmedian(values, axis=1))


def test_a_sale_before_the_first_price_week_starts_the_unit_there(tmp_path):
    sales = _sales()
    sales.loc[1, "d_6"] = 3  # B sells two days before its first price week (d_8)
    ds = import_m5(_write_m5(tmp_path / "m5", sales=sales))
    assert ds.first_day[1] == 5 and ds.sales[1, 5] == 3
    assert ds.price[1, 5:8].tolist() == [4.0, 4.0, 4.0]  # the first listed price, carried back
    assert ds.meta["units_with_sales_before_first_price"] == 1
    assert ds.sales.sum() == sales[[f"d_{k + 1}" for k in range(N_DAYS)]].to_numpy().sum()  # nothing dropped
