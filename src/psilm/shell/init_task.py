"""`psilm init DATA_FILE`: a run config guessed from a data file, with comments on what to check.

It reads up to a few thousand rows (any format io.iter_rows reads), then guesses:
- the target field: a usual name (label, answer, answerKey, ...), else the last field;
- a choices field: a usual name (choices, options, ...) or a value shaped like choices;
- the input field(s): the text fields left, without ids; several become `input_fields`;
- the kind: multiple_choice with a choices field; numeric when every target holds a number and
  most differ; classification when few distinct targets repeat; free_text otherwise.
Every guess is written with a comment saying why and what to check.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from psilm.config import load_config
from psilm.errors import DataError, PsilmError
from psilm.io import read_rows
from psilm.tasks import load_task
from psilm.tasks.base import TaskConfig, parse_number
from psilm.tasks.choices import CHOICE_FORMS, read_choices

MAX_ROWS = 50000  # enough to see the label set of a file sorted by label; a huge file is not read whole
LABEL_REPEATS = 3  # a label set: each target value comes back this many times on average, or more
LABEL_WORDS = 4  # a label is a short name, not an answer in words
TARGETS = ["label", "labels", "answer", "answerkey", "answer_key", "target", "label_name", "gold",
           "output", "y", "class", "category", "solution"]  # fmt: skip
SPLITS = {"train", "test", "dev", "valid", "validation", "data", "seeds", "pool"}  # names say nothing
CHOICES = ["choices", "options", "candidates", "endings", "answers"]
IDS = re.compile(r"(^|_)(id|idx|uid|guid|index|key)$", re.IGNORECASE)


def guess(source: str, rows: list[dict]) -> dict[str, Any]:
    """The guessed task settings and the notes that explain them."""
    fields = list(dict.fromkeys(k for r in rows for k in r))
    notes: list[str] = []
    choices = _choices_field(fields, rows)
    target = _target_field(fields, rows, exclude={choices})
    if target is None:
        raise DataError(f"{source}: found no field that could be the answer among {fields}; psilm needs one")
    texts = [f for f in fields if f not in (target, choices) and not IDS.search(f) and _is_text(rows, f)]
    if not texts:
        raise DataError(f"{source}: found no text field to read besides `{target}` among {fields}")
    targets = [str(r[target]).strip() for r in rows if r.get(target) is not None]
    distinct = Counter(targets)
    task: dict[str, Any] = {}
    if choices:
        kind = "multiple_choice"
        notes.append(f"kind: multiple_choice, since `{choices}` holds choices ({CHOICE_FORMS})")
    elif _numeric(targets, distinct):
        kind = "numeric"
        notes.append(f"kind: numeric, since every `{target}` is a number (or ends in '#### N')")
    elif _label_set(targets, distinct):
        kind = "classification"
        notes.append(
            f"kind: classification, since `{target}` takes {len(distinct)} values in {len(targets)} rows"
        )
    else:
        kind = "free_text"
        notes.append(f"kind: free_text, since `{target}` takes {len(distinct)} values in {len(targets)} rows")
    task["kind"] = kind
    if len(texts) > 1:
        task["input_fields"] = texts
        notes.append(
            f"input_fields: every text field; the model reads one line per field ({', '.join(texts)})"
        )
    else:
        task["input_field"] = texts[0]
    task["target_field"] = target
    if choices:
        task["choices_field"] = choices
    if kind == "classification":
        labels = sorted(distinct)
        task["labels"] = labels
        if all(re.fullmatch(r"-?\d+", lbl) for lbl in labels):
            notes.append(
                f"labels: the data's labels are codes {labels}; models read them as written, so "
                "names (e.g. rewriting the data with entailment / not_entailment) teach more"
            )
    name = _name(source)
    noun = " and ".join(t.replace("_", " ") for t in texts)
    what = {
        "classification": _label_line(noun, task.get("labels", [])),
        "multiple_choice": f"Answer the {noun} by picking one of the choices.",
        "numeric": f"Solve the {noun}; the answer is a number.",
        "free_text": f"Answer the {noun} briefly.",
    }[kind]
    return {
        "name": name,
        "kind": kind,
        "description": what,
        "input_name": noun if len(texts) == 1 else f"{noun} pair" if len(texts) == 2 else "input",
        **{k: v for k, v in task.items() if k != "kind"},
        "_notes": notes,
        "_fields": fields,
        "_rows": len(rows),
    }


def _name(source: str) -> str:
    """'data/rte/train.jsonl' -> 'rte'; 'hf:nyu-mll/glue:rte:train' -> 'rte'."""
    parts = re.split(r"[/:\\]", source.removeprefix("hf:"))
    stems = [Path(p).stem.lower() for p in parts if p and not p.startswith(".")]
    words = [re.sub(r"[^a-z0-9]+", "_", s).strip("_") for s in reversed(stems)]
    return next((w for w in words if w and w.split("_")[0] not in SPLITS), "task")


def _choices_field(fields: list[str], rows: list[dict]) -> str | None:
    named = [f for f in fields if f.lower() in CHOICES]
    shaped = [f for f in fields if _all_choices(rows, f)]
    for f in named + shaped:
        if _all_choices(rows, f):
            return f
    return None


def _all_choices(rows: list[dict], field: str) -> bool:
    values = [r[field] for r in rows if field in r]
    if not values or all(isinstance(v, str) and not v.strip().startswith(("[", "{")) for v in values):
        return False
    try:
        for v in values[:200]:
            read_choices(v, field)
    except DataError:
        return False
    return True


def _target_field(fields: list[str], rows: list[dict], exclude: set) -> str | None:
    usual = {f.lower(): f for f in fields if f not in exclude}
    for name in TARGETS:
        if name in usual:
            return usual[name]
    scalar = [f for f in fields if f not in exclude and all(_scalar(r.get(f)) for r in rows)]
    return scalar[-1] if scalar else None


def _scalar(v: Any) -> bool:
    return isinstance(v, str | int | float) and not isinstance(v, bool)


def _is_text(rows: list[dict], field: str) -> bool:
    values = [r.get(field) for r in rows]
    return all(isinstance(v, str) and v.strip() for v in values)


def _label_set(targets: list[str], distinct: Counter) -> bool:
    """Targets that are a label set: short names, each coming back several times (77 intents in
    10,000 rows are labels; 40 answers in 60 rows are not)."""
    short = all(len(t.split()) <= LABEL_WORDS for t in distinct)
    return 2 <= len(distinct) and short and len(distinct) * LABEL_REPEATS <= len(targets)


def _numeric(targets: list[str], distinct: Counter) -> bool:
    """GSM8K's '... #### N' solutions, or bare numbers too varied to be labels."""
    if targets and all("####" in t and parse_number(t.rsplit("####", 1)[1]) for t in targets):
        return True
    bare = bool(targets) and all(re.fullmatch(r"-?\$?[\d,]*\.?\d+", t) for t in targets)
    return bare and not _label_set(targets, distinct)


