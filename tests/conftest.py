"""Shared fixtures. Ray starts once per test session (starting it costs seconds), and only when a
test asks for it."""
from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def ray_session():
    from orpr_ray.core.ray_env import ensure_ray

    ray = ensure_ray(num_cpus=2)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def m5_dev_dir() -> Path:
    folder = SHARED_DATA / "m5_dev"
    if not (folder / "sales_train_validation.csv").is_file():
        pytest.skip("the M5 subset (shared/data/m5_dev beside the checkout) is absent")
    return folder
