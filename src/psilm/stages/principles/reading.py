"""How the teacher's answers become principle texts: numbered lists, JSON items, categories.

Lists come back numbered (task rules, solving advice, condensed error principles): parse_list reads
them forgivingly, counting every line it drops by reason. Create and mistake principles come back
as JSON items `{"example", "form"}`: read_forms keeps the complete items of a cut answer, and an
answer that is no JSON at all is read as a list. Each item becomes one principle in the shape a
person writes: the form, then its example (`Ask what an acronym stands for, for example "What does
NASA stand for?".`), or, where the form says nothing, `Write a question like "..."`.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

_STRING = r'"((?:[^"\\]|\\.)*)"'
_OBJECT = re.compile(r"\{[^{}]*\}")
_FIELD = {k: re.compile(rf'"{k}"\s*:\s*' + _STRING) for k in ("example", "form")}


def read_forms(text: str | None) -> list[tuple[str, str]] | None:
    """(form, example) pairs of a JSON answer, complete items only (an answer cut off at
    max_tokens keeps those before the cut; a missing form is ''); None where it holds no item."""
    found = []
    for obj in _OBJECT.findall(text or ""):
        got = {k: rx.search(obj) for k, rx in _FIELD.items()}
        if got["example"] is None:
            continue
        try:
            example = json.loads(f'"{got["example"].group(1)}"')
            form = json.loads(f'"{got["form"].group(1)}"') if got["form"] else ""
        except json.JSONDecodeError:
            continue
        found.append((form, example))
    return found or None


_QUOTED = re.compile(r'["\u201c](?P<text>[^"\u201c\u201d]{8,})["\u201d]')
_PLACEHOLDER = re.compile(r"<[^<>]{0,40}>|\.\.\.|\u2026")


def quoted_example(principle: str) -> str | None:
    """The last double-quoted stretch of a principle: its example instance, if it gives one."""
    found = _QUOTED.findall(principle)
    return found[-1].strip() if found else None


_LENGTH_NOTE = re.compile(r"\s*\(\s*\d+\s+(?:words?|characters?)[^()]*\)\s*$", re.IGNORECASE)


def clean_example(
    example: str, noun: str, questions: bool = False, labels: list[str] | None = None
) -> str | None:
    """The example as one instance: without a lead the teacher copied from the prompt ("News
    article: ...", "Sports: ..."); where every seed is one question, ending at its first question
    mark (the 1.5B teacher went on to answer it); None for a placeholder echo ("<a new question>")."""
    text = " ".join(example.split()).strip().strip("\"'\u201c\u201d").strip()
    if not text or _PLACEHOLDER.search(text):
        return None
    leads = [noun, "example", "input", *(labels or [])]
    lead = re.compile(r"^(?:" + "|".join(re.escape(x) for x in leads) + r")\s*:\s*", re.IGNORECASE)
    text = lead.sub("", text).strip().strip("\"'\u201c\u201d").strip()
    text = _LENGTH_NOTE.sub("", text).strip()  # "(147 words)": a length the prompt named, echoed
    if questions and "?" in text:
        text = text[: text.index("?") + 1]
    return text or None


def words_of(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def overlap(a: str, b: str) -> float:
    """Share of the shorter text's words that the other has (0 for an empty one)."""
    wa, wb = words_of(a), words_of(b)
    return len(wa & wb) / min(len(wa), len(wb)) if wa and wb else 0.0


def render(form: str, example: str, noun: str, form_chars: int = 300) -> str:
    """One principle from a form and its example, in the shape a person writes; a form longer
    than `form_chars` would crowd a small model's prompt, so the example then stands alone."""
    form = " ".join(form.split()).strip().strip("\"'").rstrip(".:;, ")
    # a form that brings its own example: the checked one is quoted after it
    form = re.sub(r",? (?:for example|for instance|e\.g\.)\W.*$", "", form, flags=re.I)
    if form.lower().startswith("asks "):  # a description of the example, as an instruction
        form = "Ask " + form[5:]
    vague = len(form.split()) < 3 or len(form) > form_chars  # "abbreviation": the label's name
    if vague or "?" in form or _PLACEHOLDER.search(form) or overlap(form, example) > 0.6:
        return f'Write a {noun} like "{example}".'
    return f'{form[0].upper()}{form[1:]}, for example "{example}".'


# ---------------------------------------------------------------------------------------------
# Parsing teacher output
# ---------------------------------------------------------------------------------------------
_BULLET = re.compile(
    r"^\s*(?:(?:principle|rule|tip|step)\s*\d*\s*[:.)-]\s*|\(?\d{1,2}[.):]\s*|[-*\u2022+]\s+)+",
    re.IGNORECASE,
)
_PREAMBLE = re.compile(r"(?:here (?:are|is)|sure\b|certainly\b|okay\b|of course\b)", re.I)
_INLINE_NUMBER = re.compile(r"\s(?=\(?\d{1,2}[.)]\s+[A-Z])")  # "1. Do x. 2. Do y." on one line


def parse_list(
    text: str | None, min_chars: int, max_chars: int, dropped: Counter, truncated: bool = False
) -> list[str]:
    """Items of a numbered or bulleted list; what is dropped is counted in `dropped` by reason.

    `truncated`: the response hit max_tokens, so its last line is cut mid-sentence: drop it.
    """
    items: list[str] = []
    seen: set[str] = set()
    lines: list[str] = []
    for raw in (text or "").splitlines():
        lines.extend(_INLINE_NUMBER.split(raw) if _BULLET.match(raw) else [raw])
    lines = [ln for ln in lines if ln.strip()]
    if truncated and lines:
        lines.pop()
        dropped["truncated"] += 1
    for raw in lines:
        if not raw.strip():
            continue
        line = _BULLET.sub("", raw.strip())
        line = re.sub(r"\*\*|__|`", "", line).strip().strip('"').strip()
        if not line:
            dropped["empty"] += 1
        elif line.endswith(":"):
            dropped["heading"] += 1  # "Principles for the task:", "1. When creating:"
        elif _PREAMBLE.match(line):
            dropped["preamble"] += 1  # "Here are three principles.", "Sure!"
        elif len(line) < min_chars:
            dropped["too_short"] += 1
        elif len(line) > max_chars:
            dropped["too_long"] += 1
        elif (key := re.sub(r"\W+", " ", line.lower()).strip()) in seen:
            dropped["duplicate"] += 1
        else:
            seen.add(key)
            items.append(line)
    if not items:
        dropped["no_items"] += 1
    return items


def one_sentence(text: str | None, max_chars: int) -> str | None:
    """The first sentence of an answer, without quotes or a lead-in ('The label means: ...'); None
    where there is none or it runs past max_chars."""
    text = " ".join((text or "").split()).strip().strip("\"'")
    # whole words: 'is' inside "in this task refers to" had cut the sentence to "task refers to ..."
    text = re.sub(r"^the label [^:]{0,40}?\b(?:means|is|refers to)\b\s*:?\s*", "", text, flags=re.I)
    first = re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0].strip().rstrip(".")
    return first if 3 <= len(first.split()) and len(first) <= max_chars else None


