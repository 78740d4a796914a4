"""The generate stage's settings: how many instances, what each prompt holds, how it samples."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from psilm.settings import Settings

PromptStyle = Literal["list", "chat"]
Structured = Literal["auto", "json", "off"]


PER_LABEL = 64  # classification: instances a label when generate.n is not set (docs/defaults.md#generate)
UNLABELLED = 200  # other kinds: instances when generate.n is not set


def default_n(kind: str, labels: list[str] | None) -> int:
    """generate.n when the config leaves it out: a number a label for classification, so that a task
    of many labels is not left a few rows each."""
    return PER_LABEL * len(labels) if kind == "classification" and labels else UNLABELLED


class GenerateSettings(Settings):
    # --- how many and how
    n: int | None = Field(
        None,
        gt=0,
        description=f"Instances to write per arm (before filtering); not set: {PER_LABEL} a label for "
        f"classification, {UNLABELLED} for other kinds. Why: docs/defaults.md#generate.",
    )
    prompt_style: PromptStyle = Field(
        "list",
        description="list: plain text to continue (header with task, category and principles, numbered "
        "demos, the next number; no chat template), what a small or base model gets right; chat: a "
        "system and a user message asking for one new input (instruct models only). Why list: "
        "docs/defaults.md#generate.",
    )
    structured: Structured = Field(
        "auto",
        description="json: ask for one JSON object per instance, keys from the data's own fields "
        "(input fields; choices and answer for multiple choice; the answer for free text), held to "
        "its schema by backends that can (llamacpp, vllm; openai with chat prompts), parsed or dropped "
        "elsewhere; off: the 'Name: value' / 'Answer:' lines; auto: json for instances with several "
        "parts (several input fields, or an answer written with the input) where the backend can "
        "constrain, else off (docs/structured.md).",
    )
    # --- what each prompt holds: short prompts keep a 135M generator on track
    label_descriptions: bool = Field(
        True,
        description="classification: put the task's label descriptions in generation prompts; "
        "false = label names only (the paper's demos-only baseline; a description is a principle).",
    )
    demos_per_instance: int = Field(
        2, ge=0, description="Seed demos per prompt (classification: of the same label only)."
    )
    principles_per_instance: int | None = Field(
        2,
        ge=1,
        description="Principles sampled per instance; None = all (long prompts hurt small models; "
        "docs/defaults.md#generate).",
    )
    prefer_category: bool = Field(
        True,
        description="Sample the category's own principles before task/error ones.",
    )
    principle_mix: Literal["own_first", "levels", "task_header"] = Field(
        "task_header",
        description="task_header: every task-level principle in every prompt (rules for every "
        "instance), then principles_per_instance of the others, the category's own first, so every "
        "level written reaches prompts; own_first: the category's own fill the prompt first, "
        "task-level ones reach a prompt only when too few are left; levels: one of the category's "
        "own, then one from the other levels, alternating (docs/defaults.md#generate).",
    )
    category_weights: dict[str, float] | Literal["train"] | None = Field(
        None,
        description="Draw categories by these weights instead of evenly; unnamed ones get 0. "
        "'train' = each label's share of data.train (classification; rows also in the test split "
        "are not counted).",
    )
    # --- sampling the new input
    temperature: float = Field(0.9, ge=0, description="High enough for diverse inputs.")
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus sampling, for inputs and answers.")
    max_tokens: int = Field(96, gt=0, description="For the new input; solutions get solve_max_tokens.")
    pair_max_tokens: int = Field(
        192, gt=0, description="multiple_choice / free_text: question, choices and answer in one."
    )
    # --- targets: k answers per instance; the majority becomes the answer, ties give none
    solve_samples: int = Field(3, ge=1, description="numeric: solutions sampled per instance.")
    verify_samples: int = Field(
        0,
        ge=0,
        description="classification: times the generator re-labels each input (votes "
        "for the filter); 0 = off, since a 135M labeller is less reliable than the asked label.",
    )
    label_check: bool = Field(
        False,
        description="classification: score each new input's log-probability under every label's list "
        "header with models.checker (default: the generator), for the filter to drop inputs whose own "
        "label is far less likely than another (filter.label_margin). Needs a checker on llamacpp or "
        "transformers (Gemma 3 270M base, models.checker.model=gemma3-270m, reads labels best). Off: "
        "cleaner rows but fewer, and weaker students (docs/defaults.md#generate).",
    )
    solve_temperature: float = Field(
        0.7, ge=0, description="Answers differ between samples, so a majority means something."
    )
    solve_max_tokens: int = Field(256, gt=0, description="Per solution or re-label.")
    solve_demos: int = Field(1, ge=0, description="numeric: worked seed solutions in the prompt.")
