"""Stage 4: fine-tune the student on the filtered instances (TRL SFT, LoRA by default)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from psilm.settings import Settings


class TrainSettings(Settings):
    method: Literal["lora", "full"] = "lora"
    epochs: float = Field(3, gt=0)
    learning_rate: float = Field(2e-4, gt=0, description="LoRA; use ~2e-5 for full fine-tuning.")
    batch_size: int = Field(8, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    max_length: int = Field(384, ge=16, description="Tokens per example, prompt plus target.")
    include_seeds: bool = Field(True, description="Train on the seeds as well as the generated data.")
    # --- LoRA
    lora_r: int = Field(16, ge=1)
    lora_alpha: int = Field(32, ge=1)
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: str | list[str] = "all-linear"
    merge: bool = Field(True, description="Also save a merged model under model/merged.")
