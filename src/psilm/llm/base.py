"""The one protocol every model backend follows (the settings that pick one: psilm.llm.settings)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

from psilm.llm.settings import ModelConfig, ModelSettings  # noqa: F401 (imported from here since 0.1)

Messages = list[dict[str, str]]  # chat messages: [{"role": "user", "content": "..."}]
# A request's prompt: chat messages (the backend applies the model's chat template), or a plain
# string to continue as is (raw completion: no template, what a base model is made for).
Prompt = str | Messages


@dataclass
class SamplingParams:
    temperature: float = 0.7
    top_p: float = 0.95
    max_tokens: int = 256
    seed: int | None = None  # per-request seed where the backend honours it
    stop: list[str] = field(default_factory=list)
    # a JSON schema every answer must follow, where the backend can constrain decoding (llama.cpp
    # grammar, vLLM structured outputs, OpenAI response_format); others ignore it (parse-or-drop)
    json_schema: dict[str, Any] | None = None

    def key(self) -> dict[str, Any]:
        """Fields that change the output, for cache keys."""
        return asdict(self)


@dataclass
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None = None  # "stop", "length", ...


@dataclass
class Scored:
    """How likely a text is as the continuation of a plain-text prompt (Backend.score)."""

    logprob: float  # summed log-probability of the text's tokens after the prompt
    prompt_tokens: int  # tokens the model read: the prompt and the text
    text_tokens: int  # of which the text's, the scored ones


SCORING_BACKENDS = ("llamacpp", "transformers")  # the backends with a `score` method


@runtime_checkable
class Backend(Protocol):
    """Batched chat generation (chat templates applied by the backend) and raw text completion."""

    model_id: str  # recorded in every instance the backend writes

    def generate(self, prompts: list[Messages], params: SamplingParams) -> list[Completion]:
        """One chat completion per prompt, in order."""
        ...

    def complete(self, prompts: list[str], params: SamplingParams) -> list[Completion]:
        """One raw completion per plain-text prompt, in order: the text is continued as is."""
        ...

    def close(self) -> None: ...

    # llamacpp and transformers also have
    #   score(prompts: list[str], texts: list[str]) -> list[Scored]
    # the log-probability of each text continuing its prompt (generate.label_check)


def run_prompts(backend: Backend, prompts: list[Prompt], params: SamplingParams) -> list[Completion]:
    """Chat or raw completion, by the prompts' type; one call holds one kind of prompt."""
    if all(isinstance(p, str) for p in prompts):
        return backend.complete(prompts, params)  # type: ignore[arg-type]
    if any(isinstance(p, str) for p in prompts):
        raise ValueError("one backend call mixes plain-text and chat prompts; send them in separate calls")
    return backend.generate(prompts, params)  # type: ignore[arg-type]


def common_prefix_len(a: list[int], b: list[int]) -> int:
    """How many leading tokens two token lists share (prefix-cache reuse, shared prompt KV)."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def text_logprob(logits, targets: list[int]) -> float:
    """Summed log-probability of `targets` under next-token logits (one row per target, numpy)."""
    import numpy as np

    rows = np.asarray(logits, dtype=np.float64)
    rows = rows - rows.max(axis=1, keepdims=True)
    logp = rows - np.log(np.exp(rows).sum(axis=1, keepdims=True))
    return float(logp[np.arange(len(targets)), targets].sum())
