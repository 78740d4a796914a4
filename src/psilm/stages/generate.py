"""Stage 2: a small model writes new instances from seed demos and sampled principles."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from psilm.settings import Settings


class GenerateSettings(Settings):
    # --- how many and how
    n: int = Field(200, gt=0, description="Instances to write per arm (before filtering).")
    mode: Literal["psi", "direct"] = Field(
        "psi", description="psi: with principles; direct: seed demos only (the paper's baseline)."
    )
    # --- what each prompt holds: short prompts keep a 135M generator on track
    demos_per_instance: int = Field(2, ge=0)
    principles_per_instance: int | None = Field(
        1, ge=1, description="Principles sampled per instance; None = all (long prompts hurt small models)."
    )
    category_weights: dict[str, float] | None = Field(
        None, description="Draw categories by these weights instead of evenly."
    )
    # --- sampling
    temperature: float = Field(0.9, ge=0)
    top_p: float = Field(0.95, gt=0, le=1)
    max_tokens: int = Field(96, gt=0, description="For the new input; solutions get solve_max_tokens.")
    # --- targets: k answers per instance; the majority becomes the label, ties are dropped
    solve_samples: int = Field(3, ge=1)
    solve_temperature: float = Field(0.7, ge=0)
    solve_max_tokens: int = Field(256, gt=0)
