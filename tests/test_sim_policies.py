"""Rolling simulation, classic policies, the tuner, the incumbent and ``orpr baseline``."""
from __future__ import annotations

import json
from dataclasses import fields

import numpy as np
import pandas as pd
import pytest

from orpr_ray.cli import main
from orpr_ray.config import load_config
from orpr_ray.core.artifacts import read_manifest
from orpr_ray.data.dataset import Dataset
from orpr_ray.sim.baseline import POLICY_NAMES, run_baseline
from orpr_ray.sim.config import SimConfig
from orpr_ray.sim.engine import GridMetrics, SimState, UnitParams, simulate_grid
from orpr_ray.sim.policies import (
    BaseStockPolicy,
    ConstantOrderPolicy,
    InventoryDaysPolicy,
    SSPolicy,
    trailing_mean_demand,
)
from orpr_ray.sim.rolling import review_mask, simulate_rolling
from orpr_ray.sim.tuning import (
    TuneWindow,
    category_in_stock_rates,
    choose,
    tune_base_stock,
    tune_constant,
    tune_incumbent,
    tune_inventory_days,
    tune_s_S,
)

COSTS = dict(holding_rate=0.001, penalty_share=0.7)


def _params(n_units, lead, period, offset=0, cost=1.0, price=10.0) -> UnitParams:
    """UnitParams from scalars or (U,) arrays."""
    def full(value, dtype):
        return np.broadcast_to(np.asarray(value, dtype=dtype), (n_units,)).copy()

    return UnitParams(lead_time=full(lead, np.int64), review_period=full(period, np.int64),
                      unit_cost=full(cost, float), unit_price=full(price, float),
                      review_offset=full(offset, np.int64))


def _random_setup(seed: int, *, integer: bool):
    rng = np.random.default_rng(seed)
    n_units, n_days = 6, 90
    demand = rng.poisson(rng.uniform(0.3, 5, (n_units, 1)), (n_units, n_days)).astype(float)
    if not integer:
        demand = demand * rng.uniform(0.5, 1.5, demand.shape).round(2)
    params = _params(n_units, rng.integers(0, 15, n_units), rng.integers(1, 10, n_units),
                     offset=rng.integers(0, 12, n_units), cost=rng.uniform(1, 5, n_units),
                     price=rng.uniform(5, 9, n_units))
    return rng, demand, params


def _grid_of(params: UnitParams, demand, start, stop, targets, **kwargs) -> GridMetrics:
    """The grid simulator over calendar days [start, stop) with the calendar's review days."""
    return simulate_grid(demand[:, start:stop], targets, params.lead_time, params.review_period,
                         params.unit_cost, params.unit_price, review_offset=params.offsets_from(start),
                         **COSTS, **kwargs)


def _assert_same(a: GridMetrics, b: GridMetrics, *, exact: bool = True) -> None:
    """Equal, bit for bit when exact. The rolling run rebuilds the on-order sum from the pipeline
    every day, so with fractional demand it may round differently from the grid's running sum."""
    assert a.n_days == b.n_days
    for f in fields(GridMetrics):
        if f.name != "n_days":
            np.testing.assert_allclose(getattr(a, f.name), getattr(b, f.name), err_msg=f.name,
                                       rtol=0 if exact else 1e-12, atol=0)


def test_trailing_mean_uses_only_earlier_days():
    demand = np.array([[1.0, 2, 3, 4, 5]])
    np.testing.assert_allclose(trailing_mean_demand(demand, 2), [[0, 1, 1.5, 2.5, 3.5]])
    changed = demand.copy()
    changed[0, 3] = 100.0
    np.testing.assert_array_equal(trailing_mean_demand(changed, 2)[:, :4], trailing_mean_demand(demand, 2)[:, :4])


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("integer", [True, False])
def test_rolling_base_stock_equals_grid(seed, integer):
    rng, demand, params = _random_setup(seed, integer=integer)
    levels = rng.integers(0, 40, demand.shape[0]).astype(float)
    start_state = SimState.empty(rng.integers(0, 20, demand.shape[0]))
    rolled = simulate_rolling(BaseStockPolicy(levels), demand, params, start=7, state=start_state, **COSTS)
    _assert_same(rolled.metrics, _grid_of(params, demand, 7, 90, levels[:, None], on_hand0=start_state.on_hand),
                 exact=integer)


@pytest.mark.parametrize("seed", range(4))
def test_rolling_inventory_days_equals_grid_with_daily_rate(seed):
    rng, demand, params = _random_setup(seed, integer=False)
    d_hat = trailing_mean_demand(demand, 14)
    days = rng.integers(0, 30, demand.shape[0]).astype(float)
    rolled = simulate_rolling(InventoryDaysPolicy(days, d_hat), demand, params, start=20, **COSTS)
    _assert_same(rolled.metrics, _grid_of(params, demand, 20, 90, days[:, None], demand_rate=d_hat[:, 20:]),
                 exact=False)


