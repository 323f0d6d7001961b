"""Decision points, d_hat, the steady-state start and the replay of candidates (label/candidates.py)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from orpr_ray.core.errors import InputError
from orpr_ray.data.dataset import Dataset
from orpr_ray.label.candidates import (allowed_candidates, cover_limits, decision_points, evaluate_decisions,
                                       initial_state, label_horizon, trailing_mean_demand)
from orpr_ray.label.config import LabelConfig
from orpr_ray.sim.config import SimConfig
from orpr_ray.sim.policies import trailing_mean_demand as panel_trailing_mean
from sim_reference import reference_unit


def make_dataset(sales: np.ndarray, *, lead=2, review=1, observed=None, **columns) -> Dataset:
    """A small Dataset straight from arrays: sales (U, T); lead / review scalars or (U,)."""
    n_units, n_days = sales.shape
    units = pd.DataFrame({
        "sku": [f"S{i}" for i in range(n_units)], "dc": "DC1", "category": "cat",
        "unit_cost": 2.0, "unit_price": 3.0,
        "lead_time_days": np.broadcast_to(lead, n_units).astype(np.int64),
        "review_period_days": np.broadcast_to(review, n_units).astype(np.int64),
        "target_turnover_days": np.nan, **columns})
    observed = np.ones(sales.shape, bool) if observed is None else observed
    dates = np.datetime64("2024-01-01") + np.arange(n_days).astype("timedelta64[D]")
    return Dataset(units=units, dates=dates, sales=np.where(observed, sales, 0.0).astype(float),
                   promo=np.zeros(sales.shape, np.float32), price=np.full(sales.shape, 3.0), observed=observed)


SIM = SimConfig(demand_window_days=7)


def test_horizon_covers_lead_time_plus_review_period_in_whole_cycles():
    ds = make_dataset(np.ones((3, 60)), lead=np.array([2, 10, 0]), review=np.array([1, 3, 7]))
    # unit 0: 1 * ceil(3 / 1) = 3; unit 1: 3 * ceil(13 / 3) = 15; unit 2: 7 * ceil(7 / 7) = 7.
    assert label_horizon(ds, LabelConfig()) == 15
    assert label_horizon(ds, LabelConfig(horizon_days=11)) == 11  # an override longer than every lead time


def test_decision_points_share_a_calendar_and_need_full_window_and_horizon():
    observed = np.ones((2, 60), bool)
    observed[1, :20] = False  # unit 1 launches on day 20
    ds = make_dataset(np.ones((2, 60)), observed=observed)
    label = LabelConfig(horizon_days=5, decision_stride_days=7)
    unit, day = decision_points(ds, label, SIM)
    assert list(day[unit == 0]) == [7, 14, 21, 28, 35, 42, 49]  # 49 + 5 <= 60 but 56 + 5 > 60
    assert list(day[unit == 1]) == [28, 35, 42, 49]  # first full window: days 20..26 before day 27
    assert np.all(np.diff(unit) >= 0)


def test_trailing_mean_is_the_simulators_estimator_at_the_points():
    rng = np.random.default_rng(0)
    sales = rng.integers(0, 9, size=(3, 40)).astype(float)
    ds = make_dataset(sales)
    unit, day = np.array([0, 1, 2, 2, 1]), np.array([7, 30, 18, 39, 7])
    got = trailing_mean_demand(ds, unit, day, 7)
    expected = [sales[0, 0:7].mean(), sales[1, 23:30].mean(), sales[2, 11:18].mean(), sales[2, 32:39].mean(),
                sales[1, 0:7].mean()]
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    np.testing.assert_array_equal(got, panel_trailing_mean(sales, 7)[unit, day])


def test_initial_state_is_the_steady_state_of_the_policy():
    v = np.array([[1.0, 10.0], [1.0, 10.0], [1.0, 10.0]])
    d_hat = np.array([2.0, 2.0, 0.4])
    lead, review = np.array([0, 10, 7]), np.array([1, 3, 7])
    on_hand, pipeline = initial_state(v, d_hat, lead, review)
    # L = 0: nothing in transit, on hand = S = ceil(v * d_hat).
    assert pipeline[0].sum() == 0 and list(on_hand[0]) == [2.0, 20.0]
    # L = 10, R = 3: orders of 3 * 2 = 6 placed at days -3, -6, -9 arrive on days 7, 4, 1.
    assert list(np.flatnonzero(pipeline[1])) == [1, 4, 7] and set(pipeline[1][[1, 4, 7]]) == {6.0}
    assert list(on_hand[1]) == [0.0, 2.0]  # S = 2 is below the 18 in transit; S = 20 leaves 2 on hand
    # L = R = 7: the order placed a week ago (round(7 * 0.4) = 3 units) arrives on day 0.
    assert pipeline[2, 0] == 3.0 and list(on_hand[2]) == [0.0, 1.0]


def test_evaluate_decisions_replays_the_trace_from_the_steady_state():
    rng = np.random.default_rng(1)
    sales = rng.poisson(3.0, size=(2, 80)).astype(float)
    ds = make_dataset(sales, lead=np.array([4, 9]), review=np.array([2, 3]))
    label = LabelConfig(v_min=1, v_max=12)
    unit, day = decision_points(ds, label, SIM)
    v = np.asarray(label.grid, dtype=float)
    m = evaluate_decisions(ds, unit, day, v, sim=SIM, label=label)
    horizon = label_horizon(ds, label)
    assert m.stock_value.shape == (len(unit), len(v)) and m.n_days == horizon
    for i in (0, len(unit) - 1):
        u, t = unit[i], day[i]
        d_hat = sales[u, t - 7:t].mean()
        lead, review = [4, 9][u], [2, 3][u]
        for c in (0, 5, 11):
            on_hand, pipeline = initial_state(v[None, [c]], np.array([d_hat]), np.array([lead]), np.array([review]))
            ref = reference_unit(sales[u, t:t + horizon], v[c], lead, review, d_hat=d_hat,
                                 on_hand=on_hand[0, 0], pipeline=pipeline[0])
            assert m.stock_value[i, c] == pytest.approx(ref["stock"] * 2.0)
            assert m.lost_value[i, c] == pytest.approx(ref["lost"] * 2.0)
            assert m.demand_value[i, c] == pytest.approx(sales[u, t:t + horizon].sum() * 2.0)
    # More cover never loses more sales here, and holds more stock.
    assert np.all(np.diff(m.stock_value, axis=1) >= 0) and np.all(np.diff(m.lost_value, axis=1) <= 1e-9)


def test_constant_demand_has_no_lost_sales_exactly_from_lead_plus_review_days_of_cover():
    ds = make_dataset(np.full((1, 60), 4.0), lead=3, review=2)
    label = LabelConfig(v_min=1, v_max=8)
    unit, day = decision_points(ds, label, SIM)
    m = evaluate_decisions(ds, unit, day, np.asarray(label.grid), sim=SIM, label=label)
    lost_free = m.lost_value[0] == 0
    assert list(np.asarray(label.grid)[lost_free]) == [5, 6, 7, 8]  # v >= L + R = 5


def test_chunking_does_not_change_results_and_v_may_differ_per_point():
    rng = np.random.default_rng(2)
    ds = make_dataset(rng.poisson(2.0, size=(5, 70)).astype(float), lead=np.arange(5), review=np.array([1, 2, 3, 7, 1]))
    label = LabelConfig(v_min=1, v_max=20)
    unit, day = decision_points(ds, label, SIM)
    v = rng.integers(1, 30, size=(len(unit), 4)).astype(float)
    whole = evaluate_decisions(ds, unit, day, v, sim=SIM, label=label)
    chunked = evaluate_decisions(ds, unit, day, v, sim=SIM, label=label.model_copy(update={"sim_chunk_cells": 7}))
    for name in ("stock_value", "lost_value", "sales_value", "in_stock_days"):
        np.testing.assert_array_equal(getattr(whole, name), getattr(chunked, name))


def test_points_without_a_full_horizon_are_refused():
    ds = make_dataset(np.ones((1, 30)))
    with pytest.raises(ValueError, match="needs days"):
        evaluate_decisions(ds, np.array([0]), np.array([28]), np.array([3.0]), sim=SIM, label=LabelConfig())


def test_cover_limits_per_unit_override_config_and_bad_limits_name_the_unit():
    ds = make_dataset(np.ones((3, 30)), min_cover_days=[np.nan, 5.0, np.nan], max_cover_days=[np.nan, 8.0, 3.0])
    label = LabelConfig(v_min=1, v_max=10, min_cover_days=2)
    lo, hi = cover_limits(ds, label)
    allowed = allowed_candidates(lo, hi, np.array([0, 1, 2]), np.asarray(label.grid))
    assert [list(np.asarray(label.grid)[a]) for a in allowed] == [list(range(2, 11)), [5, 6, 7, 8], [2, 3]]
    bad = make_dataset(np.ones((2, 30)), min_cover_days=[np.nan, 12.0])
    with pytest.raises(InputError, match="leave no candidate") as info:
        cover_limits(bad, label)
    assert "S1@DC1" in str(info.value)
