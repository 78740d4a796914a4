"""Stage 3: clean what can be cleaned, drop the rest with a counted reason (cleaning: clean.py).

`clean_input` turns one raw generated input into the text a student should read, or says why it
cannot (a short reason code). `filter_instances` runs it again over every candidate, then checks
answers, removes duplicates and anything close to a seed or test row, and keeps only instances
whose voted answer agrees. Every drop is counted by reason in the report.
"""

from __future__ import annotations

import re
from collections import Counter

from pydantic import Field

from psilm.numbers import percent
from psilm.settings import Settings
from psilm.stages.filter.clean import (
    clean_with_notes,
    first_question,
    is_one_question,
)
from psilm.stages.filter.near import NearIndex


class FilterSettings(Settings):
    # --- length of the cleaned input, in characters
    min_chars: int = Field(12, ge=1, description="Shorter cleaned inputs are fragments (`too_short`).")
    max_chars: int = Field(
        800, ge=1, description="Longer cleaned inputs ran on past one instance (`too_long`)."
    )
    # --- duplicates and contamination
    near_duplicate_threshold: float = Field(
        0.85, gt=0, le=1, description="Jaccard similarity (word 3-grams, found by MinHash) counted as a copy."
    )
    fuzzy_ratio: float | None = Field(
        90.0,
        gt=0,
        le=100,
        description="rapidfuzz ratio (0-100) of two short texts' word sequences, also counted as a copy. It "
        "catches a word added or dropped in a short text (3-gram Jaccard falls far below the threshold), "
        "while one changed word in under 10 words stays distinct ('What does NASA/NASDAQ stand for?'). "
        "None: off.",
    )
    decontaminate: bool = Field(True, description="Drop instances close to a seed or a test row.")
    one_question: bool | None = Field(
        False,
        description="Keep only the first question of each input, dropping inputs that ask none "
        "(`not_a_question`). None: on when at least 3 in 4 seed inputs are one question sentence "
        "and nothing else. Off by default: it drops many of a small generator's instances, and "
        "the students trained on fewer rows were weaker (docs/defaults.md#filter).",
    )
    drop_unfinished: bool = Field(
        True,
        description="Drop inputs that trail off ('The film was...') or stop mid-sentence ('..., the film "
        "is a') as `unfinished`, where the seeds do not: on when fewer than 1 in 10 seeds end in '...' "
        "and at least 9 in 10 end a sentence (each check on its own).",
    )
    # --- answers
    consistency: bool = Field(True, description="Keep only instances whose voted answer agrees.")
    label_margin: float = Field(
        1.0,
        ge=0,
        description="With generate.label_check: drop an input (`label_unlikely`) whose own label's "
        "log-probability is more than this many nats below the most likely label's. 0: only inputs "
        "whose own label is the checker's first choice (docs/defaults.md#filter).",
    )
    # --- over-filtering alarm
    max_drop_share: float = Field(0.7, gt=0, le=1, description="Warn loudly past this share dropped.")
    examples_per_reason: int = Field(3, ge=0, description="Dropped inputs shown per reason in the report.")


# ---------------------------------------------------------------------------------------------
# Cleaning one input
# ---------------------------------------------------------------------------------------------

# Words a small model uses to name what it wrote; the task's own input_name is added to these.

_REPEATS = "the generator repeats itself: raise generate.temperature or sample more principles per instance"
_HINTS = {
    "near_duplicate": _REPEATS,
    "exact_duplicate": _REPEATS,
    "contaminated_seed": "the generator copies its demos: use fewer demos per instance or more seeds",
    "contaminated_test": "generated inputs match the test set: check that seeds and test rows do not overlap",
    "refusal": "the generator refuses the request: try another generator model or a plainer prompt",
    "instruction": "the generator repeats the request instead of doing it: try generate.prompt_style=list",
    "describes_input": "the generator describes what it would write: try generate.prompt_style=list",
    "announcement": "the generator announces an input without giving one: try generate.prompt_style=list",
    "unfinished": "inputs stop mid-sentence: raise generate.max_tokens, or set filter.drop_unfinished=false",
    "inconsistent": "the solver disagrees with the drawn answer: check the task's labels and principles",
    "tie": "votes split evenly: raise generate.solve_samples to an odd number",
    "label_unlikely": "the checker finds another label more likely for these inputs: raise "
    "filter.label_margin to keep more of them, or sharpen those labels' principles",
    "not_a_question": "the generator writes about questions instead of asking one: try fewer principles "
    "per instance, or filter.one_question=false if inputs need not be questions",
}


