"""Config of the OR labelling stage."""
from __future__ import annotations

from pydantic import Field

from orpr_ray.core.schema import Strict


class LabelConfig(Strict):
    v_min: int = Field(1, ge=0, description="smallest inventory-days target in the grid")
    v_max: int = Field(60, ge=1, description="largest inventory-days target in the grid")
