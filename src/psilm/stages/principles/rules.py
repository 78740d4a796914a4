"""Task rules the seeds follow: a rule that names some labels but not all, or that a seed breaks
(a length, a question or not, no digits), would head every generation prompt, so it is dropped."""

from __future__ import annotations

import re

from psilm.stages.principles.checks import words
from psilm.tasks import Example

_UNIT = r"(?P<unit>words?|characters?|chars?|letters?|sentences?|lines?|paragraphs?)"
_N = r"(?P<n>\d[\d,]*|one|two|three|four|five|six|seven|eight|nine|ten|a single|single)"
_NUMBERS = {w: i for i, w in enumerate("zero one two three four five six seven eight nine ten".split())}
_RANGE = re.compile(rf"(?:between\s+)?(?P<lo>\d[\d,]*)\s*(?:-|–|to|and)\s*(?P<hi>\d[\d,]*)\s+{_UNIT}", re.I)
_AT_MOST = re.compile(
    rf"(?:at most|no more than|not more than|under|less than|fewer than|maximum of|max(?:imum)?|up to|"
    rf"within|shorter than|not exceed(?:ing)?|exceed)\s+{_N}\s+{_UNIT}",
    re.I,
)
_OR_LESS = re.compile(rf"{_N}\s+{_UNIT}\s+or\s+(?:less|fewer|shorter)", re.I)
_AT_LEAST = re.compile(
    rf"(?:at least|more than|over|minimum of|min(?:imum)?|longer than)\s+{_N}\s+{_UNIT}", re.I
)
_OR_MORE = re.compile(rf"{_N}\s+{_UNIT}\s+or\s+(?:more|longer)", re.I)
# "must not contain more than 100 words" is a highest length, "not less than" a lowest one
_NEGATED = re.compile(
    rf"\b(?:not|never|no)\s+(?:\w+\s+){{0,2}}?(?P<dir>more|longer|over|less|fewer|shorter)\s+than"
    rf"\s+{_N}\s+{_UNIT}",
    re.I,
)
_EXACTLY = re.compile(rf"\b(?:be|is|of|in|exactly|contain|consist of)\s+{_N}\s+{_UNIT}\b", re.I)
_QUESTION_RULE = re.compile(
    r"\b(?:be|is|as|form of|end(?:s|ing)? with)\s+(?:a |an |one )?(?:\w+ )?question", re.I
)
_NOT_QUESTION_RULE = re.compile(r"\b(?:not be|never be|no)\s+(?:a |an )?question", re.I)
_NO_DIGITS = re.compile(r"\b(?:not|never|no)\b[^.]{0,20}\b(?:numbers|digits|numerals)\b", re.I)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(])")


def _count(text: str, unit: str) -> int:
    unit = unit.lower().rstrip("s")
    if unit == "word":
        return words(text)
    if unit in ("character", "char", "letter"):
        return len(" ".join(text.split()))
    if unit == "line":
        return len([ln for ln in text.splitlines() if ln.strip()]) or 1
    if unit == "paragraph":
        return len([p for p in re.split(r"\n\s*\n", text) if p.strip()]) or 1
    # sentences: a piece of fewer than three words ("Mr.", "U.S.") belongs to the one before
    pieces = _SENTENCE_END.split(" ".join(text.split()))
    return max(1, sum(words(p) >= 3 for p in pieces))


def _number(text: str) -> int:
    text = text.lower().replace(",", "")
    return 1 if "single" in text else _NUMBERS[text] if text in _NUMBERS else int(text)


def _length_bounds(rule: str) -> list[tuple[str, int | None, int | None]]:
    """(unit, lowest, highest) for each length a rule states."""
    found: list[tuple[str, int | None, int | None]] = []
    for m in _RANGE.finditer(rule):
        found.append((m["unit"], _number(m["lo"]), _number(m["hi"])))
    if found:
        return found
    for m in _NEGATED.finditer(rule):
        n = _number(m["n"])
        most = m["dir"].lower() in ("more", "longer", "over")
        found.append((m["unit"], None if most else n, n if most else None))
    if found:
        return found
    for rx, lo, hi in ((_AT_MOST, False, True), (_OR_LESS, False, True), (_AT_LEAST, True, False),
                       (_OR_MORE, True, False), (_EXACTLY, True, True)):  # fmt: skip
        for m in rx.finditer(rule):
            n = _number(m["n"])
            found.append((m["unit"], n if lo else None, n if hi else None))
        if found:
            return found
    return found


def rule_problem(rule: str, seeds: list[Example], labels: list[str] | None) -> str | None:
    """Why a task rule cannot head every generation prompt, or None: it names some labels but not
    all, or a seed breaks it (a length, a question or not, no digits). By words, not by the
    teacher: asked whether each seed follows each rule, the 1.5B teacher said yes to every one."""
    low = rule.lower()
    if labels:
        named = [lb for lb in labels if re.search(rf"\b{re.escape(lb.lower())}", low)]
        if named and len(named) < len(labels):
            return "task_rule_names_a_label"
    texts = [x.input for x in seeds]
    for unit, lo, hi in _length_bounds(rule):
        counts = [_count(t, unit) for t in texts]
        # a stated length is a rough one: the seeds break it when one is past it by a quarter
        if (hi is not None and max(counts) > hi * 1.25) or (lo is not None and min(counts) < lo / 1.25):
            return "task_rule_seeds_break_length"
    questions = [t.rstrip().endswith("?") for t in texts]
    if _NOT_QUESTION_RULE.search(rule):
        if any(questions):
            return "task_rule_seeds_break_form"
    elif _QUESTION_RULE.search(rule) and not all(questions):
        return "task_rule_seeds_break_form"
    if _NO_DIGITS.search(rule) and any(re.search(r"\d", t) for t in texts):
        return "task_rule_seeds_break_form"
    return None
