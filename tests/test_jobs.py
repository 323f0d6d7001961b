"""A real local head (`ray start --head` on loopback) runs the tiny pipeline submitted with `ray job submit`.

The head runs in its own process group with its own temp dir and ports, so it neither joins nor
stops the test session's Ray; the test stops exactly that head.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from orpr_ray.core.artifacts import read_manifest
from orpr_ray.pipeline import STAGE_NAMES

REPO = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).with_name("ray"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


@pytest.fixture(scope="module")
def local_head():
    temp_dir = tempfile.mkdtemp(prefix="orpr-head-")
    dashboard_port = _free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    head = subprocess.Popen(
        [RAY, "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={_free_port()}",
         "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard_port}",
         "--num-cpus=2", f"--temp-dir={temp_dir}", "--disable-usage-stats",
         # Own ports for every agent: the test session's Ray already holds the defaults.
         *(f"--{flag}={_free_port()}" for flag in (
             "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "runtime-env-agent-port",
             "metrics-export-port", "ray-client-server-port"))],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        _wait_for_port(dashboard_port, timeout=90)
        yield f"http://127.0.0.1:{dashboard_port}", env
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)


def _submit(address: str, env: dict, command: list[str], *, agent_wait: float = 60) -> subprocess.CompletedProcess:
    """``ray job submit`` and wait; retried while the head's job agent is still starting (bounded)."""
    deadline = time.monotonic() + agent_wait
    while True:
        done = subprocess.run(
            [RAY, "job", "submit", "--address", address, "--working-dir", ".",
             "--runtime-env", "jobs/runtime_env.yaml", "--", *command],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        if "No available agent" not in done.stderr or time.monotonic() > deadline:
            return done
        time.sleep(2)


@pytest.fixture(scope="module")
def submitted_run(local_head, tmp_path_factory):
    address, env = local_head
    run_dir = tmp_path_factory.mktemp("job") / "run"
    submit = _submit(address, env, [sys.executable, "-m", "orpr_ray.cli", "pipeline", "--config",
                                    "jobs/tiny.yaml", "--out", str(run_dir)])
    return run_dir, submit


@pytest.mark.slow
def test_submitted_pipeline_job_writes_its_artifacts(submitted_run):
    run_dir, submit = submitted_run
    log = submit.stdout + submit.stderr
    assert submit.returncode == 0, log[-4000:]
    assert "succeeded" in log
    for stage in STAGE_NAMES:
        manifest = read_manifest(run_dir / stage)
        assert manifest is not None, f"stage {stage} left no valid manifest\n{log[-3000:]}"
    assert (run_dir / "pipeline.json").is_file()
    assert (run_dir / "report" / "report.html").stat().st_size > 10_000
    assert "incumbent" in log and "report:" in log


@pytest.mark.slow
def test_rerun_resumes_every_finished_stage(submitted_run, local_head):
    run_dir, submit = submitted_run
    assert submit.returncode == 0
    _, env = local_head
    before = {stage: read_manifest(run_dir / stage)["created"] for stage in STAGE_NAMES}
    rerun = subprocess.run([sys.executable, "-m", "orpr_ray.cli", "pipeline", "--config", "jobs/tiny.yaml",
                            "--out", str(run_dir), "--num-cpus", "1"],
                           cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert rerun.stdout.count("already done") == len(STAGE_NAMES)
    assert {stage: read_manifest(run_dir / stage)["created"] for stage in STAGE_NAMES} == before