@pytest.mark.parametrize("seed", range(4))
def test_rolling_s_S_and_constant_equal_grid(seed):
    rng, demand, params = _random_setup(seed, integer=True)
    big = rng.integers(1, 40, demand.shape[0]).astype(float)
    small = np.floor(big * rng.uniform(0, 1, big.shape))
    rolled = simulate_rolling(SSPolicy(small, big), demand, params, **COSTS)
    _assert_same(rolled.metrics, _grid_of(params, demand, 0, 90, big[:, None], reorder_points=small[:, None]))
    quantity = rng.integers(0, 10, demand.shape[0]).astype(float)
    rolled = simulate_rolling(ConstantOrderPolicy(quantity), demand, params, **COSTS)
    _assert_same(rolled.metrics, _grid_of(params, demand, 0, 90, quantity[:, None], rule="constant"))


def test_rolling_continues_from_its_end_state():
    """Two runs chained through the end state equal one run over both windows."""
    _, demand, params = _random_setup(11, integer=True)
    policy = InventoryDaysPolicy(np.full(6, 9.0), trailing_mean_demand(demand, 7))
    whole = simulate_rolling(policy, demand, params, start=10, **COSTS)
    first = simulate_rolling(policy, demand, params, start=10, stop=50, **COSTS)
    second = simulate_rolling(policy, demand, params, start=50, state=first.state, **COSTS)
    for f in fields(type(whole.sums)):
        np.testing.assert_allclose(getattr(first.sums, f.name) + getattr(second.sums, f.name),
                                   getattr(whole.sums, f.name), rtol=0, atol=1e-9, err_msg=f.name)
    np.testing.assert_array_equal(second.state.on_hand, whole.state.on_hand)
    np.testing.assert_array_equal(second.state.pipeline, whole.state.pipeline)


def test_policy_sees_only_reviewing_units_and_warm_up_is_not_scored():
    _, demand, params = _random_setup(3, integer=True)
    calls = []

    class Recorder:
        def decide(self, t, units, state):
            calls.append((t, units.copy(), state.inventory_position.copy()))
            return np.full(len(units), 12.0)

    result = simulate_rolling(Recorder(), demand, params, start=5, record_from=30, stop=60,
                              trace_units=[0, 2], **COSTS)
    assert [t for t, _, _ in calls] == [t for t in range(5, 60) if review_mask(t, params).any()]
    for t, units, _ in calls:
        np.testing.assert_array_equal(units, np.flatnonzero(review_mask(t, params)))
    assert result.metrics.n_days == 30
    trace = result.trajectories
    np.testing.assert_array_equal(trace.days, np.arange(5, 60))
    scored = trace.days >= 30
    np.testing.assert_array_equal(trace.sales[:, scored].sum(axis=1), result.sums.sales_units[[0, 2], 0])
    np.testing.assert_array_equal(trace.ordered[:, scored].sum(axis=1), result.sums.ordered_units[[0, 2], 0])
    reviewed = ~np.isnan(trace.decision)
    assert np.all(trace.decision[reviewed] == 12.0)
    np.testing.assert_array_equal(reviewed[0], [review_mask(t, params)[0] for t in range(5, 60)])
    assert np.all(trace.on_hand >= 0)


def _constant_window(demand_per_day, lead, period, n_days=120, category=None, price=10.0) -> TuneWindow:
    demand_per_day = np.asarray(demand_per_day, dtype=float)
    demand = np.repeat(demand_per_day[:, None], n_days, axis=1)
    n_units = len(demand_per_day)
    return TuneWindow(demand=demand, d_hat=trailing_mean_demand(demand, 28),
                      params=_params(n_units, lead, period, price=price),
                      category=np.asarray(category if category is not None else ["all"] * n_units),
                      start=28, stop=n_days)


@pytest.mark.parametrize("objective", ["cost", "fill_rate"])
def test_base_stock_and_inventory_days_find_lead_plus_review_cover(objective):
    """Demand 2/day, L = 2, R = 1: S = 2 x (L + R) = 6 is the leanest level with no lost sales."""
    window = _constant_window([2.0], lead=2, period=1)
    cfg = SimConfig(tune_objective=objective)
    base = tune_base_stock(window, cfg)
    assert base.policy.levels[0] == 6.0
    assert base.train.fill_rate[0, 0] == 1.0
    days = tune_inventory_days(window, cfg)
    assert days.policy.days[0] == 3.0
    assert days.train.lost_units[0, 0] == 0


def test_s_S_and_constant_tuners_on_hand_checked_instances():
    # L = 0, demand 1/day: (s=0, S=1) orders each day's unit on the day: no stock, no lost sales.
    s_S = tune_s_S(_constant_window([1.0], lead=0, period=1), SimConfig())
    assert (s_S.policy.reorder_point[0], s_S.policy.levels[0]) == (0.0, 1.0)
    assert s_S.train.total_cost[0, 0] == 0.0
    # Demand 3/day, L = 1, R = 1: ordering exactly 3 each day holds steady; less loses sales.
    constant = tune_constant(_constant_window([3.0], lead=1, period=1), SimConfig())
    assert constant.policy.quantity[0] == 3.0
    assert constant.train.lost_units[0, 0] == 0


