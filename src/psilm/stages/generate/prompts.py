"""The generator's prompts: the task's kind writes them (psilm.tasks.kinds); here what they show."""

from __future__ import annotations

from psilm.llm.base import Messages, Prompt
from psilm.stages.generate.settings import GenerateSettings, PromptStyle
from psilm.tasks import Example, Task


def input_prompt(
    task: Task,
    seeds: list[Example],
    plan: dict,
    by_id: dict[str, dict],
    describe: bool = True,
    style: PromptStyle = "chat",
    structured: bool = False,
    primed: bool = False,
) -> Prompt:
    """Chat messages (style chat) or a plain text to continue (style list) for a new input;
    structured: the demos as JSON objects, one new object asked for."""
    demos = [seeds[i] for i in plan["demo_ids"]]
    tips = [by_id[pid]["text"] for pid in plan["principle_ids"]]
    if structured:
        return task.json_input_prompt(demos, plan["category"], tips, describe, style, primed)
    if style == "list":
        return task.list_input_prompt(demos, plan["category"], tips, describe)
    return task.chat_input_prompt(demos, plan["category"], tips, describe)


def target_prompt(
    task: Task,
    seeds: list[Example],
    plan: dict,
    by_id: dict[str, dict],
    text: str,
    n_demos: int,
    style: PromptStyle,
) -> Prompt:
    """The prompt for one sampled answer (a re-label, a solution) to a new input."""
    demos = [seeds[i] for i in plan["demo_ids"][:n_demos]]
    tips = [by_id[p]["text"] for p in plan["solve_principle_ids"]]
    return task.target_prompt(text, demos, tips, style)


def solve_prompt(
    task: Task, seeds: list[Example], plan: dict, by_id: dict[str, dict], text: str, n_demos: int
) -> Messages:
    """numeric: the chat prompt for one worked solution."""
    return target_prompt(task, seeds, plan, by_id, text, n_demos, "chat")  # type: ignore[return-value]


def structured_mode(task: Task, settings: GenerateSettings, json_constrained: tuple[str, ...]) -> dict | None:
    """{"structured": "json", "constrained": bool} when instances are asked for as JSON, else None."""
    constrained = settings.prompt_style in json_constrained
    on = settings.structured == "json" or (settings.structured == "auto" and task.multi_part and constrained)
    return {"structured": "json", "constrained": constrained} if on else None


def parse_pair(raw: str, task: Task) -> tuple[str | None, str | None, str | None]:
    """(question, answer, None) or (None, None, reason) from 'Question: ... Answer: ...'."""
    return task.parse_pair(raw)
