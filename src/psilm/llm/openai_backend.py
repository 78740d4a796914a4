"""Any OpenAI-compatible server (vLLM, SGLang, Ollama, llama.cpp server, OpenAI) via `openai`:
chat through /v1/chat/completions, raw completion (plain text to continue) through /v1/completions.

A batch is sent as concurrent requests, at most `max_concurrency` in flight, answers kept in
order. Retries are ours alone (the client's own are switched off): exponential backoff with
jitter on timeouts, connection errors, HTTP 408/429/5xx and unreadable bodies, honouring
Retry-After. Other 4xx answers (unknown model, bad key) fail at once. The API key is read from
the environment variable the config names; it is never stored on the backend, shown in a repr or
written into an error message.
"""

from __future__ import annotations

import os
import random
import re
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from psilm.errors import BackendError
from psilm.llm.base import Completion, Messages, SamplingParams
from psilm.llm.settings import OpenAIModel

# Backoff: 0.5 s, 1 s, 2 s, ... capped, each scaled by a random factor in [0.5, 1] (jitter), so that many
# workers hitting a busy server do not retry in lockstep.
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 30.0
# A Retry-After longer than this is clipped: a run should not silently sleep for an hour.
RETRY_AFTER_CAP_S = 60.0
RETRY_STATUSES = {408, 429}  # plus every 5xx
NO_KEY = "not-needed"  # local servers ignore the key, but the client insists on one
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # what api_key_env may hold: a variable's name


class _Retryable(Exception):
    """One failed attempt that may succeed if repeated; `what` says what failed, for the user."""

    def __init__(self, what: str, retry_after: float | None = None):
        super().__init__(what)
        self.what = what
        self.retry_after = retry_after


class _Cancelled(Exception):
    """Another request of the same batch failed for good; this one stops early."""


