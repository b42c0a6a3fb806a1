"""The pydantic base every configuration section derives from.

Kept apart from ``daemon.config`` so that each stage package can declare its own section
without importing the whole configuration (and without import cycles).
"""

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """Unknown keys are errors: a typo must not silently fall back to a default."""

    model_config = ConfigDict(extra="forbid", frozen=True)
