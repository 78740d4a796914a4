"""VLLMBackend: the backend tests of the others, on a GPU with vLLM; a clear error without vLLM.

The GPU tests skip where vLLM or a CUDA GPU is missing (the one acceptable skip): vLLM does not run
on CPU-only machines. They use the embedded SmolLM2-135M, converted once from its GGUF file into
a plain Hugging Face folder (vLLM's GGUF support is experimental), so nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator

import pytest

from psilm.errors import BackendError
from psilm.llm import ModelConfig, SamplingParams, load_backend

HAVE_VLLM = importlib.util.find_spec("vllm") is not None


def _have_gpu() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


gpu = pytest.mark.skipif(
    not (HAVE_VLLM and _have_gpu()),
    reason="vLLM and a CUDA GPU are needed (pip install 'psilm[vllm]' on a GPU machine)",
)

PROMPTS = [
    [{"role": "user", "content": "Name one colour."}],
    [{"role": "user", "content": "What is 2+2? Answer with the number, then explain it briefly."}],
    [{"role": "user", "content": "Name one colour."}],
]


@pytest.mark.skipif(HAVE_VLLM, reason="vLLM is installed: the missing-vLLM message cannot be shown")
def test_missing_vllm_is_a_clear_error() -> None:
    with pytest.raises(BackendError, match=r"pip install 'psilm\[vllm\]'"):
        load_backend(ModelConfig(backend="vllm", model="smollm2-135m"))


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory) -> str:
    """The embedded GGUF as a float16 Hugging Face folder (the dequantized weights)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from psilm.llm import resolve_model
    from psilm.llm.hf import prepare_tokenizer

    r = resolve_model("smollm2-135m")
    out = tmp_path_factory.mktemp("smollm2-hf")
    tok = AutoTokenizer.from_pretrained(str(r.path), gguf_file=r.gguf_file)
    model = AutoModelForCausalLM.from_pretrained(str(r.path), gguf_file=r.gguf_file, dtype=torch.float16)
    prepare_tokenizer(tok)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


@pytest.fixture(scope="module")
def backend(hf_folder) -> Iterator:
    b = load_backend(
        ModelConfig(backend="vllm", model=hf_folder, n_ctx=1024, options={"gpu_memory_utilization": 0.3})
    )
    yield b
    b.close()


@gpu
def test_batch(backend) -> None:
    outs = backend.generate(PROMPTS, SamplingParams(temperature=0.8, max_tokens=12, seed=3))
    assert len(outs) == 3
    for c in outs:
        assert c.text and c.prompt_tokens > 0 and 0 < c.completion_tokens <= 12
        assert c.finish_reason in ("stop", "length")
    assert outs[0].prompt_tokens == outs[2].prompt_tokens < outs[1].prompt_tokens


@gpu
def test_seed_per_request(backend) -> None:
    prompts = [[{"role": "user", "content": "Write one sentence about the sea."}]] * 2
    params = SamplingParams(temperature=1.0, max_tokens=12, seed=42)
    first = [c.text for c in backend.generate(prompts, params)]
    second = [c.text for c in backend.generate(prompts, params)]
    assert first == second
    assert first[0] != first[1]  # seed + index: the repeated prompt is sampled on its own
    shifted = backend.generate(prompts[:1], SamplingParams(1.0, max_tokens=12, seed=43))
    assert shifted[0].text == first[1]  # vLLM seeds per request: the batch does not matter


@gpu
def test_greedy_and_stop(backend) -> None:
    params = SamplingParams(temperature=0.0, max_tokens=24, stop=["."])
    a, b = backend.generate(PROMPTS[:1], params), backend.generate(PROMPTS[:1], params)
    assert a[0].text == b[0].text and "." not in a[0].text


@gpu
def test_prompt_longer_than_n_ctx(backend) -> None:
    long = [{"role": "user", "content": "word " * 1500}]
    with pytest.raises(BackendError, match="n_ctx"):
        backend.generate([long], SamplingParams(max_tokens=4))


@gpu
def test_raw_completion_and_stop(backend) -> None:
    text = "Colours of the rainbow, one per line:\n1. red\n2. orange\n3."
    params = SamplingParams(temperature=0.0, max_tokens=16, seed=0, stop=["\n"])
    (raw,) = backend.complete([text], params)
    (chat,) = backend.generate([[{"role": "user", "content": text}]], params)
    assert raw.text and "\n" not in raw.text and raw.prompt_tokens > 0
    assert chat.prompt_tokens > raw.prompt_tokens + 5  # the template's tokens
