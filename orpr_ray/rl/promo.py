"""Expert-guided secondary fine-tune for promotions (``orpr promo``).

Planners often know more about a promotion than the history shows. Expert inventory-days labels
for promotion decision points (a file with ``sku, dc, date, v``) replace the OR label on those
states as the rule reward's target, the KL's reference (a narrow distribution around the expert's
``v`` instead of the start policy) and, with ``rl.sim_reference = "label"``, the action r_sim
compares against. A short RLOO fine-tune from the RL policy then draws ``rl.promo.promo_share`` of
each batch from the expert states and the rest from all training states, so the policy elsewhere
stays anchored to its start.

Two synthetic experts for the demo (``rl.promo.synthetic_expert``):

- ``uplift`` (default), a planner's rule: the unit's typical cover (its median OR label on the
  training window's decision points without a promotion) plus the expected extra demand of the
  planned promotion days inside the next lead time + review period, in days of demand:
  ``(uplift - 1) x promotion days``, with the uplift estimated from the unit's training-window
  history (mean sales on promotion days / on other days). It knows the plan and the uplift, not the
  demand noise that followed;
- ``hindsight``: the OR model per unit on the replay of the real (uplifted) demand, the smallest
  cover whose lost-sales value over the horizon is at most ``1 - rl.promo.expert_service_level`` of
  the demand value. It knows the noise too, so it asks for less cover than any decision under
  uncertainty needs (measured: docs/RL.md), and fine-tuning towards it raises lost sales.

Effect measured (stages.csv, report.json): lost sales and in-stock on promotion decision points,
turnover and cost elsewhere, before and after, on the validation and test windows.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from orpr_ray.config import OrprConfig
from orpr_ray.core.artifacts import write_text_atomic
from orpr_ray.core.errors import InputError
from orpr_ray.data.dataset import Dataset
from orpr_ray.data.split import time_split
from orpr_ray.data.tables import (date_column, numeric_column, read_table, require_columns, text_codes,
                                  unit_index, unit_positions)
from orpr_ray.label.candidates import evaluate_decisions, label_horizon
from orpr_ray.model.checkpoint import CHECKPOINT_FILE, build_from_checkpoint, save_checkpoint
from orpr_ray.model.policy import BASE_FOLDER
from orpr_ray.rl.driver import (build_job, finished, load_start, stage_figures, start_inputs, start_name, train_learner,
                                write_stage_outputs)
from orpr_ray.rl.learner import States
from orpr_ray.train.runner import load_inputs, source_record

EXPERT_COLUMNS = ("sku", "dc", "date", "v")
EXPERT_FILE = "expert_labels.csv"


def promotion_points(ds: Dataset, unit: np.ndarray, day: np.ndarray, horizon: int) -> np.ndarray:
    """(N,) bool: the decision's replay horizon [day, day + horizon) has a promotion day."""
    days = np.minimum(np.asarray(day)[:, None] + np.arange(horizon)[None, :], ds.n_days - 1)  # (N, H)
    return (ds.promo[np.asarray(unit)[:, None], days] > 0).any(axis=1)


def synthetic_expert(ds: Dataset, labels: pd.DataFrame, cfg: OrprConfig) -> pd.DataFrame:
    """Expert rows (sku, dc, date, v) for every labelled promotion decision point (module docstring)."""
    horizon = label_horizon(ds, cfg.label)
    unit, day = labels["unit"].to_numpy(np.int64), labels["day"].to_numpy(np.int64)
    promo = promotion_points(ds, unit, day, horizon)
    grid = np.asarray(cfg.label.grid, dtype=np.float64)
    if cfg.rl.promo.synthetic_expert == "uplift":
        v = uplift_expert(ds, labels, promo, time_split(ds.n_days, cfg.data.split).val_start, grid)[promo]
    else:
        v = hindsight_expert(ds, unit[promo], day[promo], grid, cfg)
    unit, day = unit[promo], day[promo]
    return pd.DataFrame({"sku": ds.units["sku"].to_numpy()[unit], "dc": ds.units["dc"].to_numpy()[unit],
                         "date": pd.to_datetime(ds.dates[day]).strftime("%Y-%m-%d"),
                         "v": v.astype(np.int64)})


