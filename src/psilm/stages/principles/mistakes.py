"""The error level: the student's wrong answers to the seeds become principles (round 1 here;
a round's mistakes on its judge slice in mistake_principles).

The student answers as evaluation reads it (StudentAnswers): the likeliest option where the task has
options, else its greedy generation, parsed. An answer with nothing to read is no mistake of
content. A classification task's mistakes each give one checked example of the label the student
missed (checks.Forms); other tasks' give one line each, condensed into a few general principles.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from psilm.data import round_robin
from psilm.llm.base import SamplingParams
from psilm.llm.calls import ModelCaller
from psilm.stages.principles import prompts
from psilm.stages.principles.checks import Forms, holds_json
from psilm.stages.principles.reading import parse_list
from psilm.stages.principles.settings import PrinciplesSettings
from psilm.tasks import Example, Task


class StudentAnswers:
    """The student's answer to each seed, read as evaluation reads it: (answer or None, the text
    the teacher is shown). `answer(seeds)` does the work; `model_id` names the student."""

    def __init__(self, model_id: str, answer: Callable[[list[Example]], list[tuple[str | None, str]]]):
        self.model_id, self.answer = model_id, answer

    def __call__(self, seeds: list[Example]) -> list[tuple[str | None, str]]:
        return self.answer(seeds)


def generated_answers(task: Task, caller: ModelCaller, s: PrinciplesSettings, seed: int) -> StudentAnswers:
    """Greedy answers, parsed by the task (tasks without answer options, or a scripted student)."""
    n_tokens = s.student_max_tokens or (16 if task.short_answers else 256)
    greedy = SamplingParams(temperature=0.0, top_p=1.0, max_tokens=n_tokens, seed=seed)

    def answer(seeds: list[Example]) -> list[tuple[str | None, str]]:
        requests = [(f"principles/{seed}/student/{i}", task.prompt(x.input)) for i, x in enumerate(seeds)]
        out = caller(requests, greedy)
        return [(task.extract(out[rid].text), out[rid].text) for rid, _ in requests]

    return StudentAnswers(caller.model_id, answer)


def error_level(
    task: Task,
    seeds: list[Example],
    student: StudentAnswers,
    s: PrinciplesSettings,
    seed: int,
    ask,
    items,
    forms: Forms,
    length: str,
) -> dict[str, Any]:
    """The student's wrong answers to the seeds -> one principle each (classification: kept with
    the missed label, its example checked) or condensed general ones. An answer with nothing to
    read is no mistake of content: with every answer so, the level is skipped, saying why."""
    answers = student(seeds)
    unread = sum(pred is None for pred, _ in answers)
    mistakes = []
    for i, (x, (pred, text)) in enumerate(zip(seeds, answers, strict=True)):
        if pred is not None and task.score(pred, x.answer) < 1.0:
            mistakes.append({"seed": i, "predicted": pred, "gold": x.answer, "response": text})
    out: dict[str, Any] = {
        "student": student.model_id,
        "seeds": len(seeds),
        "unread": unread,
        "mistakes": len(mistakes),
        "details": [{k: m[k] for k in ("seed", "predicted", "gold")} for m in mistakes],
    }
    if unread == len(seeds):
        skipped = (
            f"error level skipped: none of the student's {len(seeds)} answers to the seeds held an "
            f"answer to read, so it made no mistake the teacher could learn from"
        )
        return {**out, "mistakes_sent": 0, "specific": [], "principles": [], "skipped": skipped}
    used = mistakes[: s.max_mistakes]
    fixed = task.fixed_categories()
    general: list[tuple[str | None, str]] = []
    specific: list[str] = []
    if used and fixed is not None:  # one form + example per mistake, kept with the missed label
        reqs = [
            (
                f"principles/{seed}/mistake/{m['seed']}",
                prompts.mistake_prompt(
                    task, seeds[m["seed"]], m["response"], as_json=True, lead=forms.lead, length=length
                ),
            )
            for m in used
        ]
        general = forms.per_mistake(reqs, [m["gold"] for m in used], s.max_mistakes)
        specific = [text for _, text in general]
    elif used:
        reqs = [
            (
                f"principles/{seed}/mistake/{m['seed']}",
                prompts.mistake_prompt(task, seeds[m["seed"]], m["response"]),
            )
            for m in used
        ]
        answered = ask("error", reqs)
        for rid, _ in reqs:
            specific.extend(items(answered[rid], 1))
        if specific:
            rid = f"principles/{seed}/condense"
            merged = items(
                ask("error", [(rid, prompts.condense_prompt(task, specific, s))])[rid], s.condense_to
            )
            general = [(None, text) for text in merged]
    return {**out, "mistakes_sent": len(used), "specific": specific, "principles": general}


def mistake_principles(
    task: Task,
    mistakes: list[dict],
    teacher: ModelCaller,
    seeds: list[Example],
    settings,
    seed: int,
    rnd: int,
) -> tuple[list[dict], dict[str, Any]]:
    """One principle per mistake (up to settings.max_mistakes, spread over categories), attached
    to the mistake's category (None for tasks without fixed categories). A classification task's
    are written as round 1's error principles are (principles.Forms: an example of the missed label,
    checked by the teacher); `settings` is the run's PrinciplesSettings. Returns (principles, notes)."""
    s = settings
    classify = task.fixed_categories() is not None
    used = round_robin(mistakes, s.max_mistakes, lambda m: str(m["category"]))
    dropped: Counter = Counter()
    forms = Forms(task, seeds, s, seed, lambda _level, r, how: teacher(r, how), dropped, holds_json(teacher))
    reqs = [
        (
            f"evolve/{seed}/round{rnd}/mistake/{m['row']}",
            prompts.mistake_prompt(
                task,
                Example(m["input"], str(m["output"]), str(m["gold"])),
                str(m["predicted"]),
                as_json=classify,
                lead=forms.lead if classify else None,
                length=forms.shape.length_words() if classify else None,
            ),
        )
        for m in used
    ]
    texts: list[tuple[Any, str]] = []
    if classify and reqs:
        texts = forms.per_mistake(reqs, [m["category"] for m in used], s.max_mistakes)
    elif reqs:
        params = SamplingParams(temperature=0.7, top_p=1.0, max_tokens=s.max_tokens, seed=seed)
        out = teacher(reqs, params)
        for m, (rid, _) in zip(used, reqs, strict=True):
            c = out[rid]
            got_texts = parse_list(c.text, s.min_chars, s.max_chars, dropped, c.finish_reason == "length")[:1]
            texts += [(m["category"], t) for t in got_texts]
    principles = [
        {
            "id": f"r{rnd}-e{k}",
            "level": "error",
            "category": category,
            "use": "create",
            "text": text,
            "source": f"teacher:{teacher.model_id}",
            "round": rnd,
        }
        for k, (category, text) in enumerate(texts, start=1)
    ]
    return principles, {"mistakes_sent": len(used), "dropped": dict(dropped)}


def file_principles(loaded: dict, rnd: int) -> list[dict]:
    """A person's principles file (as load_principles_file returns it) as round principles."""
    return [{**p, "id": f"r{rnd}-{p['id']}", "round": rnd} for p in loaded["principles"]]
