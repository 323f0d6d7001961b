"""The synthetic catalogue: deterministic for a seed, and shaped like a real e-commerce catalogue."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from orpr_ray.cli import main
from orpr_ray.core.artifacts import read_manifest
from orpr_ray.data.config import SynthConfig
from orpr_ray.data.io import load_dataset
from orpr_ray.data.stats import PATTERNS, demand_patterns, sales_value, xyz_classes
from orpr_ray.data.synth import CHUNK_UNITS, synthesize


@pytest.fixture(scope="module")
def catalogue():
    return synthesize(SynthConfig(), seed=11)  # the default size: 600 units x 730 days


def _same(a, b) -> bool:
    return all(np.array_equal(getattr(a, k), getattr(b, k)) for k in ("sales", "promo", "price", "dates")) \
        and a.units.equals(b.units)


def test_same_seed_same_catalogue_other_seed_other_catalogue():
    cfg = SynthConfig(units=50, days=60)
    assert _same(synthesize(cfg, 5), synthesize(cfg, 5))
    assert not np.array_equal(synthesize(cfg, 5).sales, synthesize(cfg, 6).sales)


def test_chunks_draw_from_distinct_streams():
    """Units beyond the first chunk are simulated from their own stream, still deterministically."""
    cfg = SynthConfig(units=CHUNK_UNITS + 20, days=56)
    a, b = synthesize(cfg, 1), synthesize(cfg, 1)
    assert _same(a, b)
    assert not np.array_equal(a.sales[:20], a.sales[CHUNK_UNITS:])


def test_shapes_and_contract(catalogue):
    ds = catalogue
    assert ds.sales.shape == (600, 730) and ds.observed.all()
    assert (ds.sales >= 0).all() and np.array_equal(ds.sales, np.round(ds.sales))  # integer units
    assert ds.dates[0] == np.datetime64("2024-01-01") and (np.diff(ds.dates).astype(int) == 1).all()
    assert ds.meta["kind"] == "synthetic" and ds.meta["uncensored"] is True
    assert ds.units[["sku", "dc"]].duplicated().sum() == 0


def test_catalogue_structure(catalogue):
    units = catalogue.units
    assert units["category"].nunique() == 6 and units["dc"].nunique() == 3
    dcs_per_sku = units.groupby("sku")["dc"].nunique()
    assert (dcs_per_sku == 1).any() and (dcs_per_sku > 1).mean() > 0.2
    assert units["lead_time_days"].between(1, 14).all() and units["lead_time_days"].nunique() >= 8
    assert set(units["review_period_days"]) == {1, 2, 3, 7}
    margin = 1 - units["unit_cost"] / units["unit_price"]
    assert (units["unit_cost"] > 0).all() and margin.between(0.09, 0.61).all() and margin.std() > 0.1
    target = units.groupby("category")["target_turnover_days"].agg(["first", "nunique", "count"])
    assert target["first"].isna().any() and target["first"].notna().any()  # both target and fallback paths
    assert (target["nunique"] <= 1).all()  # one target per category
    assert catalogue.extra_attributes == ("brand", "shelf_life_days")
    assert units["brand"].nunique() > 6 and units["shelf_life_days"].dtype == np.float64


def test_abc_skew_few_units_carry_most_sales(catalogue):
    value = np.sort(sales_value(catalogue))[::-1]
    assert value[: len(value) // 5].sum() / value.sum() > 0.6


def test_demand_patterns_cover_the_xyz_mix(catalogue):
    patterns = demand_patterns(catalogue)
    for name in PATTERNS:
        assert (patterns == name).mean() > 0.1, name
    assert set(xyz_classes(catalogue)) == {"X", "Y", "Z"}
    zero_share = (catalogue.sales == 0).mean()
    assert 0.2 < zero_share < 0.6


def test_weekly_and_yearly_seasonality(catalogue):
    ds = catalogue
    weekday = (ds.dates.astype(np.int64) + 3) % 7
    month = ds.dates.astype("datetime64[M]").astype(np.int64) % 12
    frame = pd.DataFrame(ds.sales.T, columns=ds.units["category"]).T.groupby(level=0).sum().T  # (T, C)
    by_weekday = frame.groupby(weekday).sum()
    by_month = frame.groupby(month).sum() / frame.groupby(month).size().to_numpy()[:, None]
    assert (by_weekday.max() / by_weekday.min()).max() > 1.15
    assert (by_month.max() / by_month.min()).max() > 1.3


def test_promotions_lift_demand_cut_price_and_leave_a_dip(catalogue):
    ds = catalogue
    promo = ds.promo > 0
    promoted = promo.any(axis=1)
    assert 0.3 < promoted.mean() < 0.9 and 0.01 < promo.mean() < 0.1
    assert (ds.price[promo] < np.repeat(ds.units["unit_price"].to_numpy()[:, None], ds.n_days, 1)[promo]).all()
    # Days since the unit's last promotion day (large before its first one), per (unit, day).
    last = np.maximum.accumulate(np.where(promo, np.arange(ds.n_days), -10_000), axis=1)
    since = np.arange(ds.n_days) - last
    rows = promoted[:, None] & np.ones_like(promo)
    base = np.array([ds.sales[u][since[u] > 21].mean() for u in np.flatnonzero(promoted)])  # far from promotions
    scale = np.zeros(ds.n_units)
    scale[promoted] = 1 / np.maximum(base, 1e-9)
    relative = ds.sales * scale[:, None]  # sales relative to the unit's normal level
    assert relative[rows & promo].mean() > 1.3
    assert relative[rows & ~promo & (since >= 1) & (since <= 3)].mean() < 0.95 * relative[rows & (since > 21)].mean()


def test_trend_differs_between_units(catalogue):
    first, second = catalogue.sales[:, :365].sum(axis=1), catalogue.sales[:, 365:].sum(axis=1)
    busy = first > 200
    growth = np.log(second[busy] / first[busy])
    assert growth.std() > 0.08 and (growth > 0.1).any() and (growth < -0.1).any()


def test_cli_synth_writes_a_loadable_folder(tmp_path, capsys):
    out = tmp_path / "synth"
    assert main(["data", "synth", "--units", "30", "--days", "60", "--seed", "4", "--out", str(out),
                 "--format", "csv", "--set", "data.synth.categories=2"]) == 0
    assert "units 30" in capsys.readouterr().out
    ds = load_dataset(out)
    assert _same(ds, synthesize(SynthConfig(units=30, days=60, categories=2), 4))
    manifest = read_manifest(out)
    assert manifest["config"]["units"] == 30 and manifest["dataset_meta"]["seed"] == 4


def test_cli_synth_rejects_bad_config_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "synth"
    assert main(["data", "synth", "--units", "0", "--out", str(out)]) == 2
    assert "data.synth.units" in capsys.readouterr().err
    assert main(["data", "synth", "--out", str(out), "--set", "data.synth.start_date=someday"]) == 2
    assert "start_date" in capsys.readouterr().err
    assert not out.exists()
