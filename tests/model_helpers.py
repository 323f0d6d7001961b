"""Tiny configs and data shared by the model and train tests (small enough for 2 shared cores)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from orpr_ray.config import OrprConfig
from orpr_ray.data.dataset import Dataset
from orpr_ray.data.synth import synthesize
from orpr_ray.model.config import ModelConfig, StreamConfig
from orpr_ray.model.features import FeatureStats, PanelFeatures, split_extra_attributes


def tiny_model_config(**changes) -> ModelConfig:
    stream = StreamConfig(dim=16, layers=1, heads=2, ff_dim=32)
    base = dict(history_days=28, horizon_days=14, sales=stream, attributes=stream, objectives=stream,
                fused_dim=32, head_hidden=32, latent_dim=4, category_buckets=8, dc_buckets=4, extra_buckets=8)
    return ModelConfig(**{**base, **changes})


def tiny_config(**train) -> OrprConfig:
    """60 days of validation and test on a 200-day catalogue, a 1..30 grid, a few short epochs."""
    stage = {"epochs": 2, "samples_per_epoch": 256, "lr": 3e-3}
    return OrprConfig.model_validate({
        "data": {"synth": {"units": 16, "days": 200, "categories": 3, "dcs": 2},
                 "split": {"val_days": 30, "test_days": 30}},
        "label": {"v_max": 30},
        "model": tiny_model_config().model_dump(mode="json"),
        "train": {"num_workers": 0, "batch_size": 64, "eval_batch_size": 256, "val_points": 256,
                  "eval_points": 512, "forecast": stage, "decision": stage, "finetune": stage, **train},
    })


def tiny_dataset(cfg: OrprConfig | None = None, seed: int = 0) -> Dataset:
    cfg = cfg or tiny_config()
    return synthesize(cfg.data.synth, seed)


def tiny_stats(ds: Dataset, cfg: ModelConfig) -> FeatureStats:
    """Statistics fitted on every unit at a few mid-history days."""
    unit = np.repeat(np.arange(ds.n_units), 3)
    day = np.tile([60, 90, 120], ds.n_units)
    numeric, categorical = split_extra_attributes(ds)
    return FeatureStats.fit(PanelFeatures(ds, cfg).raw(unit, day), numeric, categorical, cfg)


def tiny_labels(ds: Dataset, cfg: OrprConfig) -> pd.DataFrame:
    """Real OR labels of the tiny catalogue, from the labelling library (no Ray)."""
    from orpr_ray.label.candidates import decision_points
    from orpr_ray.label.driver import label_shard

    unit, day = decision_points(ds, cfg.label, cfg.sim)
    return label_shard(ds, unit, day, label=cfg.label, sim=cfg.sim).labels


def tiny_forecast_job(*, epochs: int, workers: int, run_key: str):
    """A tiny forecast stage for Ray Train fits: ``epochs`` of 256 points on ``workers`` workers."""
    from orpr_ray.data.split import time_split
    from orpr_ray.train.stages import StageJob, forecast_points, sample_points

    cfg = tiny_config(num_workers=workers, torch_threads=1,
                      forecast={"epochs": epochs, "samples_per_epoch": 256, "lr": 3e-3})
    ds = tiny_dataset(cfg)
    split = time_split(ds.n_days, cfg.data.split)
    train, val = (forecast_points(ds, split, w, horizon=cfg.model.horizon_days, min_history=28)
                  for w in ("train", "val"))
    return StageJob(stage="forecast", config=cfg.model_dump(mode="json"), ds=ds, stats=tiny_stats(ds, cfg.model),
                    grid=cfg.label.grid, train=train, val=sample_points(val, 128, 0), run_key=run_key)
