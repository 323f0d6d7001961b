"""Shared pieces of the serving tests: a tiny real checkpoint, request units, the service on a free port,
and the in-process answer (the ``checkpoint`` and ``units`` fixtures built from them are in conftest.py).

The expected answer is computed here from the policy and the simulator's own functions, not by
the service's engine, so the tests compare two paths to the same decision.
"""
from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from orpr_ray.config import OrprConfig
from orpr_ray.data.config import SynthConfig
from orpr_ray.data.dataset import Dataset
from orpr_ray.data.synth import synthesize
from orpr_ray.model.checkpoint import build_from_checkpoint, read_checkpoint, save_checkpoint
from orpr_ray.model.config import ModelConfig, StreamConfig
from orpr_ray.model.features import UnitRecord
from orpr_ray.model.policy import Policy
from orpr_ray.serve.client import units_from_dataset
from orpr_ray.serve.config import ServeConfig
from orpr_ray.serve.demo import write_untrained_checkpoint
from orpr_ray.sim.engine import inventory_days_to_levels
from orpr_ray.sim.policies import trailing_mean_demand

_STREAM = StreamConfig(dim=16, layers=1, heads=2, ff_dim=32)
TINY = ModelConfig(history_days=28, horizon_days=14, sales=_STREAM, attributes=_STREAM, objectives=_STREAM,
                   fused_dim=32, head_hidden=32, latent_dim=4, dropout=0.0)
GRID = list(range(1, 31))
WINDOW = 28  # sim.demand_window_days default


def make_checkpoint(directory: Path) -> Dataset:
    """A tiny untrained network saved by the model package; its logits are sharpened so that the
    chosen target is never a near-tie (decisions compared across processes must not flip on float noise)."""
    ds = synthesize(SynthConfig(units=40, days=120), seed=3)
    write_untrained_checkpoint(directory, ds, TINY, GRID, seed=3)
    state, meta = read_checkpoint(directory)
    model = build_from_checkpoint(state, meta)
    with torch.no_grad():
        model.decoder[-1].weight.mul_(200.0)
    save_checkpoint(directory, model, meta)
    return ds


def request_units(ds: Dataset, seed: int = 0) -> list[dict]:
    """One request unit per unit of ``ds`` (via the client's dataset conversion), with varied stock."""
    rng = np.random.default_rng(seed)
    stock = pd.DataFrame({"sku": ds.units["sku"], "dc": ds.units["dc"],
                          "on_hand": rng.integers(0, 20, ds.n_units).astype(float),
                          "on_order": rng.integers(0, 5, ds.n_units).astype(float)})
    return units_from_dataset(ds, stock, TINY)


def free_port() -> int:
    """A loopback port the OS just handed out, so parallel or repeated runs do not collide."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_service(directory: Path, **serve) -> Iterator[str]:
    """The decision service for the checkpoint in ``directory`` on the session's Ray, on a free loopback
    port with the ``serve`` settings; yields its base URL and shuts Serve down afterwards."""
    from ray import serve as ray_serve

    from orpr_ray.serve.app import run_service

    port = free_port()
    run_service(directory, OrprConfig(serve=ServeConfig(port=port, **serve)))
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        ray_serve.shutdown()


def expected(policy: Policy, units: list[dict]) -> list[dict]:
    """The in-process decision per unit: policy forward pass + the simulator's order rule."""
    records = [UnitRecord.model_validate({k: v for k, v in u.items() if k not in ("on_hand", "on_order")})
               for u in units]
    decision = policy.decide(policy.features_from_records(records))
    out = []
    for i, unit in enumerate(units):
        series = np.asarray(unit["sales"] + [0.0])[None, :]  # the day after the sales is the decision day
        d_hat = trailing_mean_demand(series, WINDOW)[0, -1]
        level = inventory_days_to_levels(decision.v[i], d_hat)
        out.append({"inventory_days": int(decision.v[i]), "probs": decision.probs[i], "forecast": decision.forecast[i],
                    "daily_demand": d_hat, "order_up_to_level": float(level),
                    "order_quantity": max(0.0, float(level) - unit["on_hand"] - unit["on_order"])})
    return out


def assert_matches(answer: dict, want: dict, grid: list[int]) -> None:
    """An HTTP answer equals the in-process decision (floats up to the noise of another batch layout)."""
    assert answer["inventory_days"] == want["inventory_days"]
    assert answer["order_up_to_level"] == want["order_up_to_level"]
    assert answer["order_quantity"] == want["order_quantity"]
    assert abs(answer["daily_demand"] - want["daily_demand"]) < 1e-9
    np.testing.assert_allclose(answer["forecast"], want["forecast"], rtol=1e-4, atol=1e-5)
    top = answer["top"]
    assert top[0]["inventory_days"] == want["inventory_days"]
    probs = [want["probs"][grid.index(t["inventory_days"])] for t in top]
    np.testing.assert_allclose([t["probability"] for t in top], probs, rtol=1e-4, atol=1e-6)
    assert all(a["probability"] >= b["probability"] for a, b in zip(top, top[1:]))
