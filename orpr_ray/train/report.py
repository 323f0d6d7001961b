"""What a finished stage is judged by: labels prepared for training, naive label predictors, and the
per-window report (forecast errors, label accuracy, simulated cost of the predicted targets).

Runs in the driver after training, on the deterministic model (z = mu).
"""
from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
import torch

from orpr_ray.config import OrprConfig
from orpr_ray.core.errors import InputError
from orpr_ray.data.dataset import Dataset
from orpr_ray.data.split import TimeSplit
from orpr_ray.label.candidates import evaluate_decisions, label_horizon
from orpr_ray.model.checkpoint import CheckpointMeta
from orpr_ray.model.features import LabelHistory, PanelFeatures
from orpr_ray.model.network import OrprNet, target_index
from orpr_ray.train.rules import RULE_QUANTILES, rule_name
from orpr_ray.train.stages import (KNOWN_COLUMNS, WITHIN, Points, forecast_points, grid_index, label_points,
                                   sample_points, score_points, summarise_sums, window_bounds, with_known)

LABEL_COLUMNS = ("unit", "day", "category", "v_label", *LabelHistory.COLUMNS)
# Simulated figures kept in the report (GridMetrics.summary() keys).
SIM_KEYS = ("turnover_days", "in_stock_rate", "fill_rate", "holding_cost", "penalty_cost", "total_cost")
NAIVE_PREDICTORS = ("previous_label", "category_median", "latest_known_label")


def prepare_labels(labels: pd.DataFrame, ds: Dataset, grid: list[int], *, horizon: int,
                   alpha_source: Literal["past", "label"], source: str) -> pd.DataFrame:
    """Check label rows against the dataset and grid; add the columns training and the report use.

    Adds ``label_index`` (position in the grid) and the ``known_*`` objectives the network sees
    (LabelHistory: alpha, recent turnover and in-stock of the unit's latest label whose horizon had
    ended by the decision day). ``alpha_source="label"`` replaces that alpha with the label's own
    (hindsight) one.
    """
    missing = [c for c in LABEL_COLUMNS if c not in labels.columns]
    if missing:
        raise InputError(f"label columns {missing} are missing", file=source, field=", ".join(missing))
    out = labels.reset_index(drop=True).copy()
    for column, upper in (("unit", ds.n_units), ("day", ds.n_days)):
        bad = (out[column] < 0) | (out[column] >= upper)
        if bad.any():
            raise InputError(f"{out[column][bad].iloc[0]} is outside 0..{upper - 1} of the dataset: labels and "
                             f"data do not belong together", file=source, field=column,
                             where=f"row {int(np.flatnonzero(bad.to_numpy())[0])}")
    out["label_index"] = grid_index(out["v_label"].to_numpy(), grid)
    out[KNOWN_COLUMNS] = LabelHistory(out, horizon).lookup(out["unit"].to_numpy(), out["day"].to_numpy())
    if alpha_source == "label":
        out["known_alpha"] = out["alpha"].to_numpy(np.float64)
    return out


def snap_to_grid(values: np.ndarray, grid: list[int]) -> np.ndarray:
    """Nearest grid value (ties to the smaller)."""
    grid_arr = np.asarray(grid)
    return grid_arr[np.abs(np.asarray(values, dtype=float)[:, None] - grid_arr[None, :]).argmin(axis=1)]


def naive_label_predictions(labels: pd.DataFrame, split: TimeSplit, grid: list[int], *,
                            horizon: int | None = None) -> pd.DataFrame:
    """Naive predictors of each row's label, as grid values:
    ``previous_label``, the unit's label at its previous decision day (the category median when
    there is none); ``category_median``, the median training-window label of the unit's category;
    with ``horizon``, ``latest_known_label``: the unit's latest label whose replay horizon had ended
    by the decision day (the previous label is computed from demand up to horizon - stride days
    *after* the decision day, so only this one is available to a deployed rule)."""
    train = labels[labels["day"] < split.val_start]
    overall = float(train["v_label"].median()) if len(train) else float(np.median(grid))
    median = labels["category"].map(train.groupby("category")["v_label"].median()).fillna(overall)
    category_median = snap_to_grid(median.to_numpy(), grid)
    previous = labels.sort_values(["unit", "day"]).groupby("unit")["v_label"].shift(1).reindex(labels.index)
    out = pd.DataFrame({"previous_label": _or_fallback(previous.to_numpy(float), category_median),
                        "category_median": category_median}, index=labels.index)
    if horizon is not None:
        known = LabelHistory(labels, horizon, columns=("v_label",)).lookup(labels["unit"].to_numpy(),
                                                                            labels["day"].to_numpy())[:, 0]
        out["latest_known_label"] = _or_fallback(known, category_median)
    return out


def label_persistence(labels: pd.DataFrame, rows: pd.DataFrame, *, horizon: int, stride: int,
                      extra_lags: int = 2) -> list[dict]:
    """How well the unit's own label ``lag`` days earlier predicts each row's label, for lags of one
    stride up to ``extra_lags`` strides past the horizon: within +-3 days, and how many days of the
    demand after the decision day the earlier label was computed from (``horizon - lag``, at least 0).

    A label is a hindsight optimum over ``horizon`` days, so an earlier label shares future demand
    with the one predicted until the lag reaches the horizon; this table shows how much of the
    previous label's accuracy comes from that shared future (only lags >= horizon are known at
    the decision day)."""
    by_key = labels.set_index(["unit", "day"])["v_label"]
    truth = rows["v_label"].to_numpy(float)
    out = []
    for lag in range(stride, horizon + (extra_lags + 1) * stride, stride):
        earlier = by_key.reindex(pd.MultiIndex.from_arrays([rows["unit"], rows["day"] - lag])).to_numpy(float)
        has = ~np.isnan(earlier)
        out.append({"lag_days": lag, "future_days_shared": max(horizon - lag, 0), "points": int(has.sum()),
                    "within_3": accuracy(earlier[has], truth[has])["within_3"]})
    return out