_END = re.compile(r"[.!?\u2026][\s\"'\u201d\u2019)\]`]*$")  # a sentence end, maybe in quotes
_TRAILING_DOTS = re.compile(r"(?:\.\.\.|\u2026)[\s\"'\u201d\u2019)\]`]*$")
# a text that stops on a comma, a dash or a word that needs a next one ("..., the film is a")
_DANGLING = re.compile(
    r"(?:[,;:\-\u2013\u2014]|\b(?:the|a|an|of|to|and|or|but|with|for|in|on|at|as|that|which|who|is|was|are"
    r"|were|his|her|their|its|my|your|our|this|from|by))\s*$",
    re.IGNORECASE,
)


def unfinished_rule(seeds: list) -> tuple[bool, bool]:
    """(drop inputs that trail off in '...', drop inputs that stop mid-sentence), from what the
    seeds do: most real inputs end a sentence and rarely trail off, while inputs that end in a list
    of choices do not end a sentence. Stopping mid-sentence = no sentence end and a last word that
    needs a next one."""
    texts = [s.input.strip() for s in seeds]
    if not texts:
        return True, False
    dots = sum(bool(_TRAILING_DOTS.search(t)) for t in texts) / len(texts)
    ends = sum(bool(_END.search(t)) for t in texts) / len(texts)
    return dots < 0.1, ends >= 0.9


def _unfinished(text: str, rule: tuple[bool, bool]) -> bool:
    dots, ends = rule
    if dots and _TRAILING_DOTS.search(text):
        return True
    return ends and not _END.search(text) and bool(_DANGLING.search(text))


def _answer_problem(task, rec: dict) -> str | None:
    """Why the record's answer is unusable, or None."""
    answer = rec.get("answer")
    if answer is None or not str(answer).strip():
        return "no_answer"
    return task.answer_problem(str(answer).strip(), rec.get("input") or "")


def _vote_problem(task, rec: dict) -> str | None:
    """'tie' or 'inconsistent' when the votes do not back the record's answer, else None. A numeric
    record whose votes tied has no answer from the generator: that is a 'tie' too."""

    def key(v) -> str:
        return task.vote_key(str(v).strip())

    counts = Counter(key(v) for v in rec["votes"] if v is not None and str(v).strip())
    top = counts.most_common(2)
    if not top:  # no readable vote
        return "no_answer" if rec.get("answer") is None else "inconsistent"
    if len(top) == 2 and top[0][1] == top[1][1]:
        return "tie"
    return None if top[0][0] == key(rec.get("answer")) else "inconsistent"


def _label_problem(rec: dict, margin: float) -> str | None:
    """'label_unlikely' when the checker's scores (generate.label_check) put the record's label more
    than `margin` nats below the most likely one."""
    scores = rec.get("label_scores")
    if not scores or rec.get("answer") not in scores:
        return None
    return "label_unlikely" if scores[rec["answer"]] < max(scores.values()) - margin else None


