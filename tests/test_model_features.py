"""Features: only the past (and planned promotions) reach a decision, both front ends agree, scaling works."""
from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pandas as pd
import pytest
import torch

from model_helpers import tiny_config, tiny_dataset, tiny_stats
from orpr_ray.core.errors import ConfigError, InputError
from orpr_ray.model.features import (BASE_ATTRIBUTES, DAY_CHANNELS, FeatureStats, LabelHistory, PanelFeatures,
                                     UnitRecord, encode, raw_from_records, split_extra_attributes)

CFG = tiny_config()
T, H = CFG.model.history_days, CFG.model.horizon_days


@pytest.fixture(scope="module")
def ds():
    return tiny_dataset(CFG)


@pytest.fixture(scope="module")
def stats(ds):
    return tiny_stats(ds, CFG.model)


def _features(ds, stats, unit, day, known=None):
    return encode(PanelFeatures(ds, CFG.model).raw(unit, day, known), stats, CFG.model)


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_features_ignore_everything_after_the_decision_day(ds, stats):
    """Perturbing every unit's sales and prices from the decision day on, and promotions beyond the
    planned horizon, leaves the features at that day unchanged."""
    unit = np.arange(ds.n_units)
    day = np.full(ds.n_units, 120)
    before = _features(ds, stats, unit, day)
    rng = np.random.default_rng(1)
    sales, price, promo = ds.sales.copy(), ds.price.copy(), ds.promo.copy()
    sales[:, 120:] = rng.poisson(50, sales[:, 120:].shape)
    price[:, 120:] *= 3.0
    promo[:, 120 + H:] = 1.0
    future = dataclasses.replace(ds, sales=sales, price=price, promo=promo)
    _assert_same(before, _features(future, stats, unit, day))
    # The days just before the decision day do matter (the test can fail).
    sales[:, 119] += 100
    assert not torch.equal(before["days"], _features(dataclasses.replace(ds, sales=sales), stats, unit, day)["days"])


def test_planned_promotions_ahead_are_seen_in_the_future_tokens_only(ds, stats):
    unit, day = np.array([0]), np.array([120])
    promo = ds.promo.copy()
    promo[0, 120:120 + H] = 1.0 - promo[0, 120:120 + H]
    after = _features(dataclasses.replace(ds, promo=promo), stats, unit, day)
    diff = (after["days"] != _features(ds, stats, unit, day)["days"]).any(dim=2)[0]  # (T + H,)
    assert diff[T:].all() and not diff[:T].any()


def test_record_front_end_matches_the_panel_front_end(ds, stats):
    """Serving builds the same tensors from a raw record as training does from the dataset."""
    u, t = 3, 150
    row = ds.units.iloc[u]
    panel = PanelFeatures(ds, CFG.model)
    raw = panel.raw(np.array([u]), np.array([t]), np.array([[0.97, 12.0, 0.9]]))
    record = UnitRecord(
        sku=row["sku"], dc=row["dc"], category=row["category"],
        decision_date=pd.Timestamp(ds.dates[t]).date(),
        sales=ds.sales[u, t - T:t].tolist(), promo=ds.promo[u, t - T:t].tolist(),
        price=ds.price[u, t - T:t].tolist(), promo_ahead=ds.promo[u, t:t + H].tolist(),
        unit_cost=row["unit_cost"], unit_price=row["unit_price"], lead_time_days=int(row["lead_time_days"]),
        review_period_days=int(row["review_period_days"]),
        extra={name: row[name] for name in ds.extra_attributes},
        target_turnover_days=None if np.isnan(row["target_turnover_days"]) else row["target_turnover_days"],
        sales_share=float(raw.objectives[0, 1]), alpha=0.97, recent_turnover_days=12.0, recent_in_stock_rate=0.9)
    from_record = encode(raw_from_records([record], stats, CFG.model), stats, CFG.model)
    from_panel = encode(raw, stats, CFG.model)
    for key in from_panel:
        assert torch.allclose(from_panel[key].float(), from_record[key].float(), atol=1e-6), key


