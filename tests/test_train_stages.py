"""The stage loops and their metrics, in this process (no Ray): windows, sharding, learning, resuming."""
from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
import torch

from model_helpers import tiny_config, tiny_dataset, tiny_labels, tiny_stats
from orpr_ray.core.errors import InputError
from orpr_ray.data.split import TimeSplit, time_split
from orpr_ray.label.candidates import label_horizon
from orpr_ray.model.features import PanelFeatures, RawFeatures
from orpr_ray.model.network import build_model
from orpr_ray.train.report import (accuracy, label_persistence, naive_label_predictions, prepare_labels,
                                  snap_to_grid, summary_lines)
from orpr_ray.train.runner import LocalContext, worker_threads
from orpr_ray.train.stages import (KNOWN_COLUMNS, StageJob, epoch_order, forecast_metrics, forecast_points,
                                   label_points, naive_forecasts, run_stage, sample_points, score_points,
                                   window_bounds, with_known)
from orpr_ray.model.features import LabelHistory

CFG = tiny_config()


@pytest.fixture(scope="module")
def data():
    ds = tiny_dataset(CFG)
    split = time_split(ds.n_days, CFG.data.split)
    labels = prepare_labels(tiny_labels(ds, CFG), ds, CFG.label.grid, horizon=label_horizon(ds, CFG.label),
                            alpha_source="past", source="tiny")
    return ds, split, labels, tiny_stats(ds, CFG.model)


def test_forecast_points_stay_inside_their_window(data):
    ds, split, _, _ = data
    horizon = CFG.model.horizon_days
    for window in ("train", "val", "test"):
        points = forecast_points(ds, split, window, horizon=horizon, min_history=28)
        start, stop = window_bounds(split, window)
        assert len(points) > 0
        assert points.day.min() >= max(start, 28) and points.day.max() + horizon <= stop


def test_epoch_order_gives_every_worker_the_same_number_of_points():
    for world in (1, 2, 3):
        order = epoch_order(101, None, world, seed=0)
        assert len(order) % world == 0 and len(set(order)) == len(order)
        shards = [order[rank::world] for rank in range(world)]
        assert len({len(s) for s in shards}) == 1
    assert np.array_equal(epoch_order(50, 20, 2, seed=3), epoch_order(50, 20, 2, seed=3))
    assert not np.array_equal(epoch_order(50, 20, 2, seed=3), epoch_order(50, 20, 2, seed=4))


def test_naive_forecasts_repeat_the_last_day_and_the_last_week():
    history = np.arange(14, dtype=float)[None, :]  # day -14 .. day -1 sold 0 .. 13
    raw = RawFeatures(sales=history, observed=np.ones((1, 14), bool), price=history, promo=np.zeros((1, 24)),
                      weekday=np.zeros(1, np.int64), category=np.array(["c"], object), dc=np.array(["d"], object),
                      attributes=np.zeros((1, 4)), extra_categorical=np.zeros((1, 0), object),
                      objectives=np.zeros((1, 5)))
    naive, seasonal = naive_forecasts(raw, 10)
    assert naive.tolist() == [[13.0] * 10]
    assert seasonal.tolist() == [[7.0, 8, 9, 10, 11, 12, 13, 7, 8, 9]]


def test_forecast_metrics_from_sums():
    sums = {"abs_err": 10.0, "naive_abs_err": 20.0, "seasonal_abs_err": 15.0, "actual": 100.0, "days": 5.0}
    m = forecast_metrics(sums)
    assert m["wape"] == 0.1 and m["naive_wape"] == 0.2 and m["seasonal_wape"] == 0.15 and m["mae"] == 2.0


def test_prepare_labels_checks_the_labels_and_adds_what_a_policy_knows(data):
    ds, _, labels, _ = data
    assert (np.asarray(CFG.label.grid)[labels["label_index"]] == labels["v_label"]).all()
    horizon = label_horizon(ds, CFG.label)
    first = labels.groupby("unit")["day"].transform("min")
    early = labels["day"] < first + horizon
    assert labels.loc[early, "known_alpha"].isna().all()
    assert labels.loc[~early, "known_alpha"].notna().all()
    off_grid = labels.assign(v_label=labels["v_label"] + 100)
    with pytest.raises(InputError, match="field 'v_label'.*not on the grid"):
        prepare_labels(off_grid, ds, CFG.label.grid, horizon=horizon, alpha_source="past", source="x")
    with pytest.raises(InputError, match="file x, field 'unit'"):
        prepare_labels(labels.assign(unit=labels["unit"] + ds.n_units), ds, CFG.label.grid, horizon=horizon,
                       alpha_source="past", source="x")
    hindsight = prepare_labels(labels, ds, CFG.label.grid, horizon=horizon, alpha_source="label", source="x")
    assert (hindsight["known_alpha"] == labels["alpha"]).all()


