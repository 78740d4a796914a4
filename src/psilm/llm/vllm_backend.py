"""GPUs through vLLM's in-process offline engine (`vllm.LLM`), for one or more GPUs.

vLLM schedules every prompt of a call at once (continuous batching) and, with automatic prefix
caching, computes the shared part of the prompts (task text, principles, demos) once and reuses
its KV blocks. Each request gets its own seed (seed + its index in the call), which vLLM honours
per request, so a request's sample does not depend on the others in the batch. A JSON schema
(SamplingParams.json_schema) goes to vLLM's structured outputs (xgrammar), one per request.

Settings: `n_ctx` is vLLM's max_model_len; `dtype` auto means bfloat16; `options` go to `vllm.LLM`
as is, e.g. `tensor_parallel_size: 4` (GPUs per engine), `gpu_memory_utilization: 0.85`,
`tokenizer: /path/to/hf-folder` (recommended for GGUF files, whose tokenizer vLLM must convert).
Several engines (data parallel, or several nodes) come from `executor: ray` (psilm.llm.distributed).
"""

from __future__ import annotations

from typing import Any

from psilm.errors import BackendError
from psilm.llm.base import Completion, Messages, SamplingParams
from psilm.llm.registry import resolve_model
from psilm.llm.settings import VllmModel

TOP_K = 50  # as the transformers and llamacpp backends


class VLLMBackend:
    def __init__(self, config: VllmModel):
        try:
            from vllm import LLM
        except ImportError as e:
            raise BackendError(
                f"backend vllm: vLLM is not installed ({e}); pip install 'psilm[vllm]' on a machine with "
                "an NVIDIA GPU, or use backend: llamacpp / transformers on CPU"
            ) from None
        self.config = config
        self.model_id = config.model
        resolved = resolve_model(config.model)
        path = resolved.file or resolved.path  # a GGUF file, or a Hugging Face folder
        kwargs: dict[str, Any] = dict(
            model=str(path),
            max_model_len=config.n_ctx,
            dtype="bfloat16" if config.dtype == "auto" else config.dtype,
            enable_prefix_caching=True,  # the shared prompt prefix is computed once
            tensor_parallel_size=1,
            seed=0,  # engine seed; each request carries its own
        )
        kwargs.update(config.options)  # e.g. tensor_parallel_size, gpu_memory_utilization, tokenizer
        try:
            self.llm = LLM(**kwargs)
        except (ValueError, RuntimeError, OSError) as e:
            raise BackendError(
                f"model {config.model!r}: vLLM could not start the engine for {path}: {e}; check that a "
                "GPU is visible (nvidia-smi), that the model fits, and models.*.options"
            ) from None

    def __repr__(self) -> str:
        return f"VLLMBackend(model={self.model_id!r})"

    def generate(self, prompts: list[Messages], params: SamplingParams) -> list[Completion]:
        return self._run(prompts, params, chat=True)

    def complete(self, prompts: list[str], params: SamplingParams) -> list[Completion]:
        """Raw completion: `LLM.generate` on the plain texts, no chat template."""
        return self._run(prompts, params, chat=False)

    def _run(self, prompts: list, params: SamplingParams, chat: bool) -> list[Completion]:
        from vllm import SamplingParams as VSamplingParams

        per_request = [VSamplingParams(**_structured(request_kwargs(params, i))) for i in range(len(prompts))]
        try:
            run = self.llm.chat if chat else self.llm.generate
            outs = run(prompts, sampling_params=per_request, use_tqdm=False)  # type: ignore[arg-type]
        except ValueError as e:  # e.g. a prompt longer than max_model_len
            raise BackendError(
                f"model {self.model_id!r}: {e}; raise n_ctx of this model under models.* in the config"
            ) from None
        results = []
        for out in outs:
            best = out.outputs[0]
            results.append(
                Completion(
                    text=best.text.strip(),
                    prompt_tokens=len(out.prompt_token_ids or []),
                    completion_tokens=len(best.token_ids),
                    finish_reason=best.finish_reason,
                )
            )
        return results

    def close(self) -> None:
        # vLLM frees the engine (and its GPU memory) when the LLM object goes away
        self.llm = None
        try:
            import gc

            import torch

            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass


def request_kwargs(params: SamplingParams, i: int) -> dict[str, Any]:
    """vllm.SamplingParams keyword arguments for request i of a call; a JSON schema as
    `structured_outputs: {"json": schema}` (made a StructuredOutputsParams by `_structured`)."""
    kwargs: dict[str, Any] = dict(
        temperature=params.temperature,  # 0 is greedy; top_p / top_k then change nothing
        top_p=params.top_p,
        top_k=TOP_K,
        max_tokens=params.max_tokens,
        stop=list(params.stop) or None,
        seed=None if params.seed is None else params.seed + i,
    )
    if params.json_schema is not None:
        kwargs["structured_outputs"] = {"json": params.json_schema}
    return kwargs


def _structured(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Structured outputs as the installed vLLM takes them: StructuredOutputsParams (0.11 on;
    the guided_* names went in 0.12), else GuidedDecodingParams as `guided_decoding` (before)."""
    spec = kwargs.pop("structured_outputs", None)
    if spec is None:
        return kwargs
    try:
        from vllm.sampling_params import StructuredOutputsParams

        return {**kwargs, "structured_outputs": StructuredOutputsParams(**spec)}
    except ImportError:
        from vllm.sampling_params import GuidedDecodingParams

        return {**kwargs, "guided_decoding": GuidedDecodingParams(**spec)}
