"""Structured generation: one JSON object per new instance, in the task's own (native) field names.

An instance with several parts (a premise and a hypothesis; a question, its choices and the answer)
is asked for as one JSON object whose keys are the data's own fields: `input_fields` (or
`input_field`), then `choices_field` and `target_field` where the generator writes them. Its schema
comes from the task's kind (`instance_schema`); a backend that can constrain decoding holds every
answer to it (llama.cpp grammar, vLLM structured outputs, OpenAI response_format), and any other
backend gets the same JSON prompt and has its answers parsed or dropped (`parse_instance`). A
dropped answer names why: `unparseable_json`, `missing_field:NAME`, `bad_choices`, `bad_answer`
(counted as `parse:...` in the filter report).

The kind classes (psilm.tasks.kinds) inherit this mixin; multiple choice and free text add their
answer parts through `_answer_schema` / `_answer_value`.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from psilm.errors import DataError
from psilm.tasks.choices import read_choices

JSON_DECODER = json.JSONDecoder()


def first_object(text: str | None) -> dict | None:
    """The first JSON object in a text (code fences and chatter around it are ignored), or None."""
    text = text or ""
    start = text.find("{")
    while start != -1:
        try:
            value, _ = JSON_DECODER.raw_decode(text, start)
        except (json.JSONDecodeError, RecursionError):
            value = None
        if isinstance(value, dict):
            return value
        start = text.find("{", start + 1)
    return None


class JsonInstances:
    """The structured-generation hooks of a task kind (mixed into GeneratingTask)."""

    # provided by Task / GeneratingTask
    config: Any
    fields: list[str]
    writes_answer: bool
    multi_field: bool

    @property
    def multi_part(self) -> bool:
        """An instance has several parts the generator must keep apart: several input fields, or an
        input with its answer (generate.structured: auto turns JSON on for these)."""
        return self.multi_field or self.writes_answer

    # --- the schema ---------------------------------------------------------------------------
    def instance_schema(self, seeds: list) -> dict:
        """The JSON schema of one generated instance: every input field as a string, then the parts
        of the answer this kind writes. Kept to what OpenAI's strict mode accepts (no minLength:
        empty strings are dropped by the parser)."""
        props: dict[str, Any] = {f: {"type": "string"} for f in self.fields}
        props.update(self._answer_schema(seeds))
        return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}

    def _answer_schema(self, seeds: list) -> dict[str, Any]:
        """Properties for what the generator writes besides the input (none for an input alone)."""
        return {}

    # --- a seed as an object (the demos of a JSON prompt) --------------------------------------
    def instance_object(self, example) -> dict:
        """A seed in the schema's shape, keys in the schema's order."""
        text, parts = self._answer_object(example)
        values, _ = self.split_fields(text)  # type: ignore[attr-defined]
        return {**(values or {self.fields[0]: text}), **parts}

    def _answer_object(self, example) -> tuple[str, dict[str, Any]]:
        """(the seed's input fields as text, the answer parts of its object)."""
        return example.input, {}

    # --- the prompt: demos as JSON objects, one per line --------------------------------------------
    def json_input_prompt(
        self, demos: list, category, tips: list[str], describe: bool, style: str, primed: bool = False
    ):
        """list: the kind's list header, then one demo object per line, then a new line to write on
        (primed: the object opened up to its first value, `{"premise": "`, for a backend without a
        grammar; `parse_instance` puts it back);
        chat: a system message with the task and its tips, a user message with the demo objects and
        the request for one new object with every key."""
        shown = [json.dumps(self.instance_object(x), ensure_ascii=False) for x in demos]
        if style == "list":
            head = self._list_header(category, tips, describe)  # type: ignore[attr-defined]
            return "\n".join(head + shown) + "\n" + (self.json_opening() if primed else "")
        what, head = self._head(category, describe)  # type: ignore[attr-defined]
        keys = ", ".join(f'"{k}"' for k in self.instance_schema(demos)["properties"])
        lines = (["Examples, one JSON object each:", *shown, ""] if shown else []) + [
            f"Write one new {what} as one JSON object with the keys {keys}. Reply with the JSON object only."
        ]
        system = "\n".join([head] + [f"Tip: {t}" for t in tips])
        return [{"role": "system", "content": system}, {"role": "user", "content": "\n".join(lines)}]

    def json_opening(self) -> str:
        """The start of an object up to its first value: `{"premise": "`."""
        return "{" + json.dumps(self.fields[0]) + ': "'

    # --- parsing a generated object -------------------------------------------------------------
    def parse_instance(
        self, raw: str | None, primed: bool = False
    ) -> tuple[str | None, str | None, dict | None, str | None]:
        """(input text, answer or None, the object as read, None) or (None, None, None, reason);
        primed: the prompt opened the object, so the answer continues after `json_opening()`."""
        if primed and not (raw or "").lstrip().startswith("{"):
            raw = self.json_opening() + (raw or "")
        obj = first_object(raw)
        if obj is None:
            return None, None, None, "unparseable_json"
        keys = {str(k).strip().lower(): k for k in obj}

        def get(name: str) -> Any:
            for alias in (name, name.replace("_", " "), self.field_label(name)):  # type: ignore[attr-defined]
                if alias.lower() in keys:
                    return obj[keys[alias.lower()]]
            return None

        values: dict[str, str] = {}
        for f in self.fields:
            value = get(f)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                value = str(value)
            if not isinstance(value, str) or not value.strip():
                return None, None, None, f"missing_field:{f}"
            values[f] = value.strip()
        text = self.join_fields(values)  # type: ignore[attr-defined]
        text, answer, parts, reason = self._answer_value(text, get)
        if reason:
            return None, None, None, reason
        return text, answer, {**values, **parts}, None

    def _answer_value(self, text: str, get) -> tuple[str, str | None, dict, str | None]:
        """(input text, answer, the answer's parts as read, reason or None) from the object."""
        return text, None, {}, None


def choice_count(seeds: list, default: int = 4) -> int:
    """The most common number of choices among multiple-choice seeds."""
    counts = Counter(x.meta.get("n_choices") for x in seeds if x.meta.get("n_choices"))
    return counts.most_common(1)[0][0] if counts else default


def read_generated_choices(value: Any) -> tuple[list[str], list[str] | None] | None:
    """(choice texts, their labels or None) from a generated `choices` value in any form the data
    may use (psilm.tasks.choices.read_choices), or None: unreadable, or two choices alike."""
    try:
        texts, labels = read_choices(value, "generated")
    except DataError:
        return None
    texts = [" ".join(t.split()) for t in texts]
    if len({t.lower() for t in texts}) < len(texts):
        return None
    return texts, labels
