"""Likelihood scoring: each answer option scored as the assistant's whole reply after the chat
prompt (the sum of its tokens' log-probabilities, end-of-turn included: the tokens training puts
the loss on), the rows' shared prompt prefix run once."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

from psilm.errors import DataError
from psilm.llm.base import common_prefix_len
from psilm.tasks.base import Example, Task


def probabilities(scores: list[float]) -> list[float]:
    """Option log-likelihoods (option_logprobs) -> probabilities over the options (a softmax)."""
    top = max(scores)
    exp = [math.exp(s - top) for s in scores]
    total = sum(exp)
    return [e / total for e in exp]


def option_logprobs(
    model,
    tokenizer,
    task: Task,
    examples: list[Example],
    batch_size: int,
    on_progress: Callable[[int], None] | None = None,
) -> tuple[list[list[float]], int]:
    """Per example, the log-probability of each answer option as the assistant's reply.

    The prompt text every example shares (system instruction, template, input prefix) is run
    once; each batch continues from its KV cache with only the rows' own tokens, and every
    option continues from the rows' cache. Returns the scores and the number of tokens run
    through the model.
    """
    items = [encode(tokenizer, task.prompt(ex.input), task.answer_options(ex)) for ex in examples]
    shared = _shared_prefix(items)
    cache, tokens = _prefix_cache(model, shared)
    # batches of similar length waste little on padding; scores go back in the examples' order
    order = sorted(range(len(items)), key=lambda i: len(items[i][0]))
    scores: list[list[float]] = [[] for _ in items]
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        batch = [(items[i][0][len(shared) :], items[i][1]) for i in rows]
        batch_scores, batch_tokens = _score_batch(model, tokenizer.pad_token_id, cache, len(shared), batch)
        for i, row_scores in zip(rows, batch_scores, strict=True):
            scores[i] = row_scores
        tokens += batch_tokens
        if on_progress is not None:
            on_progress(len(rows))
    return scores, tokens


Encoded = tuple[list[int], list[tuple[list[int], int]]]


def encode(tokenizer, messages: list[dict], options: list[str]) -> Encoded:
    """(prompt ids, [(continuation ids, index of the first scored token)] per option).

    Tokenized as TRL tokenizes a prompt-completion pair: the completion starts where the prompt
    alone and prompt+completion diverge, so what is scored is what training puts the loss on.
    """

    def ids(msgs: list[dict], gen_prompt: bool) -> list[int]:
        text = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen_prompt)
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    prompt = ids(messages, True)
    fulls = [ids(messages + [{"role": "assistant", "content": opt}], False) for opt in options]
    starts = [common_prefix_len(prompt, f) for f in fulls]
    cut = min(starts)
    if cut == 0:
        raise DataError("evaluate: the chat template renders an empty prompt; cannot score options")
    return fulls[0][:cut], [(f[cut:], s - cut) for f, s in zip(fulls, starts, strict=True)]


def _shared_prefix(items: list[Encoded]) -> list[int]:
    """The token ids every prompt starts with, leaving each prompt at least one token of its own."""
    first = items[0][0]
    n = min(len(prefix) for prefix, _ in items) - 1
    for prefix, _ in items[1:]:
        n = min(n, common_prefix_len(first, prefix))
    return first[: max(n, 0)]


def _prefix_cache(model, shared: list[int]):
    """(KV cache of the shared prompt prefix for one row, tokens run); (None, 0) when there is none."""
    import torch

    if not shared:
        return None, 0
    with torch.inference_mode():
        out = model(input_ids=torch.tensor([shared], device=model.device), use_cache=True)
    return _cache_of(out), len(shared)


def _cache_of(out):
    return out.cache if hasattr(out, "cache") else out.past_key_values


def _score_batch(
    model, pad_id: int, prefix_cache, n_shared: int, items: list[Encoded]
) -> tuple[list[list[float]], int]:
    """Score a batch whose prompts all begin with the `n_shared` tokens held in `prefix_cache`.

    Rows are laid out as [shared prefix][padding][row tokens][option tokens]: padding sits between
    the shared prefix and each row, masked, and positions count only real tokens, so every row
    sees exactly the unpadded sequence.
    """
    import torch

    dev = model.device
    n_rows = len(items)
    cache_arg = _cache_kwarg(model)
    # --- each row's own prompt tokens, left-padded after the shared prefix
    width = max(len(prefix) for prefix, _ in items)
    ids = torch.full((n_rows, width), pad_id, dtype=torch.long)
    own = torch.zeros((n_rows, width), dtype=torch.long)
    for i, (prefix, _) in enumerate(items):
        ids[i, width - len(prefix) :] = torch.tensor(prefix)
        own[i, width - len(prefix) :] = 1
    ids, own = ids.to(dev), own.to(dev)
    mask = torch.cat([torch.ones((n_rows, n_shared), dtype=torch.long, device=dev), own], dim=-1)
    prompt_len = mask.sum(-1)
    past = {}
    if prefix_cache is not None:
        rows_cache = copy.deepcopy(prefix_cache)
        rows_cache.batch_repeat_interleave(n_rows)
        past = {cache_arg: rows_cache}
    with torch.inference_mode():
        out = model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=n_shared + (own.cumsum(-1) - 1).clamp(min=0),
            use_cache=True,
            logits_to_keep=1,  # only the next-token distribution; full logits are vocab x length
            **past,
        )
        first = torch.log_softmax(out.logits[:, -1].float(), dim=-1)  # predicts each option's first token
        cache = _cache_of(out)
        scores: list[list[float]] = [[] for _ in range(n_rows)]
        tokens = int(own.sum())
        for j in range(max(len(opts) for _, opts in items)):
            # --- option j of every row (rows with fewer options get one ignored pad token)
            conts = [opts[j] if j < len(opts) else ([pad_id], 1) for _, opts in items]
            length = max(1, max(len(c) for c, _ in conts))
            cids = torch.full((n_rows, length), pad_id, dtype=torch.long)
            cmask = torch.zeros((n_rows, length), dtype=torch.long)
            scored = torch.zeros((n_rows, length), dtype=torch.bool)
            for i, (c, s) in enumerate(conts):
                cids[i, : len(c)] = torch.tensor(c, dtype=torch.long)
                cmask[i, : len(c)] = 1
                scored[i, s : len(c)] = True
            cids, cmask, scored = cids.to(dev), cmask.to(dev), scored.to(dev)
            step = model(
                input_ids=cids,
                attention_mask=torch.cat([mask, cmask], dim=-1),
                position_ids=prompt_len[:, None] + torch.arange(length, device=dev)[None, :],
                **{cache_arg: copy.deepcopy(cache)},  # each option continues the same prompt
                use_cache=True,
            )
            logp = torch.log_softmax(step.logits.float(), dim=-1)
            predicting = torch.cat([first[:, None, :], logp[:, :-1, :]], dim=1)
            token_lp = predicting.gather(-1, cids[:, :, None]).squeeze(-1)
            totals = torch.where(scored, token_lp, 0.0).sum(-1).tolist()
            for i, (_, opts) in enumerate(items):
                if j < len(opts):
                    scores[i].append(totals[i])
            tokens += int(cmask.sum())
    return scores, tokens


def _cache_kwarg(model) -> str:
    """transformers renamed `past_key_values` to `cache` during 5.x; accept either."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
