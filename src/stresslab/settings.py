"""The base of every settings model: unknown keys are errors, values are frozen."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """A pydantic model that refuses unknown keys and cannot be changed after validation."""

    model_config = ConfigDict(extra="forbid", frozen=True)
