"""The principles stage's settings: which levels, how many, how the teacher samples, what is kept."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, get_args

from pydantic import Field

from psilm.settings import Settings

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
    describe_labels: bool = Field(
        True,
        description="Classification: a label the task does not describe gets a one-sentence meaning from the "
        "teacher, read from its seeds, which every later teacher prompt shows (the label check otherwise "
        "reads a label by its name alone: 'World Cup' as world).",
    )
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
