"""The RLOO sweep's driver killed with SIGKILL mid-training (not an exception raised in the trial):
re-running the same `orpr sweep` command restores the Tune experiment, and the trial continues
from its last checkpoint: its step counter goes on from where the kill left it, to the end."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from rl_helpers import make_world, materialise

from orpr_ray.core.artifacts import read_manifest

pytestmark = [pytest.mark.ray, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
STEPS, EVAL_EVERY = 24, 2  # 12 reports, each with a checkpoint: room to kill between two of them


def _sweep(paths: dict, space: Path, out: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # its own local Ray
    return subprocess.Popen(
        [sys.executable, "-m", "orpr_ray.cli", "sweep", "--space", str(space), "--checkpoint", str(paths["start"]),
         "--out", str(out), "--set", f"rl.steps={STEPS}", "--set", f"rl.eval_every={EVAL_EVERY}",
         "--set", "rl.sweep.grace_period=100", "--set", "rl.sweep.max_concurrent=1"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _reported_steps(out: Path) -> list[int]:
    """Steps the trial has reported so far, as the Tune driver recorded them (progress.csv)."""
    for progress in (out / "tune").glob("*/*/progress.csv"):
        try:
            return pd.read_csv(progress)["step"].tolist()
        except (pd.errors.EmptyDataError, KeyError):
            return []
    return []


def test_killed_sweep_resumes_each_trial_from_its_last_checkpoint(ray_session, tmp_path):
    paths = materialise(make_world(), tmp_path / "world")
    space = tmp_path / "space.yaml"
    space.write_text("omega: {grid: [0.5]}\nbeta: {grid: [0.05]}\n")
    out = tmp_path / "sweep"
    proc = _sweep(paths, space, out)
    try:
        deadline = time.monotonic() + 300
        while len(_reported_steps(out)) < 2:  # two reports (with checkpoints) recorded: mid-training
            assert proc.poll() is None, proc.stdout.read()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint after 300 s"
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver, its Ray and the trial's worker
        proc.wait(timeout=60)
    assert read_manifest(out) is None
    progress = next((out / "tune").glob("*/*/progress.csv"))
    steps_at_kill = _reported_steps(out)
    assert steps_at_kill and steps_at_kill[-1] < STEPS, steps_at_kill

    rerun = _sweep(paths, space, out)
    output, _ = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, output[-3000:]
    assert "resuming the interrupted sweep" in output
    steps = pd.read_csv(progress)["step"].tolist()
    assert steps[-1] == STEPS
    # Continued, not restarted: no step is reported twice except those after the last checkpoint
    # before the kill (redone from that checkpoint), and step EVAL_EVERY is reported once.
    assert steps.count(EVAL_EVERY) == 1, steps
    assert sorted(set(steps)) == list(range(EVAL_EVERY, STEPS + 1, EVAL_EVERY)), steps
    trials = pd.read_csv(out / "trials.csv")
    assert len(trials) == 1 and int(trials["step"].iloc[0]) == STEPS and not trials["error"].any()
