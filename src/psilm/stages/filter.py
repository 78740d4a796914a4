"""Stage 3: clean what can be cleaned, drop the rest with a counted reason.

`clean_input` turns one raw generated input into the text a student should read, or says why it
cannot (a short reason code). `filter_instances` runs it again over every candidate, then checks
answers, removes duplicates and anything close to a seed or test row, and keeps only instances
whose voted answer agrees. Every drop is counted by reason in the report.
"""

from __future__ import annotations

import re
from collections import Counter

from pydantic import Field

from psilm.settings import Settings


class FilterSettings(Settings):
    # --- length of the cleaned input, in characters
    min_chars: int = Field(12, ge=1)
    max_chars: int = Field(800, ge=1)
    # --- duplicates and contamination
    near_duplicate_threshold: float = Field(
        0.85, gt=0, le=1, description="Jaccard similarity (MinHash, word 3-grams) counted as a near duplicate."
    )
    short_text_words: int = Field(
        6,
        ge=0,
        description="Texts with fewer words than this have too few 3-grams for MinHash; "
        "they are compared with rapidfuzz token_set_ratio instead.",
    )
    short_text_ratio: float = Field(
        95.0, gt=0, le=100, description="rapidfuzz token_set_ratio (0-100) counted as a near duplicate of a short text."
    )
    decontaminate: bool = Field(True, description="Drop instances close to a seed or a test row.")
    # --- answers
    consistency: bool = Field(True, description="Keep only instances whose voted answer agrees.")
    # --- over-filtering alarm
    max_drop_share: float = Field(0.7, gt=0, le=1, description="Warn loudly past this share dropped.")
    examples_per_reason: int = Field(3, ge=0, description="Dropped inputs shown per reason in the report.")


# ---------------------------------------------------------------------------------------------
# Cleaning one input
# ---------------------------------------------------------------------------------------------

# Words a small model uses to name what it wrote; the task's own input_name is added to these.
NOUNS = [
    "review", "question", "problem", "sentence", "text", "input", "example", "instance", "query",
    "statement", "passage", "item", "sample", "prompt", "word problem", "math problem", "task",
]  # fmt: skip

# Openings to strip, tried in order at the start of the text until none matches. `{noun}` is a
# regex alternation of NOUNS plus the task's input_name. Add a pattern here to strip a new one.
PREAMBLE_PATTERNS = [
    # "Sure!", "Okay.", "Certainly, here ..." (only with ! or . or before a next clause, so a real
    # sentence starting with "sure , ..." is left alone)
    r"(?:sure|okay|ok|certainly|of course|absolutely|alright|great|got it)(?:\s*[!.]+|,(?=\s*(?:here|i|this|let)\b))",
    # "Here's a new review:", "Here is a new question for you:", "Here are some examples\n"
    r"here(?:'s| is| are)\b[^:\n]{0,60}?\b(?:{noun})s?\b[^:\n]{0,40}(?::|\n)",
    # "New movie review:", "Another question (positive):", "Generated problem 2:"
    r"(?:an?\s+|the\s+|my\s+)?(?:new|another|example|sample|generated|possible|different|final|original|"
    r"positive|negative)\s+(?:[\w-]+\s+){0,3}?(?:{noun})s?\s*(?:#?\d+)?\s*(?:\([^)\n]*\))?\s*[:\n]",
    # "Review:", "Question 1:", "movie review:", "Input -"
    r"(?:{noun})s?\s*(?:#?\d+)?\s*(?:\([^)\n]*\))?\s*(?::|-\s)",
    # "Let me write one:", "I'll create a new review for you."
    r"(?:let me|i'll|i will|i can)\b[^:\n]{0,60}?\b(?:{noun})s?\b[^:\n]{0,40}[:.!\n]",
]

# Said instead of doing the job. Checked anywhere in the text: each is specific to a chat model.
REFUSAL_PATTERNS = [
    r"\bas an? (?:ai|artificial intelligence|(?:large )?language model|chatbot|chat bot|ai assistant|assistant)\b",
    r"\bi(?:'m| am) sorry,? but\b",
    r"\bi(?:'m| am) (?:sorry|afraid|unable|not able)\b[^.\n]{0,40}\b(?:can(?:no|')t|unable|not able|won't)\b",
    r"\bi (?:can(?:no|')t|cannot|am unable to|am not able to|won't|will not) (?:help|assist|provide|generate|"
    r"create|write|produce|fulfill|comply|complete|do that|answer|continue)\b",
    r"\bi apologi[sz]e\b",
]

