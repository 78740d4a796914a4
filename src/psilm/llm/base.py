"""The one protocol every model backend follows (the settings that pick one: psilm.llm.settings)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

from psilm.llm.settings import ModelConfig, ModelSettings  # noqa: F401 (imported from here since 0.1)

Messages = list[dict[str, str]]  # chat messages: [{"role": "user", "content": "..."}]


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


def common_prefix_len(a: list[int], b: list[int]) -> int:
    """How many leading tokens two token lists share (prefix-cache reuse, shared prompt KV)."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
