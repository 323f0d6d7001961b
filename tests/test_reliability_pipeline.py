"""Faults of the pipeline driver and of its files, and the safe defaults of what it reads.

The driver of ``orpr pipeline`` is killed with SIGKILL (with the local Ray it started: its whole
process group) while the labelling stage runs; re-running the same command resumes after the last
finished stage and gives the labels of an uninterrupted run. A finished stage whose output is
changed on disk is redone, never read back as complete.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from orpr_ray.config import load_config
from orpr_ray.core.artifacts import read_manifest
from orpr_ray.core.errors import InputError
from orpr_ray.data.io import load_dataset
from orpr_ray.label.driver import run_labels
from orpr_ray.label.io import load_labels
from orpr_ray.pipeline import run_pipeline

REPO = Path(__file__).resolve().parents[1]
# Enough one-unit shards, one at a time, that the labelling stage lasts a few seconds: room to kill it.
OVERRIDES = ["data.synth.units=72", "label.shard_size=1", "label.max_in_flight=1"]
COMMAND = [sys.executable, "-m", "orpr_ray.cli", "pipeline", "--config", "jobs/tiny.yaml", "--until", "labels",
           "--num-cpus", "1", *(a for o in OVERRIDES for a in ("--set", o))]

SECRET = re.compile(r"(?i)(password|passwd|secret|api[_-]?key|access[_-]?key|token)\s*[:=]\s*\S+|AKIA[0-9A-Z]{16}"
                    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----")


def _pipeline(run_dir: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # its own local Ray, not the session's
    return subprocess.Popen([*COMMAND, "--out", str(run_dir)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _wait_for_shards(run_dir: Path, proc: subprocess.Popen, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while len(list((run_dir / "labels" / "labels").glob("shard-*.parquet"))) < count:
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        assert time.monotonic() < deadline, f"no {count} label shards after {timeout} s"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def killed_and_resumed(tmp_path_factory):
    """A run killed after its first label shards, then the same command again."""
    run_dir = tmp_path_factory.mktemp("pipeline_kill") / "run"
    proc = _pipeline(run_dir)
    try:
        _wait_for_shards(run_dir, proc, 2, timeout=240)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray processes it started
        proc.wait(timeout=60)
    at_kill = {"shards": sorted(p.name for p in (run_dir / "labels" / "labels").glob("shard-*.parquet")),
               "manifests": {s: read_manifest(run_dir / s) for s in ("data", "baseline", "labels")}}
    rerun = _pipeline(run_dir)
    output, _ = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, output[-3000:]
    return run_dir, at_kill, output


@pytest.mark.slow
@pytest.mark.ray
def test_killed_driver_resumes_after_the_last_finished_stage(killed_and_resumed, ray_session, tmp_path):
    run_dir, at_kill, output = killed_and_resumed
    manifests = at_kill["manifests"]
    assert manifests["data"] is not None and manifests["baseline"] is not None
    assert manifests["labels"] is None  # killed inside the stage: not finished
    assert "[1/3] data: already done" in output and "[2/3] baseline: already done" in output
    assert "[3/3] labels: running" in output and "[3/3] labels: done in" in output
    for stage in ("data", "baseline"):  # resumed, not redone
        assert read_manifest(run_dir / stage)["created"] == manifests[stage]["created"]
    labels = read_manifest(run_dir / "labels")
    assert labels["counts"]["resumed_shards"] >= len(at_kill["shards"]) >= 2
    # The same labels as an uninterrupted run of the same data and config.
    cfg = load_config(REPO / "jobs" / "tiny.yaml", OVERRIDES)
    clean = tmp_path / "clean"
    run_labels(load_dataset(run_dir / "data"), clean, label=cfg.label, sim=cfg.sim)
    pd.testing.assert_frame_equal(load_labels(run_dir / "labels"), load_labels(clean))
    # What a SIGKILL can leave is at most a hidden temporary file, never a file under its final name.
    for path in (run_dir / "labels").rglob("*"):
        assert path.is_dir() or path.name.startswith(".") or path.suffix in {".parquet", ".json", ".csv"}, path
    assert not SECRET.search(output)  # no secrets in what the pipeline prints


@pytest.mark.slow
@pytest.mark.ray
def test_changed_output_of_a_finished_stage_is_redone(killed_and_resumed, ray_session):
    run_dir, _, _ = killed_and_resumed
    out = run_dir / "labels"
    want = load_labels(out)
    cfg = load_config(REPO / "jobs" / "tiny.yaml", OVERRIDES)
    # A valid Parquet file with the wrong content (another shard's rows), and a truncated one.
    shards = sorted((out / "labels").glob("shard-*.parquet"))
    shards[3].write_bytes(shards[4].read_bytes())
    groups = out / "shards" / "groups-00005.parquet"
    groups.write_bytes(groups.read_bytes()[:100])
    assert read_manifest(out) is None  # checksums: the stage no longer counts as finished
    manifest = run_labels(load_dataset(run_dir / "data"), out, label=cfg.label, sim=cfg.sim)
    assert manifest["counts"]["computed_shards"] == 2  # exactly the two changed shards, redone
    pd.testing.assert_frame_equal(load_labels(out), want)
    assert read_manifest(out) is not None


@pytest.mark.ray
def test_a_rerun_reuses_a_stage_only_for_its_own_config_and_says_which_it_did(ray_session, tmp_path):
    run_dir = tmp_path / "run"

    def run(*overrides: str) -> tuple[dict, list[str]]:
        lines = []
        cfg = load_config(REPO / "jobs" / "tiny.yaml", list(overrides))
        return run_pipeline(cfg, run_dir, until="baseline", log=lines.append), lines

    _, lines = run()
    first = {stage: read_manifest(run_dir / stage) for stage in ("data", "baseline")}
    assert lines[0] == "[1/2] data: running" and lines[1].startswith("[1/2] data: done in")
    summary, lines = run()
    assert "[1/2] data: already done" in lines and "[2/2] baseline: already done" in lines
    assert all(info["resumed"] for info in summary["stages"].values())
    # A changed cost model redoes the baseline, and the log says it was redone, not reused.
    summary, lines = run("sim.lost_sales_penalty_share=0.5")
    assert "[1/2] data: already done" in lines and lines[-1].startswith("[2/2] baseline: done in")
    assert summary["stages"]["data"]["resumed"] and not summary["stages"]["baseline"]["resumed"]
    redone = read_manifest(run_dir / "baseline")
    assert redone["config"]["sim"]["lost_sales_penalty_share"] == 0.5 and redone != first["baseline"]
    # Another catalogue cannot reuse this run's dataset: a clear error, and nothing is rewritten.
    with pytest.raises(InputError, match=r"data/manifest.json.*another data source or config \(config differ\)"):
        run("data.synth.units=30")
    assert read_manifest(run_dir / "data") == first["data"] and read_manifest(run_dir / "baseline") == redone


def _call_arguments(text: str, start: int) -> str:
    """The text between the parenthesis at ``start`` and its matching closing one."""
    depth = 0
    for end in range(start, len(text)):
        depth += {"(": 1, ")": -1}.get(text[end], 0)
        if depth == 0:
            return text[start + 1:end]
    raise AssertionError(f"unbalanced call at {start}")


def test_no_pickle_is_ever_loaded():
    """Checkpoints go through torch.load(weights_only=True); nothing reads pickles (labels are Parquet/JSON)."""
    unsafe = re.compile(r"pickle\.loads?\(|read_pickle\(|joblib\.load\(|cloudpickle\.loads?\(|dill\.loads?\(")
    calls = 0
    for path in sorted((REPO / "orpr_ray").rglob("*.py")):
        text = path.read_text()
        assert not unsafe.search(text), path
        for call in re.finditer(r"torch\.load\(", text):
            calls += 1
            assert "weights_only=True" in _call_arguments(text, call.end() - 1), (path, call.start())
    assert calls > 0


def test_no_secrets_in_shipped_configs():
    files = [REPO / "cluster.yaml", *(REPO / "jobs").rglob("*.yaml"), *(REPO / "tune_configs").rglob("*.yaml")]
    assert len(files) > 3
    for path in files:
        assert not SECRET.search(path.read_text()), path


@pytest.mark.ray
def test_local_ray_starts_without_its_dashboard(ray_session):
    """The dashboard/Jobs API runs code for whoever reaches it: a local Ray (ensure_ray) does not start it."""
    from ray._private.worker import global_worker

    assert not global_worker.node.address_info.get("webui_url")



@pytest.mark.ray
def test_workers_of_a_local_ray_drop_only_the_cleaners_missing_state_api_warning(ray_session):
    """Without a dashboard the cleaner's State API query fails every second of training; the workers
    of a local Ray drop that one message and keep the cleaner's other warnings."""
    from orpr_ray.core.ray_env import NO_STATE_API_WARNING, TRAIN_CLEANER_LOGGER

    @ray_session.remote
    def passes(message: str) -> bool:  # defined here so that it travels by value, not by module name
        import logging

        logger = logging.getLogger(TRAIN_CLEANER_LOGGER)
        return logger.filter(logger.makeRecord(TRAIN_CLEANER_LOGGER, logging.WARNING, "x", 0, message, None, None))

    assert ray_session.get(passes.remote(NO_STATE_API_WARNING + ". State API may be temporarily unavailable.")) is False
    assert ray_session.get(passes.remote("Detected that the Ray Train controller actor (x) is dead.")) is True
