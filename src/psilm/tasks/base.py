"""Task definition and the four task kinds."""

from __future__ import annotations

import re
import string
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from psilm.errors import ConfigError, DataError
from psilm.settings import Settings

Kind = Literal["classification", "numeric", "multiple_choice", "free_text"]
LETTERS = string.ascii_uppercase


class TaskConfig(Settings):
    # --- what the task is (shown to models; keep it one or two sentences)
    name: str
    kind: Kind
    description: str = Field(description="What the task asks, in one or two sentences.")
    input_name: str = Field("input", description="What one input is called, e.g. 'movie review'.")
    # --- how to read a JSONL row
    input_field: str = "text"
    target_field: str = "label"
    choices_field: str | None = Field(None, description="multiple_choice: list of choices.")
    # --- answers
    labels: list[str] | None = Field(None, description="classification: the label set.")
    label_descriptions: dict[str, str] = Field(
        default_factory=dict, description="classification: optional one-line meaning per label."
    )

    @model_validator(mode="after")
    def _check_kind(self) -> TaskConfig:
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


@dataclass
class Example:
    """One instance in the task's own terms: what the model reads and what it should write."""

    input: str  # the full text the model reads (question plus choices for multiple choice)
    output: str  # the training target (label, worked solution, letter, answer)
    answer: str  # the canonical answer used for scoring and voting
    category: str | None = None  # label for classification; sub-type where known
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "input": self.input,
            "output": self.output,
            "answer": self.answer,
            "category": self.category,
            **({"meta": self.meta} if self.meta else {}),
        }


_LETTER_PATTERNS = [  # most explicit first; a bare 'I' or 'A' is too often a word
    re.compile(r"answer(?: is)?:?\s*\(?([A-J])\b", re.IGNORECASE),
    re.compile(r"\(([A-J])\)"),
    re.compile(r"^\s*([A-J])\s*(?:[.):]|$)", re.MULTILINE),
    re.compile(r"\b([B-HJ])\b"),
]
_NUMBER = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?")


def parse_number(text: str) -> str | None:
    """The canonical form of a number in text ('1,234.50' -> '1234.5'), or None."""
    m = _NUMBER.search(text)
    if not m:
        return None
    raw = m.group(0).replace(",", "").replace("$", "")
    try:
        value = float(raw)
    except ValueError:
        return None
    if value.is_integer():
        return str(int(value))
    return f"{value:g}"


def _normalize(text: str) -> str:
    text = text.lower().strip()
    text = "".join(ch for ch in text if ch not in string.punctuation)
    return " ".join(w for w in text.split() if w not in {"a", "an", "the"})


