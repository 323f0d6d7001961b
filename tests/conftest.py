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


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """The serving tests' tiny checkpoint: (its directory, the catalogue it was made from)."""
    from serve_support import make_checkpoint  # imported here: it loads torch, which most tests do not need

    directory = tmp_path_factory.mktemp("serve_ckpt")
    return directory, make_checkpoint(directory)


@pytest.fixture(scope="module")
def units(checkpoint):
    """One serving request unit per unit of the checkpoint's catalogue."""
    from serve_support import request_units

    return request_units(checkpoint[1])


@pytest.fixture(scope="session")
def m5_dev_dir() -> Path:
    folder = SHARED_DATA / "m5_dev"
    if not (folder / "sales_train_validation.csv").is_file():
        pytest.skip("the M5 subset (shared/data/m5_dev beside the checkout) is absent")
    return folder
