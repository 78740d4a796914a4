"""The teacher's prompts in the principles stage, and how its answers become principle texts.

Each prompt has one job. Lists come back numbered (task rules, solving advice, condensed error
principles; `principles.parse_list` reads them). Create principles and mistake principles come
back as JSON, `{"items": [{"example": ..., "form": ...}]}`, held to a schema where the teacher's
backend can constrain decoding (llama.cpp's grammar, a server's response_format) and read
forgivingly elsewhere: a cut-off answer keeps its complete items, and an answer that is no JSON at
all is read as a list. Each item becomes one principle in the shape a person writes: the form,
then its example (`Ask what an acronym stands for, for example "What does NASA stand for?".`), or,
where the form says nothing, `Write a question like "What does NASA stand for?".`

The example comes first and a form is used only where it has three words or more and does not
restate the example: asked form first, a small teacher put an instance in the form and a copied
seed in the example (docs/defaults.md#principles).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any, Protocol

from psilm.llm.base import Messages
from psilm.tasks import Example, Task

# in the principles stage's key: new wording writes new principles in an old run folder
PROMPTS_VERSION = 4


class PromptSizes(Protocol):
    """The sizes the prompts read (principles.PrinciplesSettings has them)."""

    seeds_shown: int
    task_count: int
    per_category: int
    max_categories: int
    condense_to: int


def _shown(task: Task, seeds: list[Example], n: int, with_answers: bool = True) -> str:
    name = task.config.input_name.capitalize()
    rows = []
    for i, s in enumerate(seeds[:n], start=1):
        row = f"{i}. {name}: {trim(s.input)}"
        if with_answers:
            row += f"\n   Answer: {trim(s.output)}"
        rows.append(row)
    return "\n".join(rows)


def trim(text: str, n: int = 400) -> str:
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


def task_prompt(task: Task, seeds: list[Example], s: PromptSizes) -> Messages:
    """Rules for every new instance (principles.check_task_rules then drops those about some
    labels, or those the seeds break). Asked for rules "whatever its label", a small teacher named
    the label list instead (docs/defaults.md#principles)."""
    noun = task.config.input_name
    body = (
        f"{_about(task)}\n\nExamples:\n{_shown(task, seeds, s.seeds_shown)}\n\n"
        f"Write {s.task_count} short rules that every new {noun} written for this task must follow: "
        f"what it is, its form and length, and what it must not contain. One sentence each. {_PLAIN}"
    )
    return [{"role": "user", "content": body}]


def grouping_prompt(task: Task, seeds: list[Example], s: PromptSizes) -> Messages:
    body = (
        f"{_about(task)}\n\nExamples:\n{_shown(task, seeds, s.seeds_shown, False)}\n\n"
        f"Group these {task.config.input_name}s into at most {s.max_categories} sub-types. "
        "Reply with a numbered list, one line per sub-type: "
        "'name: one-sentence description (examples 1, 3)'."
    )
    return [{"role": "user", "content": body}]


def _category_head(task: Task, name: str, desc: str, shown: list[Example], s: PromptSizes) -> str:
    label = task.category_word
    head = f"{_about(task)}\n\nThe {label} '{name}'" + (f" means: {desc}" if desc else "") + "."
    examples = f"\n\nExamples of '{name}':\n{_shown(task, shown, s.seeds_shown)}" if shown else ""
    return head + examples


def solve_prompt(task: Task, name: str, desc: str, shown: list[Example], s: PromptSizes) -> Messages:
    """Advice for solving an instance of the category (read where the generator answers its own inputs)."""
    what = f"for solving a {task.config.input_name} of {task.category_word} '{name}' correctly"
    ask = _list_request(s.per_category, what)
    return [{"role": "user", "content": f"{_category_head(task, name, desc, shown, s)}\n\n{ask}"}]


def _json_shape(noun: str, lead: str | None = None) -> str:
    if lead is None:
        form = f'"form" says in a few words what kind of {noun} it is'
    else:  # held to begin with the lead where the backend constrains (forms_schema)
        what = "what it asks for" if lead == "Ask" else "what it says"
        form = (
            f'"form", beginning with "{lead}", says {what} in general words (no name, place or '
            f"number from it), so that a writer could write another {noun} of the same kind"
        )
    return (
        f'Reply in JSON: {{"items": [{{"example": "...", "form": "..."}}]}}, where "example" is the new '
        f"{noun} and {form}."
    )


def form_lead(noun: str, questions: bool) -> str:
    """The words a form begins with (principles.lead_forms): "Ask" where the instances are
    questions, else "Write a <noun>"."""
    return "Ask" if questions else f"Write a {noun}"


def create_prompt(
    task: Task,
    name: str,
    desc: str,
    shown: list[Example],
    n: int,
    s: PromptSizes,
    length: str,
    lead: str | None = None,
) -> Messages:
    """n new instances of the category, each as long as the seeds (`length`, "12 to 30 words")
    and with a few words on its form (JSON items; a lead: the form begins with it)."""
    noun, label = task.config.input_name, task.category_word
    fixed = task.fixed_categories() or {}
    others = [c for c in fixed if c != name]
    if len(others) > 12:  # a long label list is in the task's head already
        apart = f" Each must clearly be '{name}', not another {label}."
    else:
        apart = f" Each must clearly be '{name}', not {', '.join(others)}." if others else ""
    ask = (
        f"Write {n} new {noun}s whose {label} is '{name}', each different from the others and from "
        f"the examples above, and as long as they are ({length}).{apart} {_json_shape(noun, lead)}"
    )
    return [{"role": "user", "content": f"{_category_head(task, name, desc, shown, s)}\n\n{ask}"}]


def refill_prompt(
    task: Task,
    name: str,
    desc: str,
    shown: list[Example],
    n: int,
    s: PromptSizes,
    wrong: list[str],
    length: str,
    lead: str | None = None,
) -> Messages:
    """create_prompt again for a category left short, after the examples it gave that were
    dropped, each with why ("... (its label is 'location', not 'entity')", "... (80 words: too long)")."""
    noun = task.config.input_name
    first = create_prompt(task, name, desc, shown, n, s, length, lead)[0]["content"]
    if not wrong:
        return [{"role": "user", "content": first}]
    listed = "\n".join(f"- {w}" for w in wrong[:6])
    note = f"These {noun}s were written for '{name}' but could not be used:\n{listed}"
    head, ask = first.rsplit("\n\n", 1)
    return [{"role": "user", "content": f"{head}\n\n{note}\n\n{ask}"}]


def mistake_prompt(
    task: Task,
    seed: Example,
    student_text: str,
    as_json: bool = False,
    lead: str | None = None,
    length: str | None = None,
) -> Messages:
    """One instruction for writing training instances that teach what the student got wrong;
    as_json: one JSON item (form + example, as long as the seeds: `length`), as create_prompt's;
    else one line of text."""
    name = task.config.input_name
    head = (
        f"{_about(task)}\n\nA small model was given this {name}:\n{trim(seed.input)}\n\n"
        f"It answered:\n{trim(student_text)}\n\nThe correct answer is:\n{trim(seed.output)}\n\n"
    )
    if as_json:
        ask = (
            f"We will write new training {name}s so that the model learns this. Write one new {name}, "
            f"unlike this one in topic, whose correct answer is as clearly {trim(seed.output, 80)}"
            + (f", as long as the examples of this task ({length}). " if length else ". ")
            + _json_shape(name, lead)
        )
        return [{"role": "user", "content": head + ask}]
    ask = (
        f"We will write new training {name}s so that the model learns this. Write one instruction "
        f"(one sentence) for writing such a {name}: what it must show so that the correct answer is "
        f'clear, then one new example in double quotes: <instruction>, for example "<a new {name}>". '
        "Reply with the instruction only."
    )
    return [{"role": "user", "content": head + ask}]


def condense_prompt(task: Task, specific: list[str], s: PromptSizes) -> Messages:
    listed = "\n".join(f"{i}. {p}" for i, p in enumerate(specific, start=1))
    body = (
        f"{_about(task)}\n\nPrinciples learned from a small model's mistakes:\n{listed}\n\n"
        f"Merge them into at most {s.condense_to} general principles. One sentence each. "
        "Reply with a numbered list only."
    )
    return [{"role": "user", "content": body}]


def label_prompt(task: Task, seeds: list[Example], text: str, s: PromptSizes) -> Messages:
    """The teacher labels one example, shown the labels' meanings and the seeds (all prompts share
    that prefix, so a backend with a prompt cache reads it once). The task's own prompt (label
    names only) put every 'human' example of a 1.5B teacher under 'entity' on TREC."""
    noun = task.config.input_name
    body = (
        f"{_about(task)}\n\nExamples:\n{_shown(task, seeds, s.seeds_shown)}\n\n"
        f"{noun.capitalize()}: {trim(text)}\nWhich label does this {noun} have? Reply with the label only."
    )
    return [{"role": "user", "content": body}]


def forms_schema(n: int, lead: str | None = None) -> dict:
    """The JSON schema of create_prompt's and mistake_prompt's answers: n items, example then form
    (the order they are written in: a 1.5B teacher asked for the form first wrote a question there
    and a statement or a copied seed as the example). A lead: the form begins with it and then a
    lower-case word (asked for it in words only, the 1.5B teacher wrote the label's name there)."""
    form: dict = {"type": "string"}
    if lead is not None:
        words = "".join(c if c.isalnum() or c == " " else "\\" + c for c in lead)
        form["pattern"] = "^" + words + ' [a-z][^"\\\\]{8,120}$'
    item = {
        "type": "object",
        "properties": {"example": {"type": "string"}, "form": form},
        "required": ["example", "form"],
        "additionalProperties": False,
    }
    items = {"type": "array", "items": item, "minItems": n, "maxItems": n}
    return {
        "type": "object",
        "properties": {"items": items},
        "required": ["items"],
        "additionalProperties": False,
    }


_STRING = r'"((?:[^"\\]|\\.)*)"'
_OBJECT = re.compile(r"\{[^{}]*\}")
_FIELD = {k: re.compile(rf'"{k}"\s*:\s*' + _STRING) for k in ("example", "form")}


def read_forms(text: str | None) -> list[tuple[str, str]] | None:
    """(form, example) pairs of a JSON answer, complete items only (an answer cut off at
    max_tokens keeps those before the cut; a missing form is ''); None where it holds no item."""
    found = []
    for obj in _OBJECT.findall(text or ""):
        got = {k: rx.search(obj) for k, rx in _FIELD.items()}
        if got["example"] is None:
            continue
        try:
            example = json.loads(f'"{got["example"].group(1)}"')
            form = json.loads(f'"{got["form"].group(1)}"') if got["form"] else ""
        except json.JSONDecodeError:
            continue
        found.append((form, example))
    return found or None


_QUOTED = re.compile(r'["\u201c](?P<text>[^"\u201c\u201d]{8,})["\u201d]')
_PLACEHOLDER = re.compile(r"<[^<>]{0,40}>|\.\.\.|\u2026")


def quoted_example(principle: str) -> str | None:
    """The last double-quoted stretch of a principle: its example instance, if it gives one."""
    found = _QUOTED.findall(principle)
    return found[-1].strip() if found else None


_LENGTH_NOTE = re.compile(r"\s*\(\s*\d+\s+(?:words?|characters?)[^()]*\)\s*$", re.IGNORECASE)


def clean_example(
    example: str, noun: str, questions: bool = False, labels: list[str] | None = None
) -> str | None:
    """The example as one instance: without a lead the teacher copied from the prompt ("News
    article: ...", "Sports: ..."); where every seed is one question, ending at its first question
    mark (the 1.5B teacher went on to answer it); None for a placeholder echo ("<a new question>")."""
    text = " ".join(example.split()).strip().strip("\"'\u201c\u201d").strip()
    if not text or _PLACEHOLDER.search(text):
        return None
    leads = [noun, "example", "input", *(labels or [])]
    lead = re.compile(r"^(?:" + "|".join(re.escape(x) for x in leads) + r")\s*:\s*", re.IGNORECASE)
    text = lead.sub("", text).strip().strip("\"'\u201c\u201d").strip()
    text = _LENGTH_NOTE.sub("", text).strip()  # "(147 words)": a length the prompt named, echoed
    if questions and "?" in text:
        text = text[: text.index("?") + 1]
    return text or None


def words_of(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def overlap(a: str, b: str) -> float:
    """Share of the shorter text's words that the other has (0 for an empty one)."""
    wa, wb = words_of(a), words_of(b)
    return len(wa & wb) / min(len(wa), len(wb)) if wa and wb else 0.0


def render(form: str, example: str, noun: str, form_chars: int = 300) -> str:
    """One principle from a form and its example, in the shape a person writes; a form longer
    than `form_chars` would crowd a small model's prompt, so the example then stands alone."""
    form = " ".join(form.split()).strip().strip("\"'").rstrip(".:;, ")
    # a form that brings its own example: the checked one is quoted after it
    form = re.sub(r",? (?:for example|for instance|e\.g\.)\W.*$", "", form, flags=re.I)
    if form.lower().startswith("asks "):  # a description of the example, as an instruction
        form = "Ask " + form[5:]
    vague = len(form.split()) < 3 or len(form) > form_chars  # "abbreviation": the label's name
    if vague or "?" in form or _PLACEHOLDER.search(form) or overlap(form, example) > 0.6:
        return f'Write a {noun} like "{example}".'
    return f'{form[0].upper()}{form[1:]}, for example "{example}".'


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
