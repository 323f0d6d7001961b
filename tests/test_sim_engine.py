"""The fast grid simulator against the plain reference, bit for bit, plus hand-checked metrics."""
from __future__ import annotations

import subprocess
import sys
import tracemalloc
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest

from orpr_ray.sim.engine import (
    GridMetrics,
    inventory_days_to_levels,
    simulate_grid,
    simulate_sums,
)
from sim_reference import reference_grid, reference_unit

HOLDING = 0.25 / 365
PENALTY = 0.8


def _demand(rng: np.random.Generator, n_units: int, n_days: int) -> np.ndarray:
    """(U, D) traces mixing zero, lumpy, Poisson and fractional demand."""
    rows = []
    for kind in rng.integers(0, 4, n_units):
        if kind == 0:
            rows.append(np.zeros(n_days))
        elif kind == 1:  # lumpy: rare large spikes
            rows.append(np.where(rng.random(n_days) < 0.12, rng.integers(1, 40, n_days), 0).astype(float))
        elif kind == 2:
            rows.append(rng.poisson(rng.uniform(0.2, 6.0), n_days).astype(float))
        else:  # fractional (e.g. kilograms): exercises float rounding paths
            rows.append(np.round(rng.gamma(0.7, 2.0, n_days), 3))
    return np.array(rows)


def _random_case(seed: int, *, max_lead: int = 14) -> dict:
    """A random grid instance; every optional input appears in some seeds."""
    rng = np.random.default_rng(seed)
    n_units, n_cand, n_days = int(rng.integers(1, 5)), int(rng.integers(1, 6)), int(rng.integers(1, 70))
    case = dict(demand=_demand(rng, n_units, n_days),
                lead_time=rng.integers(0, max_lead + 1, n_units),
                review_period=rng.integers(1, 15, n_units),
                unit_cost=rng.uniform(0.5, 20.0, n_units))
    case["unit_price"] = case["unit_cost"] * rng.uniform(1.0, 3.0, n_units)
    mode = ("levels", "rate_unit", "rate_day", "constant", "s_S")[seed % 5]
    if mode in ("rate_unit", "rate_day"):
        case["targets"] = rng.integers(0, 30, n_cand).astype(float)
        shape = n_units if mode == "rate_unit" else (n_units, n_days)
        case["demand_rate"] = rng.gamma(1.0, 2.0, shape) * (rng.random(shape) > 0.1)
    else:
        shape = (n_cand,) if rng.random() < 0.5 else (n_units, n_cand)
        case["targets"] = rng.integers(0, 60, shape).astype(float)
        if mode == "constant":
            case["rule"] = "constant"
        if mode == "s_S":
            case["reorder_points"] = np.floor(case["targets"] * rng.uniform(0, 1, shape))
    if rng.random() < 0.6:
        case["on_hand0"] = rng.integers(0, 50, (n_units,) if rng.random() < 0.5 else (n_units, n_cand)).astype(float)
    if rng.random() < 0.6:
        case["pipeline0"] = rng.integers(0, 15, (n_units, int(rng.integers(0, 20)))).astype(float)
    if rng.random() < 0.5:
        case["review_offset"] = rng.integers(0, 20, n_units)
    return case


def _assert_same(fast: GridMetrics, slow: GridMetrics) -> None:
    assert fast.n_days == slow.n_days
    for f in fields(GridMetrics):
        if f.name != "n_days":
            np.testing.assert_array_equal(getattr(fast, f.name), getattr(slow, f.name), err_msg=f.name)


@pytest.mark.parametrize("seed", range(150))
def test_grid_equals_reference_exactly(seed):
    case = _random_case(seed)
    fast = simulate_grid(**case, holding_rate=HOLDING, penalty_share=PENALTY)
    slow = reference_grid(**case, holding_rate=HOLDING, penalty_share=PENALTY)
    _assert_same(fast, slow)


