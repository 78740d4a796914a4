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
        0.85, gt=0, le=1, description="Jaccard similarity (word 3-grams, found by MinHash) counted as a copy."
    )
    short_text_words: int = Field(
        6,
        ge=0,
        description="Texts with fewer words than this have too few 3-grams for MinHash; "
        "they are compared with rapidfuzz token_set_ratio instead.",
    )
    short_text_ratio: float = Field(
        95.0, gt=0, le=100, description="rapidfuzz token_set_ratio (0-100) counted as a copy of a short text."
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

# Said instead of doing the job. Checked anywhere in the text: each is specific to a chat model.
REFUSAL_PATTERNS = [
    # "As an AI language model, I ..." but not "As an AI researcher, Maria earns ..."
    r"\bas an? (?:ai|artificial intelligence|(?:large )?language model|chat ?bot|(?:ai|virtual) assistant)"
    r"(?: (?:language model|model|assistant|system))?\s*(?:,|\bi\b)",
    r"\bi(?:'m| am) sorry,? but\b",
    r"\bi(?:'m| am) (?:sorry|afraid|unable|not able)\b[^.\n]{0,40}\b(?:can(?:no|')t|unable|not able|won't)\b",
    r"\bi (?:can(?:no|')t|cannot|am unable to|am not able to|won't|will not) (?:help|assist|provide|generate|"
    r"create|write|produce|fulfill|comply|complete|do that|answer|continue)\b",
    r"^\W*i apologi[sz]e\b",
]

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
_QUOTES = {'"': '"', "\u201c": "\u201d", "'": "'", "\u2018": "\u2019", "\u00ab": "\u00bb", "`": "`"}
_QUESTION_WORDS = {"what", "who", "whose", "which", "when", "where", "why", "how", "name", "is", "are", "do"}
# a word problem needs a quantity and something to find
_NUMBER_WORDS = (
    r"\b(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|forty|fifty|hundred|"
    r"thousand|half|twice|double|triple|dozen|third|quarter)\b"
)
_ASKS = r"\?|\b(?:how (?:many|much|long|far|old)|what (?:is|was)|find|calculate|compute|determine|work out)\b"


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
    text = re.sub(r"(?<!`)`(?=\S)([^`\n]+?)(?<=\S)`(?!`)", r"\1", text)  # `code`, not SST-2's ` quotes 
    text = re.sub(r"^\s*>\s?", "", text, flags=re.MULTILINE)  # block quotes
    bullets = r"^\s*[-*\u2022]\s+" if "\n" in text else r"^\s*[*\u2022]\s+"  # "- a line" alone may be text
    return re.sub(bullets, "", text, flags=re.MULTILINE)


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


def _leading_label(labels: list[str]) -> re.Pattern:
    alts = "|".join(re.escape(lbl) for lbl in labels)
    return re.compile(
        rf"(?:(?:label|sentiment|category|class)\s*[:=]\s*)?(?:{alts})\s*(?:[:\-]\s+|\.?\s*\n)", re.IGNORECASE
    )


def _first_candidate(lines: list[str], task, nouns: str) -> list[str]:
    """Keep the first of several candidates: cut at a new preamble, a rule, or the next number."""
    # a bare "Question:" line may be part of a word problem; in a one-sentence task it starts another
    preambles = PREAMBLE_PATTERNS[1:]
    if task.kind != "classification":
        preambles = PREAMBLE_PATTERNS[1:3] + PREAMBLE_PATTERNS[4:]
    starts = _compiled(preambles + _NEXT_CANDIDATE, nouns)
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


def _clean(
    text: str | None, task, min_chars: int = 12, max_chars: int = 800
) -> tuple[str | None, str | None, list]:
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
        # the answer stated up front ("positive\n...", "Label: positive\n...", "Positive: ..."): cut it
        if labels and (m := _leading_label(labels).match(text)) and text[m.end() :].strip():
            notes.append("label")
            text = text[m.end() :].strip()
        if (t := _strip_quotes(text)) != text:
            notes.append("quotes")
            text = t
        lines = [ln.strip() for ln in text.split("\n")]
        if len(kept := _first_candidate(lines, task, nouns)) < len(lines):
            notes.append("extra_candidates")
            lines = kept
        if lines and (m := _NUMBERED.match(lines[0])) and lines[0][m.end():].strip():
            notes.append("numbering")
            lines[0] = lines[0][m.end():]
        lines, cut = _cut_commentary(lines, task, nouns)
        if cut:
            notes.append("commentary")
        text = "\n".join(lines).strip()
        # a word problem ends with its question; a worked answer after it is a leak
        if task.kind == "numeric" and "?" in text:
            head, tail = text[: text.rindex("?") + 1], text[text.rindex("?") + 1 :]
            if re.search(r"=|####|\banswer\b|\bsolution\b", tail, re.IGNORECASE):
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


def clean_input(
    text: str, task, *, min_chars: int = 12, max_chars: int = 800
) -> tuple[str | None, str | None]:
    """(cleaned, None), or (None, reason) with reason one of: empty, refusal, too_short, too_long,
    title_only, off_format. Idempotent: cleaning a cleaned text returns it unchanged."""
    cleaned, reason, _ = _clean(text, task, min_chars, max_chars)
    return cleaned, reason


# ---------------------------------------------------------------------------------------------
# Filtering a batch of candidates
# ---------------------------------------------------------------------------------------------

# What to look at when one reason dominates the drops (shown in the over-filtering warning).
_REPEATS = "the generator repeats itself: raise generate.temperature or sample more principles per instance"
_HINTS = {
    "near_duplicate": _REPEATS,
    "exact_duplicate": _REPEATS,
    "contaminated_seed": "the generator copies its demos: use fewer demos per instance or more seeds",
    "contaminated_test": "generated inputs match the test set: check that seeds and test rows do not overlap",
    "refusal": "the generator refuses the request: try another generator model or a plainer prompt",
    "inconsistent": "the solver disagrees with the drawn answer: check the task's labels and principles",
    "tie": "votes split evenly: raise generate.solve_samples to an odd number",
}
_ANSWER_REASONS = ("no_answer", "bad_label", "bad_number", "bad_letter")


def _norm(text: str) -> str:
    """Lowercase words only: 'The film , is GREAT!' -> 'the film is great'."""
    return " ".join(re.findall(r"\w+", text.lower()))


def _shingles(norm: str, n: int = 3) -> set[str]:
    words = norm.split()
    return {" ".join(words[i : i + n]) for i in range(max(1, len(words) - n + 1))}


class _NearIndex:
    """Texts seen so far; `match` finds an exact or near copy (MinHash LSH, verified on shingles;
    rapidfuzz for texts too short to have enough 3-grams)."""

    def __init__(self, settings: FilterSettings, num_perm: int = 64):
        from datasketch import MinHash, MinHashLSH

        self._minhash, self._perm = MinHash, num_perm
        self.threshold, self.short_words, self.short_ratio = (
            settings.near_duplicate_threshold, settings.short_text_words, settings.short_text_ratio
        )
        self.lsh = MinHashLSH(threshold=self.threshold, num_perm=num_perm)
        self.exact: set[str] = set()
        self.sets: dict[str, set[str]] = {}
        self.short: list[str] = []

    def match(self, text: str) -> str | None:
        """'exact', 'near' or None."""
        from rapidfuzz import fuzz

        norm = _norm(text)
        if norm in self.exact:
            return "exact"
        if len(norm.split()) < self.short_words:
            close = any(fuzz.token_set_ratio(norm, s) >= self.short_ratio for s in self.short)
            return "near" if close else None
        sh = _shingles(norm)
        for key in self.lsh.query(self._hash(sh)):
            other = self.sets[key]
            if len(sh & other) / len(sh | other) >= self.threshold:
                return "near"
        return None

    def add(self, text: str) -> None:
        norm = _norm(text)
        if norm in self.exact:
            return
        self.exact.add(norm)
        if len(norm.split()) < self.short_words:
            self.short.append(norm)
            return
        key = str(len(self.sets))
        self.sets[key] = sh = _shingles(norm)
        self.lsh.insert(key, self._hash(sh))

    def _hash(self, shingles: set[str]):
        m = self._minhash(num_perm=self._perm, seed=1)
        m.update_batch([s.encode() for s in sorted(shingles)])
        return m


def _answer_problem(task, rec: dict) -> str | None:
    """Why the record's answer is unusable, or None."""
    answer = rec.get("answer")
    if answer is None or not str(answer).strip():
        return "no_answer"
    answer = str(answer).strip()
    if task.kind == "classification" and answer not in task.labels:
        return "bad_label"
    if task.kind == "numeric":
        try:
            float(answer.replace(",", ""))
        except ValueError:
            return "bad_number"
    if task.kind == "multiple_choice":
        letters = re.findall(r"^\s*([A-Z])[.)]\s", rec.get("input") or "", flags=re.MULTILINE)
        if not re.fullmatch(r"[A-Z]", answer) or (letters and answer not in letters):
            return "bad_letter"
    return None


def _vote_problem(task, rec: dict) -> str | None:
    """'tie' or 'inconsistent' when the votes do not back the record's answer, else None."""

    def key(v) -> str:
        v = str(v).strip()
        if task.kind == "numeric":
            try:
                return f"{float(v.replace(',', '')):g}"
            except ValueError:
                return v
        return v.upper() if task.kind == "multiple_choice" else v

    counts = Counter(key(v) for v in rec["votes"] if v is not None and str(v).strip())
    top = counts.most_common(2)
    if not top:
        return "inconsistent"
    if len(top) == 2 and top[0][1] == top[1][1]:
        return "tie"
    return None if top[0][0] == key(rec.get("answer")) else "inconsistent"


def filter_instances(
    task, candidates: list[dict], seeds: list, test: list | None, settings: FilterSettings | None = None
) -> tuple[list[dict], dict]:
    """(kept records with cleaned inputs, report). Checks run per record first (parse error, clean,
    answer, votes, contamination), then duplicates among what is left, so a record dropped for
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
            index = _NearIndex(settings)
            for text in texts:
                index.add(text)
            indexes.append((reason, index))

    # --- per-record checks
    survivors = []
    for rec in candidates:
        if rec.get("parse_error"):
            drop(rec, f"parse:{rec['parse_error']}")
            continue
        text, reason, notes = _clean(rec.get("input"), task, settings.min_chars, settings.max_chars)
        if reason:
            drop(rec, reason)
            continue
        raw = rec.get("raw_input")
        if isinstance(raw, str) and raw != rec.get("input"):
            notes = sorted(set(notes) | set(_clean(raw, task, settings.min_chars, settings.max_chars)[2]))
        cleaned.update(notes)
        if reason := _answer_problem(task, rec):
            drop(rec, reason)
            continue
        if settings.consistency and rec.get("votes") and (reason := _vote_problem(task, rec)):
            drop(rec, reason)
            continue
        if reason := next((r for r, index in indexes if index.match(text)), None):
            drop(rec, reason)
            continue
        survivors.append({**rec, "input": text})

    # --- duplicates among survivors: the first one wins
    kept = []
    seen = _NearIndex(settings)
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
        hint = _HINTS.get(top) or ("fix the generator's output format" if top.startswith("parse:") else "")
        warning = (
            f"filters dropped {share:.0%} of {n_in} candidates (limit {settings.max_drop_share:.0%}): "
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
