"""Cleaning a small model's raw text: strip what can be stripped, name the reason for the rest.

Raw 135M output comes with preambles ("Here's a new review:"), refusals, markdown, title lines,
several candidates at once and trailing commentary. `clean_input` keeps the content and says why
it gave up when there is none. The generate stage cleans before solving; the filter counts.
"""

from __future__ import annotations

import copy
import re

NOUNS = [
    "review", "question", "problem", "sentence", "text", "input", "example", "instance", "query",
    "statement", "passage", "sample", "prompt", "word problem", "math problem",
]  # fmt: skip

# Openings to strip, tried in order at the start of the text until none matches. `{noun}` is a
# regex alternation of NOUNS plus the task's input_name. Add a pattern here to strip a new one.
PREAMBLE_PATTERNS = [
    # "Sure!", "Okay.", "Certainly, here ..." (only with ! or . or before a next clause, so a real
    # sentence starting with "sure , ..." is left alone)
    r"(?:sure|okay|ok|certainly|of course|absolutely|alright|great|got it)"
    r"(?:\s*[!.]+|,(?=\s*(?:here|i|this|let)\b))",
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

# Said instead of doing the job; looked for near the start, before and after cleaning.
REFUSAL_PATTERNS = [
    # "As an AI language model, I ..." but not "As an AI researcher, Maria earns ..."
    r"\bas an? (?:ai|artificial intelligence|(?:large )?language model|chat ?bot|(?:ai|virtual) assistant)"
    r"(?: (?:language model|model|assistant|system))?\s*(?:,|\bi\b)",
    r"\bi(?:'m| am) sorry,? but\b",
    r"\bi(?:'m| am) (?:sorry|afraid),? (?:but )?i (?:can(?:no|')t|cannot|am unable|am not able|won't)\b",
    # "I cannot help with that", but not "I can't help but smile"
    r"\bi (?:can(?:no|')t|cannot|am unable to|am not able to|won't|will not) (?:help(?! but| it\b| myself)|"
    r"assist|provide|generate|create|write|produce|fulfill|comply|complete|do that|continue)\b",
    r"^\W*i apologi[sz]e\b",
]

# Talk about the task instead of an instance of it, judged on the cleaned text: the reason, then
# its patterns (`{noun}` as above). A preamble with an instance after it is stripped, not dropped.
TALK_PATTERNS = {
    # the request echoed: "Write a new question about ...", "Create a positive movie review"
    "instruction": [
        r"^\W*(?:please\s+)?(?:write|create|generate|compose|produce|give me|make up|come up with)\b"
        r"[^.?!\n]{0,40}?\b(?:{noun})s?\b",
    ],
    # what the input is, not the input: "This sentence is a perfect example of a positive review",
    # "The review expresses ...", "It is a negative movie review"
    "describes_input": [
        r"^\W*(?:this|that|the above|the following|the given|my|our)\s+(?:[\w-]+\s+){0,2}?(?:{noun})s?\s+"
        r"(?:is|was|would be|could be|expresses|describes|asks|shows|conveys|belongs|falls|has a)\b",
        r"^\W*the\s+(?:[\w-]+\s+){0,2}?(?:{noun})s?\s+(?:expresses|describes|conveys|belongs|falls)\b",
        r"^\W*it(?:'s| is) an? (?:[\w-]+\s+){0,3}?(?:{noun})\b",
    ],
    # an announcement with no instance after it: "But here is my attempt: In 1980s, the film",
    # "Sure, here you go", "A film review - \"The Hunger Games trilogy\""
    "announcement": [
        r"\bhere(?:'s| is| are)\s+(?:my|an?|one|another)\s+(?:[\w-]+\s+){0,2}?"
        r"(?:attempt|try|go|version|take|answer|response|suggestion)s?\b",
        r"\bmy (?:attempt|try)\b",
        r"^\W*(?:sure|okay|ok|certainly|of course|alright)\b[^\n]{0,30}?\bhere\b",
        r"^\W*here (?:you go|you are|it is|goes)\b",
        r"^\W*(?:an?|my|the)\s+(?:[\w-]+\s+){0,2}?(?:{noun})s?\s*(?:[-\u2013\u2014]|:)\s",
    ],
}

# Lines after the input that comment on it; the line and all after it are cut.
COMMENTARY_PATTERNS = [
    r"(?:label|sentiment|category|class|classification|answer|final answer|output|rating|type|"
    r"explanation|reason|reasoning|note|solution|why|correct answer|target)\s*[:=]",
    r"(?:this|the above|the given|the)\s+(?:{noun})\s+(?:is|expresses|asks|would be|can be|belongs|falls|"
    r"shows|conveys|contains|describes|uses|has a|was)\b",
    r"(?:i hope|hope this|let me know|feel free|in this (?:{noun}))\b",
    r"####",
]

# Where a second candidate starts (a numbered item only counts if the first one was numbered).
_NEXT_CANDIDATE = [
    r"(?:another|next|second|new)\b[^:\n]{0,40}\b(?:{noun})s?\b[^:\n]{0,20}:",
    r"(?:{noun})s?\s*#?\d+\s*:",  # "Review 2:"
    r"-{3,}|\*{3,}|={3,}|#{2,}\s",  # a rule or a heading between candidates
]
_INLINE_LABEL = re.compile(  # "... great fun. (Label: positive)" at the end of a line
    r"\s*[(\[]?\s*\b(?:label|sentiment|category|answer)\s*[:=]\s*[\w ]{1,30}[)\]]?\s*$", re.IGNORECASE
)
_NUMBERED = re.compile(r"^\s*(?:\d+[.)]|\(\d+\))\s+")
_FIRST, _SECOND = re.compile(r"^\s*(?:1[.)]|\(1\))\s"), re.compile(r"^\s*(?:2[.)]|\(2\))\s")
_QUOTES = {'"': '"', "\u201c": "\u201d", "'": "'", "\u2018": "\u2019", "\u00ab": "\u00bb", "`": "`"}
_QUESTION_WORDS = {"what", "who", "whose", "which", "when", "where", "why", "how", "name", "is", "are", "do"}
# a word problem needs a quantity and something to find
_NUMBER_WORDS = (
    r"\b(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|\w+teen|\w+ty|hundred|thousand|"
    r"million|half|twice|double|triple|dozen|third|quarter|percent)\b"
)
_ASKS = r"\?|\b(?:how|what|which|when|who|find|calculate|compute|determine|work out)\b"


def _nouns(task) -> str:
    name = task.config.input_name.strip().lower()
    words = set(NOUNS) | ({name, name.split()[-1]} if name else set())
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


def _compiled(patterns: list[str], nouns: str) -> list[re.Pattern]:
    return [re.compile(p.replace("{noun}", nouns), re.IGNORECASE) for p in patterns]


def talks_about_task(text: str, nouns: str) -> str | None:
    """'instruction', 'describes_input' or 'announcement' when the text talks about the task
    instead of being an instance of it (looked for in its first 200 characters), else None."""
    head = text[:200]
    for reason, patterns in TALK_PATTERNS.items():
        if any(p.search(head) for p in _compiled(patterns, nouns)):
            return reason
    return None


def _refuses(text: str) -> bool:
    return any(p.search(text[:300]) for p in _compiled(REFUSAL_PATTERNS, ""))


def _strip_markdown(text: str) -> str:
    text = re.sub(r"^```[\w-]*\s*$", "", text, flags=re.MULTILINE)
    # **bold**, __bold__, *italic*; not 3 * 4, nor SST-2's escaped \*\*\*
    bold = r"(?<![\\*])\*\*(?=\S)(.+?)(?<=[^\s\\])\*\*|__(.+?)__"
    text = re.sub(bold, lambda m: m.group(1) or m.group(2), text)
    text = re.sub(r"(?<![\\*])\*\*(?!\*)", "", text)  # an unpaired ** left over
    text = re.sub(r"(?<![\w*\\])\*(?=\w)([^*\n]+?)(?<=[\w.!?])\*(?![\w*])", r"\1", text)
    text = re.sub(r"(?<!`)`(?=\S)([^`\n]+?)(?<=\S)`(?!`)", r"\1", text)  # `code`, not SST-2's ` quotes '
    text = re.sub(r"^\s*>\s?", "", text, flags=re.MULTILINE)  # block quotes
    bullets = r"^\s*[-*\u2022]\s+" if "\n" in text else r"^\s*[*\u2022]\s+"  # "- a line" alone may be text
    return re.sub(bullets, "", text, flags=re.MULTILINE)


def _strip_quotes(text: str) -> str:
    """'"text"' -> 'text'; also a lone opening or closing double quote ('"text' or 'text"')."""
    if len(text) >= 2 and text[0] in _QUOTES and text.endswith(_QUOTES[text[0]]):
        inner = text[1:-1]
        if text[0] not in inner and _QUOTES[text[0]] not in inner:
            return inner.strip()
    for q in ('"', "\u201c", "\u201d"):
        if text.count(q) == 1 and (text.startswith(q) or text.endswith(q)):
            return text.strip(q).strip()
    return text


def _is_title(line: str, heading: bool, title_case: bool = True, min_words: int = 2) -> bool:
    """A short line with no sentence in it: '# The Dark Knight', 'Title: A Night Out', 'A Night Out'
    (one word is enough above other lines: 'Inception')."""
    words = [w.strip("\"'`\u201c\u201d*_()[]") for w in line.split()]
    words = [w for w in words if w]
    if not words or len(words) > 10 or re.search(r"[.?!][\"'\u201d)\]*_]*\s*$", line):
        return False
    if heading or re.match(r"title\s*:", line, re.IGNORECASE):
        return True
    if not title_case or words[0].lower() in _QUESTION_WORDS:
        return False
    alpha = [w for w in words if w[0].isalpha()]
    capitalised = [w for w in alpha if w[0].isupper()]
    return len(alpha) >= min_words and len(capitalised) >= 0.7 * len(alpha) and not line.isupper()


def _leading_label(labels: list[str]) -> re.Pattern:
    alts = "|".join(re.escape(lbl) for lbl in labels) or "(?!)"
    return re.compile(
        rf"(?:label|sentiment|category|class)\s*[:=][^\n]{{0,30}}\n|(?:{alts})\s*(?:[:\-]\s+|\.?\s*\n)",
        re.IGNORECASE,
    )


def _first_candidate(lines: list[str], task, nouns: str) -> list[str]:
    """Keep the first of several candidates: cut at a new preamble, a rule, or the next number."""
    # a bare "Question:" line may be part of a word problem; in a one-sentence task it starts another
    preambles = PREAMBLE_PATTERNS[1:]
    if not task.one_text_inputs:
        preambles = PREAMBLE_PATTERNS[1:3] + PREAMBLE_PATTERNS[4:]
    starts = _compiled(preambles + _NEXT_CANDIDATE, nouns)
    numbered = bool(lines) and bool(_NUMBERED.match(lines[0]))
    for i, line in enumerate(lines[1:], start=1):
        if any(p.match(line) for p in starts) or (numbered and _NUMBERED.match(line)):
            return lines[:i]
        if _SECOND.match(line) and not any(_FIRST.match(ln) for ln in lines[:i]):  # "2." with no "1."
            return lines[:i]
        if task.one_text_inputs and (not line or _NUMBERED.match(line)):  # one text per instance
            return lines[:i]
    return lines


def _cut_commentary(lines: list[str], task, nouns: str) -> tuple[list[str], bool]:
    pats = _compiled(COMMENTARY_PATTERNS, nouns)
    labels = {lbl.lower() for lbl in task.labels}
    for i, line in enumerate(lines):
        if i == 0 and not line.startswith("####"):
            continue
        bare = re.sub(r"[\W_]+", " ", line).strip().lower()
        if any(p.match(line) for p in pats) or (labels and bare in labels):
            return lines[:i], True
    return lines, False


def _strip_head(text: str, task, preambles: list[re.Pattern], labels: list[str], notes: list[str]):
    """Strip what comes before the input, over and over: 'Sure!', 'Here's a new review:', a title,
    'Label: positive', quotes, '1.'. Returns (text, None) or (None, reason)."""
    titles_ok = not re.search(r"title|headline|name|subject", task.config.input_name, re.IGNORECASE)
    while True:
        before = text
        # a heading or title line above the content
        lines = text.split("\n")
        heading = lines[0].startswith("#")
        if heading:
            lines[0] = lines[0].lstrip("#").strip()
        while len(lines) > 1 and (not lines[0].strip() or _is_title(lines[0], heading, titles_ok, 1)):
            if lines[0].strip():
                notes.append("title")
            lines, heading = lines[1:], False
        if len(lines) == 1 and _is_title(lines[0], heading, titles_ok):
            return None, "title_only"
        text = "\n".join(lines).strip()
        # "Here's a new review:", "Review:", "Sure!", "Positive review:"
        for p in preambles:
            if m := p.match(text):
                if not text[m.end() :].strip():
                    return None, "empty"  # a preamble and nothing after it
                notes.append("preamble")
                text = text[m.end() :].strip()
                break
        # the answer stated up front ("positive\n...", "Label: positive\n...", "Positive: ..."): cut it
        if (m := _leading_label(labels).match(text)) and text[m.end() :].strip():
            notes.append("label")
            text = text[m.end() :].strip()
        if (t := _strip_quotes(text)) != text:
            notes.append("quotes")
            text = t
        if text == before:
            return text, None


def clean_with_notes(
    text: str | None, task, min_chars: int = 12, max_chars: int = 800
) -> tuple[str | None, str | None, list]:
    """(cleaned, None, notes) or (None, reason, notes); notes name what was cleaned."""
    if task.multi_field:
        return _clean_fields(text, task, min_chars, max_chars)
    notes: list[str] = []
    if text is None or not text.strip():
        return None, "empty", notes
    if _refuses(text):
        return None, "refusal", notes
    nouns = _nouns(task)
    preambles = _compiled(PREAMBLE_PATTERNS, nouns)
    labels = [lbl.lower() for lbl in task.labels]
    for _ in range(6):  # to a fixed point, so cleaning twice changes nothing
        before = text
        text = text.replace("\r\n", "\n").strip()
        text = re.sub(r"^\*\*([^*\n]+)\*\*[ \t]*\n", r"# \1\n", text)  # "**Title**\n..." is a heading
        if (t := _strip_markdown(text)) != text:
            notes.append("markdown")
            text = t
        text, reason = _strip_head(text, task, preambles, labels, notes)
        if reason:
            return None, reason, notes
        lines = [ln.strip() for ln in text.split("\n")]
        if len(kept := _first_candidate(lines, task, nouns)) < len(lines):
            notes.append("extra_candidates")
            lines = kept
        if lines and (m := _NUMBERED.match(lines[0])) and lines[0][m.end() :].strip():
            notes.append("numbering")
            lines[0] = lines[0][m.end() :]
        lines, cut = _cut_commentary(lines, task, nouns)
        if cut:
            notes.append("commentary")
        text = "\n".join(lines).strip()
        # a word problem ends with its question: a worked answer after it is a leak, and lines
        # without a number after it are chatter
        if task.word_problem_inputs and "?" in text:
            head, tail = text[: text.rindex("?") + 1], text[text.rindex("?") + 1 :]
            leak = re.search(r"=|####|\banswer\b|\bsolution\b", tail, re.IGNORECASE)
            if leak or (tail.strip() and tail.lstrip(" \t").startswith("\n") and not re.search(r"\d", tail)):
                notes.append("commentary")
                text = head
        # "... great fun. (Label: positive)" on the same line
        t = _INLINE_LABEL.sub("", text)
        if t != text and t.strip():
            notes.append("commentary")
            text = t
        text = re.sub(r"\n{3,}", "\n\n", text).strip()
        if text == before:
            break
    if not text:
        return None, "empty", notes
    if _refuses(text):  # cleaning can bring one forward ("**As an AI**, I ...")
        return None, "refusal", notes
    if reason := talks_about_task(text, nouns):
        return None, reason, notes
    if len(text) < min_chars:
        return None, "too_short", notes
    if len(text) > max_chars:
        return None, "too_long", notes
    if task.word_problem_inputs and not (
        (re.search(r"\d", text) or re.search(_NUMBER_WORDS, text, re.IGNORECASE))
        and re.search(_ASKS, text, re.IGNORECASE)
    ):
        return None, "off_format", notes
    return text, None, sorted(set(notes))


def _clean_fields(
    text: str | None, task, min_chars: int, max_chars: int
) -> tuple[str | None, str | None, list]:
    """Several input fields ('Premise: ...' / 'Hypothesis: ...'): split the text into its fields
    (task.split_fields), clean each on its own, join them again. A field that is absent or cleans
    to nothing is the reason 'missing_field:NAME'; length is checked on the joined text."""
    values, reason = task.split_fields(text)
    if reason:
        return None, reason, []
    part = copy.copy(task)  # the same task reading one plain field; a word problem is checked whole
    part.fields = task.fields[:1]
    part.word_problem_inputs = False
    notes: set[str] = set()
    for name, value in values.items():
        cleaned, reason, more = clean_with_notes(value, part, 1, max_chars)
        notes.update(more)
        if reason:
            return None, f"missing_field:{name}" if reason == "empty" else reason, sorted(notes)
        values[name] = cleaned
    joined = task.join_fields(values)
    if len(joined) < min_chars:
        return None, "too_short", sorted(notes)
    if len(joined) > max_chars:
        return None, "too_long", sorted(notes)
    if task.word_problem_inputs and not (
        (re.search(r"\d", joined) or re.search(_NUMBER_WORDS, joined, re.IGNORECASE))
        and re.search(_ASKS, joined, re.IGNORECASE)
    ):
        return None, "off_format", sorted(notes)
    return joined, None, sorted(notes)


# --- tasks whose inputs are one question (TREC): keep the question, drop what asks nothing
_ABBREV = re.compile(r"(?:\b(?:dr|mr|mrs|ms|st|mt|jr|sr|vs|no|ft|etc)|\b[a-z])\.$", re.IGNORECASE)


def is_one_question(text: str) -> bool:
    """One question sentence and nothing else, as nearly every TREC input is (not a word problem)."""
    return first_question(text) == text.strip()


def first_question(text: str, min_words: int = 3) -> str | None:
    """The first question sentence in a generated text, or None when it asks nothing.

    'Here is one: "Where is the Orange Bowl?" that asks ...' gives 'Where is the Orange Bowl?';
    a sentence starts at the start of a line, after an opening quote or a colon, or after a
    sentence end (., !) that is not an abbreviation (Dr., U.S.).
    """
    for line in text.split("\n"):
        end = line.find("?")
        if end < 0:
            continue
        head = line[: end + 1]
        start = 0
        for m in re.finditer(r"[\"\u201c\u2018]|:\s|[.!]\s+", head[:-1]):
            if m.group().startswith((".", "!")) and _ABBREV.search(head[: m.start() + 1]):
                continue
            start = m.end()
        question = head[start:].strip(" \t\"'\u201c\u201d\u2018\u2019*-")
        if len(question.split()) >= min_words:
            return question
    return None


def clean_input(
    text: str, task, *, min_chars: int = 12, max_chars: int = 800
) -> tuple[str | None, str | None]:
    """(cleaned, None), or (None, reason) with reason one of: empty, refusal, instruction,
    describes_input, announcement, too_short, too_long, title_only, off_format. Idempotent:
    cleaning a cleaned text returns it unchanged."""
    cleaned, reason, _ = clean_with_notes(text, task, min_chars, max_chars)
    return cleaned, reason


# ---------------------------------------------------------------------------------------------
# Filtering a batch of candidates
# ---------------------------------------------------------------------------------------------

# What to look at when one reason dominates the drops (shown in the over-filtering warning).
