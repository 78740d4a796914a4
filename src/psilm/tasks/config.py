"""A task's definition: the YAML block (or built-in task) a run names under `task:`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from psilm.settings import Settings

Kind = Literal["classification", "numeric", "multiple_choice", "free_text"]


class TaskConfig(Settings):
    # --- what the task is (shown to models; keep it one or two sentences)
    name: str = Field(description="The task's name, in reports and cards.")
    kind: Kind = Field(description="classification, numeric, multiple_choice or free_text (docs/tasks.md).")
    description: str = Field(description="What the task asks, in one or two sentences.")
    input_name: str = Field("input", description="What one input is called, e.g. 'movie review'.")
    # --- how to read a row: the input is one field (input_field) or several (input_fields)
    input_field: str | None = Field(None, description="The field the model reads; default 'text'.")
    input_fields: list[str] | None = Field(
        None,
        description="Several fields the model reads, each on its own line ('Premise: ...', "
        "'Hypothesis: ...'); give this or input_field, not both.",
    )
    field_names: dict[str, str] = Field(
        default_factory=dict,
        description="input_fields: the name each field's line starts with; default: from the field name.",
    )
    target_field: str = Field("label", description="The field that holds the answer.")
    choices_field: str | None = Field(
        None,
        description="multiple_choice: a list of strings, a list of {label, text} objects, or "
        '{"label": [...], "text": [...]}.',
    )
    # --- answers
    labels: list[str] | None = Field(None, description="classification: the label set.")
    label_descriptions: dict[str, str] = Field(
        default_factory=dict, description="classification: optional one-line meaning per label."
    )

    @model_validator(mode="before")
    @classmethod
    def _one_input(cls, data: Any) -> Any:
        """Exactly one of input_field / input_fields; neither means input_field 'text'."""
        if not isinstance(data, dict):
            return data
        one, many = data.get("input_field"), data.get("input_fields")
        if one is not None and many is not None:
            raise ValueError("give `input_field` (one field) or `input_fields` (several), not both")
        if isinstance(one, list):
            raise ValueError("`input_field` names one field; for several write `input_fields: [a, b]`")
        if one is None and many is None:
            return {**data, "input_field": "text"}
        return data

    @model_validator(mode="after")
    def _check_kind(self) -> TaskConfig:
        if self.input_fields is not None:
            if len(self.input_fields) < 2:
                raise ValueError("`input_fields` lists two or more fields; for one, use `input_field`")
            if len(set(self.input_fields)) != len(self.input_fields):
                raise ValueError("`input_fields` lists a field twice")
        fields = self.input_fields or [self.input_field]
        for other in ("target_field", "choices_field"):
            if getattr(self, other) in fields:
                raise ValueError(f"`{other}` {getattr(self, other)!r} is also an input field")
        unknown = sorted(set(self.field_names) - set(fields))
        if unknown:
            raise ValueError(f"`field_names` names fields that are not input fields: {unknown}")
        names = [self.field_names.get(f) or display(f) for f in fields]
        if len({n.lower() for n in names}) != len(names):
            raise ValueError(f"two input fields would show the same name {names}; set `field_names`")
        if self.kind == "classification":
            if not self.labels or len(self.labels) < 2:
                raise ValueError("a classification task needs `labels` with at least two labels")
            if len(set(self.labels)) != len(self.labels):
                raise ValueError("`labels` has duplicates")
            unknown = set(self.label_descriptions) - set(self.labels)
            if unknown:
                raise ValueError(f"`label_descriptions` names unknown labels: {sorted(unknown)}")
        if self.kind == "multiple_choice" and not self.choices_field:
            raise ValueError("a multiple_choice task needs `choices_field`")
        return self


def display(field: str) -> str:
    """'premise' -> 'Premise', 'question_stem' -> 'Question stem'."""
    text = field.replace("_", " ").strip()
    return text[:1].upper() + text[1:]