def capped(items: list[str], n: int, dropped: Counter) -> list[str]:
    if len(items) > n:
        dropped["over_cap"] += len(items) - n
    return items[:n]


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40].strip("-")


_CATEGORY_LINE = re.compile(r"^(?P<name>[^:]{2,50}):\s*(?P<desc>.+)$")
_EXAMPLE_REFS = re.compile(r"[(\[]\s*examples?\s*:?\s*(?P<nums>[\d,\s&and]+)[)\]]\s*\.?$", re.I)


def parse_categories(text: str | None, n_seeds: int, cap: int, dropped: Counter) -> dict[str, dict[str, Any]]:
    """'name: description (examples 1, 3)' lines -> {slug: {"description", "seeds"}}."""
    out: dict[str, dict[str, Any]] = {}
    for line in parse_list(text, 3, 300, dropped):
        m = _CATEGORY_LINE.match(line)
        if not m or not slug(m.group("name")):
            dropped["not_a_category"] += 1
            continue
        name, desc = slug(m.group("name")), m.group("desc").strip()
        refs = _EXAMPLE_REFS.search(desc)
        seeds: list[int] = []
        if refs:
            desc = desc[: refs.start()].strip()
            nums = (int(n) - 1 for n in re.findall(r"\d+", refs.group("nums")))
            seeds = sorted({n for n in nums if 0 <= n < n_seeds})
        if name in out:
            dropped["duplicate"] += 1
        elif len(out) >= cap:
            dropped["over_cap"] += 1
        else:
            out[name] = {"description": desc, "seeds": seeds}
    return out
