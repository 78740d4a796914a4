"""The teacher's prompts in the principles stage (reading.py reads the answers).

Each prompt has one job. Task rules, solving advice and condensed error principles are asked for
as numbered lists; create and mistake principles as JSON, `{"items": [{"example": ..., "form":
...}]}`, held to a schema (forms_schema) where the teacher's backend can constrain decoding
(llama.cpp's grammar, a server's response_format).

The example comes first and a form is used only where it has three words or more and does not
restate the example: asked form first, a small teacher put an instance in the form and a copied
seed in the example (docs/defaults.md#principles).
"""

from __future__ import annotations

from typing import Protocol

from psilm.llm.base import Messages
from psilm.tasks import Example, Task


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


def meaning_prompt(task: Task, label: str, shown: list[Example], s: PromptSizes) -> Messages:
    """What a label means in this task, in one sentence, read from its seeds (describe_labels), in
    general terms: a meaning that retells a few seeds makes the label check drop the label's own
    examples (docs/defaults.md#principles)."""
    noun = task.config.input_name
    examples = f"\n\nExamples of '{label}':\n{_shown(task, shown, s.seeds_shown, False)}" if shown else ""
    body = (
        f"Task: {task.config.description}\nLabels: {', '.join(task.labels)}.{examples}\n\n"
        f"In one sentence, say what the label '{label}' means in this task, in general terms that fit "
        f"any {noun} with this label, not only these examples: what sets it apart from the other "
        f"labels. Reply with the sentence only."
    )
    return [{"role": "user", "content": body}]


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
    that prefix, so a backend with a prompt cache reads it once): with label names only, a small
    teacher misreads whole labels (docs/defaults.md#principles)."""
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