# Lines after the input that comment on it; the line and all after it are cut.
COMMENTARY_PATTERNS = [
    r"(?:label|sentiment|category|class|classification|answer|final answer|output|rating|type|"
    r"explanation|reason|reasoning|note|solution|why|correct answer|target)\s*[:=]",
    r"(?:this|the above|the)\s+(?:{noun})\b[^\n]{0,60}\b(?:is|expresses|asks|would be|can be|has|belongs|"
    r"falls|shows|conveys|was)\b",
    r"(?:i hope|hope this|let me know|feel free|in this (?:{noun}))\b",
    r"####",
]

# Where a second candidate starts (a numbered item only counts if the first one was numbered).
_NEXT_CANDIDATE = [r"(?:another|next|second|new)\b[^:\n]{0,40}:", r"-{3,}|\*{3,}|={3,}|#{2,}\s"]
_NUMBERED = re.compile(r"^\s*(?:\d+[.)]|\(\d+\))\s+")
_QUOTES = {'"': '"', "\u201c": "\u201d", "'": "'", "\u2018": "\u2019", "\u00ab": "\u00bb", "`": "`"}
_QUESTION_WORDS = ("what", "who", "whom", "whose", "which", "when", "where", "why", "how", "name", "is", "are", "do", "does", "can")
_NUMBER_WORDS = r"\b(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|hundred|thousand|half|twice|double|triple|dozen|third|quarter)\b"
_ASKS = r"\?|\b(?:how many|how much|how long|how far|how old|what is|what was|find|calculate|compute|determine|work out)\b"


def _nouns(task) -> str:
    name = getattr(getattr(task, "config", None), "input_name", "") or ""
    words = {n for n in NOUNS}
    if name.strip():
        words.add(name.strip().lower())
        words.add(name.strip().lower().split()[-1])
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


def _compiled(patterns: list[str], nouns: str) -> list[re.Pattern]:
    return [re.compile(p.replace("{noun}", nouns), re.IGNORECASE) for p in patterns]


def _strip_markdown(text: str) -> str:
    text = re.sub(r"^```[\w-]*\s*$", "", text, flags=re.MULTILINE)
    text = re.sub(r"\*\*(.+?)\*\*|__(.+?)__", lambda m: m.group(1) or m.group(2), text)
    text = re.sub(r"(?<![\w*])\*(?!\s)([^*\n]+?)(?<!\s)\*(?![\w*])", r"\1", text)  # *italic*, not 3 * 4
    text = re.sub(r"`([^`\n]+)`", r"\1", text)
    text = re.sub(r"^\s*>\s?", "", text, flags=re.MULTILINE)  # block quotes
    return re.sub(r"^\s*[-*\u2022]\s+", "", text, flags=re.MULTILINE)  # bullets


def _strip_quotes(text: str) -> str:
    if len(text) >= 2 and text[0] in _QUOTES and text.endswith(_QUOTES[text[0]]):
        inner = text[1:-1]
        if text[0] not in inner and _QUOTES[text[0]] not in inner:
            return inner.strip()
    return text


def _is_title(line: str, heading: bool) -> bool:
    """A short line with no sentence in it: '# The Dark Knight', 'Title: A Night Out', 'A Night Out'."""
    words = line.split()
    if not words or len(words) > 10 or re.search(r"[.?!]\s*$", line):
        return False
    if heading or re.match(r"title\s*:", line, re.IGNORECASE):
        return True
    if words[0].lower() in _QUESTION_WORDS:
        return False
    alpha = [w for w in words if w[0].isalpha()]
    capitalised = [w for w in alpha if w[0].isupper()]
    return len(alpha) >= 2 and len(capitalised) >= 0.7 * len(alpha) and not line.isupper()


def _first_candidate(lines: list[str], task, nouns: str) -> list[str]:
    """Keep the first of several candidates: cut at a new preamble, a rule, or the next number."""
    starts = _compiled(PREAMBLE_PATTERNS[1:] + _NEXT_CANDIDATE, nouns)
    numbered = bool(lines) and bool(_NUMBERED.match(lines[0]))
    for i, line in enumerate(lines[1:], start=1):
        if any(p.match(line) for p in starts) or (numbered and _NUMBERED.match(line)):
            return lines[:i]
        if task.kind == "classification" and not line:  # one short text per instance
            return lines[:i]
    return lines


