"""Stage 1: a teacher writes task-completion principles at several levels.

Levels (each switchable in `levels`, so each can be measured):
- task: rules every new instance follows (a rule the seeds break, or that names some labels, is
  dropped: it would head every generation prompt).
- category: per category (the labels of a classification task; otherwise sub-types the teacher
  finds in the seeds) new example instances with a few words on their form, each checked
  (principle_checks.py), and, where the generator solves its inputs, advice for solving one.
- error: the student answers each seed as evaluation reads it (label likelihood where the task
  has options); the teacher writes one principle per wrong answer (a classification task's stay
  with the missed label, checked like category ones), or condenses them (as LEAP does, arXiv
  2402.05403). Answers with nothing to read are not mistakes.

The teacher's answers are read forgivingly and every drop is counted by reason, per category
(`coverage`): a category left with fewer than `per_category` principles is asked again, told why,
and one still short is named on the console, in the manifest and in the report. A person can
write the principles instead (`principles_file.load_principles_file`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import Field

from psilm.errors import ConfigError, DataError
from psilm.llm.base import Completion, Messages, SamplingParams
from psilm.llm.calls import ModelCaller
from psilm.settings import Settings
from psilm.stages import principle_prompts as prompts_
from psilm.stages.principle_checks import Forms, Item, rule_problem
from psilm.stages.principle_prompts import _cap, parse_categories, parse_list
from psilm.tasks import Example, Task

# teachers too small to write principles: a run that uses one says so (console, manifest, report)
WEAK_TEACHERS = ("smollm2-135m",)

Level = Literal["task", "category", "error"]
LEVELS: tuple[str, ...] = get_args(Level)  # in the order reports show them
USES = ("create", "solve", "both")


class PrinciplesSettings(Settings):
    # --- which levels (each switchable, so each can be measured)
    levels: list[Level] = Field(default_factory=lambda: list(LEVELS), description="Levels to write.")
    # --- a person's principles instead of the teacher's
    file: Path | None = Field(
        None, description="JSON/YAML principles file; when set, the teacher is not asked."
    )
    # --- teacher sampling
    temperature: float = Field(0.7, ge=0, description="Teacher sampling temperature.")
    max_tokens: int = Field(256, gt=0, description="Per teacher response; lists are short.")
    # --- how many: few and short, since each generation prompt carries only one or two
    task_count: int = Field(3, ge=1, description="Task-level principles asked for.")
    per_category: int = Field(2, ge=1, description="Principles per category per kind (create/solve).")
    extra_forms: int = Field(
        2,
        ge=0,
        description="Create forms asked beyond per_category, so that the example checks (off-label, "
        "a copy of a seed, a placeholder) can drop some and leave per_category.",
    )
    max_categories: int = Field(
        4, ge=1, description="Sub-types the teacher may find in non-classification seeds."
    )
    condense_to: int = Field(3, ge=1, description="Error-level principles kept after condensing.")
    check_task_rules: bool = Field(
        True,
        description="Drop a task rule that names some labels but not all, or that a seed breaks (a "
        "length, 'must be a question'): a task rule heads every generation prompt, every label's.",
    )
    refill: bool = Field(
        True,
        description="A category left with fewer than per_category create principles is asked once "
        "more, shown the examples that were dropped and why (another label, too long, a copy of a "
        "seed); one more teacher call per such category.",
    )
    example_stretch: float = Field(
        2.0,
        ge=1.0,
        description="An example in a principle may be at most this many times as long as the longest "
        "seed and at least the shortest over this, in characters: one instance of this task's size.",
    )
    lead_forms: bool = Field(
        False,
        description="Create and mistake forms begin with 'Ask' (questions) or 'Write a <noun>', held "
        "to it where the teacher's backend constrains answers: the 1.5B teacher otherwise wrote the "
        "label's name as the form, leaving a bare example as the principle.",
    )
    # --- what the teacher sees
    seeds_shown: int = Field(8, ge=1, description="Seeds shown per teacher prompt (long prompts cost).")
    # --- error level: the student answers every seed greedily
    student_max_tokens: int | None = Field(
        None,
        gt=0,
        description="Per generated student answer to a seed (tasks without answer options); None: "
        "256 for a worked solution, 16 otherwise.",
    )
    max_mistakes: int = Field(8, ge=1, description="Mistakes sent to the teacher, one prompt each.")
    # --- what counts as a principle line
    min_chars: int = Field(15, ge=1, description="Shorter lines are fragments, not principles.")
    max_chars: int = Field(
        300,
        ge=1,
        description="Longer rules or forms would crowd a small model's prompt (an example's length "
        "follows the seeds: example_stretch).",
    )


# ---------------------------------------------------------------------------------------------
# The student's answers to the seeds (the error level)
# ---------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------
# The stage
# ---------------------------------------------------------------------------------------------
def write_principles(
    task: Task,
    seeds: list[Example],
    teacher: ModelCaller,
    settings: PrinciplesSettings,
    seed: int,
    student: StudentAnswers | None = None,
) -> dict:
    """Ask the teacher for principles at each level in `settings.levels`; see the module doc."""
    # --- validate
    if not seeds:
        raise DataError("principles: no seed examples to write principles from")
    if "error" in settings.levels and student is None:
        raise ConfigError(
            "principles.levels includes 'error', which needs a student model to "
            "answer the seeds; pass one or drop 'error' from principles.levels"
        )
    s = settings
    params = SamplingParams(temperature=s.temperature, top_p=1.0, max_tokens=s.max_tokens, seed=seed)
    source = f"teacher:{teacher.model_id}"
    principles: list[dict] = []
    prompts: list[dict] = []
    dropped: Counter = Counter()
    notes: list[str] = []
    rules_dropped: list[dict] = []

    def ask(level: str, requests: list[tuple[str, Messages]], how: SamplingParams = params) -> dict:
        out = teacher(requests, how)
        prompts.extend(
            {
                "level": level,
                "id": rid,
                "messages": m,
                "response": out[rid].text,
                "finish_reason": out[rid].finish_reason,
            }
            for rid, m in requests
        )
        return out

    def items(c: Completion, cap: int) -> list[str]:
        cut = c.finish_reason == "length"
        return _cap(parse_list(c.text, s.min_chars, s.max_chars, dropped, cut), cap, dropped)

    def add(level: str, category: str | None, use: str, texts: list[str], prefix: str) -> None:
        start = sum(p["id"].startswith(prefix) for p in principles)
        for k, text in enumerate(texts, start=start + 1):
            principles.append(
                {
                    "id": f"{prefix}{k}",
                    "level": level,
                    "category": category,
                    "use": use,
                    "text": text,
                    "source": source,
                }
            )

    forms = Forms(task, seeds, s, seed, ask, dropped, holds_json(teacher))
    length = forms.shape.length_words()

    # --- categories: the labels, or sub-types the teacher finds in the seeds
    categories: dict[str, str] = {}
    members: dict[str, list[Example]] = {}
    fixed = task.fixed_categories()
    if fixed is not None:
        categories = fixed
        members = {lb: [x for x in seeds if x.answer == lb] for lb in fixed}
    elif "category" in s.levels:
        rid = f"principles/{seed}/categories"
        text = ask("category", [(rid, prompts_.grouping_prompt(task, seeds, s))])[rid].text
        found = parse_categories(text, min(len(seeds), s.seeds_shown), s.max_categories, dropped)
        categories = {k: v["description"] for k, v in found.items()}
        members = {k: [seeds[i] for i in v["seeds"]] for k, v in found.items()}
        if not categories:
            notes.append("the teacher named no usable sub-types; no category-level principles")

    # --- task level: rules for every new instance, those the seeds break dropped
    if "task" in s.levels:
        rid = f"principles/{seed}/task"
        out = ask("task", [(rid, prompts_.task_prompt(task, seeds, s))])
        rules = items(out[rid], s.task_count)
        if s.check_task_rules:
            kept_rules = []
            for rule in rules:
                if why := rule_problem(rule, seeds, list(fixed) if fixed else None):
                    dropped[why] += 1
                    rules_dropped.append({"rule": rule, "reason": why})
                else:
                    kept_rules.append(rule)
            rules = kept_rules
        add("task", None, "both", rules, "t")

    # --- category level: new instances with their form (each example checked), solving advice
    coverage: dict[str, Any] | None = None
    if "category" in s.levels and categories:
        n = s.per_category + s.extra_forms
        rid = {name: f"principles/{seed}/category/{name}/create" for name in categories}
        reqs = [
            (
                rid[name],
                prompts_.create_prompt(task, name, desc, members.get(name, []), n, s, length, forms.lead),
            )
            for name, desc in categories.items()
        ]
        answers = forms.ask_forms("category", reqs, n, list(categories))
        create: dict[str, list[Item]] = {name: answers[rid[name]] for name in categories}
        solved = {}
        if task.solves_inputs:  # solving advice is read only where the generator answers its inputs
            requests = [
                (
                    f"principles/{seed}/category/{name}/solve",
                    prompts_.solve_prompt(task, name, desc, members.get(name, []), s),
                )
                for name, desc in categories.items()
            ]
            solved = ask("category", requests)
        kept = forms.keep(create, s.per_category)
        if s.refill:
            kept = forms.refill(categories, members, kept, create, n)
        for name in categories:
            add("category", name, "create", kept[name], f"c-{name}-")
            if solved:
                texts = items(solved[f"principles/{seed}/category/{name}/solve"], s.per_category)
                add("category", name, "solve", texts, f"c-{name}-")
        coverage = forms.coverage.table(list(categories), s.per_category)

    # --- error level: the student's wrong answers to the seeds
    error: dict[str, Any] | None = None
    if "error" in s.levels:
        error = _error_level(task, seeds, student, s, seed, ask, items, forms, length)
        for category, text in error.pop("principles"):
            add("error", category, "both", [text], "e")
        if error.get("skipped"):
            notes.append(error["skipped"])
        elif error["mistakes"] == 0:
            notes.append("the student answered every seed correctly; no error-level principles")

    warnings = []
    if teacher.model_id in WEAK_TEACHERS:
        warnings.append(
            f"principles written by {teacher.model_id}, too small a model to write them "
            "(docs/defaults.md#principles); install the embedded 1.5B teacher with "
            "`pip install 'psilm[teacher]'`, point models.teacher at a server, or set principles.file"
        )
    if coverage and (short := short_categories(coverage, s.per_category, task.category_word)):
        warnings.append(short)
    warning = "; ".join(warnings) or None
    return {
        "warning": warning,
        "principles": principles,
        "teacher": teacher.model_id,
        "prompts": prompts,
        "categories": categories,
        "coverage": coverage,
        "dropped": dict(sorted(dropped.items())),
        "rules_dropped": rules_dropped,
        **({"refilled": forms.refilled} if s.refill else {}),
        "error": error,
        "notes": notes,
    }


def short_categories(coverage: dict[str, dict], cap: int, word: str = "label") -> str | None:
    """One line naming each category with fewer than `cap` create principles and why, or None."""
    short = {c: v for c, v in coverage.items() if v["short"]}
    if not short:
        return None

    def why(v: dict) -> str:
        d = v["dropped"]
        return (
            ", ".join(f"{n} {r.replace('example_', '').replace('_', ' ')}" for r, n in d.items())
            or "none written"
        )

    named = "; ".join(f"{c} {v['kept']} of {cap} (dropped: {why(v)})" for c, v in list(short.items())[:8])
    more = f"; and {len(short) - 8} more" if len(short) > 8 else ""
    return (
        f"{len(short)} {word}(s) kept fewer than {cap} category principles, so their instances lean on "
        f"the {word}'s description and demos: {named}{more}"
    )


def holds_json(teacher: ModelCaller) -> bool:
    """Whether the teacher's answers are held to the forms schema: a local backend that constrains
    chat answers (llama.cpp's grammar, vLLM). A server is only asked in the prompt: servers differ
    in the response_format they accept, and the answer is read forgivingly either way."""
    return "chat" in teacher.json_constrained and not teacher.remote


def _error_level(
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
                prompts_.mistake_prompt(
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
                prompts_.mistake_prompt(task, seeds[m["seed"]], m["response"]),
            )
            for m in used
        ]
        answered = ask("error", reqs)
        for rid, _ in reqs:
            specific.extend(items(answered[rid], 1))
        if specific:
            rid = f"principles/{seed}/condense"
            merged = items(
                ask("error", [(rid, prompts_.condense_prompt(task, specific, s))])[rid], s.condense_to
            )
            general = [(None, text) for text in merged]
    return {**out, "mistakes_sent": len(used), "specific": specific, "principles": general}
