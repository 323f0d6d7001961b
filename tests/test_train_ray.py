"""A tiny stage on Ray Train with two workers: sharded data, checkpoints through Ray, resume.

The suite's only TorchTrainer fits (each costs 15-25 s of start-up): one fit of one epoch, and a
second fit of the same run asking for two epochs, which must resume from the first's checkpoint.
"""
from __future__ import annotations

import pytest

from model_helpers import tiny_forecast_job
from orpr_ray.model.checkpoint import read_checkpoint
from orpr_ray.model.policy import Policy
from orpr_ray.train.runner import train_stage

pytestmark = [pytest.mark.slow, pytest.mark.ray]


def test_two_workers_train_checkpoint_and_resume(ray_session, tmp_path):
    storage = tmp_path / "ray"
    first = train_stage(tiny_forecast_job(epochs=1, workers=2, run_key="ray-test"), storage=storage,
                        run_name="forecast-ray-test", dest=tmp_path / "first")
    _, meta = read_checkpoint(first)
    (epoch1,) = meta.training["history"]
    assert epoch1["world_size"] == 2 and epoch1["points_per_worker"] == 128  # 256 points split by rank
    assert epoch1["val_wape"] > 0 and "optimizer" not in meta.training  # exported without optimizer state

    second = train_stage(tiny_forecast_job(epochs=2, workers=2, run_key="ray-test"), storage=storage,
                         run_name="forecast-ray-test", dest=tmp_path / "second")
    _, resumed = read_checkpoint(second)
    assert [h["epoch"] for h in resumed.training["history"]] == [1, 2]
    assert resumed.training["history"][0] == epoch1  # epoch 1 came from the checkpoint, not a rerun
    policy = Policy.load(second)
    assert policy.meta.stage == "forecast" and policy.grid.tolist() == list(range(1, 31))
