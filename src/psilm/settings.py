"""The strict base every settings model shares: unknown keys are errors, not silently dropped."""

from pydantic import BaseModel, ConfigDict


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)
