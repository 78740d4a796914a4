"""Decoding many sequences at once in one llama.cpp context: the prompts laid out as a prefix tree
(a shared prefix evaluated once), one llama_decode per step for every unfinished sequence, each
with its own sampler chain (the grammar first, where a request has a JSON schema)."""

from __future__ import annotations

from psilm.errors import BackendError
from psilm.llm.base import SamplingParams, common_prefix_len

TOP_K = 50  # as transformers' generate; llama.cpp's own default is 40 (and min_p 0.05, off here)
N_BATCH = 512  # prompt tokens per llama_decode call


class Decoder:
    """Decodes a wave of tokenized prompts together in one context with a unified KV cache."""

    def __init__(self, llm, n_threads: int):
        import llama_cpp.llama_cpp as C

        self.C, self.llm, self.n_threads = C, llm, n_threads
        self.vocab = C.llama_model_get_vocab(llm.model)
        self.max_sequences = C.llama_max_parallel_sequences()
        self.ctx = None
        self.batch = None
        self.n_cells = self.n_seq = 0

    def _reserve(self, n_cells: int, n_seq: int) -> None:
        """A context with at least n_cells KV cells and n_seq sequences, grown only when needed."""
        C = self.C
        if self.ctx is not None and n_cells <= self.n_cells and n_seq <= self.n_seq:
            C.llama_memory_clear(C.llama_get_memory(self.ctx), True)
            return
        self.close()
        self.n_cells = max(n_cells, self.n_cells) + (-max(n_cells, self.n_cells)) % 256
        self.n_seq = max(n_seq, self.n_seq)
        p = C.llama_context_default_params()
        p.n_ctx, p.n_batch, p.n_ubatch = self.n_cells, N_BATCH, N_BATCH
        p.n_seq_max = self.n_seq
        p.kv_unified = True  # shared prefix cells: one KV buffer for all sequences
        p.flash_attn_type = C.LLAMA_FLASH_ATTN_TYPE_ENABLED  # skips other sequences' cells
        p.n_threads = p.n_threads_batch = self.n_threads
        p.no_perf = True
        self.ctx = C.llama_init_from_model(self.llm.model, p)
        if not self.ctx:
            raise BackendError(f"llama.cpp could not create a context of {self.n_cells} KV cells")
        self.batch = C.llama_batch_init(max(N_BATCH, self.n_seq), 0, self.n_seq)

    def run(
        self,
        prompts: list[list[int]],
        seeds: list[int | None],
        limits: list[int],
        params: SamplingParams,
        gbnf: str | None = None,
    ) -> list[tuple[list[int], str]]:
        """(generated token ids, finish reason) per prompt; prompts sorted, at most n_seq of them."""
        C, n = self.C, len(prompts)
        nodes = prefix_tree(prompts)
        self._reserve(len(nodes) + sum(limits), n)
        samplers = [sampler(C, params, seed, self.vocab, gbnf) for seed in seeds]
        gen: list[list[int]] = [[] for _ in range(n)]
        finish: list[str | None] = [None] * n
        try:
            # --- the prompts: every trie node once, tagged with all sequences through it
            first: dict[int, int] = {}  # sequence -> its first sampled token
            for start in range(0, len(nodes), N_BATCH):
                chunk = nodes[start : start + N_BATCH]
                self._fill((tok, pos, seqs, bool(ends)) for tok, pos, seqs, ends in chunk)
                self._decode()
                for j, (_, _, _, ends) in enumerate(chunk):
                    for s in ends:
                        first[s] = C.llama_sampler_sample(samplers[s], self.ctx, j)
            active = [s for s in range(n) if self._accept(s, first[s], gen, finish, limits, params.stop)]
            # --- the answers: one token per unfinished sequence per step
            pos = [len(p) for p in prompts]
            while active:
                self._fill((gen[s][-1], pos[s] + len(gen[s]) - 1, (s,), True) for s in active)
                self._decode()
                active = [
                    s
                    for j, s in enumerate(active)
                    if self._accept(
                        s, C.llama_sampler_sample(samplers[s], self.ctx, j), gen, finish, limits, params.stop
                    )
                ]
        finally:
            for smpl in samplers:
                C.llama_sampler_free(smpl)
        return [(gen[s], finish[s] or "length") for s in range(n)]

    def _accept(self, s, token, gen, finish, limits, stop) -> bool:
        """Record a sampled token; False when sequence s is finished."""
        if self.C.llama_vocab_is_eog(self.vocab, token):
            finish[s] = "stop"
            return False
        gen[s].append(token)
        if stop and cut_at_stop(text := self._text(gen[s]), stop) != text:
            finish[s] = "stop"
            return False
        if len(gen[s]) >= limits[s]:
            finish[s] = "length"
            return False
        return True

    def _text(self, ids: list[int]) -> str:
        return self.llm.detokenize(ids).decode("utf-8", errors="ignore")

    def _fill(self, tokens) -> None:
        b = self.batch
        b.n_tokens = 0
        for i, (tok, pos, seqs, logits) in enumerate(tokens):
            b.token[i], b.pos[i], b.logits[i] = tok, pos, logits
            b.n_seq_id[i] = len(seqs)
            for k, s in enumerate(seqs):
                b.seq_id[i][k] = s
            b.n_tokens = i + 1

    def _decode(self) -> None:
        rc = self.C.llama_decode(self.ctx, self.batch)
        if rc != 0:
            raise BackendError(
                f"llama.cpp llama_decode failed (code {rc}) in a batch of {self.batch.n_tokens}"
            )

    def close(self) -> None:
        if self.batch is not None:
            self.C.llama_batch_free(self.batch)
            self.batch = None
        if self.ctx is not None:
            self.C.llama_free(self.ctx)
            self.ctx = None


