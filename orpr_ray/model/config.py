"""Config of the ORPR network and of the features it reads (one section: a checkpoint stores both)."""
from __future__ import annotations

from pydantic import Field, model_validator

from orpr_ray.core.schema import Strict


class StreamConfig(Strict):
    """One Transformer encoder: token width, depth, attention heads and feed-forward width."""

    dim: int = Field(64, ge=8, description="token width (d_model)")
    layers: int = Field(2, ge=1, description="number of Transformer encoder layers")
    heads: int = Field(4, ge=1, description="attention heads; must divide dim")
    ff_dim: int = Field(256, ge=8, description="feed-forward width inside each layer")

    @model_validator(mode="after")
    def _heads_divide_dim(self) -> "StreamConfig":
        if self.dim % self.heads:
            raise ValueError(f"heads ({self.heads}) must divide dim ({self.dim})")
        return self


class ModelConfig(Strict):
    # Features: what the three streams see at a decision date.
    history_days: int = Field(90, ge=7, description="days of sales history in the sales stream (T)")
    horizon_days: int = Field(28, ge=1, description="days ahead: known promo flags in the sales stream and "
                                                     "the forecast length of the sales head")
    patch_days: int = Field(7, ge=1, description="days per sales-stream token (weekly patches keep the "
                                                 "sequence short on CPUs)")
    min_scale: float = Field(0.1, gt=0, description="floor of the per-unit sales scale (units/day), so a "
                                                    "unit without recent sales is not divided by zero")
    category_buckets: int = Field(64, ge=1, description="category embedding rows (index 0 = unknown category)")
    dc_buckets: int = Field(32, ge=1, description="DC embedding rows (index 0 = unknown DC)")
    extra_buckets: int = Field(64, ge=2, description="embedding rows per text extra attribute (index 0 = unknown "
                                                 "or rare value)")
    # Network sizes; the defaults give about 0.94M parameters (grid of 60 targets).
    sales: StreamConfig = Field(default_factory=lambda: StreamConfig(dim=128, layers=2, heads=4, ff_dim=256))
    attributes: StreamConfig = Field(default_factory=StreamConfig)
    objectives: StreamConfig = Field(default_factory=StreamConfig)
    fused_dim: int = Field(256, ge=8, description="width of the fused state the heads read")
    head_hidden: int = Field(320, ge=8, description="hidden width of the sales and decision heads")
    latent_dim: int = Field(32, ge=1, description="size of the decision head's latent z")
    dropout: float = Field(0.1, ge=0, lt=1)