def test_naive_label_predictors():
    labels = pd.DataFrame({"unit": [0, 0, 0, 1, 1], "day": [10, 17, 24, 10, 24], "category": ["a", "a", "a", "b", "b"],
                           "v_label": [4, 8, 6, 20, 30]})
    out = naive_label_predictions(labels, TimeSplit(val_start=20, test_start=40, n_days=60), list(range(1, 31)),
                                  horizon=14)
    assert out["category_median"].tolist() == [6, 6, 6, 20, 20]  # training days (< 20) only
    assert out["previous_label"].tolist() == [6, 4, 8, 20, 20]
    assert out["latest_known_label"].tolist() == [6, 6, 4, 20, 20]  # only day 10's labels are known by day 24
    persistence = label_persistence(labels, labels[labels["day"] == 24], horizon=14, stride=7, extra_lags=1)
    assert [(r["lag_days"], r["future_days_shared"], r["points"]) for r in persistence] == [
        (7, 7, 1), (14, 0, 2), (21, 0, 0)]  # unit 1 has no label at day 17
    assert persistence[0]["within_3"] == 1.0 and persistence[1]["within_3"] == 0.5  # |8-6| <= 3; |4-6|, |20-30|
    assert np.isnan(persistence[2]["within_3"])
    assert snap_to_grid(np.array([2.5, 40.0]), [1, 2, 3, 30]).tolist() == [2, 30]
    assert accuracy(np.array([4, 8, 13]), np.array([4, 9, 9])) == {"accuracy": 1 / 3, "within_1": 2 / 3,
                                                                    "within_3": 2 / 3}


def _job(stage, data, *, epochs=2, init=None):
    ds, split, labels, stats = data
    cfg = tiny_config(**{stage: {"epochs": epochs, "samples_per_epoch": 256, "lr": 3e-3}})
    history = LabelHistory(labels, label_horizon(ds, cfg.label))
    if stage == "forecast":
        train, val = (with_known(forecast_points(ds, split, w, horizon=cfg.model.horizon_days, min_history=28),
                                 history) for w in ("train", "val"))
    else:
        train, val = (label_points(labels, split, w) for w in ("train", "val"))
    return StageJob(stage=stage, config=cfg.model_dump(mode="json"), ds=ds, stats=stats, grid=cfg.label.grid,
                    train=train, val=sample_points(val, 256, 0), init_state=init, run_key=f"test-{stage}")


def _val_forecast_loss(job, state_dict):
    model = build_model(job.cfg.model, grid_size=len(job.grid), n_extra_numeric=1, n_extra_categorical=1)
    model.load_state_dict(state_dict)
    sums, _ = score_points(model, PanelFeatures(job.ds, job.cfg.model), job.val, job.stats, job.grid, job.cfg.train)
    return sums["forecast_loss"] / sums["points"]


def test_forecast_stage_learns_reports_and_resumes(data, tmp_path):
    from orpr_ray.model.checkpoint import read_checkpoint

    job = _job("forecast", data)
    untrained = build_model(job.cfg.model, grid_size=len(job.grid), n_extra_numeric=1, n_extra_categorical=1,
                            seed=123).state_dict()
    context = LocalContext(tmp_path / "run")
    last = run_stage(job, context)
    assert last["epoch"] == 2 and last["val_wape"] > 0 and last["val_seasonal_wape"] > 0
    state, meta = read_checkpoint(context.latest)
    assert meta.stage == "forecast" and meta.training["run_key"] == "test-forecast"
    assert _val_forecast_loss(job, state) < _val_forecast_loss(job, untrained)
    # Asking for one more epoch resumes after the second: the first two are not redone.
    again = _job("forecast", data, epochs=3)
    run_stage(again, context)
    _, resumed = read_checkpoint(context.latest)
    assert [h["epoch"] for h in resumed.training["history"]] == [1, 2, 3]
    assert resumed.training["history"][:2] == meta.training["history"]


def test_decision_stage_trains_only_the_head_and_scores_labels(data, tmp_path):
    from orpr_ray.model.checkpoint import read_checkpoint

    init = build_model(tiny_config().model, grid_size=30, n_extra_numeric=1, n_extra_categorical=1,
                       seed=5).state_dict()
    job = _job("decision", data, init=init)
    assert job.train.known.shape == (len(job.train), len(KNOWN_COLUMNS))
    last = run_stage(job, LocalContext(tmp_path / "run"))
    assert 0 <= last["val_accuracy"] <= last["val_within_1"] <= last["val_within_3"] <= 1
    state, _ = read_checkpoint(tmp_path / "run" / "latest")
    for name, tensor in state.items():
        frozen = not (name.startswith("latent") or name.startswith("decoder"))
        assert torch.equal(tensor, init[name]) == frozen, name


def test_stage_without_labels_is_an_input_error(data, tmp_path):
    job = _job("decision", data)
    job.train = job.train.take(slice(0, 0))
    with pytest.raises(InputError, match="needs labelled training points"):
        run_stage(job, LocalContext(tmp_path / "run"))


def test_worker_threads_share_the_machine():
    assert worker_threads(tiny_config(torch_threads=3)) == 3
    assert worker_threads(tiny_config(torch_threads=None, num_workers=64)) == 1
    assert worker_threads(tiny_config(torch_threads=None, num_workers=1)) == (os.cpu_count() or 1)


def test_console_summary_marks_only_the_earlier_labels_known_at_the_decision_day():
    scored = {"within_3": 0.5, "simulated": {"total_cost": 10.0}}
    report = {"decision": {"test": {"points": 3, "model": scored, "labels": scored, "label_persistence": [
        {"lag_days": 7, "future_days_shared": 7, "points": 3, "within_3": 0.9},
        {"lag_days": 14, "future_days_shared": 0, "points": 3, "within_3": 0.4}]}}}
    lines = summary_lines("finetune", report)
    assert lines[-1] == "[finetune] test within+-3 of the unit's label that many days earlier: 7d 0.900, 14d 0.400 (known)"
