"""Loading and writing dataset folders: shared calendar, observed blocks, optional columns, round trips,
manifests, and the ABC / XYZ / pattern definitions of the summary."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from orpr_ray.core.artifacts import MANIFEST_NAME, read_manifest
from orpr_ray.data.config import DataConfig, SynthConfig
from orpr_ray.data.dataset import Dataset
from orpr_ray.data.io import demand_frame, load_dataset, load_from_config, write_dataset
from orpr_ray.data.stats import abc_classes, demand_patterns, summarize, xyz_classes
from orpr_ray.data.synth import synthesize

UNITS_CSV = """sku,dc,category,unit_cost,unit_price,lead_time_days,review_period_days,target_turnover_days,brand,weight_kg
007,north,food,1.0,2.0,2,1,,acme,0.5
B,north,toys,3.0,5.0,0,7,30,,1.25
"""


def _write_hand_made(folder, demand_rows: list[str], header: str = "sku,dc,date,sales,promo,price") -> None:
    folder.mkdir(exist_ok=True)
    (folder / "units.csv").write_text(UNITS_CSV)
    (folder / "demand.csv").write_text("\n".join([header, *demand_rows]) + "\n")


def _assert_same(a: Dataset, b: Dataset) -> None:
    for name in ("dates", "sales", "promo", "price", "observed"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    pd.testing.assert_frame_equal(a.units, b.units)
    assert a.extra_attributes == b.extra_attributes


def test_units_share_one_calendar_with_their_own_observed_blocks(tmp_path):
    # Unit 007 sells Jan 1-4, unit B Jan 3-6; rows are shuffled in the file on purpose.
    _write_hand_made(tmp_path, [
        "B,north,2024-01-05,4,1,4.5", "007,north,2024-01-02,1,0,2.0", "B,north,2024-01-03,0,0,5.0",
        "007,north,2024-01-01,3,0,2.0", "B,north,2024-01-06,2,0,5.0", "007,north,2024-01-04,0,0,2.1",
        "B,north,2024-01-04,1,0,5.0", "007,north,2024-01-03,2,0.5,1.9",
    ])
    ds = load_dataset(tmp_path)
    assert list(ds.units["sku"]) == ["007", "B"]  # units-file order; "007" stays text
    assert ds.dates[0] == np.datetime64("2024-01-01") and ds.n_days == 6
    assert ds.observed.tolist() == [[True] * 4 + [False] * 2, [False] * 2 + [True] * 4]
    assert ds.sales.tolist() == [[3, 1, 2, 0, 0, 0], [0, 0, 0, 1, 4, 2]]
    assert ds.promo[0, 2] == pytest.approx(0.5) and ds.promo[1, 4] == 1.0 and ds.promo.sum() == pytest.approx(1.5)
    assert ds.price[1, 4] == 4.5 and ds.price[0, 3] == 2.1
    assert ds.price[0, 5] == 2.0 and ds.price[1, 0] == 5.0  # unobserved days carry unit_price
    assert ds.first_day.tolist() == [0, 2] and ds.last_day.tolist() == [3, 5]
    assert ds.units["lead_time_days"].dtype == np.int64
    assert np.isnan(ds.units["target_turnover_days"].iloc[0]) and ds.units["target_turnover_days"].iloc[1] == 30
    assert ds.extra_attributes == ("brand", "weight_kg")
    assert ds.units["weight_kg"].dtype == np.float64
    assert ds.units["brand"].iloc[0] == "acme" and pd.isna(ds.units["brand"].iloc[1])


def test_optional_columns_may_be_absent(tmp_path):
    """No dc (one DC in the units file), no promo, no price: defaults are DC, 0 and unit_price."""
    rows = [f"{sku},2024-02-0{d},{d}" for sku in ("007", "B") for d in range(1, 4)]
    _write_hand_made(tmp_path, rows, header="sku,date,sales")
    ds = load_dataset(tmp_path)
    assert ds.unit_keys == [("007", "north"), ("B", "north")]
    assert (ds.promo == 0).all()
    assert (ds.price == ds.units["unit_price"].to_numpy()[:, None]).all()
    assert ds.sales[1].tolist() == [1, 2, 3]


def test_fill_missing_days_carries_the_previous_price(tmp_path):
    rows = ["007,north,2024-01-01,3,0,2.0", "007,north,2024-01-04,1,0,2.4",
            "B,north,2024-01-01,1,0,5.0", "B,north,2024-01-02,1,1,4.0", "B,north,2024-01-04,1,0,5.0"]
    _write_hand_made(tmp_path, rows)
    ds = load_dataset(tmp_path, fill_missing_days=True)
    assert ds.observed.all() and ds.meta["filled_days"] == 3
    assert ds.sales.tolist() == [[3, 0, 0, 1], [1, 1, 0, 1]]
    assert ds.price.tolist() == [[2.0, 2.0, 2.0, 2.4], [5.0, 4.0, 4.0, 5.0]]
    assert ds.promo[1].tolist() == [0, 1, 0, 0]  # a filled day is no promotion day


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_round_trip_keeps_everything_and_writes_the_manifest_last(tmp_path, fmt):
    ds = synthesize(SynthConfig(units=40, days=90), seed=7)
    folder = write_dataset(ds, tmp_path / "ds", fmt=fmt)
    assert sorted(p.name for p in folder.iterdir()) == sorted([f"demand.{fmt}", f"units.{fmt}", MANIFEST_NAME])
    manifest = read_manifest(folder)  # verifies the checksums of both files
    assert manifest is not None and set(manifest["outputs"]) == {f"demand.{fmt}", f"units.{fmt}"}
    assert manifest["figures"]["units"] == 40 and manifest["format"] == fmt
    assert manifest["config"]["units"] == 40
    back = load_dataset(folder)
    _assert_same(ds, back)
    assert back.meta["kind"] == "synthetic" and back.meta["uncensored"] is True


def test_partial_observation_round_trips(tmp_path):
    """Only observed unit-days are written; the reloaded blocks and the zero fill outside match."""
    ds = synthesize(SynthConfig(units=6, days=60), seed=2)
    observed = ds.observed.copy()
    observed[0, :10] = False  # a launch on day 10
    observed[3, 50:] = False  # a delisting after day 49
    partial = Dataset(units=ds.units, dates=ds.dates, sales=np.where(observed, ds.sales, 0),
                      promo=np.where(observed, ds.promo, 0).astype(np.float32),
                      price=np.where(observed, ds.price, ds.units["unit_price"].to_numpy()[:, None]),
                      observed=observed, extra_attributes=ds.extra_attributes)
    assert len(demand_frame(partial)) == observed.sum()
    _assert_same(partial, load_dataset(write_dataset(partial, tmp_path)))


def test_rewrite_replaces_the_manifest(tmp_path):
    write_dataset(synthesize(SynthConfig(units=5, days=60), seed=1), tmp_path)
    write_dataset(synthesize(SynthConfig(units=8, days=60), seed=1), tmp_path)
    assert read_manifest(tmp_path)["figures"]["units"] == 8
    assert load_dataset(tmp_path).n_units == 8


def test_load_from_config_chooses_folder_or_synthetic(tmp_path):
    cfg = DataConfig(synth=SynthConfig(units=12, days=60))
    generated = load_from_config(cfg, seed=3)
    _assert_same(generated, synthesize(cfg.synth, 3))
    write_dataset(generated.subset([0, 1, 2]), tmp_path)
    loaded = load_from_config(DataConfig(path=str(tmp_path)), seed=99)
    assert loaded.n_units == 3 and loaded.unit_keys == generated.unit_keys[:3]


def _panel(sales: np.ndarray, price: float = 1.0) -> Dataset:
    """A fully observed dataset around a (U, T) sales array."""
    n_units, n_days = sales.shape
    units = pd.DataFrame({"sku": [f"S{i}" for i in range(n_units)], "dc": "D", "category": "c",
                          "unit_cost": 0.5, "unit_price": price, "lead_time_days": 1, "review_period_days": 1,
                          "target_turnover_days": np.nan})
    return Dataset(units=units, dates=np.datetime64("2024-01-01") + np.arange(n_days).astype("timedelta64[D]"),
                   sales=sales.astype(float), promo=np.zeros(sales.shape, np.float32),
                   price=np.full(sales.shape, price), observed=np.ones(sales.shape, bool))


def test_abc_follows_the_value_shares():
    totals = np.array([10, 80, 5, 5, 0])  # value shares 0.1, 0.8, 0.05, 0.05, 0
    ds = _panel(totals[:, None])  # one day: the shares are exact
    # Ranked 80 (A: nothing above), 10 (B: 80% above), 5 (B: 90% above), 5 (C: 95% above), 0 (C).
    assert abc_classes(ds).tolist() == ["B", "A", "B", "C", "C"]


def test_xyz_uses_weekly_variation_and_patterns_use_sbc():
    n_days = 28 * 4
    day = np.arange(n_days)
    smooth = np.full(n_days, 5.0)
    weekly_swing = np.where((day // 7) % 2 == 0, 1.0, 3.0)  # weekly totals 7 and 21: CV 0.5 -> Y
    intermittent = np.where(day % 3 == 0, 2.0, 0.0)
    lumpy = np.where(day % 14 == 0, np.where(day % 28 == 0, 1.0, 40.0), 0.0)  # weekly totals 1, 0, 40, 0
    erratic = np.where(day % 2 == 0, 1.0, 9.0)
    ds = _panel(np.stack([smooth, weekly_swing, intermittent, lumpy, erratic, np.zeros(n_days)]))
    assert xyz_classes(ds).tolist() == ["X", "Y", "X", "Z", "X", "Z"]
    assert demand_patterns(ds).tolist() == ["smooth", "smooth", "intermittent", "lumpy", "erratic", "intermittent"]
    summary = summarize(ds)
    assert summary["patterns"] == {"smooth": 2, "erratic": 1, "intermittent": 2, "lumpy": 1}
    assert summary["zero_share"] == pytest.approx((ds.sales == 0).mean())


def test_unit_lookup_dense_and_hashed_paths_agree():
    """Rows find their unit the same way through the lookup table and through hashing."""
    from orpr_ray.data.tables import Text, unit_index, unit_positions

    rng = np.random.default_rng(3)
    sku_names = np.array([f"S{i}" for i in range(40)], dtype=object)
    dc_names = np.array(["D0", "D1", "D2"], dtype=object)
    known = rng.permutation(120)[:70]  # 70 of the 120 possible (sku, dc) pairs are units, in random order
    index = unit_index(sku_names[known // 3], dc_names[known % 3])
    rows = rng.integers(0, 120, 100)  # fewer rows than pairs: dense_limit=0 forces hashing
    sku, dc = Text(rows // 3, sku_names), Text(rows % 3, dc_names)
    dense = unit_positions(index, sku, dc)
    hashed = unit_positions(index, sku, dc, dense_limit=0)
    expected = np.array([np.flatnonzero(known == r)[0] if r in known else -1 for r in rows])
    assert np.array_equal(dense, expected) and np.array_equal(hashed, expected)


def test_text_keys_like_na_are_names_not_missing_values(tmp_path):
    """A DC called NA (North America) is a name; an empty number is still missing."""
    (tmp_path / "units.csv").write_text(UNITS_CSV.replace("north", "NA"))
    (tmp_path / "demand.csv").write_text("sku,dc,date,sales\n007,NA,2024-01-01,1\nB,NA,2024-01-01,2\n")
    ds = load_dataset(tmp_path)
    assert ds.unit_keys == [("007", "NA"), ("B", "NA")]
    assert np.isnan(ds.units["target_turnover_days"].iloc[0])  # the empty field stays a missing number
