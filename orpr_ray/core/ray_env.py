"""Start or join Ray the same way from the CLI, the jobs and the tests."""
from __future__ import annotations

import os
import tempfile

# Local runs need no auth token, no usage reporting, and a short session path (unix socket limits).
LOCAL_RAY_ENV = {
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2",
}


def ensure_ray(num_cpus: int | None = None, address: str | None = None):
    """Join the cluster this process was submitted to, else start a local Ray in-process.

    ``address`` (or ``RAY_ADDRESS``, set by ``ray job submit``) joins an existing cluster;
    otherwise a local instance with ``num_cpus`` logical CPUs and no dashboard is started.
    Returns the ``ray`` module, already initialised.
    """
    for key, value in LOCAL_RAY_ENV.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("RAY_TMPDIR", os.path.join(tempfile.gettempdir(), "orpr-ray"))
    import ray

    if ray.is_initialized():
        return ray
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=True)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=True)
    return ray