@pytest.mark.parametrize("seed", range(150, 170))
def test_long_lead_times_up_to_60_equal_reference(seed):
    case = _random_case(seed, max_lead=60)
    case["lead_time"][0] = 60
    _assert_same(simulate_grid(**case, holding_rate=HOLDING, penalty_share=PENALTY),
                 reference_grid(**case, holding_rate=HOLDING, penalty_share=PENALTY))


def test_pipeline_per_candidate_equals_reference():
    rng = np.random.default_rng(7)
    demand = _demand(rng, 3, 40)
    pipeline = rng.integers(0, 9, (3, 4, 12)).astype(float)  # (U, C, P)
    case = dict(demand=demand, targets=np.array([0.0, 5, 20, 45]), lead_time=np.array([0, 3, 9]),
                review_period=np.array([1, 4, 7]), unit_cost=np.ones(3), unit_price=np.full(3, 2.0),
                pipeline0=pipeline)
    _assert_same(simulate_grid(**case, holding_rate=HOLDING, penalty_share=PENALTY),
                 reference_grid(**case, holding_rate=HOLDING, penalty_share=PENALTY))


@pytest.mark.parametrize("seed", range(30))
def test_end_state_equals_reference(seed):
    """The state after the window (used to continue a rolling run) matches the reference's."""
    case = _random_case(seed)
    sums, (on_hand, pipeline) = simulate_sums(
        case["demand"], case["targets"], case["lead_time"], case["review_period"],
        demand_rate=case.get("demand_rate"), on_hand0=case.get("on_hand0"),
        pipeline0=case.get("pipeline0"), review_offset=case.get("review_offset"),
        reorder_points=case.get("reorder_points"), rule=case.get("rule", "order_up_to"),
        return_state=True)
    n_units, n_cand = on_hand.shape
    targets = np.broadcast_to(case["targets"], (n_units, n_cand))
    for u in range(n_units):
        for c in range(n_cand):
            ref = reference_unit(
                case["demand"][u], targets[u, c], int(case["lead_time"][u]), int(case["review_period"][u]),
                d_hat=None if "demand_rate" not in case else case["demand_rate"][u],
                on_hand=_cell(case.get("on_hand0"), u, c),
                pipeline=case["pipeline0"][u] if "pipeline0" in case else (),
                offset=int(case["review_offset"][u]) if "review_offset" in case else 0,
                reorder_point=(None if "reorder_points" not in case
                               else np.broadcast_to(case["reorder_points"], (n_units, n_cand))[u, c]),
                constant=case.get("rule") == "constant")
            assert on_hand[u, c] == ref["end_on_hand"]
            expected = np.zeros(pipeline.shape[2])
            for day, qty in ref["end_due"].items():
                expected[day] = qty
            np.testing.assert_array_equal(pipeline[u, c], expected)
            assert sums.ordered_units[u, c] == ref["ordered"]
            assert sums.order_count[u, c] == ref["orders"]


def _cell(values, u, c):
    if values is None:
        return 0.0
    return float(values[u, c] if np.ndim(values) == 2 else values[u])


def _one_unit(demand, targets, *, lead=0, period=1, **kw) -> GridMetrics:
    return simulate_grid(np.array([demand], dtype=float), np.array(targets, dtype=float), [lead], [period],
                         [2.0], [5.0], holding_rate=0.01, penalty_share=0.5, **kw)


def test_hand_checked_metrics_with_lead_time():
    """S = 6, L = 2, daily review, demand 2/day, starting with 6 on hand: never out of stock.

    On hand after arrivals 6, 4, 2, 2, 2 (orders of 2 from day 1 arrive from day 3); end-of-day
    stock 4, 2, 0, 0, 0 -> 6 units -> value 12 at cost 2; holding 12 x 0.01."""
    m = _one_unit([2, 2, 2, 2, 2], [6], lead=2, on_hand0=[6.0])
    assert m.stock_value[0, 0] == 12.0
    assert m.holding_cost[0, 0] == pytest.approx(0.12)
    assert m.sales_units[0, 0] == 10 and m.sales_value[0, 0] == 20
    assert m.lost_units[0, 0] == 0 and m.lost_value[0, 0] == 0 and m.penalty_cost[0, 0] == 0
    assert m.demand_units[0, 0] == 10 and m.demand_value[0, 0] == 20
    assert m.in_stock_days[0, 0] == 5
    assert m.fill_rate[0, 0] == 1.0