def filter_instances(
    task, candidates: list[dict], seeds: list, test: list | None, settings: FilterSettings | None = None
) -> tuple[list[dict], dict]:
    """(kept records with cleaned inputs, report). Checks run per record first (parse error, clean,
    votes, answer, contamination), then duplicates among what is left, so a record dropped for
    another reason never knocks out its duplicate."""
    settings = settings or FilterSettings()
    dropped: Counter = Counter()
    examples: dict[str, list[str]] = {}
    cleaned: Counter = Counter()

    def drop(rec: dict, reason: str) -> None:
        dropped[reason] += 1
        shown = examples.setdefault(reason, [])
        if len(shown) < settings.examples_per_reason:
            shown.append(str(rec.get("raw_input") or rec.get("input") or "")[:300])

    # --- references for decontamination
    refs = [("contaminated_seed", [s.input for s in seeds])]
    if settings.decontaminate and test:
        refs.append(("contaminated_test", [t.input for t in test]))
    indexes = []
    if settings.decontaminate:
        for reason, texts in refs:
            index = NearIndex(settings)
            for text in texts:
                index.add(text)
            indexes.append((reason, index))

    unfinished = unfinished_rule(seeds) if settings.drop_unfinished else (False, False)
    one_question = settings.one_question
    if one_question is None:
        one_question = len(seeds) >= 2 and sum(is_one_question(s.input) for s in seeds) >= 0.75 * len(seeds)

    # --- per-record checks
    survivors = []
    for rec in candidates:
        if rec.get("parse_error"):
            drop(rec, f"parse:{rec['parse_error']}")
            continue
        text, reason, notes = clean_with_notes(rec.get("input"), task, settings.min_chars, settings.max_chars)
        if reason:
            drop(rec, reason)
            continue
        if _unfinished(text, unfinished):
            drop(rec, "unfinished")
            continue
        if one_question:
            question = first_question(text)
            if question is None or len(question) < settings.min_chars:
                drop(rec, "not_a_question")
                continue
            if question != text:
                notes = [*notes, "not_the_question"]
                text = question
        # what was cleaned, from the raw text where the input came from all of it; in a question-and-
        # answer response (multiple choice, free text) the trailing answer is expected, not cleaned
        raw = rec.get("raw_input")
        if isinstance(raw, str) and raw != rec["input"]:
            raw_text, _, raw_notes = clean_with_notes(raw, task, settings.min_chars, settings.max_chars)
            if task.writes_answer:
                raw_notes = [n for n in raw_notes if n != "commentary"]
            notes = sorted(set(notes) | set(raw_notes)) if raw_text == text else notes
        cleaned.update(notes + ["any"] * bool(notes))
        votes = rec.get("votes") if settings.consistency else None
        if reason := (
            (votes and _vote_problem(task, rec))
            or _answer_problem(task, rec)
            or _label_problem(rec, settings.label_margin)
        ):
            drop(rec, reason)
            continue
        if reason := next((r for r, index in indexes if index.match(text)), None):
            drop(rec, reason)
            continue
        survivors.append({**rec, "input": text})

    # --- duplicates among survivors: the first one wins
    kept = []
    seen = NearIndex(settings)
    for rec in survivors:
        if match := seen.match(rec["input"]):
            drop(rec, "exact_duplicate" if match == "exact" else "near_duplicate")
            continue
        seen.add(rec["input"])
        kept.append(rec)

    # --- report
    n_in = len(candidates)
    share = 1 - len(kept) / n_in if n_in else 0.0
    warning = None
    if n_in == 0:
        warning = "the filter got no candidates: the generate stage wrote nothing; look at candidates.jsonl"
    elif share > settings.max_drop_share:
        top, n_top = dropped.most_common(1)[0]
        hint = _HINTS.get(top.removeprefix("parse:")) or (
            "fix the generator's output format" if top.startswith("parse:") else ""
        )
        warning = (
            f"filters dropped {percent(share, 0)} of {n_in} candidates "
            f"(limit {percent(settings.max_drop_share, 0)}): "
            f"mostly {top} ({n_top}). Look at filter_report.json; {hint or 'see the examples per reason'}; "
            "or raise filter.max_drop_share if this is expected."
        )
    report = {
        "n_in": n_in,
        "n_kept": len(kept),
        "dropped": dict(dropped.most_common()),
        "cleaned": dict(cleaned.most_common()),
        "drop_share": round(share, 4),
        "per_category_kept": dict(Counter(str(r.get("category")) for r in kept).most_common()),
        "warning": warning,
        "examples": examples,
    }
    return kept, report
