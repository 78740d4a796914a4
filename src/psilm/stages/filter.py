"""Stage 3: clean what can be cleaned, drop the rest with a counted reason."""

from __future__ import annotations

from pydantic import Field

from psilm.settings import Settings


class FilterSettings(Settings):
    min_chars: int = Field(12, ge=1)
    max_chars: int = Field(800, ge=1)
    near_duplicate_threshold: float = Field(
        0.85, gt=0, le=1, description="Jaccard similarity (MinHash, word 3-grams) counted as a near duplicate."
    )
    decontaminate: bool = Field(True, description="Drop instances close to a seed or a test row.")
    consistency: bool = Field(True, description="Keep only instances whose voted answer agrees.")
    max_drop_share: float = Field(0.7, gt=0, le=1, description="Warn loudly past this share dropped.")
