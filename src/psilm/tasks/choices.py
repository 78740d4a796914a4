"""Multiple-choice choices, read from every form the data uses (lists, label/text objects, Hugging
Face's columns, JSON strings in a CSV cell). Rows (tasks.base), generated instances
(tasks.structured) and `psilm init` (init_task.py) read them here.
"""

from __future__ import annotations

import json
from typing import Any

from psilm.errors import DataError

CHOICE_FORMS = 'a list of strings, a list of {"label", "text"} objects, or {"label": [...], "text": [...]}'
MAX_CHOICES = 10  # answers are read back as letters A-J


def read_choices(value: Any, where: str) -> tuple[list[str], list[str] | None]:
    """(choice texts, their labels or None) from any accepted form; anything else raises DataError.

    Accepted: ["bank", "river"]; [{"label": "A", "text": "bank"}, ...] (label optional);
    Hugging Face's {"label": ["A", ...], "text": ["bank", ...]}; {"A": "bank", "B": "river"};
    and any of those as a JSON string (a CSV cell).
    """
    if isinstance(value, str) and value.strip()[:1] in ("[", "{"):
        try:
            value = json.loads(value)
        except (json.JSONDecodeError, RecursionError):
            raise DataError(f"{where}: a JSON string that does not parse; expected {CHOICE_FORMS}") from None
    texts: list = []
    labels: list | None = None
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        for i, item in enumerate(value, start=1):
            if "text" not in item:
                keys = sorted(item)
                raise DataError(f"{where}: choice {i} has no `text` (keys: {keys}); expected {CHOICE_FORMS}")
        texts = [item["text"] for item in value]
        if any("label" in item for item in value):
            labels = [item.get("label") for item in value]
    elif isinstance(value, list):
        texts = value
    elif isinstance(value, dict) and "text" in value:
        texts, labels = value["text"], value.get("label")
        if not isinstance(texts, list) or (labels is not None and not isinstance(labels, list)):
            raise DataError(f"{where}: `text` and `label` must be lists; expected {CHOICE_FORMS}")
        if labels is not None and len(labels) != len(texts):
            raise DataError(f"{where}: {len(labels)} labels but {len(texts)} texts; one label per choice")
    elif isinstance(value, dict) and value and all(isinstance(v, str) for v in value.values()):
        labels, texts = [str(k) for k in sorted(value)], [value[k] for k in sorted(value)]
    else:
        raise DataError(f"{where}: got {_shape(value)}; expected {CHOICE_FORMS}")
    for i, t in enumerate(texts, start=1):
        if isinstance(t, bool) or not isinstance(t, str | int | float) or not str(t).strip():
            raise DataError(f"{where}: choice {i} is {_shape(t)}, not text; expected {CHOICE_FORMS}")
    if not 2 <= len(texts) <= MAX_CHOICES:
        raise DataError(f"{where}: {len(texts)} choice(s); a question needs 2 to {MAX_CHOICES}")
    if labels is not None:
        labels = [str(lbl).strip() if lbl is not None else "" for lbl in labels]
        if any(not lbl for lbl in labels) or len(set(labels)) != len(labels):
            raise DataError(f"{where}: choice labels {labels} must be distinct and non-empty")
    return [str(t).strip() for t in texts], labels


def _shape(value: Any) -> str:
    if isinstance(value, dict):
        return f"an object with keys {sorted(value)[:5]}"
    if isinstance(value, list):
        return f"a list of {len(value)}" + (f" ({type(value[0]).__name__} first)" if value else "")
    return f"{type(value).__name__} {str(value)[:40]!r}"
