"""Stage 5: score each arm's model on the held-out test split.

Two ways to read a model's answer:
  likelihood  (classification, multiple choice) each answer option is scored as the assistant's
              whole reply after the chat prompt: the sum of its tokens' log-probabilities,
              end-of-turn included, exactly the tokens training puts the loss on. The best wins.
              Nothing to parse, so a small model is judged on what it knows, not on its format.
  generate    (numeric, free text) greedy decoding, then task.extract and task.score; answers
              with nothing to extract count as `unparsed` (and as wrong). Free text is scored by
              exact match (accuracy) and, for partial credit, mean token F1 (`token_f1`).
The model is only read, never changed: it may be the per-process cached copy other stages use.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from psilm.errors import ConfigError, DataError
from psilm.llm.base import common_prefix_len
from psilm.settings import Settings
from psilm.tasks.base import Example, Task, token_f1


class EvaluateSettings(Settings):
    method: Literal["auto", "likelihood", "generate"] = Field(
        "auto", description="auto: label likelihood for classification / multiple choice, else generate."
    )
    batch_size: int = Field(16, ge=1, description="Test rows scored together.")
    max_tokens: int = Field(256, gt=0, description="For generated answers (numeric, free text).")


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials (95% for z=1.96); (0, 1) when n == 0."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass
class Predictions:
    """What a model answered for each example, before any scoring."""

    method: str  # likelihood or generate
    preds: list[str | None]  # the answer (an option, or what task.extract found; None: nothing)
    texts: list[str | None]  # generate: the raw reply; likelihood: None
    scores: list[list[float]] | None  # likelihood: each option's log-probability, in option order
    tokens: dict[str, int]
    load_s: float
    duration_s: float


def predict_examples(
    task: Task,
    model: str,
    examples: list[Example],
    settings: EvaluateSettings,
    device: str = "auto",
    on_progress: Callable[[int], None] | None = None,
    dtype: str = "auto",
) -> Predictions:
    """`model`'s answer to each example, read the way `settings.method` says; `on_progress(n)`
    is called after each batch with the number of examples it held. `device` and `dtype` are the
    student's (models.student), as in generation and training."""
    from psilm.llm import TransformersModel, hf, load_backend
    from psilm.llm.base import SamplingParams

    # --- validate
    has_options = all(task.answer_options(ex) for ex in examples)
    method = settings.method
    if method == "auto":
        method = "likelihood" if has_options else "generate"
    if method == "likelihood" and not has_options:
        raise ConfigError(
            f"evaluate.method: 'likelihood' needs answer options, and task {task.name!r} "
            f"({task.kind}) has none; use 'generate' or 'auto'"
        )

    # --- load (cached per process; read only)
    started = time.perf_counter()
    weights, tokenizer = hf.load(model, device, dtype)
    load_s = time.perf_counter() - started

    # --- predict
    started = time.perf_counter()
    texts: list[str | None]
    scores = None
    if method == "likelihood":
        scores, n_tokens = option_logprobs(
            weights, tokenizer, task, examples, settings.batch_size, on_progress
        )
        preds: list[str | None] = [
            opts[max(range(len(opts)), key=s.__getitem__)]
            for opts, s in zip((task.answer_options(ex) for ex in examples), scores, strict=True)
        ]
        texts = [None] * len(examples)
        token_counts = {"prompt": n_tokens, "completion": 0}
    else:
        student = TransformersModel(model=model, device=device, dtype=dtype, batch_size=settings.batch_size)
        backend = load_backend(student)  # the copy just loaded
        params = SamplingParams(temperature=0.0, max_tokens=settings.max_tokens)
        prompts = [task.prompt(ex.input) for ex in examples]
        outs = []
        for start in range(0, len(prompts), settings.batch_size):  # the backend's own batches
            outs.extend(backend.generate(prompts[start : start + settings.batch_size], params))
            if on_progress is not None:
                on_progress(len(prompts[start : start + settings.batch_size]))
        texts = [o.text for o in outs]
        preds = [task.extract(t) for t in texts]
        token_counts = {
            "prompt": sum(o.prompt_tokens for o in outs),
            "completion": sum(o.completion_tokens for o in outs),
        }
    duration = time.perf_counter() - started
    return Predictions(method, preds, texts, scores, token_counts, load_s, duration)


def evaluate_model(
    task: Task,
    model: str,
    examples: list[Example],
    settings: EvaluateSettings,
    device: str = "auto",
    dtype: str = "auto",
    progress: Callable[[int], Callable[[int], None]] | None = None,
) -> dict:
    """Accuracy of `model` (alias, GGUF file or HF folder) on `examples`, with per-row predictions.

    `progress(n_rows)`, when given, returns advance(n), called as rows are scored.
    """
    if not examples:
        raise DataError("evaluate: no test examples; check data.test and data.n_test")
    advance = progress(len(examples)) if progress is not None else None
    p = predict_examples(task, model, examples, settings, device, advance, dtype=dtype)
    preds, texts = p.preds, p.texts

    # --- score
    correct = [task.score(pred, ex.answer) >= 1.0 for pred, ex in zip(preds, examples, strict=True)]
    k, n = sum(correct), len(examples)
    lo, hi = wilson_interval(k, n)
    result = {
        "accuracy": k / n,
        "n": n,
        "correct": k,
        "ci95": [round(lo, 4), round(hi, 4)],
        "unparsed": sum(pred is None for pred in preds),
        "method": p.method,
        "model": model,
        "duration_s": round(p.duration_s, 2),
        "load_s": round(p.load_s, 2),
        "tokens": p.tokens,
    }
    for name in task.extra_scores:  # the kind's own scores beside the accuracy
        result[name] = EXTRA_SCORES[name](task, examples, preds, correct)
    result["predictions"] = [
        {"input": ex.input, "gold": ex.answer, "pred": pred, "correct": c}
        | ({"text": t} if t is not None else {})  # generate: the raw reply, beside the parsed answer
        for ex, pred, c, t in zip(examples, preds, correct, texts, strict=True)
    ]
    return result


def _per_class(labels: list[str], examples: list[Example], correct: list[bool]) -> dict:
    out = {}
    for label in labels:
        hits = [c for ex, c in zip(examples, correct, strict=True) if ex.answer == label]
        out[label] = {"accuracy": sum(hits) / len(hits) if hits else None, "n": len(hits)}
    return out


def _mean_token_f1(task: Task, examples: list[Example], preds: list, correct: list[bool]) -> float:
    f1 = [token_f1(p or "", ex.answer) for p, ex in zip(preds, examples, strict=True)]
    return round(sum(f1) / len(f1), 4)


# name -> (task, examples, predictions, correct) -> value: the scores a kind lists in `extra_scores`
EXTRA_SCORES: dict[str, Callable[..., object]] = {
    "per_class": lambda task, examples, preds, correct: _per_class(task.labels, examples, correct),
    "token_f1": _mean_token_f1,
}


# --- likelihood scoring -------------------------------------------------------------------------
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
    items = [_encode(tokenizer, task.prompt(ex.input), task.answer_options(ex)) for ex in examples]
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


def _encode(tokenizer, messages: list[dict], options: list[str]) -> Encoded:
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
