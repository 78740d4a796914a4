"""Local Hugging Face weights: where they are, on which device, in which dtype, loaded once.

The transformers backend (teacher, generator, student), training and evaluation all load local
weights here, so one process holds one copy of a model that several roles share, and the
student's `device` and `dtype` mean the same thing at generation, training and evaluation.

- resolve: an alias (weights shipped inside a package), a Hugging Face folder or a GGUF file
  (psilm.llm.registry); nothing is ever downloaded.
- device: auto is cuda when one is visible, else cpu.
- dtype: auto is float32 on CPU (bf16 matmuls are slow there), bfloat16 on GPU.
- load: (model, tokenizer), cached per process and only ever read; load_trainable: a copy to train.
- a GGUF is unpacked once into a plain folder in the cache (unpacked), which later loads read.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
from functools import lru_cache
from pathlib import Path

from psilm.durable import note
from psilm.errors import BackendError
from psilm.llm.registry import cache_dir, resolve_model

__all__ = [
    "dtype_name",
    "load",
    "load_trainable",
    "pick_device",
    "pick_dtype",
    "prepare_tokenizer",
    "resolve_model",
]


def pick_device(device: str) -> str:
    """auto: cuda if visible, else cpu; anything else as given (cpu, cuda:1, mps)."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def dtype_name(dtype: str, device: str) -> str:
    """What a `dtype` setting means on a resolved device: float32, bfloat16 or float16."""
    if dtype == "auto":
        # bf16 matmuls are slow on most CPUs; fp32 there, bf16 on GPUs
        return "float32" if device == "cpu" else "bfloat16"
    return dtype


def pick_dtype(dtype: str, device: str):
    """The torch dtype for a `dtype` setting on a resolved device."""
    import torch

    return getattr(torch, dtype_name(dtype, device))


def load(model: str, device: str = "auto", dtype: str = "auto"):
    """(model, tokenizer) for inference, cached per process: teacher, generator and student often
    share one. Read only: train a copy (load_trainable)."""
    resolved = resolve_model(model)
    dev = pick_device(device)
    # keyed by what is loaded, so "auto" and what it resolves to share one copy
    return _cached(str(resolved.path), resolved.gguf_file, dev, dtype_name(dtype, dev))


def gguf_bars_follow_switch() -> None:
    """transformers draws a tqdm bar per GGUF load with plain tqdm, which ignores its own
    progress-bar switch (transformers.utils.logging.disable_progress_bar); make it obey it."""
    try:
        from transformers import modeling_gguf_pytorch_utils as gguf
        from transformers.utils import logging as hf_logging
    except ImportError:
        return
    if hasattr(gguf, "tqdm"):
        gguf.tqdm = hf_logging.tqdm


@lru_cache(maxsize=4)
def _cached(path: str, gguf_file: str | None, device: str, dtype: str):
    model, tok = _read(path, gguf_file, pick_dtype(dtype, device))
    model.to(device).eval()
    prepare_tokenizer(tok)
    return model, tok


def _read(path: str, gguf_file: str | None, torch_dtype, copy_ok: bool = True, again: bool = True):
    """(model, tokenizer) from a folder; a GGUF from its unpacked copy (`copy_ok`), made again once
    (`again`) where it cannot be read; else from the GGUF itself."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    if gguf_file and copy_ok and (folder := unpacked(Path(path) / gguf_file)) is not None:
        try:
            tok = AutoTokenizer.from_pretrained(str(folder))
            return AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch_dtype), tok
        except Exception as e:  # noqa: BLE001  as below
            if not again:
                raise BackendError(
                    f"{folder}: could not be read ({_first_line(e)}) though just made; delete the folder, "
                    "or set PSILM_CACHE to another folder"
                ) from None
            note(f"{folder}: could not be read ({_first_line(e)}); psilm unpacks it again")
            shutil.rmtree(folder, ignore_errors=True)
            return _read(path, gguf_file, torch_dtype, again=False)
    kwargs: dict = {"gguf_file": gguf_file} if gguf_file else {}
    model_kwargs = {"quantization_config": GgufConfig(dequantize=True)} if gguf_file else {}
    if gguf_file:
        gguf_bars_follow_switch()
    try:
        tok = AutoTokenizer.from_pretrained(path, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype, **kwargs, **model_kwargs)
    except Exception as e:  # noqa: BLE001  damaged files fail in library-specific ways (SafetensorError ...)
        raise BackendError(
            f"model at {path}{'/' + gguf_file if gguf_file else ''} could not be loaded: {_first_line(e)}"
        ) from None
    _drop_gguf_marker(model)
    return model, tok


UNPACKED_MARK = "psilm-unpacked.json"  # written last: a folder without it is incomplete


def unpacked(gguf: Path) -> Path | None:
    """The GGUF as a plain Hugging Face folder (float32 weights and its tokenizer) in the cache, made
    the first time and named by the file's sha256, so every install of the same weights shares it:
    transformers unpacks a GGUF's blocks and vocabulary in Python at every load, the folder reads in
    a fraction of that (docs/backends.md). None where the cache cannot be written: the GGUF is read
    as it is."""
    import torch

    stat = gguf.stat()
    with gguf.open("rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    target = cache_dir() / "hf" / f"{gguf.stem}.{digest[:12]}"
    if (target / UNPACKED_MARK).is_file():
        return target
    if target.exists():
        note(f"{target}: incomplete (no {UNPACKED_MARK}); psilm unpacks it again")
        shutil.rmtree(target, ignore_errors=True)
    model, tok = _read(str(gguf.parent), gguf.name, torch.float32, copy_ok=False)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")  # Ray workers may race: each its own
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / UNPACKED_MARK).write_text(json.dumps({"gguf": str(gguf), "size": stat.st_size}) + "\n")
        os.replace(tmp, target)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if (target / UNPACKED_MARK).is_file():  # another process made it first
            return target
        note(f"{gguf.name} could not be unpacked into {target.parent} ({e}); read from the GGUF each time")
        return None
    return target


def load_trainable(model: str, device: str, dtype: str, from_cache: bool = False):
    """(model, tokenizer) of one's own to train, never the cached inference copy itself.

    GGUF weights are unpacked into plain dense tensors (packed blocks cannot be trained). With
    `from_cache`, a GGUF model is a deep copy of the cached inference copy in `dtype`, which
    evaluation reuses later.
    """
    resolved = resolve_model(model)
    if resolved.gguf_file and from_cache:
        cached, cached_tok = load(model, device, dtype)
        weights, tokenizer = copy.deepcopy(cached), copy.deepcopy(cached_tok)
        weights.train()
        _drop_gguf_marker(weights)
        return weights, tokenizer
    weights, tokenizer = _read(str(resolved.path), resolved.gguf_file, pick_dtype(dtype, pick_device(device)))
    prepare_tokenizer(tokenizer)  # pad token and chat template, as at inference time
    return weights, tokenizer


def prepare_tokenizer(tok) -> None:
    """Left padding for batched generation, and a pad token where the model has none."""
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if not getattr(tok, "chat_template", None):
        # ChatML, which SmolLM2 and many small instruct models use
        tok.chat_template = (
            "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
            "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
        )


def _drop_gguf_marker(model) -> None:
    """An unpacked GGUF model is an ordinary one; with the marker on, Trainer refuses to train it."""
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)


def _first_line(e: BaseException) -> str:
    """An exception as one line: its type where its text is empty, its first line otherwise."""
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0][:300]
