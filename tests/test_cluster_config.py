"""cluster.yaml passes Ray's own launcher validation and keeps the dashboard/jobs port private."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

CLUSTER_YAML = Path(__file__).resolve().parents[1] / "cluster.yaml"


def _validate(config: dict) -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(copy.deepcopy(config)))


@pytest.fixture(scope="module")
def cluster_config() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


def test_cluster_yaml_validates(cluster_config):
    _validate(cluster_config)
    kinds = cluster_config["available_node_types"]
    assert cluster_config["head_node_type"] in kinds
    assert {"cpu_worker", "gpu_worker"} <= set(kinds), "CPU workers label, a GPU worker type trains"


def test_validation_catches_a_broken_config(cluster_config):
    broken = copy.deepcopy(cluster_config)
    broken["head_node_type"] = "no_such_type"
    with pytest.raises(ValueError, match="head_node_type"):
        _validate(broken)


def test_dashboard_and_jobs_port_are_not_exposed(cluster_config):
    head_start = " ".join(cluster_config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start
    opened = [p["FromPort"] for p in cluster_config["provider"]["security_group"]["IpPermissions"]]
    assert opened == [22], "only SSH may be opened; the dashboard is reached by port-forwarding"
