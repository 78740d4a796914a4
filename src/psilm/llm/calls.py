"""Model calls with a raw-response log: each response is on disk before the next is asked for.

Stages ask for completions by request id; answered ids come from the log, so a killed stage
resumes without calling the model again, and re-parsing never calls a model at all. The backend
is built only when some request is not yet answered.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, replace

from psilm.durable import JsonlLog, fingerprint
from psilm.llm.base import Backend, Completion, Prompt, SamplingParams, run_prompts

Request = tuple[str, Prompt]  # (request id, chat messages or a plain-text prompt to continue)


class ModelCaller:
    """Answers requests for one role (teacher, generator, student) through one backend."""

    def __init__(
        self,
        role: str,
        model_id: str,
        make_backend: Callable[[], Backend],
        log: JsonlLog,
        chunk: int = 16,
        remote: bool = False,
        json_constrained: tuple[str, ...] = (),
    ):
        self.role = role
        # prompt styles whose answers the backend holds to a JSON schema (ModelBase.json_constrained)
        self.json_constrained = json_constrained
        self.remote = remote  # served by a machine we cannot measure: energy is estimated from tokens
        self.model_id = model_id
        self._make_backend = make_backend
        self._backend: Backend | None = None
        self.log = log
        self.chunk = chunk  # requests per backend call between log writes
        self.tokens: dict[str, int] = defaultdict(int)
        self.new_calls = 0
        self._done: dict[str, dict] = {r["key"]: r for r in log.records}
        # set by the pipeline: on_progress(n_todo) returns advance(n) for one call's new requests
        self.on_progress: Callable[[int], Callable[[int], None]] | None = None

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            self._backend = self._make_backend()
        return self._backend

    def _key(self, rid: str, prompt: Prompt, params: SamplingParams) -> str:
        # a chat prompt keeps the key it always had (old raw logs stay valid); a plain-text prompt
        # is wrapped, so the same text sent as chat or as raw completion never shares a record
        what = {"completion": prompt} if isinstance(prompt, str) else prompt
        return fingerprint([rid, what, params.key(), self.model_id])

    def __call__(
        self,
        requests: list[Request],
        params: SamplingParams,
    ) -> dict[str, Completion]:
        keys = {rid: self._key(rid, msgs, params) for rid, msgs in requests}
        todo = sum(keys[rid] not in self._done for rid, _ in requests)
        progress = self.on_progress(todo) if self.on_progress and todo else None
        # Blocks sit at fixed positions of the request list and each block is always generated
        # whole, with a seed derived from its position: a resumed run asks the backend exactly
        # what an uninterrupted run asked, so seeded backends give the same records.
        for start in range(0, len(requests), self.chunk):
            block = requests[start : start + self.chunk]
            if all(keys[rid] in self._done for rid, _ in block):
                continue
            block_params = params if params.seed is None else replace(params, seed=params.seed + start)
            outs = run_prompts(self.backend, [m for _, m in block], block_params)
            fresh = 0
            for (rid, _), out in zip(block, outs, strict=True):
                if keys[rid] in self._done:
                    continue
                fresh += 1
                rec = {"key": keys[rid], "id": rid, "role": self.role, "model": self.model_id, **asdict(out)}
                self.log.append(rec)
                self._done[rec["key"]] = rec
                self.new_calls += 1
            if progress:
                progress(fresh)
        result = {}
        for rid, _ in requests:
            rec = self._done[keys[rid]]
            self.tokens["prompt"] += rec["prompt_tokens"]
            self.tokens["completion"] += rec["completion_tokens"]
            result[rid] = Completion(
                rec["text"], rec["prompt_tokens"], rec["completion_tokens"], rec.get("finish_reason")
            )
        return result

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
