"""A Ray Train worker killed with SIGKILL mid-training (fault hook ``ORPR_FAULT_KILL_TRAIN_EPOCH``):
Ray Train restarts it, and it resumes from the last checkpoint, not from scratch. One TorchTrainer fit
with one worker, killed after its checkpoint of epoch 2 of 3."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from model_helpers import tiny_forecast_job
from orpr_ray.model.checkpoint import read_checkpoint
from orpr_ray.train.runner import FAULT_ENV, FAULT_MARKER, train_stage

pytestmark = [pytest.mark.slow, pytest.mark.ray]

EPOCHS, KILL_EPOCH = 3, 2
RUN_NAME = "forecast-fault-test"


def _running(pid: int) -> bool:
    """Whether the process exists and is not a zombie (Linux /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_killed_worker_resumes_from_its_last_checkpoint(ray_session, tmp_path, monkeypatch):
    monkeypatch.setenv(FAULT_ENV, str(KILL_EPOCH))  # read by the driver, handed to the workers
    storage = tmp_path / "ray"
    dest = train_stage(tiny_forecast_job(epochs=EPOCHS, workers=1, run_key="fault-test"), storage=storage,
                       run_name=RUN_NAME, dest=tmp_path / "model")

    killed = json.loads((storage / RUN_NAME / FAULT_MARKER).read_text())
    assert killed["metrics"]["epoch"] == KILL_EPOCH
    assert not _running(killed["pid"])  # the first worker really died; the run finished on another
    _, meta = read_checkpoint(dest)
    history = meta.training["history"]
    assert [h["epoch"] for h in history] == list(range(1, EPOCHS + 1))  # every epoch once, up to the total
    # Epoch 2's record is the killed worker's own report, its measured samples/s included: the
    # restarted worker took epochs 1-2 from the checkpoint and trained epoch 3 only. Resumed from
    # scratch (or from epoch 1's checkpoint) it would have re-run epoch 2 and recorded new timings.
    assert history[KILL_EPOCH - 1] == killed["metrics"]
