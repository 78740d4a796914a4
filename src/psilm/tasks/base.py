"""A task's rows (Example) and what every kind shares (Task): reading rows, prompts, extracting and
scoring answers. Its definition is config.py's TaskConfig; the kinds' classes and load_task, kinds.py."""

from __future__ import annotations

import re
import string
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import yaml

from psilm.errors import DataError
from psilm.tasks.choices import read_choices
from psilm.tasks.config import TaskConfig, display

LETTERS = string.ascii_uppercase


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
        self.fields: list[str] = list(config.input_fields or [config.input_field or "text"])

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def multi_field(self) -> bool:
        """Whether an input has several fields, each shown on its own 'Name: value' line."""
        return len(self.fields) > 1

    # --- reading rows -------------------------------------------------------------------
    def example(self, row: dict, where: str = "row") -> Example:
        """Turn one raw row into an Example; `where` (file:line) names it in errors."""
        c = self.config
        text, meta, choice_labels = self._input(row, where)
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
            gold = _gold_letter(target, choice_labels, letters)
            if gold is None:
                shown = choice_labels or list(letters)
                raise DataError(
                    f"{where}: field `{c.target_field}`: answer {target!r} is not one of the choices' "
                    f"labels {shown} (nor a 0-based index); fix the row"
                )
            return Example(text, gold, gold, meta=meta)
        answer = str(target).strip()
        return Example(text, answer, answer)

    def unlabelled(self, row: dict, where: str = "row") -> Example:
        """A row to answer (`psilm predict`): its input read as `example` reads it, no answer needed."""
        text, meta, _ = self._input(row, where)
        return Example(text, "", "", meta=meta)

    def _input(self, row: dict, where: str) -> tuple[str, dict[str, Any], list[str] | None]:
        """(the text the model reads, meta, the choices' own labels or None) of a row: the input
        field(s), one 'Name: value' line each when there are several, then the lettered choices
        for multiple choice."""
        c = self.config
        for key in self.fields + ([c.choices_field] if c.choices_field else []):
            if key not in row:
                which = "task.choices_field" if key == c.choices_field else "task.input_field"
                which += "s" if self.multi_field and key != c.choices_field else ""
                raise DataError(
                    f"{where}: missing field `{key}` (fields present: {sorted(row)}); "
                    f"fix the row or set {which}"
                )
        values = {}
        for key in self.fields:
            value = row[key]
            if not isinstance(value, str) or not value.strip():
                raise DataError(f"{where}: field `{key}` is empty or not text")
            values[key] = value.strip()
        text = self.join_fields(values)
        if self.kind != "multiple_choice":
            return text, {}, None
        texts, labels = read_choices(row[c.choices_field], f"{where}: field `{c.choices_field}`")
        letters = LETTERS[: len(texts)]
        body = text + "\n" + "\n".join(f"{ltr}. {ch}" for ltr, ch in zip(letters, texts, strict=True))
        return body, {"n_choices": len(texts)}, labels

    # --- several input fields: 'Premise: ...' / 'Hypothesis: ...', one line each --------------
    def field_label(self, field: str) -> str:
        return self.config.field_names.get(field) or display(field)

    def join_fields(self, values: dict[str, str]) -> str:
        """The text the model reads: the one field's value, or a 'Name: value' line per field."""
        if not self.multi_field:
            return values[self.fields[0]]
        return "\n".join(f"{self.field_label(f)}: {values[f]}" for f in self.fields)

    def split_fields(self, text: str | None) -> tuple[dict[str, str] | None, str | None]:
        """({field: value}, None) from 'Name: value' lines, as join_fields writes them and a
        generator copies them (markdown, text before the first field ignored); or
        (None, 'missing_field:NAME') when a field is absent or empty. An instance starts at the
        first field's line; a name seen twice starts a second one, where parsing stops."""
        if not self.multi_field:
            return {self.fields[0]: text or ""}, None
        alias = {}
        for f in self.fields:
            for a in (self.field_label(f), f, f.replace("_", " ")):
                alias.setdefault(a.lower(), f)
        names = "|".join(re.escape(a) for a in sorted(alias, key=len, reverse=True))
        line = re.compile(rf"^[ \t>*_#-]*({names})[ \t*_]*[:\uff1a][ \t*_]*", re.IGNORECASE | re.MULTILINE)
        text = text or ""
        marks, stop = [], len(text)
        for m in line.finditer(text):
            field = alias[m.group(1).lower()]
            if not marks and field != self.fields[0]:  # an instance starts with its first field
                continue
            if any(field == f for f, _ in marks):
                stop = m.start()
                break
            marks.append((field, m))
        values = {}
        for i, (field, m) in enumerate(marks):
            end = marks[i + 1][1].start() if i + 1 < len(marks) else stop
            values[field] = text[m.end() : end].strip()
        for f in self.fields:
            if not values.get(f):
                return None, f"missing_field:{f}"
        return {f: values[f] for f in self.fields}, None

    def fields_request(self, what: str, with_answer: bool) -> str | None:
        """Generation: the line asking for one new instance with every field; None for one field."""
        if not self.multi_field:
            return None
        parts = ", then ".join(f"'{self.field_label(f)}: ...'" for f in self.fields)
        if self.kind == "multiple_choice":
            parts += ", then the lettered choices"
        tail = ", then 'Answer:' with the answer." if with_answer else ". Reply with those lines only."
        return f"Write one new {what} in the same format, one line each: {parts}{tail}"

    def user_text(self, input_text: str) -> str:
        """The user message for one input: 'Movie review: ...', or the field lines as they are."""
        if self.multi_field:
            return input_text
        return f"{self.config.input_name.capitalize()}: {input_text}"

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
        # prompt, which would otherwise be trained on in every short example.
        return [
            {"role": "system", "content": self.instruction()},
            {"role": "user", "content": self.user_text(input_text)},
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


def _gold_letter(target: Any, labels: list[str] | None, letters: str) -> str | None:
    """The letter of the gold choice: by its label, by its letter, or by a 0-based index."""
    gold = str(target).strip()
    if labels:
        for i, lbl in enumerate(labels):
            if gold == lbl or gold.upper() == lbl.upper():
                return letters[i]
    if gold.upper() in letters and len(gold) == 1:
        return gold.upper()
    if gold.isdigit() and int(gold) < len(letters):
        return letters[int(gold)]
    return None


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
