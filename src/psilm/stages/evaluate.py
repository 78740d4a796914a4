"""Stage 5: score each arm's model on the held-out test split."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from psilm.settings import Settings


class EvaluateSettings(Settings):
    method: Literal["auto", "likelihood", "generate"] = Field(
        "auto", description="auto: label likelihood for classification / multiple choice, else generate."
    )
    batch_size: int = Field(16, ge=1)
    max_tokens: int = Field(256, gt=0, description="For generated answers (numeric, free text).")
