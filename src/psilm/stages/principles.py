"""Stage 1: a teacher writes task-completion principles at several levels.

Levels (each switchable in `levels`, so each can be measured):
- task: what the task asks, what a correct answer satisfies, the answer format.
- category: per category (the labels of a classification task; otherwise sub-types the teacher
  finds in the seeds) how to create a good new instance and how to solve one.
- error: the student answers each seed greedily; the teacher writes one principle per mistake,
  then condenses them into a few general ones (as LEAP does, arXiv 2402.05403).

The teacher is asked for short numbered lists; every line is parsed forgivingly and each line
that is dropped is counted by reason, so garbage output never crashes the stage. A person can
write the principles instead (`principles_file.load_principles_file`): they are plain text, one per entry.

What a small generator can use is advice for *writing* an instance, in the shape a person writes
it: one form the instance takes and one new example ("Ask what an acronym stands for, for example
\"What does NASA stand for?\""). Measured on TREC (a 1.5B teacher, SmolLM2 writing): abstract
advice, some of it for answering rather than writing, steered the generator no better than no
principles (53% of rows asked for their label's type against direct's 54%; a person's 67%). So the
create prompts and, for a classification task, the mistake prompts ask for JSON items, a new
example and a few words on its form (principle_prompts.py says why in that order); each example is
cleaned and checked (`Forms`): a placeholder echo, a statement where every seed is a question, a
near copy of a seed, and, for a classification task, an example the teacher itself puts under
another label (asked with the labels' meanings and the seeds shown) are dropped and counted by
reason; per_category + extra_forms are asked for so that per_category remain. Error principles of a
classification task stay with the label the student missed, so they reach that label's generation
prompts. Solving advice is asked for only where the generator solves its own inputs (it is read
nowhere else).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import Field

from psilm.errors import ConfigError, DataError
from psilm.llm.base import Completion, Messages, SamplingParams
from psilm.llm.calls import ModelCaller
from psilm.settings import Settings
from psilm.stages import principle_prompts as prompts_
from psilm.tasks import Example, Task

# teachers too small to write principles: a run that uses one says so (console, manifest, report)
WEAK_TEACHERS = ("smollm2-135m",)

Level = Literal["task", "category", "error"]
LEVELS: tuple[str, ...] = get_args(Level)  # in the order reports show them
USES = ("create", "solve", "both")


class PrinciplesSettings(Settings):
    # --- which levels (each switchable, so each can be measured)
    levels: list[Level] = Field(default_factory=lambda: list(LEVELS), description="Levels to write.")
    # --- a person's principles instead of the teacher's
    file: Path | None = Field(
        None, description="JSON/YAML principles file; when set, the teacher is not asked."
    )
    # --- teacher sampling
    temperature: float = Field(0.7, ge=0, description="Teacher sampling temperature.")
    max_tokens: int = Field(256, gt=0, description="Per teacher response; lists are short.")
    # --- how many: few and short, since each generation prompt carries only one or two
    task_count: int = Field(3, ge=1, description="Task-level principles asked for.")
    per_category: int = Field(2, ge=1, description="Principles per category per kind (create/solve).")
    extra_forms: int = Field(
        2,
        ge=0,
        description="Create forms asked beyond per_category, so that the example checks (off-label, "
        "a copy of a seed, a placeholder) can drop some and leave per_category.",
    )
    max_categories: int = Field(
        4, ge=1, description="Sub-types the teacher may find in non-classification seeds."
    )
    condense_to: int = Field(3, ge=1, description="Error-level principles kept after condensing.")
    check_task_rules: bool = Field(
        True,
        description="Drop a task rule that names some labels but not all ('Reviews must not contain any "
        "negative comments'): a task rule heads every generation prompt, every label's.",
    )
    refill: bool = Field(
        False,
        description="Classification: a category left with fewer than per_category create principles "
        "by the label check is asked once more, shown the examples the check read as another label "
        '("What is the tallest mountain in the world?" read as location, written for entity), so it '
        "writes ones of its own label. One more teacher call per such category. Off: TREC, three seeds, "
        "46.6% against 46.5 without (docs/evidence.md).",
    )
    lead_forms: bool = Field(
        False,
        description="Create and mistake forms begin with 'Ask' (questions) or 'Write a <noun>', held "
        "to it where the teacher's backend constrains answers: the 1.5B teacher otherwise wrote the "
        "label's name as the form, leaving a bare example as the principle.",
    )
    # --- what the teacher sees
    seeds_shown: int = Field(8, ge=1, description="Seeds shown per teacher prompt (long prompts cost).")
    # --- error level: the student answers every seed greedily
    student_max_tokens: int | None = Field(
        None,
        gt=0,
        description="Per student answer to a seed; None: 16 for a label or letter, "
        "256 for a worked solution (a small model on CPU pays for every token).",
    )
    max_mistakes: int = Field(8, ge=1, description="Mistakes sent to the teacher, one prompt each.")
    # --- what counts as a principle line
    min_chars: int = Field(15, ge=1, description="Shorter lines are fragments, not principles.")
    max_chars: int = Field(300, ge=1, description="Longer lines would crowd a small model's prompt.")


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


def _cap(items: list[str], n: int, dropped: Counter) -> list[str]:
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


# ---------------------------------------------------------------------------------------------
# The stage
# ---------------------------------------------------------------------------------------------
def write_principles(
    task: Task,
    seeds: list[Example],
    teacher: ModelCaller,
    settings: PrinciplesSettings,
    seed: int,
    student: ModelCaller | None = None,
) -> dict:
    """Ask the teacher for principles at each level in `settings.levels`; see the module doc."""
    # --- validate
    if not seeds:
        raise DataError("principles: no seed examples to write principles from")
    if "error" in settings.levels and student is None:
        raise ConfigError(
            "principles.levels includes 'error', which needs a student model to "
            "answer the seeds; pass one or drop 'error' from principles.levels"
        )
    s = settings
    params = SamplingParams(temperature=s.temperature, top_p=1.0, max_tokens=s.max_tokens, seed=seed)
    source = f"teacher:{teacher.model_id}"
    principles: list[dict] = []
    prompts: list[dict] = []
    dropped: Counter = Counter()
    notes: list[str] = []

    def ask(level: str, requests: list[tuple[str, Messages]], how: SamplingParams = params) -> dict:
        out = teacher(requests, how)
        prompts.extend(
            {
                "level": level,
                "id": rid,
                "messages": m,
                "response": out[rid].text,
                "finish_reason": out[rid].finish_reason,
            }
            for rid, m in requests
        )
        return out

    def items(c: Completion, cap: int) -> list[str]:
        cut = c.finish_reason == "length"
        return _cap(parse_list(c.text, s.min_chars, s.max_chars, dropped, cut), cap, dropped)

    def add(level: str, category: str | None, use: str, texts: list[str], prefix: str) -> None:
        start = sum(p["id"].startswith(prefix) for p in principles)
        for k, text in enumerate(texts, start=start + 1):
            principles.append(
                {
                    "id": f"{prefix}{k}",
                    "level": level,
                    "category": category,
                    "use": use,
                    "text": text,
                    "source": source,
                }
            )

    forms = Forms(task, seeds, s, seed, ask, dropped, holds_json(teacher))

    # --- categories: the labels, or sub-types the teacher finds in the seeds
    categories: dict[str, str] = {}
    members: dict[str, list[Example]] = {}
    fixed = task.fixed_categories()
    if fixed is not None:
        categories = fixed
        members = {lb: [x for x in seeds if x.answer == lb] for lb in fixed}
    elif "category" in s.levels:
        rid = f"principles/{seed}/categories"
        text = ask("category", [(rid, prompts_.grouping_prompt(task, seeds, s))])[rid].text
        found = parse_categories(text, min(len(seeds), s.seeds_shown), s.max_categories, dropped)
        categories = {k: v["description"] for k, v in found.items()}
        members = {k: [seeds[i] for i in v["seeds"]] for k, v in found.items()}
        if not categories:
            notes.append("the teacher named no usable sub-types; no category-level principles")

    # --- task level
    if "task" in s.levels:
        rid = f"principles/{seed}/task"
        out = ask("task", [(rid, prompts_.task_prompt(task, seeds, s))])
        rules = items(out[rid], s.task_count)
        if s.check_task_rules and fixed:
            rules = _rules_for_every_label(rules, list(fixed), dropped)
        add("task", None, "both", rules, "t")

    # --- category level: forms of a new instance (each with a checked example), solving advice
    if "category" in s.levels and categories:
        n = s.per_category + s.extra_forms
        rid = {name: f"principles/{seed}/category/{name}/create" for name in categories}
        reqs = [
            (rid[name], prompts_.create_prompt(task, name, desc, members.get(name, []), n, s, forms.lead))
            for name, desc in categories.items()
        ]
        answers = forms.ask_forms("category", reqs, n)
        create = {name: answers[rid[name]] for name in categories}
        solved = {}
        if task.solves_inputs:  # solving advice is read only where the generator answers its inputs
            requests = [
                (
                    f"principles/{seed}/category/{name}/solve",
                    prompts_.solve_prompt(task, name, desc, members.get(name, []), s),
                )
                for name, desc in categories.items()
            ]
            solved = ask("category", requests)
        kept = forms.keep(create, s.per_category)
        if s.refill and fixed:
            kept = _refill(task, categories, members, create, kept, forms, n)
        for name in categories:
            add("category", name, "create", kept[name], f"c-{name}-")
            if solved:
                texts = items(solved[f"principles/{seed}/category/{name}/solve"], s.per_category)
                add("category", name, "solve", texts, f"c-{name}-")

    # --- error level: the student's mistakes on the seeds
    error: dict[str, Any] | None = None
    if "error" in s.levels:
        error = _error_level(task, seeds, student, s, seed, ask, items, forms)
        for category, text in error.pop("principles"):
            add("error", category, "both", [text], "e")
        if error["mistakes"] == 0:
            notes.append("the student answered every seed correctly; no error-level principles")

    warning = None
    if teacher.model_id in WEAK_TEACHERS:
        warning = (
            f"principles written by {teacher.model_id}, a 135M model: when measured its principles "
            'were junk ("One principle: 10."); install the embedded 1.5B teacher with '
            "`pip install 'psilm[teacher]'`, point models.teacher at a server, or set principles.file"
        )
        notes.append(warning)
    return {
        "warning": warning,
        "principles": principles,
        "teacher": teacher.model_id,
        "prompts": prompts,
        "categories": categories,
        "dropped": dict(sorted(dropped.items())),
        **({"refilled": forms.refilled} if s.refill else {}),
        "error": error,
        "notes": notes,
    }


def _refill(
    task: Task,
    categories: dict[str, str],
    members: dict[str, list[Example]],
    create: dict[str, list[tuple[str, str | None]]],
    kept: dict[str, list[str]],
    forms: Forms,
    n: int,
) -> dict[str, list[str]]:
    """principles.refill: each category the label check left short, asked again with the examples
    it wrote that read as another label; its principles kept before, then the new ones that pass."""
    s, cap = forms.s, forms.s.per_category
    short = {c: forms.off_label[c] for c in categories if len(kept[c]) < cap and forms.off_label.get(c)}
    if not short:
        return kept
    rid = {c: f"principles/{forms.seed}/category/{c}/refill" for c in short}
    reqs = [
        (rid[c], prompts_.refill_prompt(task, c, categories[c], members.get(c, []), n, s, wrong, forms.lead))
        for c, wrong in short.items()
    ]
    again = forms.ask_forms("category", reqs, n)
    before = {c: [(t, ex) for t, ex in create[c] if t in kept[c]] for c in short}
    taken = {ex for c, pairs in create.items() if c not in short for t, ex in pairs if ex and t in kept[c]}
    more = forms.keep({c: before[c] + again[rid[c]] for c in short}, cap, taken)
    forms.refilled = {c: len(more[c]) - len(kept[c]) for c in short}
    return {**kept, **more}


def _rules_for_every_label(rules: list[str], labels: list[str], dropped: Counter) -> list[str]:
    """The task rules that name no label, or every label: one that names some ("Reviews must not
    contain any negative comments", the 1.5B teacher on SST-2, all three seeds) is about those
    labels, yet it would head every prompt. By words, not by the teacher: asked whether each seed
    follows each rule, it said yes to all 60 checks (TREC and SST-2 seed 0), the negative review
    under that rule too."""
    kept = []
    for rule in rules:
        named = [lb for lb in labels if re.search(rf"\b{re.escape(lb.lower())}", rule.lower())]
        if named and len(named) < len(labels):
            dropped["task_rule_names_a_label"] += 1
        else:
            kept.append(rule)
    return kept


def holds_json(teacher: ModelCaller) -> bool:
    """Whether the teacher's answers are held to the forms schema: a local backend that constrains
    chat answers (llama.cpp's grammar, vLLM). A server is only asked in the prompt: servers differ
    in the response_format they accept (llama-cpp-python's refuses json_schema, OpenAI's strict mode
    wants more of the schema), and the answer is read forgivingly either way."""
    return "chat" in teacher.json_constrained and not teacher.remote


class Forms:
    """Create and mistake principles: the teacher's (form, example) items, each example cleaned
    and checked (not a copy of a seed; for a classification task, labelled by the teacher as the
    category it is written for), then rendered as one principle each."""

    def __init__(
        self, task: Task, seeds: list[Example], s: PrinciplesSettings, seed: int, ask, dropped, as_json: bool
    ):
        self.task, self.seeds, self.s, self.seed, self.ask, self.dropped = task, seeds, s, seed, ask, dropped
        self.as_json = as_json  # the teacher's backend holds chat answers to a schema
        self.noun = task.config.input_name
        # where every seed is a question, an example that is none (a statement, an answer) goes
        self.questions = all(x.input.rstrip().endswith("?") for x in seeds)
        # what every form begins with (lead_forms), in the prompt and, held, in the schema
        self.lead = prompts_.form_lead(self.noun, self.questions) if s.lead_forms else None
        self.off_label: dict[str, list[tuple[str, str | None]]] = {}  # keep's last: (example, its label)
        self.refilled: dict[str, int] = {}  # principles.refill: principles added per category asked again

    def ask_forms(self, level: str, requests: list[tuple[str, Messages]], n: int) -> dict[str, list]:
        """Per request id: (principle text, its example or None) for each usable item of the answer."""
        s = self.s
        how = SamplingParams(
            temperature=s.temperature,
            top_p=1.0,
            max_tokens=max(s.max_tokens, 96 * n),  # n items of form + example
            seed=self.seed,
            json_schema=prompts_.forms_schema(n, self.lead) if self.as_json else None,
        )
        out = self.ask(level, requests, how)
        return {rid: self._read(out[rid], n) for rid, _ in requests}

    def _read(self, c: Completion, n: int) -> list[tuple[str, str | None]]:
        s = self.s
        pairs = prompts_.read_forms(c.text)
        if pairs is None:  # no JSON: read it as a list, each line's quoted example (or itself, a bare one)
            lines = parse_list(c.text, s.min_chars, s.max_chars, self.dropped, c.finish_reason == "length")
            pairs = [(ln, prompts_.quoted_example(ln) or (ln if ln.endswith("?") else None)) for ln in lines]
            got = [self._one(text, ex, raw=True) for text, ex in pairs[:n]]
        else:
            got = [self._one(form, ex) for form, ex in pairs[:n]]
        return [g for g in got if g]

    def _one(self, form: str, example: str | None, raw: bool = False) -> tuple[str, str | None] | None:
        if example is None:
            return (form, None) if raw else None
        ex = prompts_.clean_example(example, self.noun)
        if ex is None:
            self.dropped["example_placeholder"] += 1
            return None
        if self.questions and not ex.endswith("?"):
            self.dropped["example_not_a_question"] += 1
            return None
        if any(prompts_.overlap(ex, x.input) > 0.8 for x in self.seeds):
            self.dropped["example_copies_seed"] += 1
            return None
        text = form if raw and form.strip().strip('"') != example else prompts_.render(form, ex, self.noun)
        if len(text) > self.s.max_chars:
            self.dropped["too_long"] += 1
            return None
        return text, ex

    def per_mistake(
        self, requests: list[tuple[str, Messages]], labels: list[str], cap: int
    ) -> list[tuple[str, str]]:
        """(label, principle) for each mistake's one JSON item that passes the checks, kept with
        the label the student missed (`labels`, one per request); at most `cap` per label."""
        answers = self.ask_forms("error", requests, 1)
        got: dict[str, list] = {}
        for (rid, _), label in zip(requests, labels, strict=True):
            got.setdefault(label, []).extend(answers[rid])
        return [(label, text) for label, texts in self.keep(got, cap).items() for text in texts]

    def keep(
        self, got: dict[str, list[tuple[str, str | None]]], cap: int, taken: set[str] | None = None
    ) -> dict[str, list[str]]:
        """Per category: its principles whose example is new (not one kept already, nor one of
        `taken`) and, for a classification task, labelled as that category by the teacher; at most
        `cap`. off_label: per category, (example, the teacher's label) of those it labelled otherwise."""
        task, fixed = self.task, self.task.fixed_categories()
        self.off_label = {}
        labelled: dict[str, str | None] = {}
        if fixed is not None:
            greedy = SamplingParams(temperature=0.0, top_p=1.0, max_tokens=16, seed=self.seed)
            examples = sorted({ex for pairs in got.values() for _, ex in pairs if ex is not None})
            reqs = [
                (f"principles/{self.seed}/check/{k}", prompts_.label_prompt(task, self.seeds, ex, self.s))
                for k, ex in enumerate(examples)
            ]
            out = self.ask("check", reqs, greedy) if reqs else {}
            labelled = {ex: task.extract(out[rid].text) for ex, (rid, _) in zip(examples, reqs, strict=True)}
        kept: dict[str, list[str]] = {}
        seen = {" ".join(sorted(prompts_._words(ex))) for ex in taken or ()}
        for name, pairs in got.items():
            kept[name] = []
            for text, ex in pairs:
                key = None if ex is None else " ".join(sorted(prompts_._words(ex)))
                if ex is not None and fixed is not None and labelled.get(ex) != name:
                    self.dropped["example_off_label"] += 1
                    self.off_label.setdefault(name, []).append((ex, labelled.get(ex)))
                elif key is not None and key in seen:
                    self.dropped["duplicate"] += 1
                elif len(kept[name]) >= cap:
                    self.dropped["over_cap"] += 1
                else:
                    kept[name].append(text)
                    if key is not None:
                        seen.add(key)
        return kept


def _error_level(
    task: Task,
    seeds: list[Example],
    student: ModelCaller,
    s: PrinciplesSettings,
    seed: int,
    ask,
    items,
    forms,
) -> dict[str, Any]:
    """Mistakes of the student on the seeds -> one principle each -> condensed general ones
    (classification: each stays with the label the student missed, its example checked)."""
    n_tokens = s.student_max_tokens or (16 if task.short_answers else 256)
    greedy = SamplingParams(temperature=0.0, top_p=1.0, max_tokens=n_tokens, seed=seed)
    requests = [(f"principles/{seed}/student/{i}", task.prompt(x.input)) for i, x in enumerate(seeds)]
    answers = student(requests, greedy)
    mistakes = []
    for i, x in enumerate(seeds):
        text = answers[f"principles/{seed}/student/{i}"].text
        pred = task.extract(text)
        if task.score(pred, x.answer) < 1.0:
            mistakes.append({"seed": i, "predicted": pred, "gold": x.answer, "response": text})
    used = mistakes[: s.max_mistakes]
    fixed = task.fixed_categories()
    general: list[tuple[str | None, str]] = []
    specific: list[str] = []
    if used and fixed is not None:  # one form + example per mistake, kept with the missed label
        reqs = [
            (
                f"principles/{seed}/mistake/{m['seed']}",
                prompts_.mistake_prompt(task, seeds[m["seed"]], m["response"], as_json=True, lead=forms.lead),
            )
            for m in used
        ]
        general = forms.per_mistake(reqs, [m["gold"] for m in used], s.max_mistakes)
        specific = [text for _, text in general]
    elif used:
        reqs = [
            (
                f"principles/{seed}/mistake/{m['seed']}",
                prompts_.mistake_prompt(task, seeds[m["seed"]], m["response"]),
            )
            for m in used
        ]
        out = ask("error", reqs)
        for rid, _ in reqs:
            specific.extend(items(out[rid], 1))
        if specific:
            rid = f"principles/{seed}/condense"
            merged = items(
                ask("error", [(rid, prompts_.condense_prompt(task, specific, s))])[rid], s.condense_to
            )
            general = [(None, text) for text in merged]
    return {
        "student": student.model_id,
        "seeds": len(seeds),
        "mistakes": len(mistakes),
        "mistakes_sent": len(used),
        "details": [{k: m[k] for k in ("seed", "predicted", "gold")} for m in mistakes],
        "specific": specific,
        "principles": general,
    }