def test_lost_sales_and_penalty_by_hand():
    """S = 3, L = 0, daily review, demand 5, 0, 4: sells 3, 0, 3; loses 2 and 1."""
    m = _one_unit([5, 0, 4], [3])
    assert m.sales_units[0, 0] == 6 and m.lost_units[0, 0] == 3
    assert m.lost_value[0, 0] == 6.0                      # 3 units at cost 2
    assert m.penalty_cost[0, 0] == pytest.approx(4.5)      # 3 x 0.5 x (5 - 2)
    assert m.stock_value[0, 0] == 2 * (0 + 3 + 0)          # end of day 0, 3, 0
    assert m.in_stock_days[0, 0] == 3                      # the L = 0 order arrives before demand
    assert m.fill_rate[0, 0] == pytest.approx(6 / 9)
    assert m.total_cost[0, 0] == pytest.approx(m.holding_cost[0, 0] + 4.5)
    assert m.in_stock_rate[0, 0] == 1.0


def test_review_offset_and_period_gate_orders():
    """Reviews on days 2 and 5 only (offset 2, period 3), L = 0, S = 4, demand 1/day, nothing on hand."""
    m = _one_unit([1] * 6, [4], period=3, review_offset=[2])
    # days 0, 1 out of stock; day 2 orders 4 -> sells 1, 1, 1 (days 2..4), day 5 tops up from 1 to 4.
    assert m.in_stock_days[0, 0] == 4
    assert m.sales_units[0, 0] == 4 and m.lost_units[0, 0] == 2


def test_initial_pipeline_arrives_on_its_day():
    m = _one_unit([0, 0, 3, 0], [0], pipeline0=[[0, 0, 5]])
    assert m.in_stock_days[0, 0] == 2          # days 2 and 3
    assert m.sales_units[0, 0] == 3
    assert m.stock_value[0, 0] == 2 * (2 + 2)  # 2 left at the end of days 2 and 3


def test_inventory_days_use_the_rate_of_each_review_day():
    """v = 2 days with d_hat 1.5 then 3.0: S = ceil(3) = 3, then ceil(6) = 6."""
    m = _one_unit([0, 0], [2], demand_rate=np.array([[1.5, 3.0]]))
    assert m.stock_value[0, 0] == 2 * (3 + 6)


def test_constant_rule_orders_the_target_each_review():
    m = _one_unit([1, 1, 1, 1], [2], lead=1, period=2, rule="constant")
    # orders 2 on day 0 (arrives day 1) and 2 on day 2 (arrives day 3).
    assert m.sales_units[0, 0] == 3 and m.lost_units[0, 0] == 1
    assert m.stock_value[0, 0] == 2 * (0 + 1 + 0 + 1)


def test_s_S_orders_only_at_or_below_the_reorder_point():
    """(s=2, S=5), L = 0, demand 1/day from 5 on hand: orders when the position reaches 2."""
    m = _one_unit([1] * 6, [5], reorder_points=[2.0], on_hand0=[5.0])
    # start-of-day positions 5, 4, 3, 2 -> order 3 -> 5, then 4, 3: end-of-day 4, 3, 2, 4, 3, 2.
    assert m.stock_value[0, 0] == 2 * (4 + 3 + 2 + 4 + 3 + 2)


def test_derived_metrics_edge_cases():
    m = _one_unit([0, 0], [0, 3])
    np.testing.assert_array_equal(m.turnover_days, [[0.0, np.inf]])  # nothing held / held but unsold
    np.testing.assert_array_equal(m.fill_rate, [[1.0, 1.0]])          # no demand: fully served
    np.testing.assert_array_equal(m.in_stock_rate, [[0.0, 1.0]])
    sold = _one_unit([2, 2], [4])
    assert sold.turnover_days[0, 0] == 1.0  # end-of-day 2 + 2 over sales 2 + 2