def hindsight_expert(ds: Dataset, unit: np.ndarray, day: np.ndarray, grid: np.ndarray, cfg: OrprConfig) -> np.ndarray:
    """(N,) the smallest grid cover whose lost-sales value over the replay is within the service level."""
    metrics = evaluate_decisions(ds, unit, day, grid, sim=cfg.sim, label=cfg.label)   # (N, C)
    enough = metrics.lost_value <= (1.0 - cfg.rl.promo.expert_service_level) * metrics.demand_value
    return grid[np.where(enough.any(axis=1), enough.argmax(axis=1), len(grid) - 1)]


def promotion_uplift(ds: Dataset, stop: int) -> np.ndarray:
    """(U,) mean sales on promotion days / on other observed days before ``stop``; 1 without both."""
    sales, observed = ds.sales[:, :stop], ds.observed[:, :stop]
    promo = (ds.promo[:, :stop] > 0) & observed
    other = ~(ds.promo[:, :stop] > 0) & observed
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = ((sales * promo).sum(axis=1) / promo.sum(axis=1)) / ((sales * other).sum(axis=1) / other.sum(axis=1))
    return np.where(np.isfinite(ratio) & (ratio > 1.0), ratio, 1.0)


def uplift_expert(ds: Dataset, labels: pd.DataFrame, promo: np.ndarray, train_stop: int,
                  grid: np.ndarray) -> np.ndarray:
    """(N,) per label row: the unit's typical cover plus (uplift - 1) x planned promotion days in the
    next lead time + review period, rounded up onto the grid (module docstring). promo (N,): which
    rows are promotion points; typical cover = median label of the unit's training rows without one."""
    unit, day = labels["unit"].to_numpy(np.int64), labels["day"].to_numpy(np.int64)
    v = labels["v_label"].to_numpy(np.float64)
    quiet = ~promo & (day < train_stop)
    typical = pd.Series(v[quiet]).groupby(unit[quiet]).median().reindex(range(ds.n_units))
    typical = typical.fillna(float(np.median(v[quiet])) if quiet.any() else float(np.median(v))).to_numpy()
    cover = (ds.units["lead_time_days"].to_numpy(np.int64) + ds.units["review_period_days"].to_numpy(np.int64))[unit]
    ahead = day[:, None] + np.arange(int(cover.max(initial=1)))[None, :]                       # (N, D)
    planned = (ds.promo[unit[:, None], np.minimum(ahead, ds.n_days - 1)] > 0) & (ahead - day[:, None] < cover[:, None])
    extra = (promotion_uplift(ds, train_stop)[unit] - 1.0) * planned.sum(axis=1)
    return grid[np.minimum(np.searchsorted(grid, typical[unit] + extra, side="left"), len(grid) - 1)]


def read_expert_labels(path: str | Path, ds: Dataset, labels: pd.DataFrame, grid: list[int]) -> pd.DataFrame:
    """Expert labels as (unit, day, expert_index); every row must name a known unit, a labelled
    decision date of it and a ``v`` on the grid, at most once. Errors name the file, column and row."""
    table = read_table(Path(path), text_columns=("sku", "dc", "date"))
    require_columns(table, EXPERT_COLUMNS, allowed=EXPERT_COLUMNS)
    unit = unit_positions(unit_index(ds.units["sku"].astype(str).to_numpy(), ds.units["dc"].astype(str).to_numpy()),
                          text_codes(table, "sku"), text_codes(table, "dc"))
    table.fail("sku", unit < 0, "unknown unit (sku, dc): not in the dataset")
    dates = date_column(table, "date")
    day = ((dates - ds.dates[0]).astype(np.int64))
    table.fail("date", (day < 0) | (day >= ds.n_days), f"outside the calendar {ds.dates[0]}..{ds.dates[-1]}")
    labelled = pd.MultiIndex.from_arrays([labels["unit"], labels["day"]])
    table.fail("date", labelled.get_indexer(pd.MultiIndex.from_arrays([unit, day])) < 0,
               "not a labelled decision date of this unit (expert labels apply to decision points)")
    table.fail("date", pd.Series(unit * (1 << 32) + day).duplicated().to_numpy(), "second label for this unit and date")
    v = numeric_column(table, "v")
    grid_arr = np.asarray(grid)
    index = np.searchsorted(grid_arr, v)
    off = (index >= len(grid_arr)) | (grid_arr[np.minimum(index, len(grid_arr) - 1)] != v)
    table.fail("v", off, f"not on the inventory-days grid {grid[0]}..{grid[-1]}")
    return pd.DataFrame({"unit": unit, "day": day, "expert_index": index.astype(np.int64)})


