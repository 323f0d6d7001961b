"""A tiny RL world shared by the RL tests: synthetic catalogue, OR labels, a small untrained network."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from orpr_ray.config import OrprConfig
from orpr_ray.data.dataset import Dataset
from orpr_ray.data.split import TimeSplit, time_split
from orpr_ray.data.synth import synthesize
from orpr_ray.label.candidates import label_horizon
from orpr_ray.label.driver import label_shard, plan_shards
from orpr_ray.model.checkpoint import CheckpointMeta
from orpr_ray.model.features import FeatureStats, PanelFeatures, split_extra_attributes
from orpr_ray.model.network import build_model
from orpr_ray.rl.learner import RLJob, sample_states, states_from_labels
from orpr_ray.train.report import naive_label_predictions, prepare_labels
from orpr_ray.train.stages import label_points

TINY_STREAM = {"dim": 16, "layers": 1, "heads": 2, "ff_dim": 32}
TINY = {
    "seed": 5,
    "data": {"synth": {"units": 24, "days": 200, "categories": 2, "dcs": 2, "promo_share": 0.15},
             "split": {"val_days": 28, "test_days": 42}},
    "label": {"v_max": 20, "shard_size": 50},
    "model": {"history_days": 28, "horizon_days": 14, "sales": TINY_STREAM, "attributes": TINY_STREAM,
              "objectives": TINY_STREAM, "fused_dim": 32, "head_hidden": 32, "latent_dim": 4},
    "rl": {"k": 4, "batch_states": 16, "steps": 4, "eval_every": 2, "lr": 1e-3, "val_points": 64},
}


@dataclass
class World:
    cfg: OrprConfig
    ds: Dataset
    labels: pd.DataFrame  # prepared like train.runner.load_inputs does
    split: TimeSplit
    meta: CheckpointMeta
    state: dict[str, torch.Tensor]

    def job(self, cfg: OrprConfig | None = None, labels: pd.DataFrame | None = None, **kwargs) -> RLJob:
        cfg = cfg or self.cfg
        labels = self.labels if labels is None else labels
        val = sample_states(states_from_labels(labels, self.split, "val", cfg), cfg.rl.val_points, cfg.seed)
        return RLJob(config=cfg.model_dump(mode="json"), ds=self.ds, meta=self.meta, init_state=self.state,
                     train=states_from_labels(labels, self.split, "train", cfg), val=val, **kwargs)


def tiny_config(**rl) -> OrprConfig:
    tree = {**TINY, "rl": {**TINY["rl"], **rl}}
    return OrprConfig.model_validate(tree)


def in_memory_labels(ds: Dataset, cfg: OrprConfig) -> pd.DataFrame:
    """OR labels computed in this process (the Ray driver gives the same rows; see test_label_driver)."""
    raw = pd.concat([label_shard(ds, u, d, label=cfg.label, sim=cfg.sim).labels
                     for u, d in plan_shards(ds, cfg.label, cfg.sim)])
    return raw.sort_values(["unit", "day"]).reset_index(drop=True)


def prepared(raw: pd.DataFrame, ds: Dataset, cfg: OrprConfig, split: TimeSplit) -> pd.DataFrame:
    labels = prepare_labels(raw, ds, cfg.label.grid, horizon=label_horizon(ds, cfg.label),
                            alpha_source=cfg.train.alpha_source, source="labels")
    return labels.join(naive_label_predictions(labels, split, cfg.label.grid))


def make_world(cfg: OrprConfig | None = None) -> World:
    cfg = cfg or tiny_config()
    ds = synthesize(cfg.data.synth, cfg.seed)
    split = time_split(ds.n_days, cfg.data.split, min_train_days=56)
    labels = prepared(in_memory_labels(ds, cfg), ds, cfg, split)
    points = label_points(labels, split, "train")
    numeric, categorical = split_extra_attributes(ds)
    stats = FeatureStats.fit(PanelFeatures(ds, cfg.model).raw(points.unit, points.day, points.known), numeric,
                             categorical, cfg.model)
    meta = CheckpointMeta(model_config=cfg.model, stats=stats, grid=cfg.label.grid, stage="finetune")
    model = build_model(cfg.model, grid_size=len(cfg.label.grid), n_extra_numeric=len(numeric),
                        n_extra_categorical=len(categorical), seed=cfg.seed)
    return World(cfg=cfg, ds=ds, labels=labels, split=split, meta=meta, state=model.state_dict())


def materialise(world: World, root: Path) -> dict[str, Path]:
    """The world on disk as the stages leave it: data/, labels/ (a finished label run, on Ray) and
    start/ (the policy's checkpoint with a finetune-style manifest naming both). Needs Ray."""
    from orpr_ray.core.artifacts import write_manifest
    from orpr_ray.data.io import write_dataset
    from orpr_ray.label.driver import run_labels
    from orpr_ray.model.checkpoint import build_from_checkpoint, save_checkpoint

    paths = {"data": root / "data", "labels": root / "labels", "start": root / "start"}
    write_dataset(world.ds, paths["data"])
    run_labels(world.ds, paths["labels"], label=world.cfg.label, sim=world.cfg.sim)
    save_checkpoint(paths["start"] / "policy", build_from_checkpoint(world.state, world.meta), world.meta)
    write_manifest(paths["start"], stage="finetune", config=world.cfg.model_dump(mode="json"),
                   inputs={"data": str(paths["data"]), "labels": str(paths["labels"])},
                   outputs=["policy/model.pt"])
    return paths
