"""Config of the decision service: where it listens, how many replicas, how requests are batched.

The request limits (batch size, history length) are part of the HTTP contract, not of the
deployment, so they live in ``orpr_ray.serve.schemas`` and appear in the OpenAPI document.
"""
from __future__ import annotations

from pydantic import Field, model_validator

from orpr_ray.core.schema import Strict


class ServeConfig(Strict):
    host: str = Field("127.0.0.1", description="address the HTTP proxy binds; loopback by default, so the "
                                               "service is not reachable from the network until asked "
                                               "(docs/SERVING.md)")
    port: int = Field(8000, ge=1, le=65535, description="HTTP port of the proxy")
    replicas: int = Field(1, ge=1, description="replicas of the decision deployment (one model copy each)")
    replica_cpus: float = Field(1.0, gt=0, description="logical CPUs Ray reserves per replica")
    torch_threads: int = Field(1, ge=1, description="torch intra-op threads per replica: 1 when replicas, the "
                                                    "HTTP proxy and the clients share a few cores")
    max_ongoing_requests: int = Field(64, ge=1, description="requests a replica accepts at once; must exceed "
                                                            "max_batch_size or batches never fill")
    batching: bool = Field(True, description="share one forward pass among concurrent single-unit requests "
                                             "(@serve.batch); off = one forward pass per request")
    max_batch_size: int = Field(32, ge=1, description="most single-unit requests in one shared forward pass")
    batch_wait_timeout_s: float = Field(0.005, ge=0, description="longest wait for a batch to fill")
    chunk_units: int = Field(512, ge=1, description="units per forward pass inside one batch request "
                                                    "(bounds the activations' memory)")
    top_k: int = Field(5, ge=1, description="grid targets with the highest probabilities in each answer")

    @model_validator(mode="after")
    def _batches_can_fill(self) -> "ServeConfig":
        if self.batching and self.max_ongoing_requests < self.max_batch_size:
            raise ValueError(f"max_ongoing_requests ({self.max_ongoing_requests}) is below max_batch_size "
                             f"({self.max_batch_size}): a replica would never hold a full batch")
        return self
