"""OpenAIBackend: the happy path on a real llama.cpp server, faults from a local stub server."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from servers import free_port, llama_server

from psilm.errors import BackendError
from psilm.llm import ModelConfig, SamplingParams, load_backend
from psilm.llm import openai_backend as ob

PROMPTS = [
    [{"role": "user", "content": "Name one colour."}],
    [{"role": "user", "content": "What is 2+2? Answer with the number, then explain it briefly."}],
    [{"role": "user", "content": "Say hello."}],
]
SECRET = "sk-test-0123456789-very-secret"


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, str]]:
    with llama_server() as (base_url, model):
        yield base_url, model


@pytest.fixture
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ob, "BACKOFF_BASE_S", 0.01)


# --- real server
@pytest.mark.slow
def test_batch_on_llama_server(server: tuple[str, str]) -> None:
    base_url, model = server
    backend = load_backend(ModelConfig(backend="openai", base_url=base_url, model=model))
    try:
        assert backend.model_id == model
        outs = backend.generate(PROMPTS, SamplingParams(temperature=0.7, max_tokens=12, seed=1))
    finally:
        backend.close()
    assert len(outs) == 3
    for c in outs:
        assert c.text
        assert c.prompt_tokens > 0 and c.completion_tokens > 0
        assert c.finish_reason in ("stop", "length")
    # answers stay in prompt order: the second prompt is the longest
    assert outs[1].prompt_tokens > outs[0].prompt_tokens


@pytest.mark.slow
def test_seeded_greedy_is_reproducible(server: tuple[str, str]) -> None:
    base_url, model = server
    backend = load_backend(ModelConfig(backend="openai", base_url=base_url, model=model))
    params = SamplingParams(temperature=0.0, max_tokens=16, seed=0)
    try:
        first = backend.generate(PROMPTS[:1], params)
        second = backend.generate(PROMPTS[:1], params)
    finally:
        backend.close()
    assert first[0].text and first[0].text == second[0].text


@pytest.mark.slow
def test_json_schema_on_llama_server(server: tuple[str, str]) -> None:
    """A chat request with a schema (response_format, json_object form as llama-cpp-python's server
    reads it) gets one JSON object of that shape from the embedded model, whatever it is asked."""
    base_url, model = server
    cfg = ModelConfig(backend="openai", base_url=base_url, model=model, json_format="json_object")
    backend = load_backend(cfg)
    schema = {
        "type": "object",
        "properties": {
            "question": {"type": "string"},
            "choices": {"type": "array", "items": {"type": "string"}, "minItems": 3, "maxItems": 3},
            "answer": {"type": "string", "enum": ["A", "B", "C"]},
        },
        "required": ["question", "choices", "answer"],
        "additionalProperties": False,
    }
    params = SamplingParams(temperature=0.7, max_tokens=96, seed=2, json_schema=schema)
    try:
        outs = backend.generate(PROMPTS[:2], params)
    finally:
        backend.close()
    for c in outs:
        obj = json.loads(c.text)
        assert list(obj) == ["question", "choices", "answer"] and len(obj["choices"]) == 3
        assert obj["answer"] in ("A", "B", "C")


@pytest.mark.slow
def test_raw_completion_on_llama_server(server: tuple[str, str]) -> None:
    """/v1/completions: the text is continued as is (no chat template), stopping at the newline."""
    base_url, model = server
    backend = load_backend(ModelConfig(backend="openai", base_url=base_url, model=model))
    text = "Colours of the rainbow, one per line:\n1. red\n2. orange\n3."
    params = SamplingParams(temperature=0.0, max_tokens=16, seed=0, stop=["\n"])
    try:
        raw = backend.complete([text, text + " yellow\n4."], params)
        chat = backend.generate([[{"role": "user", "content": text}]], params)
        again = backend.complete([text], params)
    finally:
        backend.close()
    assert all(c.text and "\n" not in c.text and c.completion_tokens > 0 for c in raw)
    assert raw[0].prompt_tokens < raw[1].prompt_tokens  # in order
    assert chat[0].prompt_tokens > raw[0].prompt_tokens + 5  # the template's tokens
    assert again[0].text == raw[0].text


# --- endpoint down, keys
def test_unreachable_endpoint_fails_fast_with_a_clear_message() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    backend = load_backend(ModelConfig(backend="openai", base_url=url, model="m", max_retries=1, timeout_s=2))
    start = time.monotonic()
    with pytest.raises(BackendError) as info:
        backend.generate(PROMPTS, SamplingParams(max_tokens=4))
    assert time.monotonic() - start < 5
    msg = str(info.value)
    assert url in msg and "connection refused" in msg
    assert "2 attempt" in msg and "max_retries" in msg and "check" in msg
    assert "\n" not in msg


def test_unset_api_key_env_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PSILM_TEST_UNSET_KEY", raising=False)
    with pytest.raises(BackendError, match="PSILM_TEST_UNSET_KEY"):
        load_backend(
            ModelConfig(
                backend="openai",
                base_url="http://127.0.0.1:9/v1",
                model="m",
                api_key_env="PSILM_TEST_UNSET_KEY",
            )
        )


def test_key_never_in_errors_or_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PSILM_TEST_KEY", SECRET)
    url = f"http://127.0.0.1:{free_port()}/v1"
    backend = load_backend(
        ModelConfig(backend="openai", base_url=url, model="m", api_key_env="PSILM_TEST_KEY", max_retries=0)
    )
    assert SECRET not in repr(backend)
    with pytest.raises(BackendError) as info:
        backend.generate(PROMPTS[:1], SamplingParams(max_tokens=4))
    assert SECRET not in str(info.value) and SECRET not in repr(info.value)


# --- faults from a stub server
CHAT_BODY = {
    "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "stub",
    "choices": [{"index": 0, "finish_reason": "stop",
                 "message": {"role": "assistant", "content": " stub answer "}}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
}  # fmt: skip

# one response: (status, headers, body bytes)
Reply = tuple[int, dict[str, str], bytes]


@contextlib.contextmanager
def stub_server(reply: Callable[[int, dict], Reply]) -> Iterator[tuple[str, list[dict]]]:
    """POST /v1/chat/completions answered by reply(n, request) for the n-th request (0-based)."""
    seen: list[dict] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with lock:
                n = len(seen)
                seen.append({**body, "authorization": self.headers.get("Authorization")})
            status, headers, data = reply(n, seen[n])
            self.send_response(status)
            headers = {"Content-Type": "application/json", "Content-Length": str(len(data)), **headers}
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", seen
    finally:
        httpd.shutdown()
        httpd.server_close()


def ok() -> Reply:
    return 200, {}, json.dumps(CHAT_BODY).encode()


def fail_first(k: int, status: int, headers: dict[str, str] | None = None):
    def reply(n: int, _req: dict) -> Reply:
        if n < k:
            return status, headers or {}, b'{"error": {"message": "server busy"}}'
        return ok()

    return reply


def stub_backend(url: str, **kw: object):
    kw = {"timeout_s": 5, **kw}
    return load_backend(ModelConfig(backend="openai", base_url=url, model="stub", **kw))


def test_http_500_is_retried_then_succeeds(fast_backoff: None) -> None:
    with stub_server(fail_first(2, 500)) as (url, seen):
        out = stub_backend(url, max_retries=2).generate(PROMPTS[:1], SamplingParams(max_tokens=4))
    assert len(seen) == 3
    assert out[0].text == "stub answer" and out[0].prompt_tokens == 5
    assert out[0].completion_tokens == 2


def test_http_500_past_max_retries_is_a_backend_error(fast_backoff: None) -> None:
    with stub_server(fail_first(2, 500)) as (url, seen):
        with pytest.raises(BackendError) as info:
            stub_backend(url, max_retries=1).generate(PROMPTS[:1], SamplingParams(max_tokens=4))
    assert len(seen) == 2
    msg = str(info.value)
    assert "HTTP 500" in msg and url in msg and "2 attempt" in msg and "max_retries" in msg


def test_429_honours_retry_after(monkeypatch: pytest.MonkeyPatch) -> None:
    # Retry-After: 0 means "now": with it honoured, the 10 s backoff below is never slept
    monkeypatch.setattr(ob, "BACKOFF_BASE_S", 10.0)
    with stub_server(fail_first(2, 429, {"Retry-After": "0"})) as (url, seen):
        start = time.monotonic()
        out = stub_backend(url, max_retries=3).generate(PROMPTS[:1], SamplingParams(max_tokens=4))
    assert time.monotonic() - start < 4
    assert len(seen) == 3 and out[0].text == "stub answer"


def test_garbled_body_is_retried(fast_backoff: None) -> None:
    body = json.dumps(CHAT_BODY).encode()
    faults: list[Reply] = [
        (200, {}, body[:40]),  # bad JSON
        (200, {"Content-Length": str(len(body))}, body[:40]),  # connection closed mid-body
        (200, {}, b'{"object": "something else"}'),  # JSON, but not a chat.completion
    ]
    with stub_server(lambda n, r: faults[n] if n < len(faults) else ok()) as (url, seen):
        out = stub_backend(url, max_retries=3).generate(PROMPTS[:1], SamplingParams(max_tokens=4))
    assert out[0].text == "stub answer" and len(seen) == 4
    with stub_server(lambda n, r: (200, {"Content-Type": "text/html"}, b"<html>oops")) as (url, _):
        with pytest.raises(BackendError, match="unreadable response"):
            stub_backend(url, max_retries=1).generate(PROMPTS[:1], SamplingParams(max_tokens=4))


def test_4xx_fails_at_once_and_scrubs_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PSILM_TEST_KEY", SECRET)

    def echo_key(n: int, req: dict) -> Reply:  # a server that echoes the key back
        return 401, {}, json.dumps({"error": {"message": f"bad key {req['authorization']}"}}).encode()

    with stub_server(echo_key) as (url, seen):
        with pytest.raises(BackendError) as info:
            stub_backend(url, max_retries=3, api_key_env="PSILM_TEST_KEY").generate(
                PROMPTS[:1], SamplingParams(max_tokens=4)
            )
    assert len(seen) == 1 and seen[0]["authorization"] == f"Bearer {SECRET}"
    msg = str(info.value)
    assert "HTTP 401" in msg and "PSILM_TEST_KEY" in msg and SECRET not in msg
    with stub_server(lambda n, r: (404, {}, b'{"error": {"message": "no such model"}}')) as (url, seen):
        with pytest.raises(BackendError, match="HTTP 404.*no such model"):
            stub_backend(url, max_retries=3).generate(PROMPTS[:1], SamplingParams(max_tokens=4))
    assert len(seen) == 1


def test_batch_passes_sampling_and_keeps_order() -> None:
    def reply(n: int, req: dict) -> Reply:
        body = json.loads(json.dumps(CHAT_BODY))
        body["choices"][0]["message"]["content"] = req["messages"][-1]["content"]
        body.pop("usage")  # usage is optional: counts fall back to 0
        return 200, {}, json.dumps(body).encode()

    params = SamplingParams(temperature=0.3, top_p=0.8, max_tokens=7, seed=10, stop=["\n"])
    with stub_server(reply) as (url, seen):
        out = stub_backend(url, max_concurrency=2).generate(PROMPTS, params)
    assert [c.text for c in out] == [p[-1]["content"] for p in PROMPTS]
    assert out[0].prompt_tokens == 0 and out[0].completion_tokens == 0
    req = min(seen, key=lambda r: r["seed"])
    assert req["temperature"] == 0.3 and req["top_p"] == 0.8 and req["max_tokens"] == 7
    assert req["stop"] == ["\n"] and sorted(r["seed"] for r in seen) == [10, 11, 12]
    assert req["authorization"] == f"Bearer {ob.NO_KEY}"


def test_timeout_is_retried_then_reported(fast_backoff: None) -> None:
    def slow(n: int, _req: dict) -> Reply:
        time.sleep(4.0)
        return ok()

    with stub_server(slow) as (url, seen):
        start = time.monotonic()
        with pytest.raises(BackendError) as info:
            stub_backend(url, max_retries=1, timeout_s=0.2).generate(
                PROMPTS[:1], SamplingParams(max_tokens=4)
            )
        assert time.monotonic() - start < 3  # two 0.2 s timeouts, not two 4 s answers
    assert len(seen) == 2 and "timeout_s=0.2" in str(info.value)
