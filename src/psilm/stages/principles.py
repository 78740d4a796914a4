"""Stage 1: a teacher writes task-completion principles at several levels."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from psilm.settings import Settings

Level = Literal["task", "category", "error"]


class PrinciplesSettings(Settings):
    # --- which levels (each switchable, so each can be measured)
    levels: list[Level] = Field(default_factory=lambda: ["task", "category", "error"])
    # --- a person's principles instead of (or beside) the teacher's
    file: Path | None = Field(
        None, description="JSON/YAML principles file; when set, the teacher is not asked."
    )
    # --- teacher sampling
    temperature: float = Field(0.7, ge=0)
    max_tokens: int = Field(256, gt=0)
    per_category: int = Field(2, ge=1, description="Principles per category per kind (create/solve).")
    condense_to: int = Field(3, ge=1, description="Error-level principles kept after condensing.")
