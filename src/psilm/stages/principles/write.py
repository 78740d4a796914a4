"""Stage 1's work: a teacher writes task-completion principles at several levels.

Levels (each switchable in `levels`, so each can be measured):
- task: rules every new instance follows (a rule the seeds break, or that names some labels, is
  dropped: it would head every generation prompt).
- category: per category (the labels of a classification task; otherwise sub-types the teacher
  finds in the seeds) new example instances with a few words on their form, each checked
  (checks.py; the teacher's own label check only where it reads the seeds it is not shown better
  than chance), and, where the generator solves its inputs, advice for solving one.
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
from typing import Any

from psilm.errors import ConfigError, DataError
from psilm.llm.base import Completion, Messages, SamplingParams
from psilm.llm.calls import ModelCaller
from psilm.stages.principles import prompts, reading
from psilm.stages.principles.checks import Forms, Item, holds_json
from psilm.stages.principles.mistakes import StudentAnswers, error_level
from psilm.stages.principles.reading import capped, parse_categories, parse_list
from psilm.stages.principles.rules import rule_problem
from psilm.stages.principles.settings import WEAK_TEACHERS, PrinciplesSettings
from psilm.tasks import Example, Task, load_task


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
    asked: list[dict] = []
    dropped: Counter = Counter()
    notes: list[str] = []
    rules_dropped: list[dict] = []

    def ask(level: str, requests: list[tuple[str, Messages]], how: SamplingParams = params) -> dict:
        out = teacher(requests, how)
        asked.extend(
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
        return capped(parse_list(c.text, s.min_chars, s.max_chars, dropped, cut), cap, dropped)

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

    # --- label meanings: a label the task does not describe, described by the teacher from its seeds
    meanings: dict[str, str] = {}
    if (fixed := task.fixed_categories()) is not None and s.describe_labels and not all(fixed.values()):
        bare = [lb for lb, desc in fixed.items() if not desc]
        rid = {lb: f"principles/{seed}/meaning/{lb}" for lb in bare}
        reqs = [
            (rid[lb], prompts.meaning_prompt(task, lb, [x for x in seeds if x.answer == lb], s))
            for lb in bare
        ]
        greedy = SamplingParams(temperature=0.0, top_p=1.0, max_tokens=64, seed=seed)
        out = ask("meaning", reqs, greedy)
        meanings = {lb: m for lb in bare if (m := reading.one_sentence(out[rid[lb]].text, s.max_chars))}
        if meanings:
            described = {**task.config.label_descriptions, **meanings}
            task = load_task(task.config.model_copy(update={"label_descriptions": described}))

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
        text = ask("category", [(rid, prompts.grouping_prompt(task, seeds, s))])[rid].text
        found = parse_categories(text, min(len(seeds), s.seeds_shown), s.max_categories, dropped)
        categories = {k: v["description"] for k, v in found.items()}
        members = {k: [seeds[i] for i in v["seeds"]] for k, v in found.items()}
        if not categories:
            notes.append("the teacher named no usable sub-types; no category-level principles")

    # --- task level: rules for every new instance, those the seeds break dropped
    if "task" in s.levels:
        rid = f"principles/{seed}/task"
        out = ask("task", [(rid, prompts.task_prompt(task, seeds, s))])
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
                prompts.create_prompt(task, name, desc, members.get(name, []), n, s, length, forms.lead),
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
                    prompts.solve_prompt(task, name, desc, members.get(name, []), s),
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
        error = error_level(task, seeds, student, s, seed, ask, items, forms, length)
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
    if (lc := forms.label_check) and not lc["used"]:
        warnings.append(
            f"the teacher's label check was not used: it labelled {lc['right']} of the "
            f"{lc['held_seeds']} seeds it was not shown right, no better than chance (1 in "
            f"{round(1 / lc['chance'])}), so the examples in the principles were kept unchecked; a "
            "stronger models.teacher, or principles.file, gives checked ones"
        )
    if coverage and (short := short_categories(coverage, s.per_category, task.category_word)):
        warnings.append(short)
    warning = "; ".join(warnings) or None
    return {
        "warning": warning,
        "principles": principles,
        "teacher": teacher.model_id,
        "prompts": asked,
        "categories": categories,
        "meanings": meanings,  # the labels the teacher described (describe_labels)
        "coverage": coverage,
        "label_check": forms.label_check,  # how well the teacher read the held-out seeds' labels
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