def test_incumbent_sets_one_cover_per_category():
    """Daily review, demand 2: the in-stock rate reaches 1 at v = L + 1 and is L / (L + 1) below."""
    window = _constant_window([2.0, 2.0, 2.0], lead=np.array([1, 4, 4]), period=1,
                              category=["A", "B", "B"])
    tuned = tune_incumbent(window, SimConfig(incumbent_in_stock_target=0.95))
    np.testing.assert_array_equal(tuned.policy.days, [2.0, 5.0, 5.0])
    assert tuned.detail["categories"]["A"]["days"] == 2.0
    assert tuned.detail["categories"]["B"]["in_stock_rate"] == 1.0


def test_category_rate_is_demand_value_weighted():
    m = simulate_grid(np.array([[1.0, 1], [3, 3]]), np.array([1.0]), [0, 0], [1, 1], [1.0, 1.0],
                      [2.0, 2.0], demand_rate=np.array([1.0, 0.0]), **COSTS)  # unit 1 never stocks
    rate = category_in_stock_rates(m, np.array(["x", "x"]))["x"]
    assert rate[0] == pytest.approx(2 / 8)  # weights 2 and 6 (demand value), rates 1 and 0


def test_choose_falls_back_to_best_fill_rate_when_target_unreachable():
    m = simulate_grid(np.array([[4.0, 4, 4]]), np.array([0.0, 1.0, 2.0, 3.0]), [0], [1], [1.0], [2.0], **COSTS)
    assert choose(m, SimConfig(tune_objective="fill_rate", fill_rate_target=0.99))[0] == 3
    assert choose(m, SimConfig(tune_objective="fill_rate", fill_rate_target=0.5))[0] == 2


def _small_dataset(n_units=12, n_days=200, seed=0) -> Dataset:
    rng = np.random.default_rng(seed)
    sales = rng.poisson(rng.uniform(0.5, 8, (n_units, 1)), (n_units, n_days)).astype(float)
    units = pd.DataFrame({
        "sku": [f"s{i}" for i in range(n_units)], "dc": "d1", "category": ["c1", "c2"] * (n_units // 2),
        "unit_cost": rng.uniform(1, 9, n_units), "lead_time_days": rng.integers(1, 10, n_units),
        "review_period_days": rng.integers(1, 8, n_units), "target_turnover_days": np.nan})
    units["unit_price"] = units["unit_cost"] * 1.6
    return Dataset(units=units, dates=np.datetime64("2025-01-01") + np.arange(n_days),
                   sales=sales, promo=np.zeros(sales.shape, np.float32),
                   price=np.repeat(units["unit_price"].to_numpy()[:, None], n_days, axis=1),
                   observed=np.ones(sales.shape, bool))


def test_run_baseline_scores_every_policy_on_the_test_window():
    cfg = load_config(overrides=["data.split.val_days=30", "data.split.test_days=60"])
    ds = _small_dataset()
    result = run_baseline(ds, cfg.sim, cfg.data.split)
    assert list(result.summary["policy"]) == list(POLICY_NAMES)
    assert len(result.units) == len(POLICY_NAMES) * ds.n_units
    assert result.tune_days == (28, 140) and result.eval_days == (84, 200)
    for _, row in result.summary.iterrows():
        assert 0 <= row["in_stock_rate"] <= 1 and 0 <= row["fill_rate"] <= 1
        assert row["total_cost"] == pytest.approx(row["holding_cost"] + row["penalty_cost"])
        test_demand = (ds.sales[:, 140:] * ds.units["unit_cost"].to_numpy()[:, None]).sum()
        assert row["demand_value"] == pytest.approx(test_demand)
    tuned = result.units[result.units["policy"] == "inventory_days"]["param_v"]
    assert tuned.between(0, 60).all()


def test_baseline_cli_writes_tables_and_manifest(tmp_path, capsys):
    out = tmp_path / "baseline"
    code = main(["baseline", "--out", str(out), "--policy", "base_stock",
                 "--set", "data.synth.units=30", "--set", "data.synth.days=240",
                 "--set", "data.split.val_days=30", "--set", "data.split.test_days=60"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "base_stock" in printed and "turnover_days" in printed
    manifest = read_manifest(out)
    assert manifest is not None and manifest["stage"] == "baseline"
    assert set(manifest["outputs"]) == {"baseline_summary.parquet", "baseline_summary.csv", "baseline_units.parquet"}
    summary = pd.read_parquet(out / "baseline_summary.parquet")
    assert list(summary["policy"]) == ["base_stock"]
    assert manifest["figures"]["base_stock"]["total_cost"] == pytest.approx(summary["total_cost"][0])
    assert json.loads((out / "manifest.json").read_text())["windows"]["score_from"] == 180
    assert len(pd.read_parquet(out / "baseline_units.parquet")) == 30


@pytest.mark.parametrize("args, message", [
    (["--data", "no/such/folder"], "no/such/folder"),
    (["--set", "data.synth.days=100"], "data.split"),
    (["--set", "sim.days_grid=[3, 1]"], "sim.days_grid"),
])
def test_baseline_cli_rejects_bad_input_and_writes_nothing(tmp_path, capsys, args, message):
    out = tmp_path / "baseline"
    assert main(["baseline", "--out", str(out), *args]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()
