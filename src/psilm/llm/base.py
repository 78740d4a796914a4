"""The one protocol every model backend follows, and the settings that pick a backend."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import Field

from psilm.settings import Settings

Messages = list[dict[str, str]]  # chat messages: [{"role": "user", "content": "..."}]
BackendName = Literal["transformers", "openai", "llamacpp", "vllm"]


class ModelConfig(Settings):
    """Which model plays a role (teacher, generator, student) and how it is reached."""

    # --- which model
    backend: BackendName = Field("transformers", description="Picked by name, never guessed from the model.")
    model: str = Field(
        "smollm2-135m", description="Alias, local folder, GGUF file, or the server's model name."
    )
    # --- remote endpoints (openai backend)
    base_url: str | None = Field(None, description="e.g. http://127.0.0.1:8000/v1")
    api_key_env: str | None = Field(
        None, description="Name of the environment variable holding the key; the key is never stored."
    )
    timeout_s: float = Field(120.0, gt=0, description="Per request.")
    max_retries: int = Field(5, ge=0, description="Retries with exponential backoff and jitter.")
    max_concurrency: int = Field(8, ge=1, description="Requests in flight at once.")
    # --- local execution
    batch_size: int = Field(16, ge=1, description="Prompts per forward pass (transformers, llamacpp).")
    device: str = Field("auto", description="auto, cpu, cuda, cuda:1, mps.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="auto: float32 on CPU (bf16 matmuls are slow there), bfloat16 on GPU."
    )
    n_ctx: int = Field(2048, ge=256, description="Context length for llamacpp / vllm.")
    n_threads: int | None = Field(
        None, description="CPU threads for llamacpp; None = half the cores (its threads spin-wait)."
    )
    # --- cost
    price_per_million_tokens: float | None = Field(
        None, ge=0, description="USD per 1M tokens (prompt + completion) on this endpoint; gives $ per stage."
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="Passed to the backend as is, e.g. vllm tensor_parallel_size."
    )


@dataclass
class SamplingParams:
    temperature: float = 0.7
    top_p: float = 0.95
    max_tokens: int = 256
    seed: int | None = None  # per-request seed where the backend honours it
    stop: list[str] = field(default_factory=list)

    def key(self) -> dict[str, Any]:
        """Fields that change the output, for cache keys."""
        return asdict(self)


@dataclass
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None = None  # "stop", "length", ...


@runtime_checkable
class Backend(Protocol):
    """Batched chat generation. Chat templates are applied by the backend."""

    model_id: str  # recorded in every instance the backend writes

    def generate(self, prompts: list[Messages], params: SamplingParams) -> list[Completion]:
        """One completion per prompt, in order."""
        ...

    def close(self) -> None: ...