def token_f1(pred: str, gold: str) -> float:
    p, g = _normalize(pred).split(), _normalize(gold).split()
    if not p or not g:
        return float(p == g)
    common = sum((Counter(p) & Counter(g)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(g)
    return 2 * precision * recall / (precision + recall)


class Task:
    """Reads rows, builds prompts, extracts and scores answers for one task."""

    def __init__(self, config: TaskConfig):
        self.config = config
        self.kind = config.kind
        self.labels = list(config.labels or [])

    @property
    def name(self) -> str:
        return self.config.name

    # --- reading rows -------------------------------------------------------------------
    def example(self, row: dict, where: str = "row") -> Example:
        """Turn one raw JSONL row into an Example; `where` (file:line) names it in errors."""
        c = self.config
        text, meta = self._input(row, where)
        if c.target_field not in row:
            raise DataError(
                f"{where}: missing field `{c.target_field}` (fields present: {sorted(row)}); "
                "fix the row or set task.target_field"
            )
        target = row[c.target_field]
        if target is None or (isinstance(target, str) and not target.strip()):
            raise DataError(f"{where}: field `{c.target_field}` (the label) is empty")
        if self.kind == "classification":
            label = str(target).strip()
            if label not in self.labels:
                raise DataError(
                    f"{where}: label {label!r} is not in task.labels {self.labels}; "
                    "fix the row or add the label to the task"
                )
            return Example(text, label, label, category=label)
        if self.kind == "numeric":
            solution = str(target).strip()
            answer = self.extract(solution)
            if answer is None:
                raise DataError(f"{where}: no number found in `{c.target_field}`: {solution[:80]!r}")
            if "####" not in solution:
                solution = f"{solution}\n#### {answer}" if not _is_bare_number(solution) else f"#### {answer}"
            return Example(text, solution, answer)
        if self.kind == "multiple_choice":
            letters = LETTERS[: meta["n_choices"]]
            gold = str(target).strip()
            if gold.isdigit() and int(gold) < len(letters):
                gold = letters[int(gold)]
            gold = gold.upper()
            if gold not in letters:
                raise DataError(f"{where}: answer {target!r} is not one of {list(letters)}")
            return Example(text, gold, gold, meta=meta)
        answer = str(target).strip()
        return Example(text, answer, answer)

    def unlabelled(self, row: dict, where: str = "row") -> Example:
        """A row to answer (`psilm predict`): its input read as `example` reads it, no answer needed."""
        text, meta = self._input(row, where)
        return Example(text, "", "", meta=meta)

    def _input(self, row: dict, where: str) -> tuple[str, dict[str, Any]]:
        """(the text the model reads, meta) of a row: the input, with its choices for multiple choice."""
        c = self.config
        for key, setting in [(c.input_field, "input_field"), (c.choices_field, "choices_field")]:
            if key is not None and key not in row:
                raise DataError(
                    f"{where}: missing field `{key}` (fields present: {sorted(row)}); "
                    f"fix the row or set task.{setting}"
                )
        text = row[c.input_field]
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{where}: field `{c.input_field}` is empty or not text")
        if self.kind != "multiple_choice":
            return text.strip(), {}
        choices = row[c.choices_field]
        if isinstance(choices, dict):
            choices = [choices[k] for k in sorted(choices)]
        if not isinstance(choices, list) or len(choices) < 2:
            raise DataError(f"{where}: `{c.choices_field}` must be a list of at least 2 choices")
        letters = LETTERS[: len(choices)]
        lines = [f"{ltr}. {ch}" for ltr, ch in zip(letters, choices, strict=True)]
        body = text.strip() + "\n" + "\n".join(lines)
        return body, {"n_choices": len(choices)}

    # --- prompting ----------------------------------------------------------------------
    def instruction(self) -> str:
        c = self.config
        if self.kind == "classification":
            return f"{c.description}\nAnswer with one label: {', '.join(self.labels)}."
        if self.kind == "numeric":
            return f"{c.description}\nSolve it step by step, then give the final number as '#### N'."
        if self.kind == "multiple_choice":
            return f"{c.description}\nAnswer with the letter of the correct choice."
        return f"{c.description}\nAnswer briefly."

    def prompt(self, input_text: str) -> list[dict[str, str]]:
        """Chat messages the student reads, in training and in evaluation alike."""
        # The instruction is the system message: it replaces the chat template's default system
        # prompt (21 tokens for SmolLM2), a quarter of an SST-2 example's tokens in training.
        return [
            {"role": "system", "content": self.instruction()},
            {"role": "user", "content": f"{self.config.input_name.capitalize()}: {input_text}"},
        ]

    def answer_options(self, example: Example) -> list[str] | None:
        """Candidates for likelihood scoring, or None where the answer must be generated."""
        if self.kind == "classification":
            return self.labels
        if self.kind == "multiple_choice":
            return list(LETTERS[: example.meta.get("n_choices", 4)])
        return None

    # --- answers ------------------------------------------------------------------------
    def extract(self, text: str) -> str | None:
        """The answer in a model's text, or None if there is none."""
        if text is None:
            return None
        text = text.strip()
        if self.kind == "classification":
            low = text.lower()
            hits = [(low.find(lbl.lower()), lbl) for lbl in self.labels if lbl.lower() in low]
            if not hits:
                return None
            # the earliest label wins; on a tie (one label inside another) the longer one
            return min(hits, key=lambda h: (h[0], -len(h[1])))[1]
        if self.kind == "numeric":
            for marker in ("####", "answer is", "Answer:", "answer:"):
                if marker in text:
                    n = parse_number(text.rsplit(marker, 1)[1])
                    if n is not None:
                        return n
            numbers = _NUMBER.findall(text)
            return parse_number(numbers[-1]) if numbers else None
        if self.kind == "multiple_choice":
            for pattern in _LETTER_PATTERNS:
                m = pattern.search(text)
                if m:
                    return m.group(1).upper()
            return None
        line = text.splitlines()[0].strip() if text else ""
        return line or None

    def score(self, pred: str | None, gold: str) -> float:
        """1.0 for a correct answer, 0.0 otherwise (token F1 is reported separately)."""
        if pred is None:
            return 0.0
        if self.kind == "numeric":
            try:
                return float(abs(float(pred) - float(gold)) < 1e-6)
            except ValueError:
                return 0.0
        if self.kind == "free_text":
            return float(_normalize(pred) == _normalize(gold))
        return float(pred == gold)


def _is_bare_number(text: str) -> bool:
    return parse_number(text) is not None and _NUMBER.fullmatch(text.strip()) is not None


def builtin_tasks() -> dict[str, dict]:
    """Task definitions shipped with psilm, by name."""
    out = {}
    for entry in resources.files("psilm.tasks").joinpath("builtin").iterdir():
        if entry.name.endswith(".yaml"):
            data = yaml.safe_load(entry.read_text())
            out[data["name"]] = data
    return out


def load_task(spec: str | dict | TaskConfig) -> Task:
    """A Task from a built-in name, a YAML-style dict, or a TaskConfig (its kind's class)."""
    from psilm.tasks.kinds import TASK_CLASSES

    if isinstance(spec, TaskConfig):
        return TASK_CLASSES[spec.kind](spec)
    if isinstance(spec, str):
        known = builtin_tasks()
        if spec not in known:
            raise ConfigError(
                f"task: unknown task {spec!r}; built-in tasks are {sorted(known)}, "
                "or define one inline (see docs/configuration.md, 'Tasks')"
            )
        spec = known[spec]
    try:
        config = TaskConfig(**spec)
    except ValidationError as e:
        raise ConfigError(_first_error("task", e)) from None
    return TASK_CLASSES[config.kind](config)


def _first_error(prefix: str, e: ValidationError) -> str:
    err = e.errors()[0]
    loc = ".".join(str(p) for p in (prefix, *err["loc"]))
    return f"{loc}: {err['msg']}"