def test_per_unit_scaling_makes_volume_invisible_to_the_sales_stream(ds, stats):
    unit, day = np.array([2]), np.array([120])
    sales = ds.sales.copy()
    sales[2] *= 10.0
    big = _features(dataclasses.replace(ds, sales=sales), stats, unit, day)
    small = _features(ds, stats, unit, day)
    assert torch.allclose(big["days"], small["days"], atol=1e-5)
    assert torch.allclose(big["scale"], small["scale"] * 10, rtol=1e-5)
    volume = BASE_ATTRIBUTES.index("log_sales_scale")
    assert big["attributes"][0, volume] > small["attributes"][0, volume]


def test_calendar_channels_follow_the_weekday(ds, stats):
    feats = _features(ds, stats, np.array([0, 0]), np.array([100, 101]))
    dow = feats["days"][:, :, DAY_CHANNELS.index("mon"):]
    assert torch.equal(dow.sum(dim=2), torch.ones(2, T + H))
    assert torch.equal(dow[1, :-1], dow[0, 1:])  # one day later = the calendar shifted by one


def test_unknown_category_dc_and_brand_use_the_unknown_rows(ds, stats):
    units = ds.units.copy()
    units.loc[0, ["category", "dc", "brand"]] = ["never_seen", "DC99", "no_brand"]
    feats = _features(dataclasses.replace(ds, units=units), stats, np.array([0, 1]), np.array([100, 100]))
    assert feats["category"][0] == 0 and feats["dc"][0] == 0 and feats["extra_categories"][0, 0] == 0
    assert feats["category"][1] > 0 and feats["dc"][1] > 0


def test_label_history_only_knows_labels_whose_horizon_has_passed():
    labels = pd.DataFrame({"unit": [0, 0, 1], "day": [10, 17, 10], "alpha": [0.9, 0.8, 0.7],
                           "turnover_days": [5.0, 6.0, np.inf], "in_stock_rate": [1.0, 0.5, 0.9]})
    history = LabelHistory(labels, horizon=14)
    known = history.lookup(np.array([0, 0, 0, 1, 1]), np.array([23, 24, 31, 23, 24]))
    assert np.isnan(known[0]).all()  # day 10 + 14 > 23
    assert known[1].tolist() == [0.9, 5.0, 1.0]
    assert known[2].tolist() == [0.8, 6.0, 0.5]
    assert np.isnan(known[3]).all() and known[4, 0] == 0.7


def test_non_finite_objectives_are_masked(ds, stats):
    known = np.array([[0.95, np.inf, 0.8]])
    feats = _features(ds, stats, np.array([0]), np.array([100]), known)
    assert feats["objectives_mask"][0].tolist()[2:] == [True, False, True]
    assert torch.isfinite(feats["objectives"]).all()


def test_bad_records_are_named(stats):
    base = dict(sku="S1", dc="DC1", category="grocery", decision_date=dt.date(2024, 5, 1), sales=[1.0, 2.0],
                unit_cost=1.0, unit_price=2.0, lead_time_days=2, review_period_days=7)
    with pytest.raises(InputError, match="field 'promo'.*record 0 \\(sku S1"):
        raw_from_records([UnitRecord(**base, promo=[0.0])], stats, CFG.model)
    with pytest.raises(InputError, match="unknown extra attributes \\['colour'\\]"):
        raw_from_records([UnitRecord(**base, extra={"colour": "red"})], stats, CFG.model)
    with pytest.raises(InputError, match="no records"):
        raw_from_records([], stats, CFG.model)
    # A short history is fine: the missing days are marked unobserved.
    raw = raw_from_records([UnitRecord(**base)], stats, CFG.model)
    assert raw.observed.sum() == 2 and raw.observed[0, -1]


def test_too_many_categories_for_the_embedding_is_a_config_error(ds):
    cfg = CFG.model.model_copy(update={"category_buckets": 2})
    numeric, categorical = split_extra_attributes(ds)
    raw = PanelFeatures(ds, cfg).raw(np.arange(ds.n_units), np.full(ds.n_units, 100))
    with pytest.raises(ConfigError, match="model.category_buckets"):
        FeatureStats.fit(raw, numeric, categorical, cfg)