def _or_fallback(values: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(values), fallback, np.nan_to_num(values)).astype(np.int64)


def accuracy(pred: np.ndarray, label: np.ndarray) -> dict[str, float]:
    """Share of exact predictions and within +-k days (values in days)."""
    gap = np.abs(np.asarray(pred) - np.asarray(label))
    out = {"accuracy": float((gap == 0).mean()) if len(gap) else float("nan")}
    out.update({f"within_{k}": float((gap <= k).mean()) if len(gap) else float("nan") for k in WITHIN})
    return out


def simulated(ds: Dataset, points: Points, v: np.ndarray, cfg: OrprConfig) -> dict[str, float]:
    """Turnover, in-stock, fill rate and costs of targets ``v`` (N,) replayed like the labels are scored."""
    summary = evaluate_decisions(ds, points.unit, points.day, np.asarray(v, dtype=float)[:, None], sim=cfg.sim,
                                 label=cfg.label).summary()
    return {key: summary[key] for key in SIM_KEYS}


def forecast_report(model: OrprNet, meta: CheckpointMeta, panel: PanelFeatures, history: LabelHistory | None,
                    split: TimeSplit, cfg: OrprConfig, window: str) -> dict:
    """Forecast WAPE / MAE of the model and the naive / seasonal-naive forecasts on a window."""
    points = sample_points(forecast_points(panel.ds, split, window, horizon=meta.model_config.horizon_days,
                                           min_history=cfg.train.min_history_days),
                           cfg.train.eval_points, cfg.seed)
    points = with_known(points, history)
    sums, _ = score_points(model, panel, points, meta.stats, meta.grid, cfg.train)
    return {"points": len(points), **summarise_sums(sums)}


def decision_report(model: OrprNet, meta: CheckpointMeta, panel: PanelFeatures, labels: pd.DataFrame,
                    split: TimeSplit, cfg: OrprConfig, window: str) -> dict:
    """The model's targets against the labels and the naive predictors on a window's label rows:
    accuracy (exact, +-1, +-3 days) and the simulated outcome of each set of targets."""
    start, stop = window_bounds(split, window)
    rows = labels[(labels["day"] >= start) & (labels["day"] < stop)]
    points = label_points(rows, split, window)
    if len(points) == 0:
        return {"points": 0}
    sums, probs = score_points(model, panel, points, meta.stats, meta.grid, cfg.train)
    log_probs = torch.from_numpy(np.log(np.maximum(probs, 1e-30)))  # (N, G): target_index reads these as logits

    def targets(quantile: float | None) -> np.ndarray:
        return np.asarray(meta.grid)[target_index(log_probs, quantile).numpy()]

    truth = rows["v_label"].to_numpy()

    def scored(v: np.ndarray) -> dict:
        return {**accuracy(v, truth), "simulated": simulated(panel.ds, points, v, cfg)}

    report = {"points": len(points), "decision_quantile": meta.decision_quantile,
              "ce": summarise_sums(sums).get("ce"), "model": scored(targets(meta.decision_quantile)),
              "labels": {"simulated": simulated(panel.ds, points, truth, cfg)}}
    report.update({name: scored(rows[name].to_numpy()) for name in NAIVE_PREDICTORS if name in rows})
    report["model_rules"] = {rule_name(q): scored(targets(q)) for q in RULE_QUANTILES}
    report["label_persistence"] = label_persistence(labels, rows, horizon=label_horizon(panel.ds, cfg.label),
                                                    stride=cfg.label.decision_stride_days)
    return report


def stage_report(model: OrprNet, meta: CheckpointMeta, ds: Dataset, labels: pd.DataFrame | None,
                 history: LabelHistory | None, split: TimeSplit, cfg: OrprConfig, *, decisions: bool) -> dict:
    """Validation and test figures of one finished stage."""
    panel = PanelFeatures(ds, meta.model_config)
    report = {"forecast": {w: forecast_report(model, meta, panel, history, split, cfg, w) for w in ("val", "test")}}
    if decisions and labels is not None:
        report["decision"] = {w: decision_report(model, meta, panel, labels, split, cfg, w) for w in ("val", "test")}
    return report


def summary_lines(stage: str, report: dict) -> list[str]:
    """A few readable lines of a stage report for the console."""
    lines = []
    for window, fc in report.get("forecast", {}).items():
        if "wape" in fc:
            lines.append(f"[{stage}] {window} forecast WAPE {fc['wape']:.3f} (naive {fc['naive_wape']:.3f}, "
                         f"seasonal-naive {fc['seasonal_wape']:.3f}), MAE {fc['mae']:.3f}")
    for window, dec in report.get("decision", {}).items():
        if not dec.get("points"):
            continue
        names = [n for n in ("model", *NAIVE_PREDICTORS) if n in dec]
        within = ", ".join(f"{n.replace('_', ' ')} {dec[n]['within_3']:.3f}" for n in names)
        cost = ", ".join(f"{n.replace('_', ' ')} {dec[n]['simulated']['total_cost']:.0f}"
                         for n in ("labels", *names))
        lines.append(f"[{stage}] {window} within+-3: {within}; simulated total cost: {cost}")
        if dec.get("label_persistence"):
            lags = ", ".join(f"{r['lag_days']}d {r['within_3']:.3f}" + ("" if r["future_days_shared"] else " (known)")
                             for r in dec["label_persistence"])
            lines.append(f"[{stage}] {window} within+-3 of the unit's label that many days earlier: {lags}")
    return lines
