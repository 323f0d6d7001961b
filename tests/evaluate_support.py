"""Tiny run folders for the evaluation tests: the stage outputs the backtest and the report read.

``data/`` is written by the data layer, ``labels/`` by the real labelling driver (needs Ray); the
network stages are real but untrained checkpoints (training is not what these tests are about):
``pretrain/`` and ``rl/`` each hold a freshly initialised network with feature statistics fitted
the way the trainer fits them, and a manifest naming their inputs like the real stages write.
"""
from __future__ import annotations

from pathlib import Path

from rl_helpers import TINY as RL_TINY

from orpr_ray.config import OrprConfig
from orpr_ray.core.artifacts import write_manifest
from orpr_ray.data.io import load_dataset, write_dataset
from orpr_ray.data.synth import synthesize
from orpr_ray.model.checkpoint import CHECKPOINT_FILE, CheckpointMeta, model_for, save_checkpoint

# The RL tests' tiny world with this suite's own seed and small evaluation budgets. Of its RL settings only
# steps x batch_states x k matter here (the PPO baseline's sample budget); eval_every, lr and val_points are
# read only while RLOO trains, which no evaluation test does.
TINY = {
    **RL_TINY,
    "seed": 7,
    "evaluate": {"bootstrap_samples": 200, "frontier_targets": [0.9, 0.99], "trajectory_units": 3,
                 "ppo": {"enabled": False, "train_batch_size": 256, "minibatch_size": 64, "num_epochs": 2,
                         "hidden": [16], "envs_per_runner": 4}},
}


def tiny_config(**sections) -> OrprConfig:
    tree = {**TINY, **{k: {**TINY.get(k, {}), **v} for k, v in sections.items()}}
    return OrprConfig.model_validate(tree)


def write_data(cfg: OrprConfig, run_dir: Path) -> Path:
    write_dataset(synthesize(cfg.data.synth, cfg.seed), run_dir / "data")
    return run_dir


def write_labels(cfg: OrprConfig, run_dir: Path) -> None:
    """The real labelling driver (Ray tasks) into ``run_dir/labels``."""
    from orpr_ray.label.driver import run_labels

    run_labels(load_dataset(run_dir / "data"), run_dir / "labels", label=cfg.label, sim=cfg.sim,
               config=cfg.model_dump(mode="json"), source=str(run_dir / "data"))


def write_network(cfg: OrprConfig, run_dir: Path, folder: str, stage: str, seed: int) -> Path:
    """An untrained network whose statistics are fitted like the trainer's, saved as ``stage`` output."""
    from orpr_ray.train.runner import fit_stats, load_inputs

    inputs = load_inputs(cfg, run_dir / "data", run_dir / "labels")
    meta = CheckpointMeta(model_config=cfg.model, stats=fit_stats(inputs, cfg), grid=cfg.label.grid, stage=stage)
    out = run_dir / folder
    save_checkpoint(out / "policy", model_for(meta, seed=seed), meta)
    write_manifest(out, stage=stage, config=cfg.model_dump(mode="json"),
                   inputs={"data": str((run_dir / "data").resolve()), "labels": str((run_dir / "labels").resolve())},
                   outputs=[f"policy/{CHECKPOINT_FILE}"])
    return out