class OpenAIBackend:
    def __init__(self, config: OpenAIModel):
        from openai import OpenAI

        if not config.base_url:
            # without it the client would fall back to OPENAI_BASE_URL or api.openai.com: never
            # send a request anywhere the config does not name
            raise BackendError(
                "base_url: the openai backend needs the server's URL, e.g. "
                "base_url: http://127.0.0.1:8000/v1 under models.<role> in the config"
            )
        self.config = config
        self.model_id = config.model
        key = read_api_key(config.api_key_env)
        # kept only to scrub it from server messages; never shown
        self._scrub: Callable[[str], str] = lambda s: s.replace(key, "***") if len(key) > 3 else s
        self._client = OpenAI(api_key=key, base_url=config.base_url, timeout=config.timeout_s, max_retries=0)
        self.base_url = str(self._client.base_url).rstrip("/")

    def __repr__(self) -> str:
        return f"OpenAIBackend(base_url={self.base_url!r}, model={self.model_id!r})"

    # --- batch: concurrent requests, results in order, the first failure stops the rest
    def generate(self, prompts: list[Messages], params: SamplingParams) -> list[Completion]:
        """Chat: POST /v1/chat/completions per prompt."""
        return self._batch(prompts, params)

    def complete(self, prompts: list[str], params: SamplingParams) -> list[Completion]:
        """Raw completion: POST /v1/completions per prompt (the server applies no chat template)."""
        return self._batch(prompts, params)

    def _batch(self, prompts: list, params: SamplingParams) -> list[Completion]:
        if not prompts:
            return []
        stop = threading.Event()
        workers = min(self.config.max_concurrency, len(prompts))
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="psilm-openai")
        try:
            # seed + i: identical prompts in one batch still get different samples, as in the
            # transformers backend, while the whole batch stays reproducible
            futures = [
                pool.submit(self._request, m, params, _seed(params, i), stop) for i, m in enumerate(prompts)
            ]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            failed = [f for f in futures if f in done and f.exception() is not None]
            if failed:
                raise failed[0].exception()  # type: ignore[misc]
        except BaseException:
            # the rest of the batch stops at its next attempt; a request in flight is not waited for
            stop.set()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()
        return [f.result() for f in futures]

    # --- one request with retries
    def _request(
        self, prompt: Messages | str, params: SamplingParams, seed: int | None, stop: threading.Event
    ) -> Completion:
        import openai

        raw = isinstance(prompt, str)
        kwargs: dict[str, Any] = dict(
            model=self.config.model,
            **({"prompt": prompt} if raw else {"messages": prompt}),
            temperature=params.temperature,
            top_p=params.top_p,
            max_tokens=params.max_tokens,
        )
        if seed is not None:
            kwargs["seed"] = seed
        if params.stop:
            kwargs["stop"] = list(params.stop)
        if params.json_schema is not None and not raw:  # /completions has no standard field for it
            kwargs["response_format"] = response_format(params.json_schema, self.config.json_format)

        attempts = self.config.max_retries + 1
        what = "no attempt made"
        for attempt in range(1, attempts + 1):
            if stop.is_set():
                raise _Cancelled()
            try:
                create = self._client.completions.create if raw else self._client.chat.completions.create
                out = to_completion(create(**kwargs), raw=raw)
                out.text = self._scrub(out.text)  # a server echoing the key never gets it on disk
                return out
            except _Retryable as e:
                failure = e
            except openai.APITimeoutError:
                failure = _Retryable(f"no answer within timeout_s={self.config.timeout_s:g} s")
            except openai.APIConnectionError as e:
                failure = _Retryable(connection_reason(e))
            except openai.APIStatusError as e:
                status = e.status_code
                if status not in RETRY_STATUSES and status < 500:
                    raise BackendError(self._client_error(e, "response_format" in kwargs)) from None
                failure = _Retryable(
                    f"HTTP {status}{self._server_says(e)}", parse_retry_after(e.response.headers)
                )
            except openai.OpenAIError as e:  # e.g. APIResponseValidationError
                failure = _Retryable(f"unreadable response ({type(e).__name__})")
            except ValueError as e:
                # a garbled body: bad JSON, or JSON of the wrong shape (pydantic's ValidationError)
                failure = _Retryable(f"unreadable response ({type(e).__name__})")
            what = failure.what
            if attempt < attempts and stop.wait(backoff(attempt, failure.retry_after)):
                raise _Cancelled()
        raise BackendError(
            f"{self.base_url}: {what}, {attempts} attempt(s) failed; check that the server is up "
            f"and serves model {self.config.model!r}, or raise max_retries / timeout_s of this "
            "model under models.* in the config"
        )

    def _server_says(self, e: Any) -> str:
        """': <message>' from an error body, one line, short, with the key scrubbed."""
        body = getattr(e, "body", None)
        msg: Any = None
        if isinstance(body, dict):
            err = body.get("error", body)
            msg = err.get("message") if isinstance(err, dict) else err
            msg = msg or body.get("detail") or body.get("message")
        elif isinstance(body, str):
            msg = body
        if not msg:
            return ""
        text = " ".join(self._scrub(str(msg)).split())
        return f": {text[:200]}{'...' if len(text) > 200 else ''}"

    def _client_error(self, e: Any, structured: bool = False) -> str:
        status = e.status_code
        says = self._server_says(e)
        where = f"{self.base_url} answered HTTP {status}{says}"
        if status in (401, 403):
            env = self.config.api_key_env
            source = f"the environment variable {env}" if env else "no key (api_key_env is unset)"
            return f"{where}; the server rejected the API key from {source}: set api_key_env"
        if status == 404:
            return (
                f"{where}; check models.*.model ({self.config.model!r}) against "
                f"GET {self.base_url}/models, and that base_url ends in /v1"
            )
        if structured:
            other = "json_object" if self.config.json_format == "json_schema" else "json_schema"
            return (
                f"{where}; the request asked for JSON by response_format ({self.config.json_format}): set "
                f"json_format: {other} of this model under models.*, or generate.structured=off"
            )
        return f"{where}; the request was refused, check this model's settings (model, n_ctx, sampling)"

    def close(self) -> None:
        self._client.close()


