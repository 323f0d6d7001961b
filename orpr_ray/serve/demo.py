"""An untrained but real checkpoint, for tests, the load benchmark and smoke runs of the service.

It is written by the model package's own save function with statistics fitted by the training
feature code, so the service cannot tell it from a trained one; only its decisions are arbitrary.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from orpr_ray.data.dataset import Dataset
from orpr_ray.model.checkpoint import CheckpointMeta, save_checkpoint
from orpr_ray.model.config import ModelConfig
from orpr_ray.model.features import FeatureStats, PanelFeatures, split_extra_attributes
from orpr_ray.model.network import build_model


def write_untrained_checkpoint(directory: str | Path, ds: Dataset, model_cfg: ModelConfig, grid: list[int], *,
                               seed: int = 0, points: int = 2000) -> Path:
    """``directory/model.pt`` of a freshly initialised network; statistics from ``points`` random
    decision points of ``ds`` (after the first ``history_days`` days)."""
    rng = np.random.default_rng(seed)
    unit = rng.integers(0, ds.n_units, points)
    day = rng.integers(min(model_cfg.history_days, ds.n_days - 1), ds.n_days, points)
    numeric, categorical = split_extra_attributes(ds)
    stats = FeatureStats.fit(PanelFeatures(ds, model_cfg).raw(unit, day), numeric, categorical, model_cfg)
    model = build_model(model_cfg, grid_size=len(grid), n_extra_numeric=len(numeric),
                        n_extra_categorical=len(categorical), seed=seed)
    meta = CheckpointMeta(model_config=model_cfg, stats=stats, grid=list(grid), stage="untrained",
                          sources={"data": {"kind": "data", "meta": ds.meta.get("kind", "unknown")}})
    return save_checkpoint(directory, model.eval(), meta)