def prefix_tree(prompts: list[list[int]]) -> list[tuple[int, int, tuple[int, ...], tuple[int, ...]]]:
    """The nodes of the prompts' prefix trie, depth first: (token, position, sequences through
    it, sequences whose prompt ends there). Prompts must be sorted; sequence i is prompts[i]."""
    n = len(prompts)
    lcp = [0] + [common_prefix_len(prompts[i - 1], prompts[i]) for i in range(1, n)]
    nodes = []
    for i, p in enumerate(prompts):
        # sharers of position k: i and the following prompts while their common prefix > k
        reach = []  # reach[j] = min(lcp[i+1 .. i+1+j])
        m = len(p)
        for j in range(i + 1, n):
            m = min(m, lcp[j])
            if m <= lcp[i]:
                break
            reach.append(m)
        for k in range(lcp[i], len(p)):
            seqs = (i, *(i + 1 + j for j, r in enumerate(reach) if r > k))
            ends = tuple(s for s in seqs if len(prompts[s]) == k + 1)
            nodes.append((p[k], k, seqs, ends))
    return nodes


def sampler(C, params: SamplingParams, seed: int | None, vocab=None, gbnf: str | None = None):
    chain = C.llama_sampler_chain_init(C.llama_sampler_chain_default_params())
    if gbnf is not None:  # first: only tokens the grammar allows reach top-k, top-p and the draw
        grammar = C.llama_sampler_init_grammar(vocab, gbnf.encode("utf-8"), b"root")
        if not grammar:
            C.llama_sampler_free(chain)
            raise BackendError("llama.cpp could not parse the grammar made from the JSON schema")
        C.llama_sampler_chain_add(chain, grammar)
    if params.temperature <= 0:
        C.llama_sampler_chain_add(chain, C.llama_sampler_init_greedy())
        return chain
    C.llama_sampler_chain_add(chain, C.llama_sampler_init_top_k(TOP_K))
    C.llama_sampler_chain_add(chain, C.llama_sampler_init_top_p(params.top_p, 1))
    C.llama_sampler_chain_add(chain, C.llama_sampler_init_temp(params.temperature))
    C.llama_sampler_chain_add(
        chain, C.llama_sampler_init_dist(C.LLAMA_DEFAULT_SEED if seed is None else seed & 0xFFFFFFFF)
    )
    return chain


def cut_at_stop(text: str, stop: list[str]) -> str:
    for s in stop:
        if s and s in text:
            text = text.split(s, 1)[0]
    return text