def response_format(schema: dict, form: str) -> dict:
    """The chat request's response_format for answers that follow `schema` (OpenAIModel.json_format)."""
    if form == "json_object":  # llama-cpp-python's server (and Anyscale's JSON mode)
        return {"type": "json_object", "schema": schema}
    return {"type": "json_schema", "json_schema": {"name": "instance", "schema": schema, "strict": True}}


def read_api_key(env: str | None) -> str:
    """The key from the variable `env` names; a dummy key when none is named."""
    if env is None:
        return NO_KEY
    if not ENV_NAME.fullmatch(env):
        # most likely the key itself was pasted here: never echo it
        raise BackendError(
            "api_key_env must be the *name* of an environment variable (e.g. OPENAI_API_KEY), "
            "not the key itself; export the key in that variable"
        )
    key = os.environ.get(env)
    if not key:
        state = "unset" if key is None else "empty"
        raise BackendError(
            f"api_key_env: the environment variable {env} is {state}; export {env}=<your key>, "
            "or remove api_key_env for servers that need no key"
        )
    return key


def to_completion(resp: Any, raw: bool = False) -> Completion:
    """Completion from a chat.completion object (raw: a text_completion one); _Retryable if the
    body was not one."""
    choices = getattr(resp, "choices", None)
    if not isinstance(choices, list) or not choices:
        raise _Retryable("unreadable response (no choices)")
    choice = choices[0]
    if raw:
        text = getattr(choice, "text", None)
    else:
        text = getattr(getattr(choice, "message", None), "content", None)
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise _Retryable("unreadable response (message content is not text)")
    usage = getattr(resp, "usage", None)
    return Completion(
        text=text.strip(),
        prompt_tokens=_int(getattr(usage, "prompt_tokens", 0)),
        completion_tokens=_int(getattr(usage, "completion_tokens", 0)),
        finish_reason=getattr(choice, "finish_reason", None),
    )


def connection_reason(e: BaseException) -> str:
    """What went wrong on the wire, in words: walks the chain of causes."""
    import socket

    chain: list[BaseException] = []
    x: BaseException | None = e
    while x is not None and x not in chain:
        chain.append(x)
        x = x.__cause__ or x.__context__
    names = {type(c).__name__ for c in chain}
    if any(isinstance(c, ConnectionRefusedError) for c in chain):
        return "connection refused"
    if any(isinstance(c, socket.gaierror) for c in chain):
        return "host name not found"
    if "RemoteProtocolError" in names or "ReadError" in names:
        return "the server closed the connection mid-response"
    if any(isinstance(c, TimeoutError) for c in chain) or any("Timeout" in n for n in names):
        return "connection timed out"
    detail = str(chain[-1]).strip() or type(chain[-1]).__name__
    return f"connection failed ({' '.join(detail.split())[:120]})"


def parse_retry_after(headers: Any) -> float | None:
    """Seconds from Retry-After-Ms / Retry-After (seconds or HTTP date), clipped; None if absent."""
    if headers is None:
        return None
    try:
        if (ms := headers.get("retry-after-ms")) is not None:
            return min(max(float(ms) / 1000, 0.0), RETRY_AFTER_CAP_S)
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            seconds = float(value)
        except ValueError:
            seconds = (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds()
        return min(max(seconds, 0.0), RETRY_AFTER_CAP_S)
    except (TypeError, ValueError, OverflowError):
        return None


def backoff(attempt: int, retry_after: float | None = None) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based)."""
    if retry_after is not None:
        return retry_after
    return min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)


def _seed(params: SamplingParams, i: int) -> int | None:
    return None if params.seed is None else params.seed + i


def _int(v: Any) -> int:
    return v if isinstance(v, int) else 0
