"""The strict pydantic base every config section and manifest model derives from."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """Unknown keys are rejected and assignments are validated, so a typo never passes silently."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)