def test_summary_and_select():
    m = _one_unit([5, 0, 4], [0, 3, 9])
    picked = m.select(np.array([1]))
    assert picked.stock_value.shape == (1, 1) and picked.stock_value[0, 0] == m.stock_value[0, 1]
    s = picked.summary()
    assert s["lost_sales_value"] == pytest.approx(6.0)
    assert s["fill_rate"] == pytest.approx(6 / 9)
    assert s["total_cost"] == pytest.approx(float(picked.total_cost[0, 0]))
    assert s["turnover_days"] == pytest.approx(float(picked.turnover_days[0, 0]))
    two = simulate_grid(np.array([[1.0, 1], [0, 0]]), np.array([2.0]), [0, 0], [1, 1], [1.0, 3.0], [2.0, 4.0],
                        holding_rate=0.0, penalty_share=1.0)
    assert two.rows(np.array([False, True])).summary()["turnover_days"] == np.inf  # held, never sold
    assert two.summary()["stock_value"] == 1 * (1 + 1) + 3 * (2 + 2)
    assert two.summary()["in_stock_rate"] == 1.0


def test_level_conversion_tolerates_float_noise():
    np.testing.assert_array_equal(inventory_days_to_levels(np.array([3.0, 3.0, 0.0, 2.0]),
                                                           np.array([1.0000000001, 1.01, 0.0, 5.0])),
                                  [3.0, 4.0, 0.0, 10.0])
    assert inventory_days_to_levels(50, 1.1) == 55.0  # 50 * 1.1 = 55.00000000000001


def test_memory_grows_with_units_times_candidates_not_days():
    """20 units x 50 candidates x 20,000 days: a (U, C, D) array would take 160 MB."""
    rng = np.random.default_rng(0)
    demand = rng.poisson(2.0, (20, 20_000)).astype(float)
    lead, period = np.full(20, 5), np.full(20, 3)
    simulate_grid(demand[:, :10], np.arange(50.0), lead, period, np.ones(20), np.ones(20),
                  holding_rate=0.0, penalty_share=0.0)  # compiled before tracing
    tracemalloc.start()
    simulate_grid(demand, np.arange(50.0), lead, period, np.ones(20), np.ones(20),
                  holding_rate=0.0, penalty_share=0.0)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 8 * demand.nbytes  # the inputs' size, far below U x C x D x 8 bytes


@pytest.mark.parametrize("kwargs, message", [
    (dict(demand=-np.ones((1, 3))), "demand"),
    (dict(targets=np.ones((2, 3))), "targets"),
    (dict(lead_time=[-1]), "lead_time"),
    (dict(review_period=[0]), "review_period"),
    (dict(demand_rate=np.ones((1, 2))), "demand_rate"),
    (dict(pipeline0=np.ones((2, 2))), "pipeline0"),
    (dict(rule="weekly"), "rule"),
])
def test_bad_arguments_are_rejected(kwargs, message):
    args = dict(demand=np.ones((1, 3)), targets=np.ones(2), lead_time=[1], review_period=[1],
                unit_cost=[1.0], unit_price=[2.0])
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        simulate_grid(**args, holding_rate=0.0, penalty_share=0.0)


@pytest.mark.slow  # two fresh processes importing numba: a few seconds, more on a busy machine
def test_benchmark_script_runs_and_checks_the_reference():
    """bench/bench_sim.py end to end on a tiny grid (no timing asserted, docs left alone)."""
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, str(root / "bench" / "bench_sim.py"), "--units", "30", "--candidates", "4",
         "--days", "40", "--repeats", "1", "--reference-units", "3", "--no-write"],
        capture_output=True, text=True, timeout=300, check=True).stdout
    assert "unit-candidate-days/s" in out and "results identical: True" in out
