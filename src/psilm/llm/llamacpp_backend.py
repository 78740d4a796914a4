"""GGUF models in process through llama-cpp-python, with the GGUF's own chat template.

Prompts run one after another (llama.cpp's Python API decodes one sequence at a time). They are
visited in sorted order so that prompts sharing a prefix (same system prompt, principles, demos)
come together: llama.cpp keeps the KV cache of the previous prompt and only evaluates the part
after the longest common prefix, so sorting gives prefix reuse for free. A LlamaRAMCache is not
used: it snapshots the whole context state after every completion, which costs more than
re-evaluating a short suffix on a small model.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any

from psilm.errors import BackendError
from psilm.llm.base import Completion, Messages, ModelConfig, SamplingParams
from psilm.llm.registry import resolve_model


class LlamaCppBackend:
    def __init__(self, config: ModelConfig):
        from llama_cpp import Llama

        self.config = config
        self.model_id = config.model
        resolved = resolve_model(config.model)
        if resolved.file is None:
            raise BackendError(
                f"model {config.model!r} is a Hugging Face folder, not a GGUF file; the llamacpp "
                "backend needs a .gguf: use backend: transformers for it, or point model at a .gguf"
            )
        self.path = resolved.file
        self._lock = threading.Lock()  # a Llama context serves one sequence at a time
        kwargs: dict[str, Any] = dict(
            n_ctx=config.n_ctx,
            # for generation and for prompt evaluation alike (llama.cpp's own defaults are half
            # the cores and all of them); None means all cores
            n_threads=config.n_threads or default_threads(),
            n_threads_batch=config.n_threads or default_threads(),
            verbose=False,
        )
        kwargs.update(config.options)  # e.g. n_gpu_layers, n_batch: passed to Llama as is
        try:
            self.llm = Llama(model_path=str(self.path), **kwargs)
        except (ValueError, RuntimeError, OSError) as e:
            raise BackendError(f"model {config.model!r}: {self.path} could not be loaded: {e}") from None

    def __repr__(self) -> str:
        return f"LlamaCppBackend(model={self.model_id!r}, path={str(self.path)!r})"

    def generate(self, prompts: list[Messages], params: SamplingParams) -> list[Completion]:
        # sorted for prefix reuse (see the module docstring); results go back in input order
        order = sorted(range(len(prompts)), key=lambda i: json.dumps(prompts[i], sort_keys=True))
        out: list[Completion | None] = [None] * len(prompts)
        with self._lock:
            for i in order:
                # seed + i: per request, so a prompt's sample depends on its place in the batch,
                # not on the order we visit the batch in
                seed = None if params.seed is None else params.seed + i
                out[i] = self._one(prompts[i], params, seed)
        return out  # type: ignore[return-value]

    def _one(self, messages: Messages, params: SamplingParams, seed: int | None) -> Completion:
        try:
            resp: Any = self.llm.create_chat_completion(
                messages=messages,  # type: ignore[arg-type]
                temperature=params.temperature,
                top_p=params.top_p,
                # llama.cpp's defaults are top_k=40, min_p=0.05; transformers' generate uses
                # top_k=50 and no min_p, so the same here. (top_k=0, i.e. off, sorts the whole
                # 49k vocabulary at every token: about 10x slower on a 135M model.)
                top_k=50,
                min_p=0.0,
                max_tokens=params.max_tokens,
                stop=list(params.stop),
                seed=seed,
            )
        except ValueError as e:
            if "context window" in str(e):
                raise BackendError(
                    f"model {self.model_id!r}: a prompt does not fit in n_ctx={self.config.n_ctx} "
                    f"({e}); raise n_ctx of this model under models.* in the config"
                ) from None
            raise
        choice = resp["choices"][0]
        usage = resp.get("usage") or {}
        return Completion(
            text=(choice["message"].get("content") or "").strip(),
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            finish_reason=choice.get("finish_reason"),
        )

    def close(self) -> None:
        self.llm.close()


def default_threads() -> int:
    """Half the cores: llama.cpp's threads spin-wait on each other, and on a busy 2-core machine
    2 threads ran 12-17x slower than 1."""
    return max(1, (os.cpu_count() or 2) // 2)
