"""Model backends behind one protocol, picked by an explicit name in the config."""

from __future__ import annotations

import importlib

from psilm.errors import ConfigError
from psilm.llm.base import Backend, Completion, Messages, SamplingParams
from psilm.llm.registry import ALIASES, resolve_model
from psilm.llm.settings import (
    LlamaCppModel,
    ModelConfig,
    ModelSettings,
    OpenAIModel,
    TransformersModel,
    VllmModel,
)

# name -> "module:Class"; heavy libraries are imported only when a backend is built
BACKENDS = {
    "transformers": "psilm.llm.transformers_backend:TransformersBackend",
    "openai": "psilm.llm.openai_backend:OpenAIBackend",
    "llamacpp": "psilm.llm.llamacpp_backend:LlamaCppBackend",
    "vllm": "psilm.llm.vllm_backend:VLLMBackend",
}


def load_backend(config: ModelSettings) -> Backend:
    """Build the backend the config names."""
    module_name, cls_name = BACKENDS[config.backend].split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        extra = {"llamacpp": "llamacpp", "vllm": "vllm"}.get(config.backend, "")
        hint = f"pip install 'psilm[{extra}]'" if extra else "reinstall psilm"
        raise ConfigError(f"backend {config.backend!r} is not available ({e}); {hint}") from None
    return getattr(module, cls_name)(config)


__all__ = [
    "ALIASES",
    "BACKENDS",
    "Backend",
    "Completion",
    "LlamaCppModel",
    "Messages",
    "ModelConfig",
    "ModelSettings",
    "OpenAIModel",
    "SamplingParams",
    "TransformersModel",
    "VllmModel",
    "load_backend",
    "resolve_model",
]
