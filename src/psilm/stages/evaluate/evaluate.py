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

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from psilm.errors import ConfigError, DataError
from psilm.llm import TransformersModel, hf, load_backend
from psilm.llm.base import SamplingParams
from psilm.numbers import percent
from psilm.settings import Settings
from psilm.stages.evaluate.likelihood import option_logprobs
from psilm.tasks.base import Example, Task, token_f1


class EvaluateSettings(Settings):
    method: Literal["auto", "likelihood", "generate"] = Field(
        "auto", description="auto: label likelihood for classification / multiple choice, else generate."
    )
    batch_size: int = Field(16, ge=1, description="Test rows scored together.")
    max_tokens: int = Field(256, gt=0, description="For generated answers (numeric, free text).")
    teacher_prompt: Literal["turns", "listing"] = Field(
        "turns",
        description="The teacher_answers arm: the seeds as chat turns before the row (turns), or listed "
        "in one message (listing); docs/defaults.md#evaluate.",
    )


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials (z=1.96: 95 percent); (0, 1) when n == 0."""
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
    return score(task, examples, p, model)


def score(task: Task, examples: list[Example], p: Predictions, model: str) -> dict:
    """Accuracy with its Wilson interval, the kind's own scores and every row's prediction."""
    preds, texts = p.preds, p.texts
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


def _per_class(labels: list[str], examples: list[Example], preds: list, correct: list[bool]) -> dict:
    """Per label: accuracy on its rows, their count, and how many rows the model gave that label
    (a student that answers one label for most rows shows here, not in the accuracy alone)."""
    out = {}
    for label in labels:
        hits = [c for ex, c in zip(examples, correct, strict=True) if ex.answer == label]
        out[label] = {"accuracy": sum(hits) / len(hits) if hits else None, "n": len(hits),
                      "predicted": sum(p == label for p in preds)}  # fmt: skip
    return out


SKEW = 0.5  # one label given to at least half the rows, and twice its share of them, is named


def skew_note(arm: str, per_class: dict | None) -> str | None:
    """A line when the arm answers one label for most test rows, far beyond that label's share: its
    accuracy then says more about that one label than about the task; None otherwise."""
    per = {label: c for label, c in (per_class or {}).items() if isinstance(c, dict) and "predicted" in c}
    total = sum(c.get("n", 0) for c in per.values())
    if not per or not total:
        return None
    label, c = max(per.items(), key=lambda kv: kv[1]["predicted"])
    share, gold = c["predicted"] / total, c["n"] / total
    if share < SKEW or share < 2 * gold:
        return None
    return (f"{arm} answers '{label}' for {percent(share)} of the test rows, where {percent(gold)} are "
            f"'{label}': its accuracy follows that one label more than the task")  # fmt: skip


def _mean_token_f1(task: Task, examples: list[Example], preds: list, correct: list[bool]) -> float:
    f1 = [token_f1(p or "", ex.answer) for p, ex in zip(preds, examples, strict=True)]
    return round(sum(f1) / len(f1), 4)


# name -> (task, examples, predictions, correct) -> value: the scores a kind lists in `extra_scores`
EXTRA_SCORES: dict[str, Callable[..., object]] = {
    "per_class": lambda task, examples, preds, correct: _per_class(task.labels, examples, preds, correct),
    "token_f1": _mean_token_f1,
}