# --- writing the YAML ----------------------------------------------------------------------------
def render(source: str, guessed: dict, out: Path, test: str | None) -> str:
    """The config text: settings with a comment above each guess."""
    notes, fields, n = guessed.pop("_notes"), guessed.pop("_fields"), guessed.pop("_rows")
    kind = guessed["kind"]

    def rel(p: str) -> str:
        if p.startswith("hf:"):
            return p
        try:
            return os.path.relpath(Path(p).resolve(), out.resolve().parent)
        except ValueError:  # another drive (Windows)
            return str(Path(p).resolve())

    def value(v: Any) -> str:
        return (
            yaml.safe_dump(v, default_flow_style=True, allow_unicode=True, width=1000)
            .strip()
            .removesuffix("...")
            .strip()
        )

    lines = [
        f"# Written by `psilm init {source}` from {n} rows. Fields found: {', '.join(fields)}.",
        "# Lines marked CHECK are guesses: read them before a long run. Run it with",
        f"#   psilm run {out.name} --out runs/{guessed['name']}",
        f"name: {value(guessed['name'])}",
        "task:",
        f"  name: {value(guessed['name'])}",
    ]
    for note in notes:
        if note.startswith("kind:"):
            lines.append(f"  # CHECK {note}")
    lines.append(f"  kind: {kind}")
    lines.append("  # CHECK: one or two sentences saying what the task asks; every model reads it")
    lines.append(f"  description: {value(guessed['description'])}")
    lines.append("  # what one input is called in prompts ('movie review', 'question')")
    lines.append(f"  input_name: {value(guessed['input_name'])}")
    if "input_fields" in guessed:
        lines.append("  # CHECK: the fields the model reads, in this order; rename a line with field_names")
        lines.append(f"  input_fields: {value(guessed['input_fields'])}")
    else:
        lines.append("  # CHECK: the field the model reads")
        lines.append(f"  input_field: {value(guessed['input_field'])}")
    lines.append("  # CHECK: the field holding the answer")
    lines.append(f"  target_field: {value(guessed['target_field'])}")
    if "choices_field" in guessed:
        lines.append(f"  choices_field: {value(guessed['choices_field'])}")
    if "labels" in guessed:
        lines.append("  # CHECK: the label set, as found in the data (a row with another label is an error)")
        for note in notes:
            if note.startswith("labels:"):
                lines.append(f"  # {note}")
        lines.append(f"  labels: {value(guessed['labels'])}")
    lines += [
        "data:",
        "  # seeds are drawn from this pool (balanced across labels for classification)",
        f"  train: {value(rel(source))}",
        f"  n_seeds: {max(min(16, n // 2), len(guessed.get('labels', [])), 1)}",
    ]
    if test:
        lines.append(f"  test: {value(rel(test))}")
    else:
        lines.append(
            "  # CHECK: a held-out split to score on (disjoint from train); without one, no evaluation"
        )
        lines.append("  # test: path/to/test.jsonl")
    return "\n".join(lines) + "\n"


def write_config(
    source: str, out: Path | None, test: str | None = None, force: bool = False
) -> tuple[Path, dict]:
    """Read the data, guess, check that the guess loads every row read, write the YAML."""
    rows = [r for _, r in read_rows(source, limit=MAX_ROWS)]
    if test is not None:
        read_rows(test, limit=1)
    out = out or Path(f"{_name(source)}.yaml")
    if out.exists() and not force:
        raise PsilmError(f"{out}: already exists; give another --out or add --force to overwrite it")
    guessed = guess(source, rows)
    summary = {k: v for k, v in guessed.items() if not k.startswith("_")}
    text = render(source, dict(guessed), out, test)
    # the config must load, and the guessed task must read the rows it was guessed from

    cfg = yaml.safe_load(text)
    task = load_task(TaskConfig(**cfg["task"]))
    for i, row in enumerate(rows[:MAX_ROWS], start=1):
        task.example(row, f"{source}: row {i}")
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as e:
        raise PsilmError(f"{out}: cannot write ({e.strerror or e})") from None
    load_config(out)
    return out, summary


def _label_line(noun: str, labels: list[str]) -> str:
    """The guessed description of a classification task: a short label set named, a long one
    counted (every prompt lists the labels already; a long list twice would crowd each prompt)."""
    if len(labels) <= 8:
        return f"Label the {noun}: {', '.join(labels)}."
    return f"Label the {noun} with one of its {len(labels)} labels."
