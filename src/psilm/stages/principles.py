"""Stage 1: a teacher writes task-completion principles at several levels.

Levels (each switchable in `levels`, so each can be measured):
- task: what the task asks, what a correct answer satisfies, the answer format.
- category: per category (the labels of a classification task; otherwise sub-types the teacher
  finds in the seeds) how to create a good new instance and how to solve one.
- error: the student answers each seed greedily; the teacher writes one principle per mistake,
  then condenses them into a few general ones (as LEAP does, arXiv 2402.05403).

The teacher is asked for short numbered lists; every line is parsed forgivingly and each line
that is dropped is counted by reason, so garbage output never crashes the stage. A person can
write the principles instead (`principles_file.load_principles_file`): they are plain text, one per entry.

What a small generator can use is advice for *writing* an instance, in the shape a person writes
it: one form the instance takes and one new example ("Ask what an acronym stands for, for example
\"What does NASA stand for?\""). Measured on TREC (a 1.5B teacher, SmolLM2 writing): abstract
advice, some of it for answering rather than writing, steered the generator no better than no
principles (53% of rows asked for their label's type against direct's 54%; a person's 67%). So the
create prompts ask for that shape and name the neighbouring labels to stay clear of; for a
classification task the teacher then labels each principle's own example with the task's prompt,
and a principle whose example it puts under another label is dropped (counted as
`example_off_label`). Error principles of a classification task stay with the label the student
missed, so they reach that label's generation prompts.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import Field

from psilm.errors import ConfigError, DataError
from psilm.llm.base import Completion, Messages, SamplingParams
from psilm.llm.calls import ModelCaller
from psilm.settings import Settings
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
    max_categories: int = Field(
        4, ge=1, description="Sub-types the teacher may find in non-classification seeds."
    )
    condense_to: int = Field(3, ge=1, description="Error-level principles kept after condensing.")
    # --- what the teacher sees
    seeds_shown: int = Field(8, ge=1, description="Seeds shown per teacher prompt (long prompts cost).")
    # --- error level: the student answers every seed greedily
    student_max_tokens: int | None = Field(
        None,
        gt=0,
        description="Per student answer to a seed; None: 16 for a label or letter, "
        "256 for a worked solution (a small model on CPU pays for every token).",
    )
    max_mistakes: int = Field(8, ge=1, description="Mistakes sent to the teacher, one prompt each.")
    # --- what counts as a principle line
    min_chars: int = Field(15, ge=1, description="Shorter lines are fragments, not principles.")
    max_chars: int = Field(300, ge=1, description="Longer lines would crowd a small model's prompt.")


# ---------------------------------------------------------------------------------------------
# Parsing teacher output
# ---------------------------------------------------------------------------------------------
_BULLET = re.compile(
    r"^\s*(?:(?:principle|rule|tip|step)\s*\d*\s*[:.)-]\s*|\(?\d{1,2}[.):]\s*|[-*\u2022+]\s+)+",
    re.IGNORECASE,
)
_PREAMBLE = re.compile(r"(?:here (?:are|is)|sure\b|certainly\b|okay\b|of course\b)", re.I)
_INLINE_NUMBER = re.compile(r"\s(?=\(?\d{1,2}[.)]\s+[A-Z])")  # "1. Do x. 2. Do y." on one line


def parse_list(
    text: str | None, min_chars: int, max_chars: int, dropped: Counter, truncated: bool = False
) -> list[str]:
    """Items of a numbered or bulleted list; what is dropped is counted in `dropped` by reason.

    `truncated`: the response hit max_tokens, so its last line is cut mid-sentence: drop it.
    """
    items: list[str] = []
    seen: set[str] = set()
    lines: list[str] = []
    for raw in (text or "").splitlines():
        lines.extend(_INLINE_NUMBER.split(raw) if _BULLET.match(raw) else [raw])
    lines = [ln for ln in lines if ln.strip()]
    if truncated and lines:
        lines.pop()
        dropped["truncated"] += 1
    for raw in lines:
        if not raw.strip():
            continue
        line = _BULLET.sub("", raw.strip())
        line = re.sub(r"\*\*|__|`", "", line).strip().strip('"').strip()
        if not line:
            dropped["empty"] += 1
        elif line.endswith(":"):
            dropped["heading"] += 1  # "Principles for the task:", "1. When creating:"
        elif _PREAMBLE.match(line):
            dropped["preamble"] += 1  # "Here are three principles.", "Sure!"
        elif len(line) < min_chars:
            dropped["too_short"] += 1
        elif len(line) > max_chars:
            dropped["too_long"] += 1
        elif (key := re.sub(r"\W+", " ", line.lower()).strip()) in seen:
            dropped["duplicate"] += 1
        else:
            seen.add(key)
            items.append(line)
    if not items:
        dropped["no_items"] += 1
    return items


def _cap(items: list[str], n: int, dropped: Counter) -> list[str]:
    if len(items) > n:
        dropped["over_cap"] += len(items) - n
    return items[:n]


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40].strip("-")


_CATEGORY_LINE = re.compile(r"^(?P<name>[^:]{2,50}):\s*(?P<desc>.+)$")
_EXAMPLE_REFS = re.compile(r"[(\[]\s*examples?\s*:?\s*(?P<nums>[\d,\s&and]+)[)\]]\s*\.?$", re.I)


def parse_categories(text: str | None, n_seeds: int, cap: int, dropped: Counter) -> dict[str, dict[str, Any]]:
    """'name: description (examples 1, 3)' lines -> {slug: {"description", "seeds"}}."""
    out: dict[str, dict[str, Any]] = {}
    for line in parse_list(text, 3, 300, dropped):
        m = _CATEGORY_LINE.match(line)
        if not m or not slug(m.group("name")):
            dropped["not_a_category"] += 1
            continue
        name, desc = slug(m.group("name")), m.group("desc").strip()
        refs = _EXAMPLE_REFS.search(desc)
        seeds: list[int] = []
        if refs:
            desc = desc[: refs.start()].strip()
            nums = (int(n) - 1 for n in re.findall(r"\d+", refs.group("nums")))
            seeds = sorted({n for n in nums if 0 <= n < n_seeds})
        if name in out:
            dropped["duplicate"] += 1
        elif len(out) >= cap:
            dropped["over_cap"] += 1
        else:
            out[name] = {"description": desc, "seeds": seeds}
    return out


# ---------------------------------------------------------------------------------------------
# Teacher prompts: short, one job each, a numbered list back
# ---------------------------------------------------------------------------------------------
def _shown(task: Task, seeds: list[Example], n: int, with_answers: bool = True) -> str:
    name = task.config.input_name.capitalize()
    rows = []
    for i, s in enumerate(seeds[:n], start=1):
        row = f"{i}. {name}: {_trim(s.input)}"
        if with_answers:
            row += f"\n   Answer: {_trim(s.output)}"
        rows.append(row)
    return "\n".join(rows)


def _trim(text: str, n: int = 400) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 3] + "..."


def _about(task: Task) -> str:
    c = task.config
    lines = [f"Task: {c.description}", f"One input is a {c.input_name}."]
    fixed = task.fixed_categories()
    if fixed is not None:
        labels = [f"{lb} ({desc})" if desc else lb for lb, desc in fixed.items()]
        lines.append("Labels: " + "; ".join(labels) + ".")
    return "\n".join(lines)


def _list_request(n: int, what: str) -> str:
    return (
        f"Write {n} short principles {what}. One sentence each, concrete, no examples copied. "
        "Reply with a numbered list only."
    )


_PLAIN = "Reply with a numbered list only, one line each, no headings and no bold."


def task_prompt(task: Task, seeds: list[Example], s: PrinciplesSettings) -> Messages:
    noun = task.config.input_name
    body = (
        f"{_about(task)}\n\nExamples:\n{_shown(task, seeds, s.seeds_shown)}\n\n"
        f"Write {s.task_count} short rules that every new {noun} written for this task must follow: "
        f"what it is, its form and length, and what it must not contain. One sentence each. {_PLAIN}"
    )
    return [{"role": "user", "content": body}]


def grouping_prompt(task: Task, seeds: list[Example], s: PrinciplesSettings) -> Messages:
    body = (
        f"{_about(task)}\n\nExamples:\n{_shown(task, seeds, s.seeds_shown, False)}\n\n"
        f"Group these {task.config.input_name}s into at most {s.max_categories} sub-types. "
        "Reply with a numbered list, one line per sub-type: "
        "'name: one-sentence description (examples 1, 3)'."
    )
    return [{"role": "user", "content": body}]


def category_prompt(
    task: Task, name: str, desc: str, shown: list[Example], use: str, s: PrinciplesSettings
) -> Messages:
    noun = task.config.input_name
    label = task.category_word
    head = f"{_about(task)}\n\nThe {label} '{name}'" + (f" means: {desc}" if desc else "") + "."
    examples = f"\n\nExamples of '{name}':\n{_shown(task, shown, s.seeds_shown)}" if shown else ""
    if use == "solve":
        ask = _list_request(s.per_category, f"for solving a {noun} of {label} '{name}' correctly")
        return [{"role": "user", "content": f"{head}{examples}\n\n{ask}"}]
    fixed = task.fixed_categories() or {}
    others = [c for c in fixed if c != name]
    apart = f" Each example must clearly be '{name}', not {', '.join(others)}." if others else ""
    ask = (
        f"Write {s.per_category} instructions for writing a new {noun} whose {label} is '{name}'. "
        f"Each names one form such a {noun} takes, then gives one new example in double quotes: "
        f'<what the {noun} does>, for example "<a new {noun}>".{apart} {_PLAIN}'
    )
    return [{"role": "user", "content": f"{head}{examples}\n\n{ask}"}]


_QUOTED = re.compile(r'["\u201c](?P<text>[^"\u201c\u201d]{8,})["\u201d]')


def quoted_example(principle: str) -> str | None:
    """The last double-quoted stretch of a principle: its example instance, if it gives one."""
    found = _QUOTED.findall(principle)
    return found[-1].strip() if found else None


def mistake_prompt(task: Task, seed: Example, student_text: str) -> Messages:
    name = task.config.input_name
    body = (
        f"{_about(task)}\n\nA small model was given this {name}:\n{_trim(seed.input)}\n\n"
        f"It answered:\n{_trim(student_text)}\n\nThe correct answer is:\n{_trim(seed.output)}\n\n"
        f"We will write new training {name}s so that the model learns this. Write one instruction "
        f"(one sentence) for writing such a {name}: what it must show so that the correct answer is "
        f'clear, then one new example in double quotes: <instruction>, for example "<a new {name}>". '
        "Reply with the instruction only."
    )
    return [{"role": "user", "content": body}]


def condense_prompt(task: Task, specific: list[str], s: PrinciplesSettings) -> Messages:
    listed = "\n".join(f"{i}. {p}" for i, p in enumerate(specific, start=1))
    body = (
        f"{_about(task)}\n\nPrinciples learned from a small model's mistakes:\n{listed}\n\n"
        f"Merge them into at most {s.condense_to} general principles. One sentence each. "
        "Reply with a numbered list only."
    )
    return [{"role": "user", "content": body}]


# ---------------------------------------------------------------------------------------------
# The stage
# ---------------------------------------------------------------------------------------------
def write_principles(
    task: Task,
    seeds: list[Example],
    teacher: ModelCaller,
    settings: PrinciplesSettings,
    seed: int,
    student: ModelCaller | None = None,
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

    # --- categories: the labels, or sub-types the teacher finds in the seeds
    categories: dict[str, str] = {}
    members: dict[str, list[Example]] = {}
    fixed = task.fixed_categories()
    if fixed is not None:
        categories = fixed
        members = {lb: [x for x in seeds if x.answer == lb] for lb in fixed}
    elif "category" in s.levels:
        rid = f"principles/{seed}/categories"
        text = ask("category", [(rid, grouping_prompt(task, seeds, s))])[rid].text
        found = parse_categories(text, min(len(seeds), s.seeds_shown), s.max_categories, dropped)
        categories = {k: v["description"] for k, v in found.items()}
        members = {k: [seeds[i] for i in v["seeds"]] for k, v in found.items()}
        if not categories:
            notes.append("the teacher named no usable sub-types; no category-level principles")

    # --- task level
    if "task" in s.levels:
        rid = f"principles/{seed}/task"
        out = ask("task", [(rid, task_prompt(task, seeds, s))])
        add("task", None, "both", items(out[rid], s.task_count), "t")

    # --- category level: how to create and how to solve, per category
    if "category" in s.levels and categories:
        requests = [
            (
                f"principles/{seed}/category/{name}/{use}",
                category_prompt(task, name, desc, members.get(name, []), use, s),
            )
            for name, desc in categories.items()
            for use in ("create", "solve")
        ]
        out = ask("category", requests)
        got = {
            (name, use): items(out[f"principles/{seed}/category/{name}/{use}"], s.per_category)
            for name in categories
            for use in ("create", "solve")
        }
        if fixed is not None:  # the teacher labels each principle's own example: off-label ones go
            got = _on_label(task, got, seed, ask, dropped)
        for (name, use), texts in got.items():
            add("category", name, use, texts, f"c-{name}-")

    # --- error level: the student's mistakes on the seeds
    error: dict[str, Any] | None = None
    if "error" in s.levels:
        error = _error_level(task, seeds, student, s, seed, ask, items)
        for category, text in error.pop("principles"):
            add("error", category, "both", [text], "e")
        if error["mistakes"] == 0:
            notes.append("the student answered every seed correctly; no error-level principles")

    warning = None
    if teacher.model_id in WEAK_TEACHERS:
        warning = (
            f"principles written by {teacher.model_id}, a 135M model: when measured its principles "
            "were junk (\"One principle: 10.\"); install the embedded 1.5B teacher with "
            "`pip install 'psilm[teacher]'`, point models.teacher at a server, or set principles.file"
        )
        notes.append(warning)
    return {
        "warning": warning,
        "principles": principles,
        "teacher": teacher.model_id,
        "prompts": prompts,
        "categories": categories,
        "dropped": dict(sorted(dropped.items())),
        "error": error,
        "notes": notes,
    }


def _error_level(
    task: Task, seeds: list[Example], student: ModelCaller, s: PrinciplesSettings, seed: int, ask, items
) -> dict[str, Any]:
    """Mistakes of the student on the seeds -> one principle each -> condensed general ones."""
    n_tokens = s.student_max_tokens or (16 if task.short_answers else 256)
    greedy = SamplingParams(temperature=0.0, top_p=1.0, max_tokens=n_tokens, seed=seed)
    requests = [(f"principles/{seed}/student/{i}", task.prompt(x.input)) for i, x in enumerate(seeds)]
    answers = student(requests, greedy)
    mistakes = []
    for i, x in enumerate(seeds):
        text = answers[f"principles/{seed}/student/{i}"].text
        pred = task.extract(text)
        if task.score(pred, x.answer) < 1.0:
            mistakes.append({"seed": i, "predicted": pred, "gold": x.answer, "response": text})
    used = mistakes[: s.max_mistakes]
    specific: list[str] = []
    about: list[str | None] = []  # the label each specific principle is about (classification)
    fixed = task.fixed_categories()
    if used:
        reqs = [
            (f"principles/{seed}/mistake/{m['seed']}", mistake_prompt(task, seeds[m["seed"]], m["response"]))
            for m in used
        ]
        out = ask("error", reqs)
        for (rid, _), m in zip(reqs, used, strict=True):
            got = items(out[rid], 1)
            specific.extend(got)
            about.extend([m["gold"] if fixed is not None and m["gold"] in fixed else None] * len(got))
    general: list[tuple[str | None, str]] = []
    if fixed is not None:  # each stays with the label the student missed: it reaches that label's prompts
        general = list(zip(about, specific, strict=True))
    elif specific:
        rid = f"principles/{seed}/condense"
        merged = items(ask("error", [(rid, condense_prompt(task, specific, s))])[rid], s.condense_to)
        general = [(None, text) for text in merged]
    return {
        "student": student.model_id,
        "seeds": len(seeds),
        "mistakes": len(mistakes),
        "mistakes_sent": len(used),
        "details": [{k: m[k] for k in ("seed", "predicted", "gold")} for m in mistakes],
        "specific": specific,
        "principles": general,
    }


def _on_label(task: Task, got: dict, seed: int, ask, dropped: Counter) -> dict:
    """Keep a create principle whose quoted example the teacher labels as its own category (asked
    with the task's own prompt, greedily); a principle without an example is kept as it is."""
    greedy = SamplingParams(temperature=0.0, top_p=1.0, max_tokens=16, seed=seed)
    examples = {
        (name, use, k): quoted_example(text)
        for (name, use), texts in got.items()
        if use == "create"
        for k, text in enumerate(texts)
    }
    requests = [
        (f"principles/{seed}/check/{name}/{k}", task.prompt(ex))
        for (name, _, k), ex in examples.items()
        if ex is not None
    ]
    answers = ask("check", requests, greedy) if requests else {}
    kept: dict = {}
    for (name, use), texts in got.items():
        kept[(name, use)] = []
        for k, text in enumerate(texts):
            rid = f"principles/{seed}/check/{name}/{k}"
            if use == "create" and rid in answers and task.extract(answers[rid].text) != name:
                dropped["example_off_label"] += 1
            else:
                kept[(name, use)].append(text)
    return kept
