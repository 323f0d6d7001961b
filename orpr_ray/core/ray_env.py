"""Start or join Ray the same way from the CLI, the jobs and the tests."""
from __future__ import annotations

import logging
import os
import tempfile

# Local runs need no auth token, no usage reporting, and a short session path (unix socket limits).
LOCAL_RAY_ENV = {
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2",
}


# Ray Train's placement-group cleaner asks the State API, served by the dashboard, whether the
# training controller is alive, and warns every second when there is none.
TRAIN_CLEANER_LOGGER = "ray.train.v2._internal.execution.controller.placement_group_cleaner"
NO_STATE_API_WARNING = "Failed to query Ray Train Controller actor state"


class _DropMessage(logging.Filter):
    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefix)


def quiet_missing_state_api() -> None:
    """Worker setup hook of a local Ray: it has no dashboard (so no State API) on purpose, and the
    cleaner's warning would repeat every second of every training run."""
    logging.getLogger(TRAIN_CLEANER_LOGGER).addFilter(_DropMessage(NO_STATE_API_WARNING))


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
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=True,
                 runtime_env={"worker_process_setup_hook": f"{__name__}.{quiet_missing_state_api.__name__}"})
    return ray