def with_expert(labels: pd.DataFrame, expert: pd.DataFrame) -> pd.DataFrame:
    """The labels with an ``expert_index`` column (-1 where no expert label)."""
    out = labels.drop(columns=["expert_index"], errors="ignore").merge(expert, on=["unit", "day"], how="left")
    out["expert_index"] = out["expert_index"].fillna(-1).astype(np.int64)
    return out


def promo_effect(figures: dict, before: str, after: str) -> dict:
    """Lost sales during promotions and turnover outside them, before -> after, per window."""
    out = {}
    for window in ("val", "test"):
        p_b, p_a = figures[before].get(f"{window}/promotion"), figures[after].get(f"{window}/promotion")
        o_b, o_a = figures[before].get(f"{window}/other"), figures[after].get(f"{window}/other")
        if not (p_b and o_b):
            continue
        out[window] = {"promotion_lost_sales_before": p_b["lost_sales_value"],
                       "promotion_lost_sales_after": p_a["lost_sales_value"],
                       "promotion_in_stock_before": p_b["in_stock_rate"],
                       "promotion_in_stock_after": p_a["in_stock_rate"],
                       "other_turnover_before": o_b["turnover_days"], "other_turnover_after": o_a["turnover_days"],
                       "other_total_cost_before": o_b["total_cost"], "other_total_cost_after": o_a["total_cost"]}
    return out


def run_promo(cfg: OrprConfig, checkpoint_dir: str | Path, out_dir: str | Path, *,
              expert_file: str | Path | None = None, data_dir: str | Path | None = None,
              labels_dir: str | Path | None = None) -> dict:
    """Fine-tune the policy in ``checkpoint_dir`` on expert promotion labels; returns the manifest."""
    out_dir = Path(out_dir)
    data_dir, labels_dir = start_inputs(checkpoint_dir, data_dir, labels_dir)
    state_dict, meta = load_start(cfg, checkpoint_dir)
    inputs = load_inputs(cfg, data_dir, labels_dir)
    if expert_file is None:
        expert_file = out_dir / EXPERT_FILE
        if not expert_file.is_file():
            write_text_atomic(expert_file, synthetic_expert(inputs.ds, inputs.labels, cfg).to_csv(index=False))
    inputs_record = {"data": data_dir, "labels": labels_dir, "start": str(Path(checkpoint_dir).resolve()),
                     "expert": str(Path(expert_file).resolve())}
    done = finished(out_dir, cfg, inputs_record)
    if done is not None:
        print(f"orpr promo: {out_dir} already holds this run's results", flush=True)
        return done
    expert = read_expert_labels(expert_file, inputs.ds, inputs.labels, cfg.label.grid)
    labels = with_expert(inputs.labels, expert)
    inputs.sources.update({"start": source_record(checkpoint_dir, "policy"),
                           "expert": {"kind": "expert", "path": str(Path(expert_file).resolve()), "rows": len(expert)}})
    job = build_job(cfg, inputs, state_dict, meta, stage="promo", labels=labels, promo_share=cfg.rl.promo.promo_share)
    if not job.train.expert.any():
        raise InputError("no expert label falls on a training-window decision point: nothing to fine-tune on",
                         file=str(expert_file), field="date")
    print(f"[promo] {int(job.train.expert.sum())} expert-labelled training states of {len(job.train)}", flush=True)
    history = train_learner(job, storage=out_dir / "ray", dest=out_dir / "policy")
    save_checkpoint(out_dir / "policy" / BASE_FOLDER, build_from_checkpoint(job.init_state, job.meta), job.meta)
    planned = meta.model_config.horizon_days  # the promo plan the features carry: what routing sees

    def routed(states: States) -> np.ndarray:
        return promotion_points(inputs.ds, states.unit, states.day, planned)

    def segments(states: States) -> dict[str, np.ndarray]:
        promo = routed(states)
        return {"promotion": promo, "other": ~promo}

    figures = stage_figures(job, inputs, labels, out_dir / "policy", segments, route=routed)
    effect = promo_effect(figures, start_name(job), job.stage)
    for window, numbers in effect.items():
        print(f"[promo] {window}: " + ", ".join(f"{k} {v:.4g}" for k, v in numbers.items()), flush=True)
    own_file = Path(expert_file).resolve().parent == out_dir.resolve()
    return write_stage_outputs(out_dir, job, cfg, inputs_record, history, figures,
                               extra_report={"promotion_effect": effect, "expert_rows": len(expert)},
                               extra_outputs=[f"policy/{BASE_FOLDER}/{CHECKPOINT_FILE}",
                                              *([Path(expert_file).name] if own_file else [])])
