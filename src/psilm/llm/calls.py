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
from psilm.errors import BackendError
from psilm.llm.base import SCORING_BACKENDS, Backend, Completion, Prompt, SamplingParams, run_prompts

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
        # the same text sent as chat or as raw completion never shares a record
        what = {"completion": prompt} if isinstance(prompt, str) else {"chat": prompt}
        return fingerprint([rid, what, params.key(), self.model_id])

    def __call__(
        self,
        requests: list[Request],
        params: SamplingParams,
    ) -> dict[str, Completion]:
        keys = {rid: self._key(rid, msgs, params) for rid, msgs in requests}

        def run(block: list, start: int) -> list[dict]:
            # each block has a seed derived from its position (see _answer)
            block_params = params if params.seed is None else replace(params, seed=params.seed + start)
            return [asdict(out) for out in run_prompts(self.backend, [m for _, m in block], block_params)]

        result = {}
        for rid, rec in self._answer([rid for rid, _ in requests], requests, keys, run).items():
            self.tokens["completion"] += rec["completion_tokens"]
            result[rid] = Completion(
                rec["text"], rec["prompt_tokens"], rec["completion_tokens"], rec.get("finish_reason")
            )
        return result

    def score(self, requests: list[tuple[str, str, str]]) -> dict[str, float]:
        """(request id, plain-text prompt, text) -> log-probability of the text continuing the prompt
        (Backend.score: llamacpp and transformers), logged and resumed like completions."""
        keys = {
            rid: fingerprint([rid, {"score": prompt, "text": text}, self.model_id])
            for rid, prompt, text in requests
        }

        def run(block: list, start: int) -> list[dict]:
            scorer = getattr(self.backend, "score", None)
            if scorer is None:
                raise BackendError(
                    f"the {self.role} model {self.model_id!r} cannot score text: its backend has no "
                    f"log-probabilities here (use one of {', '.join(SCORING_BACKENDS)})"
                )
            return [asdict(s) for s in scorer([p for _, p, _ in block], [t for _, _, t in block])]

        done = self._answer([rid for rid, _, _ in requests], requests, keys, run)
        return {rid: rec["logprob"] for rid, rec in done.items()}

    def _answer(self, rids: list[str], requests: list, keys: dict[str, str], run) -> dict[str, dict]:
        """Each request's logged record, asking `run(block, start)` only for blocks with a request
        not yet in the log. Blocks sit at fixed positions of the request list and each block is
        always run whole: a resumed run asks the backend exactly what an uninterrupted run asked,
        so seeded backends give the same records."""
        todo = sum(keys[rid] not in self._done for rid in rids)
        progress = self.on_progress(todo) if self.on_progress and todo else None
        for start in range(0, len(requests), self.chunk):
            block = requests[start : start + self.chunk]
            if all(keys[rid] in self._done for rid in rids[start : start + self.chunk]):
                continue
            fresh = 0
            for rid, out in zip(rids[start : start + self.chunk], run(block, start), strict=True):
                if keys[rid] in self._done:
                    continue
                fresh += 1
                rec = {"key": keys[rid], "id": rid, "role": self.role, "model": self.model_id, **out}
                self.log.append(rec)
                self._done[rec["key"]] = rec
                self.new_calls += 1
            if progress:
                progress(fresh)
        result = {}
        for rid in rids:
            result[rid] = rec = self._done[keys[rid]]
            self.tokens["prompt"] += rec["prompt_tokens"]
        return result

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
