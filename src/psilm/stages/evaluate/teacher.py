"""The teacher answering the test rows itself, with the seeds as few-shot examples: the reference
a trained student is priced against (what it scores, and what a prediction costs).

Two prompt shapes, each with the task's description and, where it has them, every label's meaning:
- turns: the seeds as chat turns (the seed as the user's message, its answer as the assistant's),
  then the row to answer;
- listing: one message that lists the seeds with their answers, then the row.
Where the task has a label set (classification, multiple choice), the answer is held to it: a
backend that constrains decoding (llama.cpp's grammar) can only write one of the labels, so
nothing is unreadable; elsewhere the answer is read as the students' generated answers are.
Which shape a run uses is `evaluate.teacher_prompt`; benchmarks/teacher_answers.py chooses it on
rows of the pool, never on test rows (docs/defaults.md#evaluate).
"""

from __future__ import annotations

import time
from typing import Literal

from psilm.llm.base import Messages, SamplingParams
from psilm.llm.calls import ModelCaller
from psilm.tasks import Example, Task

TeacherPrompt = Literal["turns", "listing"]


def _system(task: Task) -> str:
    c = task.config
    lines = [task.instruction()]
    if c.label_descriptions:
        lines += ["", "What each label means:"]
        lines += [f"- {lb}: {c.label_descriptions[lb]}" for lb in task.labels if c.label_descriptions.get(lb)]
    return "\n".join(lines)


def few_shot_prompt(task: Task, seeds: list[Example], text: str, shape: TeacherPrompt) -> Messages:
    """The chat messages that ask the teacher to answer `text`, the seeds shown as examples."""
    if shape == "turns":
        turns: Messages = [{"role": "system", "content": _system(task)}]
        for x in seeds:
            turns += [
                {"role": "user", "content": task.user_text(x.input)},
                {"role": "assistant", "content": x.output},
            ]
        return [*turns, {"role": "user", "content": task.user_text(text)}]
    shown = "\n\n".join(f"{task.user_text(x.input)}\nAnswer: {x.output}" for x in seeds)
    body = f"{_system(task)}\n\nExamples:\n\n{shown}\n\n{task.user_text(text)}\nAnswer:"
    return [{"role": "user", "content": body}]


def answer_schema(task: Task, row: Example) -> dict | None:
    """A JSON schema that admits only the row's answer options (a JSON string), or None."""
    options = task.answer_options(row)
    return {"type": "string", "enum": list(options)} if options else None


def read_answer(task: Task, text: str, held: bool) -> str | None:
    """The answer in the teacher's text: the JSON string a held answer is, else the task's reading."""
    if held:
        import json

        try:
            value = json.loads(text)
        except (json.JSONDecodeError, TypeError):
            value = None
        if isinstance(value, str):
            return task.extract(value) if task.kind == "classification" else value
    return task.extract(text)


def teacher_predictions(
    task: Task,
    seeds: list[Example],
    rows: list[Example],
    teacher: ModelCaller,
    shape: TeacherPrompt,
    max_tokens: int,
    seed: int,
) -> tuple[list[str | None], list[str], float]:
    """(answer per row or None, the teacher's text per row, seconds spent answering): greedy, one
    request per row, each held to the row's options where the task has them and the backend can."""
    held = "chat" in teacher.json_constrained and not teacher.remote
    by_schema: dict[str, list[tuple[int, Example]]] = {}
    for i, row in enumerate(rows):  # rows with the same options share one call (one grammar)
        schema = answer_schema(task, row) if held else None
        by_schema.setdefault(repr(schema), []).append((i, row))
    preds: list[str | None] = [None] * len(rows)
    texts: list[str] = [""] * len(rows)
    teacher.backend  # noqa: B018 - loaded before the clock starts: the time is the answering's
    started = time.perf_counter()
    for group in by_schema.values():
        schema = answer_schema(task, group[0][1]) if held else None
        params = SamplingParams(
            temperature=0.0, top_p=1.0, max_tokens=max_tokens, seed=seed, json_schema=schema
        )
        requests = [(f"answer/{i}", few_shot_prompt(task, seeds, row.input, shape)) for i, row in group]
        out = teacher(requests, params)
        for (i, _), (rid, _) in zip(group, requests, strict=True):
            texts[i] = out[rid].text
            preds[i] = read_answer(task, out[rid].text, schema is not None)
    return preds, texts, time.perf_counter() - started
