"""Classic-policy baselines: tune before the test window, backtest on it with the rolling simulation.

Windows (``data.split``): the policies are tuned on ``[0, val_start)`` (``sim.tune_window = "train"``)
or on everything before the test window ``[0, test_start)`` (``"train_val"``, the default: a
deployed rule would be set on all the history it has). Tuning simulates from day
``demand_window_days`` on, so every d_hat has a full trailing window. The backtest starts
``sim.warmup_days`` before ``test_start`` from one common state for every policy (``L + R`` days of
trailing-mean demand on hand, nothing on order) and scores days ``[test_start, n_days)`` only.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import pandas as pd

from orpr_ray.core.artifacts import MANIFEST_NAME, read_manifest, write_manifest, write_parquet_atomic, write_text_atomic
from orpr_ray.data.config import SplitConfig
from orpr_ray.data.dataset import Dataset
from orpr_ray.data.split import TimeSplit, time_split
from orpr_ray.sim.config import SimConfig
from orpr_ray.sim.engine import GridMetrics, UnitParams
from orpr_ray.sim.policies import trailing_mean_demand
from orpr_ray.sim.rolling import simulate_rolling, warm_start
from orpr_ray.sim.tuning import TUNERS, TuneWindow, Tuned

if TYPE_CHECKING:
    from orpr_ray.config import OrprConfig

POLICY_NAMES = tuple(TUNERS)
SUMMARY_FILE = "baseline_summary"  # .parquet and .csv
UNITS_FILE = "baseline_units.parquet"
# Printed per-policy columns, in order (the files hold more).
TABLE_COLUMNS = ("turnover_days", "in_stock_rate", "fill_rate", "holding_cost", "lost_sales_value", "total_cost")


@dataclass(frozen=True)
class BaselineResult:
    summary: pd.DataFrame        # one row per policy: metrics over the test window
    units: pd.DataFrame          # one row per (policy, unit): parameters and metrics
    tuned: dict[str, Tuned]
    split: TimeSplit
    tune_days: tuple[int, int]   # [start, stop) simulated while tuning
    eval_days: tuple[int, int]   # [start, stop) simulated in the backtest (scored from split.test_start)


def run_baseline(dataset: Dataset, sim: SimConfig, split_cfg: SplitConfig,
                 policies: Sequence[str] = POLICY_NAMES) -> BaselineResult:
    unknown = sorted(set(policies) - set(TUNERS))
    if unknown:
        raise ValueError(f"unknown policies {unknown}; known: {list(TUNERS)}")
    split = time_split(dataset.n_days, split_cfg)
    params = UnitParams.from_units(dataset.units)
    d_hat = trailing_mean_demand(dataset.sales, sim.demand_window_days)     # (U, T), causal
    tune_stop = split.test_start if sim.tune_window == "train_val" else split.val_start
    window = TuneWindow(demand=dataset.sales, d_hat=d_hat, params=params,
                        category=dataset.units["category"].to_numpy(),
                        start=min(sim.demand_window_days, tune_stop // 2), stop=tune_stop)
    eval_start = max(0, split.test_start - sim.warmup_days)
    start_state = warm_start(params, d_hat, eval_start)
    tuned, summaries, unit_frames = {}, [], []
    for name in policies:
        tuned[name] = TUNERS[name](window, sim)
        result = simulate_rolling(tuned[name].policy, dataset.sales, params, start=eval_start,
                                  record_from=split.test_start, state=start_state,
                                  holding_rate=sim.holding_rate_per_day,
                                  penalty_share=sim.lost_sales_penalty_share)
        summaries.append({"policy": name, **result.metrics.summary(),
                          "orders": float(result.sums.order_count.sum())})
        unit_frames.append(_unit_frame(name, dataset, tuned[name], result.metrics))
    return BaselineResult(summary=pd.DataFrame(summaries), units=pd.concat(unit_frames, ignore_index=True),
                          tuned=tuned, split=split, tune_days=(window.start, window.stop),
                          eval_days=(eval_start, dataset.n_days))


def _unit_frame(name: str, dataset: Dataset, tuned: Tuned, metrics: GridMetrics) -> pd.DataFrame:
    """Per-unit parameters (``param_<name>``) and test-window metrics of one policy."""
    frame = dataset.units[["sku", "dc", "category"]].copy()
    frame.insert(0, "policy", name)
    for key, values in tuned.policy.params().items():
        frame[f"param_{key}"] = values
    columns = {"turnover_days": metrics.turnover_days, "in_stock_rate": metrics.in_stock_rate,
               "fill_rate": metrics.fill_rate, "holding_cost": metrics.holding_cost,
               "lost_value": metrics.lost_value, "penalty_cost": metrics.penalty_cost,
               "total_cost": metrics.total_cost, "stock_value": metrics.stock_value,
               "sales_value": metrics.sales_value, "demand_value": metrics.demand_value}
    for key, values in columns.items():
        frame[key] = values[:, 0]
    return frame


def format_table(summary: pd.DataFrame) -> str:
    """The per-policy table a planner reads: turnover days, in-stock, costs."""
    table = summary.set_index("policy")[list(TABLE_COLUMNS)]
    formats = {"turnover_days": "{:.1f}".format, "in_stock_rate": "{:.1%}".format,
               "fill_rate": "{:.1%}".format}
    return table.to_string(formatters={c: formats.get(c, "{:,.0f}".format) for c in table.columns})


def write_baseline(dataset: Dataset, cfg: "OrprConfig", out: str | Path, *, source: str,
                   policies: Sequence[str] = POLICY_NAMES) -> dict:
    """Run the baseline and write its tables into ``out``, the manifest last; returns the manifest.

    Files: ``baseline_summary.{parquet,csv}`` (one row per policy) and ``baseline_units.parquet``
    (one row per policy and unit); the manifest's figures hold each policy's summary row.
    """
    result = run_baseline(dataset, cfg.sim, cfg.data.split, policies)
    out = Path(out)
    (out / MANIFEST_NAME).unlink(missing_ok=True)  # a rewrite never looks finished half-way
    write_parquet_atomic(out / f"{SUMMARY_FILE}.parquet", result.summary)
    write_text_atomic(out / f"{SUMMARY_FILE}.csv", result.summary.to_csv(index=False))
    write_parquet_atomic(out / UNITS_FILE, result.units)
    write_manifest(
        out, stage="baseline", config=cfg.model_dump(mode="json"),
        inputs={"data": source, "units": dataset.n_units, "days": dataset.n_days},
        outputs=[f"{SUMMARY_FILE}.parquet", f"{SUMMARY_FILE}.csv", UNITS_FILE],
        figures={row.pop("policy"): row for row in result.summary.to_dict(orient="records")},
        extra={"windows": {"tune": list(result.tune_days), "simulate": list(result.eval_days),
                           "score_from": result.split.test_start},
               "tuning": {name: t.detail for name, t in result.tuned.items() if t.detail}})
    return read_manifest(out)