def _cut_commentary(lines: list[str], task, nouns: str) -> tuple[list[str], bool]:
    pats = _compiled(COMMENTARY_PATTERNS, nouns)
    labels = {lbl.lower() for lbl in getattr(task, "labels", []) or []}
    for i, line in enumerate(lines):
        if i == 0 and not line.startswith("####"):
            continue
        bare = re.sub(r"[\W_]+", " ", line).strip().lower()
        if any(p.match(line) for p in pats) or (labels and bare in labels):
            return lines[:i], True
    return lines, False


def _clean(text: str | None, task, min_chars: int = 12, max_chars: int = 800) -> tuple[str | None, str | None, list[str]]:
    """(cleaned, None, notes) or (None, reason, notes); notes name what was cleaned."""
    notes: list[str] = []
    if text is None or not text.strip():
        return None, "empty", notes
    if any(p.search(text) for p in _compiled(REFUSAL_PATTERNS, "")):
        return None, "refusal", notes
    nouns = _nouns(task)
    preambles = _compiled(PREAMBLE_PATTERNS, nouns)
    labels = [lbl.lower() for lbl in getattr(task, "labels", []) or []]
    for _ in range(6):  # to a fixed point, so cleaning twice changes nothing
        before = text
        text = text.replace("\r\n", "\n").strip()
        if (t := _strip_markdown(text)) != text:
            notes.append("markdown")
            text = t
        # a heading or title line above the content
        lines = [ln.strip() for ln in text.split("\n")]
        heading = lines[0].startswith("#")
        if heading:
            lines[0] = lines[0].lstrip("#").strip()
        while len(lines) > 1 and (not lines[0] or _is_title(lines[0], heading)):
            if lines[0]:
                notes.append("title")
            lines, heading = lines[1:], False
        if len(lines) == 1 and _is_title(lines[0], heading):
            return None, "title_only", notes
        text = "\n".join(lines).strip()
        # "Here's a new review:", "Review:", "Sure!", "Positive review:"
        for p in preambles:
            m = p.match(text)
            if m and text[m.end():].strip():
                notes.append("preamble")
                text = text[m.end():].strip()
                break
        # a bare label line at the top ("positive\n...") states the answer: cut it
        first, _, rest = text.partition("\n")
        if labels and rest.strip() and re.sub(r"[\W_]+", " ", first).strip().lower() in labels:
            notes.append("label")
            text = rest.strip()
        if (t := _strip_quotes(text)) != text:
            notes.append("quotes")
            text = t
        lines = [ln.strip() for ln in text.split("\n")]
        if len(kept := _first_candidate(lines, task, nouns)) < len(lines):
            notes.append("extra_candidates")
            lines = kept
        lines, cut = _cut_commentary(lines, task, nouns)
        if cut:
            notes.append("commentary")
        text = "\n".join(lines).strip()
        # "... great fun. (Label: positive)" on the same line
        t = re.sub(r"\s*[(\[]?\s*\b(?:label|sentiment|category|answer)\s*[:=]\s*[\w ]{1,30}[)\]]?\s*$", "", text, flags=re.IGNORECASE)
        if t != text and t.strip():
            notes.append("commentary")
            text = t
        text = re.sub(r"[ \t]+", " ", re.sub(r"\n{3,}", "\n\n", text)).strip()
        if text == before:
            break
    if not text:
        return None, "empty", notes
    if len(text) < min_chars:
        return None, "too_short", notes
    if len(text) > max_chars:
        return None, "too_long", notes
    if task.kind == "numeric" and not (
        (re.search(r"\d", text) or re.search(_NUMBER_WORDS, text, re.IGNORECASE))
        and re.search(_ASKS, text, re.IGNORECASE)
    ):
        return None, "off_format", notes
    return text, None, sorted(set(notes))


def clean_input(text: str, task, *, min_chars: int = 12, max_chars: int = 800) -> tuple[str | None, str | None]:
    """(cleaned, None), or (None, reason) with reason one of: empty, refusal, too_short, too_long,
    title_only, off_format. Idempotent: cleaning a cleaned text returns it unchanged."""
    cleaned, reason, _ = _clean(text, task, min_chars, max_chars)
    return cleaned, reason
