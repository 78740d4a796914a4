"""A person's principles: a YAML or JSON file read into the shape the principles stage returns.

A person can write the principles instead of a teacher (`principles.file`); they are plain text, one
per entry, with a level (task, category, error) and a use (create, solve, both).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from psilm.errors import DataError
from psilm.io import read_yaml
from psilm.stages.principles import LEVELS, USES
from psilm.tasks import Task

# ---------------------------------------------------------------------------------------------
_ENTRY_KEYS = {"level", "category", "use", "text", "id", "source"}  # id/source: reassigned


def load_principles_file(path: str | Path, task: Task, levels: list[str] | None = None) -> dict:
    """Principles a person wrote, in the shape `write_principles` returns.

    With `levels`, only the principles at those levels are kept (as for a teacher's), so each
    level of a person's file can be measured on its own.

    The file is YAML or JSON: a list of {level, category?, use?, text}, or a mapping with
    `principles:` (that list) and optionally `categories: {name: description}`. Ids are assigned
    in order (t1, c-<category>-1, e1); `id` and `source` keys in the file are ignored, so an
    edited copy of principles.json loads as it is.
    """
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise DataError(f"{where}: principles file not found")
    data = read_yaml(path, DataError, "YAML/JSON")
    declared: dict[str, str] = {}
    if isinstance(data, dict):
        declared = data.get("categories") or {}
        if not isinstance(declared, dict):
            raise DataError(f"{where}: `categories` must map names to descriptions")
        data = data.get("principles")
    if not isinstance(data, list) or not data:
        raise DataError(
            f"{where}: expected a list of principles (or a mapping with `principles:`)"
            ", each {level, category, use, text}"
        )

    principles: list[dict] = []
    counts: Counter = Counter()
    checked = [_check_entry(entry, i, where, task) for i, entry in enumerate(data)]
    kept = [p for p in checked if levels is None or p["level"] in levels]
    if not kept:
        found = sorted({p["level"] for p in checked})
        raise DataError(
            f"{where}: no principles at principles.levels {list(levels or [])}; the file has levels {found}"
        )
    for p in kept:
        prefix = {"task": "t", "error": "e"}.get(p["level"], f"c-{p['category']}-")
        counts[prefix] += 1
        principles.append({"id": f"{prefix}{counts[prefix]}", **p, "source": f"person:{path.name}"})

    fixed = task.fixed_categories()
    if fixed is not None:
        categories = fixed
    else:
        categories = {str(k): str(v or "") for k, v in declared.items()}
        for p in principles:
            if p["category"] is not None:
                categories.setdefault(p["category"], "")
    return {
        "principles": principles,
        "teacher": None,
        "prompts": [],
        "categories": categories,
        "dropped": {},
        "error": None,
        "notes": [f"written by a person: {path.name}"],
    }


def _check_entry(entry: Any, i: int, where: str, task: Task) -> dict:
    at = f"{where}: principle #{i + 1}"
    if not isinstance(entry, dict):
        raise DataError(f"{at}: expected a mapping with `level` and `text`, got {entry!r:.60}")
    unknown = set(entry) - _ENTRY_KEYS
    if unknown:
        raise DataError(f"{at}: unknown key(s) {sorted(unknown)}; use level, category, use, text")
    level = entry.get("level")
    if level not in LEVELS:
        raise DataError(f"{at}: unknown level {level!r}; use one of {list(LEVELS)}")
    text = entry.get("text")
    if not isinstance(text, str) or not text.strip():
        raise DataError(f"{at}: `text` is empty; write the principle or delete the entry")
    use = entry.get("use") or "both"
    if use not in USES:
        raise DataError(f"{at}: unknown use {use!r}; use one of {list(USES)}")
    category = entry.get("category")
    if level == "category":
        if category is None or not str(category).strip():
            raise DataError(f"{at}: level 'category' needs a `category`")
        category = str(category).strip()
        problem = task.category_problem(category)
        if problem:
            raise DataError(f"{at}: category {category!r} {problem}")
    elif category is not None:
        raise DataError(
            f"{at}: level {level!r} takes no category; use level 'category' for "
            "a principle about one category"
        )
    return {"level": level, "category": category, "use": use, "text": " ".join(text.split())}
